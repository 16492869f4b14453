import { createCipheriv, createDecipheriv, createHash, randomBytes, scryptSync } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import type { BackendConfig } from '../config/load.js';
import { loadOrCreateSecretsKey, SECRETS_KEY_ENV, SECRETS_KEY_FILE } from '../crypto/seal.js';
import { GatehouseError } from '../errors.js';
import { caBackendKey } from '../pki/authority.js';

/**
 * `gatehouse backup` / `gatehouse restore`: a consistent copy of the SQLite
 * backend (users, roles, resources, CA keys sealed with the secrets key) and
 * the secrets key itself, in one file sealed with a passphrase. The audit
 * log and recordings are append-only files: they are copied as files.
 *
 * File: MAGIC line, a JSON header line (authenticated, not secret: format,
 * cluster, time, KDF parameters), then AES-256-GCM ciphertext and its tag.
 * The plaintext is a manifest (JSON) and the files, each length-prefixed.
 */

const MAGIC = 'GATEHOUSE-BACKUP 1\n';
const DB_FILE = 'gatehouse.db';
/** scrypt cost: ~0.1 s and 32 MiB per derivation; a guessed passphrase costs the same. */
const KDF = { N: 2 ** 15, r: 8, p: 1 } as const;
export const MIN_PASSPHRASE = 12;

interface Header {
  format: 1;
  cluster: string;
  created: string;
  kdf: { name: 'scrypt'; salt: string; N: number; r: number; p: number };
  iv: string;
}

interface Manifest {
  cluster: string;
  created: string;
  files: Record<string, { bytes: number; sha256: string }>;
}

export interface BackupInfo {
  cluster: string;
  created: string;
  bytes: number;
}

const invalid = (why: string, hint: string, cause?: unknown) =>
  new GatehouseError('GH_ERR_BACKUP_INVALID', why, { hint, ...(cause === undefined ? {} : { cause }) });

function checkPassphrase(passphrase: string): void {
  if (passphrase.length < MIN_PASSPHRASE) {
    throw new GatehouseError(
      'GH_ERR_VALIDATION',
      `the backup passphrase is shorter than ${MIN_PASSPHRASE} characters`,
      {
        hint: 'use a long random passphrase and keep it apart from the backup file',
      },
    );
  }
}

function deriveKey(passphrase: string, kdf: Header['kdf']): Buffer {
  return scryptSync(passphrase, Buffer.from(kdf.salt, 'base64'), 32, {
    N: kdf.N,
    r: kdf.r,
    p: kdf.p,
    maxmem: 256 * kdf.N * kdf.r,
  });
}

function sha256(b: Uint8Array): string {
  return createHash('sha256').update(b).digest('hex');
}

/** [u32 name length][name][u64 data length][data]... */
function pack(entries: [string, Buffer][]): Buffer {
  const parts: Buffer[] = [];
  for (const [name, data] of entries) {
    const n = Buffer.from(name, 'utf8');
    const head = Buffer.alloc(12);
    head.writeUInt32BE(n.length, 0);
    head.writeBigUInt64BE(BigInt(data.length), 4);
    parts.push(head, n, data);
  }
  return Buffer.concat(parts);
}

function unpack(buf: Buffer): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  let off = 0;
  while (off < buf.length) {
    if (off + 12 > buf.length) throw new Error('truncated entry header');
    const nameLen = buf.readUInt32BE(off);
    const dataLen = Number(buf.readBigUInt64BE(off + 4));
    off += 12;
    if (off + nameLen + dataLen > buf.length) throw new Error('truncated entry');
    const name = buf.subarray(off, off + nameLen).toString('utf8');
    off += nameLen;
    out.set(name, buf.subarray(off, off + dataLen));
    off += dataLen;
  }
  return out;
}

/** The cluster a SQLite backend file belongs to (its user CA's record). */
function clusterOf(dbFile: string): string {
  const db = new Database(dbFile, { readonly: true, fileMustExist: true });
  try {
    const row = db.prepare('SELECT value FROM items WHERE key = ?').get(caBackendKey('user')) as
      | { value: string }
      | undefined;
    const name = row ? (JSON.parse(row.value) as { clusterName?: unknown }).clusterName : undefined;
    if (typeof name !== 'string') throw new Error('no user CA');
    return name;
  } finally {
    db.close();
  }
}

/**
 * `gatehouse backup` copies the SQLite file of the data dir. With a shared
 * backend that file is not the state (a gateway moved from SQLite keeps a
 * stale one), and the database's own tool is the right one: pg_dump takes a
 * consistent snapshot while every gateway writes, etcdctl a revision-exact
 * snapshot, and operators of those databases already run them (decision
 * 0038-shared-recordings, "Backup"). Refused, naming the tool and the key the
 * dump does not hold.
 */
