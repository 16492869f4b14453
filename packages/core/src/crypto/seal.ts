import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { GatehouseError } from '../errors.js';

/**
 * Sealing secrets at rest (CA private keys, TOTP secrets). The key lives
 * outside the backend: a 0600 file in the data dir or an env var, so a copy
 * of the database alone reveals nothing.
 */
export interface Sealer {
  /** Encrypt and authenticate `plain`, binding it to `aad` (e.g. "ca/user/<keyid>/ssh"). */
  seal(plain: string, aad: string): string;
  /** Throws GH_ERR_INTERNAL when the data was tampered with or the key is wrong. */
  open(sealed: string, aad: string): string;
}

/** Environment variable that carries the secrets key (base64 of 32 bytes); it wins over the key file. */
export const SECRETS_KEY_ENV = 'GATEHOUSE_SECRETS_KEY';
/** Name of the key file in the data dir: base64 of 32 bytes plus a newline, mode 0600. */
export const SECRETS_KEY_FILE = 'secrets.key';

const KEY_BYTES = 32;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
const FORMAT = 'v1';
// Exactly 32 bytes in standard base64: 43 symbols, the last carrying 4 bits, then one '='.
const KEY_B64 = /^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$/;
const B64URL = /^[A-Za-z0-9_-]*$/;
const GENERATE_HINT = 'Generate one with: openssl rand -base64 32';

const unsealFailures = new WeakSet<GatehouseError>();

/** Whether `e` says a sealed secret did not open (a wrong secrets key, or modified data). */
export function isUnsealFailure(e: unknown): e is GatehouseError {
  return e instanceof GatehouseError && unsealFailures.has(e);
}

function cannotOpen(reason: string, cause?: unknown): GatehouseError {
  const e = new GatehouseError('GH_ERR_INTERNAL', `sealed secret could not be opened: ${reason}`, {
    hint:
      `The secrets key does not match the data dir, or the stored data was modified. Start Gatehouse with ` +
      `the ${SECRETS_KEY_FILE} file or ${SECRETS_KEY_ENV} that was in use when this data dir was created.`,
    cause,
  });
  unsealFailures.add(e);
  return e;
}

function decodeB64url(s: string): Buffer | undefined {
  return B64URL.test(s) ? Buffer.from(s, 'base64url') : undefined;
}

/**
 * AES-256-GCM with a random 12-byte nonce per seal and the caller's AAD
 * (e.g. the record's key), so a sealed value copied to another record does
 * not open. Output: `v1.<base64url nonce>.<base64url ciphertext+tag>`.
 */
export class AesGcmSealer implements Sealer {
  readonly #key: Buffer;

  constructor(key: Uint8Array) {
    if (key.length !== KEY_BYTES) {
      throw new GatehouseError(
        'GH_ERR_CONFIG_INVALID',
        `the secrets key must be ${KEY_BYTES} bytes, got ${key.length}`,
        {
          hint: GENERATE_HINT,
        },
      );
    }
    this.#key = Buffer.from(key);
  }

