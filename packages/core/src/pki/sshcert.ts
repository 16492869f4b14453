import { createPublicKey, type KeyObject, randomBytes, sign, verify } from 'node:crypto';
import { BlockList, isIP } from 'node:net';
import { GatehouseError } from '../errors.js';
import type { Identity } from '../identity/types.js';
import { decodeIdentityJson, mfaTargetJson } from './identity-codec.js';
import { sshString, u32, u64 } from './sshwire.js';
import type { SshSessionPolicy } from './types.js';

/**
 * OpenSSH certificates (PROTOCOL.certkeys), encoded and verified without I/O.
 * Certificates are signed by Ed25519 CA keys only (decision 0001); the
 * certified key may be Ed25519, ECDSA or RSA, because host keys that already
 * exist on a server are whatever sshd generated.
 */

export type SshCertType = 'user' | 'host';

const CERT_TYPE_CODE: Record<SshCertType, number> = { user: 1, host: 2 };

/**
 * How many SSH strings/mpints follow the key type name in a public key blob.
 * The certificate carries exactly these fields between the nonce and the serial.
 */
const KEY_FIELD_COUNT: Record<string, number> = {
  'ssh-ed25519': 1,
  'ecdsa-sha2-nistp256': 2,
  'ecdsa-sha2-nistp384': 2,
  'ecdsa-sha2-nistp521': 2,
  'ssh-rsa': 2,
};

const CERT_SUFFIX = '-cert-v01@openssh.com';

/**
 * Critical options the verifier accepts. OpenSSH also defines verify-required
 * (FIDO user verification); Gatehouse has no FIDO keys, so it cannot honour
 * it and, failing closed, rejects it like any unknown option. Callers must
 * enforce force-command themselves.
 */
/**
 * Critical options this code understands. A non-empty session policy is also
 * written as a critical option of the same name: a server that cannot enforce
 * it (OpenSSH refuses an unknown critical option) refuses the certificate
 * instead of running the session unrestricted (decision 0023).
 */
export const KNOWN_CRITICAL_OPTIONS = [
  'force-command',
  'source-address',
  'gatehouse-session-policy@gatehouse.dev',
] as const;

/**
 * Critical option of per-session MFA (docs/decisions/0037-session-mfa.md):
 * `required` on the login certificate of a user whose roles set
 * require_session_mfa, the target's canonical JSON on the one-minute
 * certificate an MFA check issues. Only the gateway's SSH proxy accepts it
 * (it decides with the roles); OpenSSH and the node service refuse it like
 * any critical option they do not know, so neither certificate opens a
 * node directly, around the check.
 */
export const SSH_SESSION_MFA_OPTION = 'gatehouse-session-mfa@gatehouse.dev';
/** The session MFA option's value on a login certificate: a check is needed before each session. */
export const SESSION_MFA_REQUIRED = 'required';

/** Extension that carries the Gatehouse identity JSON (decision 0002). */
export const SSH_IDENTITY_EXTENSION = 'gatehouse-identity@gatehouse.dev';
/** JSON `{ enhanced_recording, restrict_network: { deny, allow } }`: what the node must record and restrict. */
export const SSH_SESSION_POLICY_EXTENSION = 'gatehouse-session-policy@gatehouse.dev';

/**
 * The proxy's session id, in the upstream certificate core mints for one
 * grant: the node's audit events of that session carry it, so they join the
 * proxy's session.start and recording. Signed by the user CA, so a user
 * cannot attribute their events to another session.
 */
export const SSH_SESSION_ID_EXTENSION = 'gatehouse-session-id@gatehouse.dev';

/** Session ids core mints (UUIDs); anything else in the extension is refused. */
export const SESSION_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/** Nothing to record or restrict (what a certificate for a user whose roles ask for neither carries). */
export const EMPTY_SESSION_POLICY: Readonly<SshSessionPolicy> = Object.freeze({
  enhancedRecording: [],
  restrictNetwork: { deny: [], allow: [] },
});