function sharedBackendRefusal(b: Exclude<BackendConfig, { type: 'sqlite' }>): GatehouseError {
  const key = `the secrets key (${SECRETS_KEY_ENV}, or ${SECRETS_KEY_FILE} in the data dir): the CA keys in the database are sealed with it, and a dump without it cannot be used`;
  if (b.type === 'postgres') {
    let where = 'the database in backend.uri';
    try {
      const u = new URL(b.uri);
      where = `${u.hostname}:${u.port || '5432'}${u.pathname}`;
    } catch {
      // Not parseable: the config check at start names it; here the generic wording does.
    }
    return new GatehouseError(
      'GH_ERR_VALIDATION',
      `gatehouse backup copies the SQLite backend; this cluster's state is in PostgreSQL (${where})`,
      {
        hint: `back up that database with pg_dump (e.g. pg_dump -Fc -f gatehouse.dump "${b.uri.replace(/:[^:@/]*@/, '@')}"; its gatehouse_* tables hold users, roles, CAs, the audit index and uploaded recordings), and keep ${key}; restore with pg_restore into an empty database`,
        details: { backend: 'postgres' },
      },
    );
  }
  return new GatehouseError(
    'GH_ERR_VALIDATION',
    `gatehouse backup copies the SQLite backend; this cluster's state is in etcd (${b.endpoints.join(', ')}, prefix ${b.prefix})`,
    {
      hint: `back up etcd with etcdctl snapshot save FILE --endpoints ${b.endpoints[0] ?? 'URL'} (a snapshot of the whole keyspace at one revision), and keep ${key}; restore with etcdutl snapshot restore`,
      details: { backend: 'etcd' },
    },
  );
}

/**
 * Writes a sealed backup of `dataDir` to `out` while the gateway may be
 * running: `VACUUM INTO` copies the database from one read transaction (a
 * consistent snapshot that writers do not block, which SQLite's page-by-page
 * backup API cannot promise under steady writes: it restarts on each).
 */
export async function createBackup(opts: {
  dataDir: string;
  out: string;
  passphrase: string;
  env?: NodeJS.ProcessEnv;
  now?: () => Date;
  /** The configured backend: only SQLite's lives in the data dir; a shared one is refused (see below). */
  backend?: BackendConfig;
}): Promise<BackupInfo> {
  if (opts.backend && opts.backend.type !== 'sqlite') throw sharedBackendRefusal(opts.backend);
  checkPassphrase(opts.passphrase);
  const dbPath = path.join(opts.dataDir, DB_FILE);
  if (!fs.existsSync(dbPath)) {
    throw new GatehouseError('GH_ERR_NOT_FOUND', `${opts.dataDir} has no Gatehouse database (${DB_FILE})`, {
      hint: 'point --data-dir (or --config) at the data dir of the gateway to back up',
    });
  }
  const env = opts.env ?? process.env;
  if (env[SECRETS_KEY_ENV] === undefined && !fs.existsSync(path.join(opts.dataDir, SECRETS_KEY_FILE))) {
    throw new GatehouseError('GH_ERR_NOT_FOUND', `${opts.dataDir} has no ${SECRETS_KEY_FILE}`, {
      hint: `the CA keys cannot be restored without it; set ${SECRETS_KEY_ENV} if the gateway takes its key from there`,
    });
  }
  const secretsKey = await loadOrCreateSecretsKey({ dataDir: opts.dataDir, env });
  const tmpDir = await fsp.mkdtemp(path.join(os.tmpdir(), 'gh-backup-'));
  try {
    const copy = path.join(tmpDir, DB_FILE);
    const src = new Database(dbPath, { fileMustExist: true });
    try {
      src.pragma('busy_timeout = 5000');
      src.prepare('VACUUM INTO ?').run(copy);
    } finally {
      src.close();
    }
    const cluster = clusterOf(copy);
    const created = (opts.now?.() ?? new Date()).toISOString();
    const files: [string, Buffer][] = [
      [DB_FILE, await fsp.readFile(copy)],
      [SECRETS_KEY_FILE, Buffer.from(`${secretsKey.toString('base64')}\n`)],
    ];
    const manifest: Manifest = {
      cluster,
      created,
      files: Object.fromEntries(files.map(([n, d]) => [n, { bytes: d.length, sha256: sha256(d) }])),
    };
    const plain = pack([['manifest.json', Buffer.from(JSON.stringify(manifest))], ...files]);
    const header: Header = {
      format: 1,
      cluster,
      created,
      kdf: { name: 'scrypt', salt: randomBytes(16).toString('base64'), ...KDF },
      iv: randomBytes(12).toString('base64'),
    };
    const headerLine = `${JSON.stringify(header)}\n`;
    const cipher = createCipheriv(
      'aes-256-gcm',
      deriveKey(opts.passphrase, header.kdf),
      Buffer.from(header.iv, 'base64'),
    );
    cipher.setAAD(Buffer.from(MAGIC + headerLine));
    const body = Buffer.concat([cipher.update(plain), cipher.final(), cipher.getAuthTag()]);
    const data = Buffer.concat([Buffer.from(MAGIC + headerLine), body]);
    const tmp = `${opts.out}.${process.pid}.tmp`;
    await fsp.writeFile(tmp, data, { mode: 0o600 });
    await fsp.rename(tmp, opts.out);
    return { cluster, created, bytes: data.length };
  } finally {
    await fsp.rm(tmpDir, { recursive: true, force: true });
  }
}