  seal(plain: string, aad: string): string {
    const nonce = randomBytes(NONCE_BYTES);
    const cipher = createCipheriv('aes-256-gcm', this.#key, nonce, { authTagLength: TAG_BYTES });
    cipher.setAAD(Buffer.from(aad, 'utf8'));
    const body = Buffer.concat([cipher.update(plain, 'utf8'), cipher.final(), cipher.getAuthTag()]);
    return `${FORMAT}.${nonce.toString('base64url')}.${body.toString('base64url')}`;
  }

  open(sealed: string, aad: string): string {
    const parts = sealed.split('.');
    if (parts.length !== 3 || parts[0] !== FORMAT) throw cannotOpen(`not a ${FORMAT} sealed value`);
    const nonce = decodeB64url(parts[1]!);
    const body = decodeB64url(parts[2]!);
    if (nonce?.length !== NONCE_BYTES || body === undefined || body.length < TAG_BYTES) {
      throw cannotOpen('malformed sealed value');
    }
    const decipher = createDecipheriv('aes-256-gcm', this.#key, nonce, { authTagLength: TAG_BYTES });
    decipher.setAAD(Buffer.from(aad, 'utf8'));
    decipher.setAuthTag(body.subarray(body.length - TAG_BYTES));
    try {
      const plain = Buffer.concat([
        decipher.update(body.subarray(0, body.length - TAG_BYTES)),
        decipher.final(),
      ]);
      return plain.toString('utf8');
    } catch (e) {
      throw cannotOpen('authentication failed', e);
    }
  }
}

function parseKey(text: string, source: string, hint: string): Buffer {
  const t = text.trim();
  if (!KEY_B64.test(t)) {
    throw new GatehouseError(
      'GH_ERR_CONFIG_INVALID',
      `${source} is not the base64 encoding of ${KEY_BYTES} bytes`,
      {
        hint,
      },
    );
  }
  return Buffer.from(t, 'base64');
}

async function readKeyFile(file: string): Promise<Buffer> {
  const fh = await fsp.open(file, 'r');
  try {
    const st = await fh.stat();
    if (!st.isFile()) {
      throw new GatehouseError('GH_ERR_CONFIG_INVALID', `${file} is not a regular file`, {
        hint: `Remove it; Gatehouse creates ${SECRETS_KEY_FILE} itself on first start.`,
      });
    }
    if ((st.mode & 0o077) !== 0) {
      throw new GatehouseError(
        'GH_ERR_CONFIG_INVALID',
        `${file} is accessible by group or others (mode ${(st.mode & 0o777).toString(8)})`,
        { hint: `Restrict it to its owner: chmod 600 ${file}`, details: { path: file } },
      );
    }
    return parseKey(
      await fh.readFile('utf8'),
      file,
      `Restore the original key file, or replace it with a new key (${GENERATE_HINT}); ` +
        'a new key cannot open secrets sealed with the old one.',
    );
  } finally {
    await fh.close();
  }
}

/**
 * Write a fresh key where no other process can see it half-written, then
 * link it into place: link() fails with EEXIST when the name is taken, so of
 * two processes starting at once exactly one key wins and both use it.
 * Returns false when another process won.
 */
async function createKeyFile(dataDir: string, file: string): Promise<boolean> {
  const tmp = path.join(dataDir, `.${SECRETS_KEY_FILE}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  const fh = await fsp.open(tmp, 'wx', 0o600);
  try {
    try {
      await fh.chmod(0o600);
      await fh.writeFile(`${randomBytes(KEY_BYTES).toString('base64')}\n`, 'utf8');
      await fh.sync();
    } finally {
      await fh.close();
    }
    try {
      await fsp.link(tmp, file);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
      throw e;
    }
  } finally {
    await fsp.rm(tmp, { force: true });
  }
  // Persist the new directory entry: losing the key after a crash loses every sealed secret.
  const dir = await fsp.open(dataDir, 'r');
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
  return true;
}

/**
 * The key that seals secrets at rest. `GATEHOUSE_SECRETS_KEY` (base64 of 32
 * bytes) wins; otherwise `<dataDir>/secrets.key` is read, or created (mode
 * 0600) on first start. The file holds the same base64 text as the variable,
 * so a key can move between the two unchanged. A key file that group or
 * others can access is refused.
 */
export async function loadOrCreateSecretsKey(opts: {
  dataDir: string;
  env?: NodeJS.ProcessEnv;
}): Promise<Buffer> {
  const fromEnv = (opts.env ?? process.env)[SECRETS_KEY_ENV];
  if (fromEnv !== undefined) {
    return parseKey(
      fromEnv,
      SECRETS_KEY_ENV,
      `Set ${SECRETS_KEY_ENV} to the base64 of 32 random bytes. ${GENERATE_HINT}`,
    );
  }
  const file = path.join(opts.dataDir, SECRETS_KEY_FILE);
  try {
    return await readKeyFile(file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw wrapIo(e, file);
  }
  try {
    await fsp.mkdir(opts.dataDir, { recursive: true, mode: 0o700 });
    await createKeyFile(opts.dataDir, file);
    return await readKeyFile(file);
  } catch (e) {
    throw wrapIo(e, file);
  }
}

function wrapIo(e: unknown, file: string): GatehouseError {
  if (e instanceof GatehouseError) return e;
  const msg = e instanceof Error ? e.message : String(e);
  return new GatehouseError(
    'GH_ERR_CONFIG_INVALID',
    `cannot read or create the secrets key ${file}: ${msg}`,
    {
      hint: `Make sure the data dir is writable by this user, or set ${SECRETS_KEY_ENV} (${GENERATE_HINT}).`,
      cause: e,
    },
  );
}