/** Whether `p` asks a node for nothing (no recording, no network rules). */
export function isEmptySessionPolicy(p: SshSessionPolicy): boolean {
  return (
    p.enhancedRecording.length === 0 &&
    p.restrictNetwork.deny.length === 0 &&
    p.restrictNetwork.allow.length === 0
  );
}

/** valid_before of a certificate that never expires. */
export const SSH_FOREVER = 0xffffffffffffffffn;

function invalid(message: string, cause?: unknown): GatehouseError {
  return new GatehouseError('GH_ERR_CERT_INVALID', message, {
    hint: 'Log in again to get a fresh certificate; if this persists, the certificate was not issued by this Gatehouse.',
    ...(cause === undefined ? {} : { cause }),
  });
}

// ---------------------------------------------------------------- wire helpers

/** Sequential reader over SSH wire data; every read is bounds-checked. */
class Reader {
  #buf: Buffer;
  #off = 0;
  constructor(buf: Uint8Array) {
    this.#buf = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  }
  get offset(): number {
    return this.#off;
  }
  get done(): boolean {
    return this.#off === this.#buf.length;
  }
  u32(): number {
    if (this.#off + 4 > this.#buf.length) throw invalid('certificate is truncated');
    const v = this.#buf.readUInt32BE(this.#off);
    this.#off += 4;
    return v;
  }
  u64(): bigint {
    if (this.#off + 8 > this.#buf.length) throw invalid('certificate is truncated');
    const v = this.#buf.readBigUInt64BE(this.#off);
    this.#off += 8;
    return v;
  }
  bytes(): Buffer {
    const n = this.u32();
    if (this.#off + n > this.#buf.length) throw invalid('certificate field overruns the certificate');
    const v = this.#buf.subarray(this.#off, this.#off + n);
    this.#off += n;
    return v;
  }
  text(): string {
    const b = this.bytes();
    const s = b.toString('utf8');
    if (!Buffer.from(s, 'utf8').equals(b)) throw invalid('certificate string is not valid UTF-8');
    return s;
  }
}

// ---------------------------------------------------------------- public keys

export interface SshPublicKey {
  /** Key type name, e.g. "ssh-ed25519". */
  type: string;
  /** The wire blob (type name + key fields), what goes between the spaces in base64. */
  blob: Buffer;
  comment: string;
}

/** Parses an OpenSSH public key line ("ssh-ed25519 AAAA... comment"). */
export function parseSshPublicKey(line: string): SshPublicKey {
  const parts = line.trim().split(/\s+/);
  const [type, b64] = parts;
  if (type === undefined || b64 === undefined || !/^[A-Za-z0-9+/]+={0,2}$/.test(b64)) {
    throw new GatehouseError('GH_ERR_VALIDATION', 'not an OpenSSH public key line', {
      hint: 'Pass the contents of a .pub file, e.g. "ssh-ed25519 AAAAC3Nza... you@host".',
    });
  }
  const blob = Buffer.from(b64, 'base64');
  const r = new Reader(blob);
  let inner: string;
  try {
    inner = r.text();
  } catch (cause) {
    throw new GatehouseError('GH_ERR_VALIDATION', 'OpenSSH public key blob is malformed', { cause });
  }
  if (inner !== type) {
    throw new GatehouseError('GH_ERR_VALIDATION', `public key says "${type}" but its blob says "${inner}"`, {
      hint: 'The .pub file was edited or truncated; regenerate it with ssh-keygen -y.',
    });
  }
  return { type, blob, comment: parts.slice(2).join(' ') };
}

/** Splits a public key blob into its type and its key fields (the part a certificate embeds). */
function keyFields(blob: Uint8Array): { type: string; fields: Buffer } {
  const r = new Reader(blob);
  const type = r.text();
  const count = KEY_FIELD_COUNT[type];
  if (count === undefined) {
    throw new GatehouseError('GH_ERR_VALIDATION', `unsupported SSH key type "${type}"`, {
      hint: 'Use an Ed25519 key (ssh-keygen -t ed25519); ECDSA and RSA host keys are also accepted.',
    });
  }
  const start = r.offset;
  for (let i = 0; i < count; i++) r.bytes();
  if (!r.done) throw new GatehouseError('GH_ERR_VALIDATION', `trailing bytes in ${type} public key`);
  return { type, fields: Buffer.from(blob.subarray(start)) };
}

/** Raw 32-byte Ed25519 public key. sshpk sometimes yields 33 bytes with a leading zero: strip it. */
function normalizeEd25519(raw: Uint8Array): Buffer {
  if (raw.length === 33 && raw[0] === 0) return Buffer.from(raw.subarray(1));
  if (raw.length !== 32)
    throw new GatehouseError('GH_ERR_VALIDATION', `Ed25519 key must be 32 bytes, got ${raw.length}`);
  return Buffer.from(raw);
}

export function ed25519PublicKeyFromRaw(raw: Uint8Array): KeyObject {
  return createPublicKey({
    key: { kty: 'OKP', crv: 'Ed25519', x: normalizeEd25519(raw).toString('base64url') },
    format: 'jwk',
  });
}

export function ed25519RawPublicKey(key: KeyObject): Buffer {
  const pub = key.type === 'private' ? createPublicKey(key) : key;
  if (pub.asymmetricKeyType !== 'ed25519') {
    throw new GatehouseError('GH_ERR_VALIDATION', `expected an Ed25519 key, got ${pub.asymmetricKeyType}`);
  }
  const jwk = pub.export({ format: 'jwk' });
  return Buffer.from(jwk.x as string, 'base64url');
}

/** The SSH wire blob of an Ed25519 key ("ssh-ed25519" + 32 bytes). */
export function ed25519SshBlob(key: KeyObject): Buffer {
  return Buffer.concat([sshString('ssh-ed25519'), sshString(ed25519RawPublicKey(key))]);
}

/** KeyObject (public or private Ed25519) → "ssh-ed25519 AAAA... comment". */
export function ed25519PublicKeyToSsh(key: KeyObject, comment = ''): string {
  const line = `ssh-ed25519 ${ed25519SshBlob(key).toString('base64')}`;
  return comment ? `${line} ${comment}` : line;
}

/** "ssh-ed25519 AAAA..." line or blob → node KeyObject. */
export function sshEd25519PublicKeyToKeyObject(lineOrBlob: string | Uint8Array): KeyObject {
  const blob = typeof lineOrBlob === 'string' ? parseSshPublicKey(lineOrBlob).blob : lineOrBlob;
  const r = new Reader(blob);
  const type = r.text();
  if (type !== 'ssh-ed25519') {
    throw new GatehouseError('GH_ERR_VALIDATION', `expected an ssh-ed25519 key, got ${type}`);
  }
  const raw = r.bytes();
  if (!r.done) throw new GatehouseError('GH_ERR_VALIDATION', 'trailing bytes in ssh-ed25519 key');
  return ed25519PublicKeyFromRaw(raw);
}

// ---------------------------------------------------------------- encoding

/**
 * Option and extension values: '' means empty data (flags such as
 * permit-pty); any other value is stored as one SSH string (force-command,
 * source-address, the Gatehouse identity).
 */
export type SshOptions = Record<string, string>;

export interface SshCertificateFields {
  type: SshCertType;
  /** The certified key: an OpenSSH public key line or its wire blob. */
  publicKey: string | Uint8Array;
  /** 32 random bytes when omitted. */
  nonce?: Uint8Array;
  serial: bigint;
  keyId: string;
  principals: string[];
  validAfter: Date;
  /** Use `null` for a certificate that never expires (only CA tooling should). */
  validBefore: Date | null;
  criticalOptions?: SshOptions;
  extensions?: SshOptions;
}

function seconds(d: Date): bigint {
  const ms = d.getTime();
  if (Number.isNaN(ms) || ms < 0)
    throw new GatehouseError('GH_ERR_VALIDATION', 'certificate time is not a valid date');
  return BigInt(Math.floor(ms / 1000));
}

function encodeOptions(opts: SshOptions | undefined): Buffer {
  if (!opts) return sshString(Buffer.alloc(0));
  // The spec requires lexical order and no duplicates; sort by bytes, not locale.
  const names = Object.keys(opts).sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
  const parts: Buffer[] = [];
  for (const name of names) {
    const value = opts[name] as string;
    parts.push(sshString(name), sshString(value === '' ? Buffer.alloc(0) : sshString(value)));
  }
  return sshString(Buffer.concat(parts));
}

/**
 * The to-be-signed body: everything up to and including the signature key.
 * `signatureKey` is the CA's public key blob.
 */
export function encodeSshCertificateBody(fields: SshCertificateFields, signatureKey: Uint8Array): Buffer {
  const pubBlob =
    typeof fields.publicKey === 'string' ? parseSshPublicKey(fields.publicKey).blob : fields.publicKey;
  const { type: keyType, fields: keyData } = keyFields(pubBlob);
  const nonce = fields.nonce ?? randomBytes(32);
  if (nonce.length < 16)
    throw new GatehouseError('GH_ERR_VALIDATION', 'certificate nonce must be at least 16 bytes');
  const validBefore = fields.validBefore === null ? SSH_FOREVER : seconds(fields.validBefore);
  const principals = Buffer.concat(fields.principals.map((p) => sshString(p)));
  return Buffer.concat([
    sshString(keyType + CERT_SUFFIX),
    sshString(nonce),
    keyData,
    u64(fields.serial),
    u32(CERT_TYPE_CODE[fields.type]),
    sshString(fields.keyId),
    sshString(principals),
    u64(seconds(fields.validAfter)),
    u64(validBefore),
    encodeOptions(fields.criticalOptions),
    encodeOptions(fields.extensions),
    sshString(Buffer.alloc(0)),
    sshString(signatureKey),
  ]);
}

export interface SignedSshCertificate {
  /** The whole certificate blob (body + signature). */
  blob: Buffer;
  /** OpenSSH one-line form: "<type>-cert-v01@openssh.com <base64> [comment]". */
  line: string;
}

/**
 * Signs certificates with one Ed25519 CA key. Derives the CA's public blob
 * once, so issuing costs one encode and one signature.
 */
export class SshCertSigner {
  readonly publicKeyBlob: Buffer;
  readonly #key: KeyObject;

  constructor(caPrivateKey: KeyObject) {
    if (caPrivateKey.type !== 'private' || caPrivateKey.asymmetricKeyType !== 'ed25519') {
      throw new GatehouseError('GH_ERR_INTERNAL', 'SSH CA keys must be Ed25519 private keys');
    }
    this.#key = caPrivateKey;
    this.publicKeyBlob = ed25519SshBlob(caPrivateKey);
  }

  sign(fields: SshCertificateFields, comment = ''): SignedSshCertificate {
    const body = encodeSshCertificateBody(fields, this.publicKeyBlob);
    const sig = sign(null, body, this.#key);
    const blob = Buffer.concat([body, sshString(Buffer.concat([sshString('ssh-ed25519'), sshString(sig)]))]);
    const type = new Reader(blob).text();
    const line = `${type} ${blob.toString('base64')}`;
    return { blob, line: comment ? `${line} ${comment}` : line };
  }
}

/** One-shot form of `SshCertSigner#sign`. */
export function signSshCertificate(
  fields: SshCertificateFields,
  caPrivateKey: KeyObject,
  comment = '',
): SignedSshCertificate {
  return new SshCertSigner(caPrivateKey).sign(fields, comment);
}

// ---------------------------------------------------------------- parsing

export interface SshCertificate {
  /** e.g. "ssh-ed25519-cert-v01@openssh.com" */
  certType: string;
  /** Certified key type, e.g. "ssh-ed25519". */
  keyType: string;
  type: SshCertType;
  nonce: Buffer;
  /** Public key blob of the certified key (what `ssh-ed25519 AAAA...` would carry). */
  publicKey: Buffer;
  serial: bigint;
  keyId: string;
  principals: string[];
  validAfter: Date;
  /** Clamped to the largest Date for "forever" (see `validBeforeSeconds`). */
  validBefore: Date;
  validAfterSeconds: bigint;
  validBeforeSeconds: bigint;
  criticalOptions: SshOptions;
  extensions: SshOptions;
  /** The CA's public key blob. */
  signatureKey: Buffer;
  /** The signed bytes (everything before the signature). */
  body: Buffer;
  /** Signature algorithm name from the signature blob, e.g. "ssh-ed25519". */
  signatureAlgorithm: string;
  /** Raw signature bytes. */
  signature: Buffer;
  /** The whole certificate blob. */
  blob: Buffer;
}

const MAX_DATE_MS = 8.64e15;

function toDate(sec: bigint): Date {
  const ms = sec * 1000n;
  return new Date(ms > BigInt(MAX_DATE_MS) ? MAX_DATE_MS : Number(ms));
}

function decodeOptions(data: Buffer, what: string): SshOptions {
  const r = new Reader(data);
  const out: SshOptions = {};
  let prev: Buffer | undefined;
  while (!r.done) {
    const nameBytes = r.bytes();
    const name = nameBytes.toString('utf8');
    if (prev !== undefined && Buffer.compare(prev, nameBytes) >= 0) {
      throw invalid(`certificate ${what} are not sorted or repeat "${name}"`);
    }
    prev = nameBytes;
    const value = r.bytes();
    let text = '';
    if (value.length > 0) {
      const vr = new Reader(value);
      text = vr.text();
      if (!vr.done) throw invalid(`certificate ${what} "${name}" has trailing data`);
    }
    // Not out[name] = ...: a name "__proto__" would set the prototype and the option would vanish.
    Object.defineProperty(out, name, { value: text, enumerable: true, writable: true, configurable: true });
  }
  return out;
}

function certBlobFrom(blobOrLine: string | Uint8Array): Buffer {
  if (typeof blobOrLine !== 'string') return Buffer.from(blobOrLine);
  const parts = blobOrLine.trim().split(/\s+/);
  const b64 = parts[1];
  if (!parts[0]?.endsWith(CERT_SUFFIX) || b64 === undefined || !/^[A-Za-z0-9+/]+={0,2}$/.test(b64)) {
    throw invalid('not an OpenSSH certificate line');
  }
  const blob = Buffer.from(b64, 'base64');
  if (new Reader(blob).text() !== parts[0]) throw invalid('certificate line type does not match its blob');
  return blob;
}

/** Parses an OpenSSH certificate (one-line form or blob). Does not verify it. */
export function parseSshCertificate(blobOrLine: string | Uint8Array): SshCertificate {
  const blob = certBlobFrom(blobOrLine);
  const r = new Reader(blob);
  const certType = r.text();
  if (!certType.endsWith(CERT_SUFFIX)) throw invalid(`"${certType}" is not an OpenSSH v01 certificate`);
  const keyType = certType.slice(0, -CERT_SUFFIX.length);
  const count = KEY_FIELD_COUNT[keyType];
  if (count === undefined) throw invalid(`unsupported certificate key type "${keyType}"`);
  const nonce = r.bytes();
  const keyStart = r.offset;
  for (let i = 0; i < count; i++) r.bytes();
  const keyData = blob.subarray(keyStart, r.offset);
  const serial = r.u64();
  const typeCode = r.u32();
  const type: SshCertType | undefined = typeCode === 1 ? 'user' : typeCode === 2 ? 'host' : undefined;
  if (type === undefined) throw invalid(`unknown certificate type ${typeCode}`);
  const keyId = r.text();
  const pr = new Reader(r.bytes());
  const principals: string[] = [];
  while (!pr.done) principals.push(pr.text());
  const validAfterSeconds = r.u64();
  const validBeforeSeconds = r.u64();
  const criticalOptions = decodeOptions(r.bytes(), 'critical options');
  const extensions = decodeOptions(r.bytes(), 'extensions');
  r.bytes(); // reserved: ignored per spec
  const signatureKey = r.bytes();
  const bodyEnd = r.offset;
  const sigBlob = new Reader(r.bytes());
  if (!r.done) throw invalid('trailing bytes after the certificate signature');
  const signatureAlgorithm = sigBlob.text();
  const signature = sigBlob.bytes();
  if (!sigBlob.done) throw invalid('trailing bytes in the certificate signature');
  return {
    certType,
    keyType,
    type,
    nonce,
    publicKey: Buffer.concat([sshString(keyType), keyData]),
    serial,
    keyId,
    principals,
    validAfter: toDate(validAfterSeconds),
    validBefore: toDate(validBeforeSeconds),
    validAfterSeconds,
    validBeforeSeconds,
    criticalOptions,
    extensions,
    signatureKey,
    body: blob.subarray(0, bodyEnd),
    signatureAlgorithm,
    signature,
    blob,
  };
}

// ---------------------------------------------------------------- verification

export interface VerifySshCertificateOptions {
  /** Certificate type the caller expects; default 'user'. */
  type?: SshCertType;
  /**
   * The connecting client's address. Required when the certificate has a
   * source-address option: without it the check fails closed.
   */
  clientAddress?: string;
  /** Login (user certs) or host name (host certs) that must be among the principals. */
  principal?: string;
  /**
   * Accept the session MFA critical option (the gateway's SSH proxy only,
   * which enforces it through the identity and the roles).
   */
  acceptSessionMfa?: boolean;
}

/**
 * Parses a source-address value ("10.0.0.0/8,192.0.2.1") into a BlockList.
 * Throws GH_ERR_CERT_INVALID on any malformed entry.
 */
export function sourceAddressList(list: string): BlockList {
  const bl = new BlockList();
  for (const entry of list.split(',')) {
    const [net = '', bitsText] = entry.trim().split('/');
    const fam = isIP(net);
    if (fam === 0) throw invalid(`source-address entry "${entry}" is not an address or CIDR`);
    const max = fam === 4 ? 32 : 128;
    if (bitsText !== undefined && !/^\d{1,3}$/.test(bitsText)) {
      throw invalid(`source-address entry "${entry}" has a bad prefix length`);
    }
    const bits = bitsText === undefined ? max : Number(bitsText);
    if (bits > max) throw invalid(`source-address entry "${entry}" has a bad prefix length`);
    bl.addSubnet(net, bits, fam === 4 ? 'ipv4' : 'ipv6');
  }
  return bl;
}

function matchesSourceAddress(list: string, address: string): boolean {
  const family = isIP(address);
  if (family === 0) return false;
  return sourceAddressList(list).check(address, family === 4 ? 'ipv4' : 'ipv6');
}

/**
 * Strict server-side check: signed by one of `trustedCaPublicKeys` (OpenSSH
 * lines or blobs; Ed25519 only), of the expected type, within its validity
 * window at `now`, with principals, and only critical options this code
 * understands (and whose conditions hold). Returns the parsed certificate.
 */
export function verifySshCertificate(
  cert: SshCertificate | string | Uint8Array,
  trustedCaPublicKeys: readonly (string | Uint8Array)[],
  now: Date,
  opts: VerifySshCertificateOptions = {},
): SshCertificate {
  const c = typeof cert === 'string' || cert instanceof Uint8Array ? parseSshCertificate(cert) : cert;
  const trusted = trustedCaPublicKeys.map((k) =>
    typeof k === 'string' ? parseSshPublicKey(k).blob : Buffer.from(k),
  );
  const ca = trusted.find((t) => t.equals(c.signatureKey));
  if (!ca) {
    throw new GatehouseError('GH_ERR_CERT_INVALID', 'certificate is not signed by a trusted Gatehouse CA', {
      hint: 'Log in to this Gatehouse cluster to get a certificate from its CA.',
    });
  }
  if (c.signatureAlgorithm !== 'ssh-ed25519')
    throw invalid(`CA signature algorithm ${c.signatureAlgorithm} is not accepted`);
  let ok = false;
  try {
    ok = verify(null, c.body, sshEd25519PublicKeyToKeyObject(ca), c.signature);
  } catch (cause) {
    throw invalid('certificate signature could not be checked', cause);
  }
  if (!ok) throw invalid('certificate signature is invalid');

  const want = opts.type ?? 'user';
  if (c.type !== want) throw invalid(`expected a ${want} certificate, got a ${c.type} certificate`);

  const t = BigInt(Math.floor(now.getTime() / 1000));
  if (t < c.validAfterSeconds) {
    throw invalid(`certificate is not valid before ${c.validAfter.toISOString()}`);
  }
  if (t >= c.validBeforeSeconds) {
    throw new GatehouseError('GH_ERR_CERT_EXPIRED', `certificate expired at ${c.validBefore.toISOString()}`, {
      hint: 'Run `gatehouse login` to get a new certificate.',
    });
  }
  // An empty principal list means "any principal" to OpenSSH; Gatehouse never
  // issues one, so seeing it means something else made this certificate.
  if (c.principals.length === 0) throw invalid('certificate has no principals');
  if (opts.principal !== undefined && !c.principals.includes(opts.principal)) {
    throw new GatehouseError(
      'GH_ERR_ACCESS_DENIED',
      `certificate is not valid for "${opts.principal}" (it names ${c.principals.join(', ')})`,
      {
        hint: `Log in again (gatehouse login) if your roles changed since; otherwise ask an admin for a role that allows "${opts.principal}".`,
      },
    );
  }
  for (const [name, value] of Object.entries(c.criticalOptions)) {
    if (c.type === 'host') throw invalid(`host certificates must not carry critical option "${name}"`);
    if (name === SSH_SESSION_MFA_OPTION) {
      if (opts.acceptSessionMfa) continue;
      throw new GatehouseError(
        'GH_ERR_SESSION_MFA_REQUIRED',
        'this certificate needs a per-session MFA check at the Gatehouse proxy and cannot open this server directly',
        { hint: 'connect through the proxy with gatehouse ssh LOGIN@NODE (it asks for your second factor)' },
      );
    }
    if (!(KNOWN_CRITICAL_OPTIONS as readonly string[]).includes(name)) {
      throw invalid(`certificate has unknown critical option "${name}"`);
    }
    if (name === 'source-address') {
      if (opts.clientAddress === undefined || !matchesSourceAddress(value, opts.clientAddress)) {
        throw new GatehouseError('GH_ERR_ACCESS_DENIED', 'certificate is not valid from this address', {
          hint: `It is restricted to ${value}; connect from there or log in again from here.`,
        });
      }
    }
  }
  return c;
}

/**
 * The Gatehouse identity of a user certificate (verify it first). Strict:
 * the key id must equal the identity's user; `expires` is the earlier of the
 * identity's expiry and valid_before.
 */
export function sshCertificateIdentity(cert: SshCertificate): Identity {
  const json = cert.extensions[SSH_IDENTITY_EXTENSION];
  if (json === undefined) throw invalid('certificate carries no Gatehouse identity');
  const identity = decodeIdentityJson(json);
  if (identity.user !== cert.keyId)
    throw invalid(`certificate key id does not match identity user "${identity.user}"`);
  if (cert.validBefore < identity.expires) identity.expires = cert.validBefore;
  // The critical option and the signed identity must agree on the MFA binding.
  const mfa = cert.criticalOptions[SSH_SESSION_MFA_OPTION];
  if (identity.sessionMfa) {
    if (mfa !== mfaTargetJson(identity.sessionMfa.target))
      throw invalid(
        'the certificate session MFA binding differs between its critical option and its identity',
      );
  } else if (mfa !== undefined && mfa !== SESSION_MFA_REQUIRED) {
    throw invalid('the certificate carries a session MFA binding but its identity names no target');
  }
  return identity;
}