/**
 * Unseals `file` into a new data dir: refused when the dir has anything in
 * it, the file is not whole or was sealed with another passphrase, or it
 * belongs to another cluster than `expectCluster`.
 */
export async function restoreBackup(opts: {
  file: string;
  dataDir: string;
  passphrase: string;
  expectCluster: string;
}): Promise<BackupInfo> {
  const entries = await fsp.readdir(opts.dataDir).catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOENT') return [];
    throw e;
  });
  if (entries.length > 0) {
    throw new GatehouseError('GH_ERR_VALIDATION', `the data dir ${opts.dataDir} is not empty`, {
      hint: 'restore into a new or empty directory; a running data dir is never overwritten',
    });
  }
  const data = await fsp.readFile(opts.file).catch((e: unknown) => {
    throw invalid(`cannot read the backup file ${opts.file}`, 'check the path', e);
  });
  const notOurs = () =>
    invalid(`${opts.file} is not a Gatehouse backup`, 'pass a file written by gatehouse backup --out');
  if (data.subarray(0, MAGIC.length).toString('latin1') !== MAGIC) throw notOurs();
  const nl = data.indexOf(0x0a, MAGIC.length);
  if (nl < 0) throw notOurs();
  let header: Header;
  try {
    header = JSON.parse(data.subarray(MAGIC.length, nl).toString('utf8')) as Header;
  } catch {
    throw notOurs();
  }
  if (header.format !== 1 || header.kdf?.name !== 'scrypt') {
    throw invalid(
      `${opts.file} has an unknown backup format`,
      'restore it with the Gatehouse version that wrote it',
    );
  }
  // The header is authenticated by the tag: a cluster name edited into it fails below.
  if (header.cluster !== opts.expectCluster) {
    throw invalid(
      `${opts.file} is a backup of cluster "${header.cluster}", not "${opts.expectCluster}"`,
      `pass --cluster ${header.cluster} only if that is the cluster you mean to restore`,
    );
  }
  const body = data.subarray(nl + 1);
  if (body.length < 16) throw invalid(`${opts.file} is truncated`, 'use another copy of the backup');
  let plain: Buffer;
  try {
    const decipher = createDecipheriv(
      'aes-256-gcm',
      deriveKey(opts.passphrase, header.kdf),
      Buffer.from(header.iv, 'base64'),
    );
    decipher.setAAD(data.subarray(0, nl + 1));
    decipher.setAuthTag(body.subarray(body.length - 16));
    plain = Buffer.concat([decipher.update(body.subarray(0, body.length - 16)), decipher.final()]);
  } catch (e) {
    throw invalid(
      `${opts.file} is corrupted or sealed with another passphrase`,
      'check the passphrase; if it is right, the file was changed or truncated: use another copy',
      e,
    );
  }
  let files: Map<string, Buffer>;
  let manifest: Manifest;
  try {
    files = unpack(plain);
    manifest = JSON.parse(files.get('manifest.json')?.toString('utf8') ?? '') as Manifest;
  } catch (e) {
    throw invalid(`${opts.file} is damaged inside`, 'use another copy of the backup', e);
  }
  for (const [name, meta] of Object.entries(manifest.files)) {
    const f = files.get(name);
    if (
      !f ||
      f.length !== meta.bytes ||
      sha256(f) !== meta.sha256 ||
      ![DB_FILE, SECRETS_KEY_FILE].includes(name)
    ) {
      throw invalid(`${opts.file} is damaged inside (${name})`, 'use another copy of the backup');
    }
  }
  if (!files.has(DB_FILE) || !files.has(SECRETS_KEY_FILE)) {
    throw invalid(`${opts.file} lacks the database or the secrets key`, 'use another copy of the backup');
  }
  await fsp.mkdir(opts.dataDir, { recursive: true, mode: 0o700 });
  for (const name of [SECRETS_KEY_FILE, DB_FILE]) {
    await fsp.writeFile(path.join(opts.dataDir, name), files.get(name)!, { mode: 0o600, flag: 'wx' });
  }
  return { cluster: manifest.cluster, created: manifest.created, bytes: data.length };
}
