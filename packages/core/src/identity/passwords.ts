import { randomBytes, type ScryptOptions, scrypt, timingSafeEqual } from 'node:crypto';
import { GatehouseError } from '../errors.js';

/**
 * Password hashes: `$scrypt$ln=15,r=8,p=1$<salt b64>$<hash b64>`.
 * The parameters live in the string so they can be raised later without
 * breaking stored hashes.
 */
const LN = 15;
const R = 8;
const P = 1;
const KEY_LEN = 32;
const SALT_LEN = 16;
/** Longest password accepted, in UTF-8 bytes; checked before any hashing work. */
export const MAX_PASSWORD_BYTES = 1024;
export const DEFAULT_MIN_PASSWORD_LENGTH = 12;

interface Params {
  ln: number;
  r: number;
  p: number;
}

function derive(password: string, salt: Buffer, params: Params, keyLen: number): Promise<Buffer> {
  const N = 2 ** params.ln;
  // Node's default maxmem (32 MiB) is exactly 128*N*r at ln=15, r=8: leave room.
  const opts: ScryptOptions = { N, r: params.r, p: params.p, maxmem: 256 * N * params.r };
  return new Promise((resolve, reject) => {
    scrypt(password.normalize('NFC'), salt, keyLen, opts, (err, key) => (err ? reject(err) : resolve(key)));
  });
}

function tooLong(password: string): boolean {
  // A cheap upper bound first, so a 1 GB string is never even encoded.
  return password.length > MAX_PASSWORD_BYTES || Buffer.byteLength(password, 'utf8') > MAX_PASSWORD_BYTES;
}

/** Enforce the password policy; throws GH_ERR_VALIDATION saying what is wrong. */
export function checkPasswordPolicy(password: string, minLength = DEFAULT_MIN_PASSWORD_LENGTH): void {
  if (typeof password !== 'string') {
    throw new GatehouseError('GH_ERR_VALIDATION', 'password must be a string', {
      hint: 'send the password as text',
    });
  }
  if (tooLong(password)) {
    throw new GatehouseError('GH_ERR_VALIDATION', `password is longer than ${MAX_PASSWORD_BYTES} bytes`, {
      hint: `choose a password of at most ${MAX_PASSWORD_BYTES} bytes`,
    });
  }
  const chars = [...password].length;
  if (chars < minLength) {
    throw new GatehouseError('GH_ERR_VALIDATION', `password is too short (${chars} characters)`, {
      hint: `choose a password of at least ${minLength} characters; a passphrase of several words works well`,
    });
  }
}

export async function hashPassword(password: string): Promise<string> {
  if (tooLong(password)) {
    throw new GatehouseError('GH_ERR_VALIDATION', `password is longer than ${MAX_PASSWORD_BYTES} bytes`, {
      hint: `choose a password of at most ${MAX_PASSWORD_BYTES} bytes`,
    });
  }
  const salt = randomBytes(SALT_LEN);
  const key = await derive(password, salt, { ln: LN, r: R, p: P }, KEY_LEN);
  return `$scrypt$ln=${LN},r=${R},p=${P}$${salt.toString('base64')}$${key.toString('base64')}`;
}

const FORMAT =
  /^\$scrypt\$ln=(\d{1,2}),r=(\d{1,2}),p=(\d{1,2})\$([A-Za-z0-9+/]+={0,2})\$([A-Za-z0-9+/]+={0,2})$/;

/** False for a wrong password, an oversized input or a malformed hash; never throws for bad input. */
export async function verifyPassword(password: string, hash: string): Promise<boolean> {
  if (typeof password !== 'string' || tooLong(password)) return false;
  const m = FORMAT.exec(hash);
  if (!m) return false;
  const params = { ln: Number(m[1]), r: Number(m[2]), p: Number(m[3]) };
  // Bounds keep a corrupted hash from asking for gigabytes of memory.
  if (params.ln < 10 || params.ln > 20 || params.r < 1 || params.r > 16 || params.p < 1 || params.p > 4)
    return false;
  const salt = Buffer.from(m[4] as string, 'base64');
  const expected = Buffer.from(m[5] as string, 'base64');
  if (expected.length < 16 || expected.length > 64) return false;
  const actual = await derive(password, salt, params, expected.length);
  return timingSafeEqual(actual, expected);
}

/**
 * The same work as verifying a real password, for unknown users (and users
 * without a password): without it, a fast "no" reveals which names exist.
 */
export async function dummyVerify(password: string): Promise<false> {
  const input = typeof password === 'string' && !tooLong(password) ? password : '';
  await derive(input, randomBytes(SALT_LEN), { ln: LN, r: R, p: P }, KEY_LEN);
  return false;
}
