import {
  children,
  DerError,
  expectTlv,
  explicit,
  integer,
  octetString,
  peekTlv,
  readInteger,
  sequence,
  TAG,
  type Tlv,
  unwrapExplicit,
} from './der.js';

/**
 * The CredSSP messages (MS-CSSP 2.2.1), DER:
 *
 * TSRequest ::= SEQUENCE {
 *   version    [0] INTEGER,
 *   negoTokens [1] SEQUENCE OF SEQUENCE { negoToken [0] OCTET STRING } OPTIONAL,
 *   authInfo   [2] OCTET STRING OPTIONAL,
 *   pubKeyAuth [3] OCTET STRING OPTIONAL,
 *   errorCode  [4] INTEGER OPTIONAL,     -- version 3 and later
 *   clientNonce[5] OCTET STRING OPTIONAL }  -- version 5 and later
 * TSCredentials ::= SEQUENCE { credType [0] INTEGER, credentials [1] OCTET STRING }
 * TSPasswordCreds ::= SEQUENCE { domainName [0] OCTET STRING,
 *   userName [1] OCTET STRING, password [2] OCTET STRING }  -- UTF-16LE
 *
 * Pure: bytes in, values out; every length is checked against what is left.
 */

/** The highest CredSSP version this client speaks (MS-CSSP 2.2.1). */
export const CREDSSP_VERSION = 6;
/** A TSRequest from a server is refused above this size (NTLM tokens and a key hash fit in far less). */
export const MAX_TSREQUEST = 64 * 1024;

export interface TSRequest {
  version: number;
  negoTokens?: Buffer[] | undefined;
  authInfo?: Buffer | undefined;
  pubKeyAuth?: Buffer | undefined;
  /** An NTSTATUS the server reports (unsigned 32-bit). */
  errorCode?: number | undefined;
  clientNonce?: Buffer | undefined;
}

export function encodeTSRequest(r: TSRequest): Buffer {
  const parts: Buffer[] = [explicit(0, integer(r.version))];
  if (r.negoTokens && r.negoTokens.length > 0)
    parts.push(explicit(1, sequence(...r.negoTokens.map((t) => sequence(explicit(0, octetString(t)))))));
  if (r.authInfo) parts.push(explicit(2, octetString(r.authInfo)));
  if (r.pubKeyAuth) parts.push(explicit(3, octetString(r.pubKeyAuth)));
  if (r.errorCode !== undefined) parts.push(explicit(4, integer(r.errorCode)));
  if (r.clientNonce) {
    if (r.clientNonce.length !== 32) throw new DerError('the CredSSP client nonce must be 32 bytes');
    parts.push(explicit(5, octetString(r.clientNonce)));
  }
  return sequence(...parts);
}

function octets(t: Tlv, what: string): Buffer {
  const inner = unwrapExplicit(t, what);
  if (inner.tag !== TAG.OCTET_STRING) throw new DerError(`${what} is not an OCTET STRING`);
  return Buffer.from(inner.value);
}

/** Fields in increasing tag order, each at most once (DER); unknown tags are refused. */
function fields(value: Buffer, what: string, max: number): Map<number, Tlv> {
  const out = new Map<number, Tlv>();
  let last = -1;
  for (const t of children(value, what)) {
    const n = t.tag & 0x1f;
    if ((t.tag & 0xe0) !== 0xa0 || n > max)
      throw new DerError(`${what}: unexpected tag 0x${t.tag.toString(16)}`);
    if (n <= last) throw new DerError(`${what}: fields out of order`);
    last = n;
    out.set(n, t);
  }
  return out;
}

export function decodeTSRequest(der: Buffer): TSRequest {
  const seq = expectTlv(der, TAG.SEQUENCE, 'TSRequest');
  if (seq.length !== der.length) throw new DerError('trailing bytes after the TSRequest');
  const f = fields(seq.value, 'TSRequest', 5);
  const v = f.get(0);
  if (!v) throw new DerError('TSRequest has no version');
  const out: TSRequest = { version: readInteger(unwrapExplicit(v, 'version'), 'TSRequest version') };
  const nego = f.get(1);
  if (nego) {
    const list = unwrapExplicit(nego, 'negoTokens');
    if (list.tag !== TAG.SEQUENCE) throw new DerError('negoTokens is not a SEQUENCE');
    out.negoTokens = children(list.value, 'negoTokens').map((item) => {
      if (item.tag !== TAG.SEQUENCE) throw new DerError('a NegoData item is not a SEQUENCE');
      const itemFields = fields(item.value, 'NegoData', 0);
      const tok = itemFields.get(0);
      if (!tok) throw new DerError('a NegoData item has no negoToken');
      return octets(tok, 'negoToken');
    });
  }
  const auth = f.get(2);
  if (auth) out.authInfo = octets(auth, 'authInfo');
  const pub = f.get(3);
  if (pub) out.pubKeyAuth = octets(pub, 'pubKeyAuth');
  const err = f.get(4);
  if (err) out.errorCode = readInteger(unwrapExplicit(err, 'errorCode'), 'errorCode');
  const nonce = f.get(5);
  if (nonce) out.clientNonce = octets(nonce, 'clientNonce');
  return out;
}

/** Bytes of the TSRequest at the start of `buf` once its header is in (framing on the TLS stream). */
export function tsRequestLength(buf: Buffer): number | undefined {
  const p = peekTlv(buf, MAX_TSREQUEST);
  if (!p) return undefined;
  if (p.tag !== TAG.SEQUENCE) throw new DerError(`not a TSRequest (first byte 0x${p.tag.toString(16)})`);
  return p.total;
}

export interface PasswordCreds {
  domain: string;
  user: string;
  password: string;
}

/** TSCredentials with credType 1 (password) around TSPasswordCreds. */
export function encodeTSCredentials(c: PasswordCreds): Buffer {
  const u = (s: string) => octetString(Buffer.from(s, 'utf16le'));
  const creds = sequence(explicit(0, u(c.domain)), explicit(1, u(c.user)), explicit(2, u(c.password)));
  return sequence(explicit(0, integer(1)), explicit(1, octetString(creds)));
}

export function decodeTSCredentials(der: Buffer): PasswordCreds {
  const seq = expectTlv(der, TAG.SEQUENCE, 'TSCredentials');
  const f = fields(seq.value, 'TSCredentials', 1);
  const type = f.get(0);
  const body = f.get(1);
  if (!type || !body) throw new DerError('TSCredentials lacks a field');
  const credType = readInteger(unwrapExplicit(type, 'credType'), 'credType');
  if (credType !== 1) throw new DerError(`TSCredentials credType ${credType} is not a password`);
  const inner = octets(body, 'credentials');
  const pw = expectTlv(inner, TAG.SEQUENCE, 'TSPasswordCreds');
  const pf = fields(pw.value, 'TSPasswordCreds', 2);
  const s = (n: number, what: string) => {
    const t = pf.get(n);
    if (!t) throw new DerError(`TSPasswordCreds has no ${what}`);
    return octets(t, what).toString('utf16le');
  };
  return { domain: s(0, 'domainName'), user: s(1, 'userName'), password: s(2, 'password') };
}
