import { createHash, createHmac } from 'node:crypto';
import { md4 } from './md4.js';
import { Rc4, rc4 } from './rc4.js';

/**
 * NTLM (MS-NLMP) as a CredSSP client needs it: the NEGOTIATE, CHALLENGE and
 * AUTHENTICATE messages, NTLMv2 responses with key exchange and a MIC, and
 * connection-oriented signing and sealing with extended session security.
 * NTLMv1 and anonymous logon are not offered. Pure: the caller supplies the
 * random bytes and the time, so the known-answer tests of MS-NLMP 4.2.4 run
 * against this code exactly.
 */

export class NtlmError extends Error {
  override name = 'NtlmError';
}

export const NTLMSSP_SIGNATURE = Buffer.from('NTLMSSP\0', 'latin1');

export const NEGOTIATE = {
  UNICODE: 0x00000001,
  OEM: 0x00000002,
  REQUEST_TARGET: 0x00000004,
  SIGN: 0x00000010,
  SEAL: 0x00000020,
  LM_KEY: 0x00000080,
  NTLM: 0x00000200,
  ANONYMOUS: 0x00000800,
  ALWAYS_SIGN: 0x00008000,
  TARGET_TYPE_DOMAIN: 0x00010000,
  TARGET_TYPE_SERVER: 0x00020000,
  EXTENDED_SESSIONSECURITY: 0x00080000,
  TARGET_INFO: 0x00800000,
  VERSION: 0x02000000,
  N128: 0x20000000,
  KEY_EXCH: 0x40000000,
  N56: 0x80000000,
} as const;

/** What the gateway asks for: NTLMv2 with 128-bit keys, key exchange, signing and sealing. */
export const CLIENT_FLAGS =
  (NEGOTIATE.N56 |
    NEGOTIATE.KEY_EXCH |
    NEGOTIATE.N128 |
    NEGOTIATE.VERSION |
    NEGOTIATE.TARGET_INFO |
    NEGOTIATE.EXTENDED_SESSIONSECURITY |
    NEGOTIATE.ALWAYS_SIGN |
    NEGOTIATE.NTLM |
    NEGOTIATE.SEAL |
    NEGOTIATE.SIGN |
    NEGOTIATE.REQUEST_TARGET |
    NEGOTIATE.UNICODE) >>>
  0;

/** Flags without which this client refuses to go on (it would have to weaken the session). */
const REQUIRED_FROM_SERVER =
  NEGOTIATE.UNICODE | NEGOTIATE.SEAL | NEGOTIATE.SIGN | NEGOTIATE.EXTENDED_SESSIONSECURITY;

export const AV = {
  EOL: 0,
  NB_COMPUTER_NAME: 1,
  NB_DOMAIN_NAME: 2,
  DNS_COMPUTER_NAME: 3,
  DNS_DOMAIN_NAME: 4,
  DNS_TREE_NAME: 5,
  FLAGS: 6,
  TIMESTAMP: 7,
  SINGLE_HOST: 8,
  TARGET_NAME: 9,
  CHANNEL_BINDINGS: 10,
} as const;
/** MsvAvFlags bit: the AUTHENTICATE message carries a MIC. */
const AV_FLAG_MIC = 0x2;

/** A fixed version field (Windows 10, NTLM revision 15): informational only (MS-NLMP 2.2.2.10). */
const VERSION = Buffer.from([10, 0, 0x61, 0x4a, 0, 0, 0, 15]);

const utf16 = (s: string) => Buffer.from(s, 'utf16le');
const hmacMd5 = (key: Uint8Array, ...data: Uint8Array[]) => {
  const h = createHmac('md5', key);
  for (const d of data) h.update(d);
  return h.digest();
};
const md5 = (...data: Uint8Array[]) => {
  const h = createHash('md5');
  for (const d of data) h.update(d);
  return h.digest();
};

export interface AvPair {
  id: number;
  value: Buffer;
}

export function encodeAvPairs(pairs: AvPair[]): Buffer {
  const parts: Buffer[] = [];
  for (const p of pairs) {
    if (p.id === AV.EOL) continue;
    const h = Buffer.alloc(4);
    h.writeUInt16LE(p.id, 0);
    h.writeUInt16LE(p.value.length, 2);
    parts.push(h, p.value);
  }
  parts.push(Buffer.alloc(4));
  return Buffer.concat(parts);
}

/** The AV_PAIR list up to MsvAvEOL (MS-NLMP 2.2.2.1). */
export function decodeAvPairs(b: Buffer): AvPair[] {
  const out: AvPair[] = [];
  let off = 0;
  for (;;) {
    if (off + 4 > b.length) throw new NtlmError('target info has no MsvAvEOL');
    const id = b.readUInt16LE(off);
    const len = b.readUInt16LE(off + 2);
    off += 4;
    if (id === AV.EOL) return out;
    if (off + len > b.length) throw new NtlmError('target info pair overruns its buffer');
    out.push({ id, value: Buffer.from(b.subarray(off, off + len)) });
    off += len;
  }
}

function field(b: Buffer, at: number, payload: Buffer, offset: number): void {
  b.writeUInt16LE(payload.length, at);
  b.writeUInt16LE(payload.length, at + 2);
  b.writeUInt32LE(offset, at + 4);
}

function readField(msg: Buffer, at: number, what: string): Buffer {
  const len = msg.readUInt16LE(at);
  const off = msg.readUInt32LE(at + 4);
  if (len === 0) return Buffer.alloc(0);
  if (off + len > msg.length) throw new NtlmError(`${what} lies outside the message`);
  return Buffer.from(msg.subarray(off, off + len));
}

function checkHeader(msg: Buffer, type: number, min: number, what: string): void {
  if (msg.length < min) throw new NtlmError(`${what} too short (${msg.length} bytes)`);
  if (!msg.subarray(0, 8).equals(NTLMSSP_SIGNATURE)) throw new NtlmError(`${what} has no NTLMSSP signature`);
  const t = msg.readUInt32LE(8);
  if (t !== type) throw new NtlmError(`expected NTLM message type ${type} (${what}), got ${t}`);
}

/** NEGOTIATE_MESSAGE (2.2.1.1): flags and version, no domain or workstation. */
export function encodeNegotiate(flags = CLIENT_FLAGS): Buffer {
  const b = Buffer.alloc(40);
  NTLMSSP_SIGNATURE.copy(b, 0);
  b.writeUInt32LE(1, 8);
  b.writeUInt32LE(flags >>> 0, 12);
  // Domain and workstation fields empty (offset at the end of the fixed part).
  field(b, 16, Buffer.alloc(0), 40);
  field(b, 24, Buffer.alloc(0), 40);
  VERSION.copy(b, 32);
  return b;
}

export interface Challenge {
  flags: number;
  serverChallenge: Buffer;
  targetName: Buffer;
  /** The raw target info as the server sent it. */
  targetInfo: Buffer;
  avPairs: AvPair[];
}

/** CHALLENGE_MESSAGE (2.2.1.2). */
export function decodeChallenge(msg: Buffer): Challenge {
  checkHeader(msg, 2, 48, 'CHALLENGE_MESSAGE');
  const flags = msg.readUInt32LE(20);
  const targetInfo = flags & NEGOTIATE.TARGET_INFO ? readField(msg, 40, 'target info') : Buffer.alloc(0);
  return {
    flags,
    serverChallenge: Buffer.from(msg.subarray(24, 32)),
    targetName: readField(msg, 12, 'target name'),
    targetInfo,
    avPairs: targetInfo.length > 0 ? decodeAvPairs(targetInfo) : [],
  };
}

/** The server's challenge as a test or a fuzzer builds it. */
export function encodeChallenge(c: Omit<Challenge, 'avPairs'>): Buffer {
  const fixed = 56;
  const b = Buffer.alloc(fixed);
  NTLMSSP_SIGNATURE.copy(b, 0);
  b.writeUInt32LE(2, 8);
  field(b, 12, c.targetName, fixed);
  b.writeUInt32LE(c.flags >>> 0, 20);
  c.serverChallenge.copy(b, 24);
  field(b, 40, c.targetInfo, fixed + c.targetName.length);
  VERSION.copy(b, 48);
  return Buffer.concat([b, c.targetName, c.targetInfo]);
}

/** NTOWFv2 (3.3.2): HMAC-MD5 of the NT hash over UPPER(user) and the domain, UTF-16LE. */
export function ntowfv2(password: string, user: string, domain: string): Buffer {
  return hmacMd5(md4(utf16(password)), utf16(user.toUpperCase() + domain));
}

export interface Ntlmv2Input {
  responseKey: Buffer;
  serverChallenge: Buffer;
  clientChallenge: Buffer;
  /** FILETIME, 8 bytes little-endian. */
  time: Buffer;
  /** The AV pairs the client sends back (ServerName in 3.3.2), EOL included. */
  serverName: Buffer;
}

export interface Ntlmv2Response {
  ntChallengeResponse: Buffer;
  lmChallengeResponse: Buffer;
  ntProofStr: Buffer;
  sessionBaseKey: Buffer;
}

/** ComputeResponse for NTLMv2 (3.3.2). */
export function ntlmv2Response(i: Ntlmv2Input): Ntlmv2Response {
  const temp = Buffer.concat([
    Buffer.from([1, 1, 0, 0, 0, 0, 0, 0]),
    i.time,
    i.clientChallenge,
    Buffer.alloc(4),
    i.serverName,
    Buffer.alloc(4),
  ]);
  const ntProofStr = hmacMd5(i.responseKey, i.serverChallenge, temp);
  return {
    ntProofStr,
    ntChallengeResponse: Buffer.concat([ntProofStr, temp]),
    lmChallengeResponse: Buffer.concat([
      hmacMd5(i.responseKey, i.serverChallenge, i.clientChallenge),
      i.clientChallenge,
    ]),
    sessionBaseKey: hmacMd5(i.responseKey, ntProofStr),
  };
}

/** The current time as a Windows FILETIME (100 ns ticks since 1601). */
export function fileTime(ms: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE((BigInt(ms) + 11644473600000n) * 10000n);
  return b;
}

export interface Credential {
  user: string;
  domain: string;
  password: string;
}

export interface AuthenticateInput {
  negotiate: Buffer;
  challenge: Buffer;
  credential: Credential;
  /** 8 random bytes. */
  clientChallenge: Buffer;
  /** 16 random bytes: the exported session key under key exchange. */
  exportedSessionKey: Buffer;
  /** Milliseconds since the epoch, used when the server sends no MsvAvTimestamp. */
  now: number;
  workstation?: string;
}

export interface Authenticated {
  message: Buffer;
  /** The key signing and sealing derive from. */
  exportedSessionKey: Buffer;
  flags: number;
}

/**
 * AUTHENTICATE_MESSAGE (2.2.1.3) for the server's CHALLENGE: NTLMv2
 * response, key exchange, and a MIC over all three messages (the AV pairs
 * sent back carry MsvAvFlags with the MIC bit, so a server that checks it
 * detects a tampered negotiation).
 */
export function encodeAuthenticate(i: AuthenticateInput): Authenticated {
  const ch = decodeChallenge(i.challenge);
  const missing = REQUIRED_FROM_SERVER & ~ch.flags;
  if (missing)
    throw new NtlmError(
      `the server's NTLM challenge lacks required flags 0x${missing.toString(16)} (NTLMv2 with sealing)`,
    );
  const flags = (CLIENT_FLAGS & ch.flags) >>> 0;
  const timestamp = ch.avPairs.find((p) => p.id === AV.TIMESTAMP)?.value;
  const pairs = ch.avPairs.filter((p) => p.id !== AV.FLAGS);
  const prevFlags = ch.avPairs.find((p) => p.id === AV.FLAGS)?.value;
  const avFlags = Buffer.alloc(4);
  avFlags.writeUInt32LE(((prevFlags?.length === 4 ? prevFlags.readUInt32LE(0) : 0) | AV_FLAG_MIC) >>> 0);
  pairs.push({ id: AV.FLAGS, value: avFlags });
  const responseKey = ntowfv2(i.credential.password, i.credential.user, i.credential.domain);
  const r = ntlmv2Response({
    responseKey,
    serverChallenge: ch.serverChallenge,
    clientChallenge: i.clientChallenge,
    time: timestamp?.length === 8 ? timestamp : fileTime(i.now),
    serverName: encodeAvPairs(pairs),
  });
  // With a server timestamp the LMv2 response SHOULD be zeros (3.1.5.1.2).
  const lm = timestamp ? Buffer.alloc(24) : r.lmChallengeResponse;
  const keyExchangeKey = r.sessionBaseKey;
  let exported: Buffer = keyExchangeKey;
  let encryptedKey: Buffer = Buffer.alloc(0);
  if (flags & NEGOTIATE.KEY_EXCH) {
    if (i.exportedSessionKey.length !== 16) throw new NtlmError('the exported session key must be 16 bytes');
    exported = i.exportedSessionKey;
    encryptedKey = rc4(keyExchangeKey, exported);
  }
  const domain = utf16(i.credential.domain);
  const user = utf16(i.credential.user);
  const ws = utf16(i.workstation ?? '');
  const fixed = 88;
  const payloads = [domain, user, ws, lm, r.ntChallengeResponse, encryptedKey];
  const b = Buffer.alloc(fixed);
  NTLMSSP_SIGNATURE.copy(b, 0);
  b.writeUInt32LE(3, 8);
  let off = fixed;
  const at = (pos: number, p: Buffer) => {
    field(b, pos, p, off);
    off += p.length;
  };
  at(28, domain);
  at(36, user);
  at(44, ws);
  at(12, lm);
  at(20, r.ntChallengeResponse);
  at(52, encryptedKey);
  b.writeUInt32LE(flags, 60);
  VERSION.copy(b, 64);
  const message = Buffer.concat([b, ...payloads]);
  const mic = hmacMd5(exported, i.negotiate, i.challenge, message);
  mic.copy(message, 72);
  return { message, exportedSessionKey: exported, flags };
}

export interface AuthenticateFields {
  flags: number;
  domain: string;
  user: string;
  workstation: string;
  lmChallengeResponse: Buffer;
  ntChallengeResponse: Buffer;
  encryptedRandomSessionKey: Buffer;
  mic: Buffer;
}

/** Reads an AUTHENTICATE_MESSAGE back (tests, and the fuzz round trip). */
export function decodeAuthenticate(msg: Buffer): AuthenticateFields {
  checkHeader(msg, 3, 88, 'AUTHENTICATE_MESSAGE');
  return {
    lmChallengeResponse: readField(msg, 12, 'LM response'),
    ntChallengeResponse: readField(msg, 20, 'NT response'),
    domain: readField(msg, 28, 'domain').toString('utf16le'),
    user: readField(msg, 36, 'user').toString('utf16le'),
    workstation: readField(msg, 44, 'workstation').toString('utf16le'),
    encryptedRandomSessionKey: readField(msg, 52, 'session key'),
    flags: msg.readUInt32LE(60),
    mic: Buffer.from(msg.subarray(72, 88)),
  };
}

const MAGIC = {
  clientSign: 'session key to client-to-server signing key magic constant\0',
  serverSign: 'session key to server-to-client signing key magic constant\0',
  clientSeal: 'session key to client-to-server sealing key magic constant\0',
  serverSeal: 'session key to server-to-client sealing key magic constant\0',
};

/**
 * Signing and sealing of one NTLM session, client side, with extended
 * session security and 128-bit keys (3.4.4.2, 3.4.5): one RC4 handle and
 * one sequence number per direction, for the life of the session.
 */
export class NtlmSecurity {
  readonly #sendSign: Buffer;
  readonly #recvSign: Buffer;
  readonly #sendSeal: Rc4;
  readonly #recvSeal: Rc4;
  readonly #keyExch: boolean;
  #sendSeq = 0;
  #recvSeq = 0;

  /** `side` 'server' swaps the directions (the tests' stand-in for a target). */
  constructor(exportedSessionKey: Buffer, flags: number, side: 'client' | 'server' = 'client') {
    if (!(flags & NEGOTIATE.EXTENDED_SESSIONSECURITY))
      throw new NtlmError('signing without extended session security is not supported');
    const key = (magic: string) => md5(exportedSessionKey, Buffer.from(magic, 'latin1'));
    const client = side === 'client';
    this.#sendSign = key(client ? MAGIC.clientSign : MAGIC.serverSign);
    this.#recvSign = key(client ? MAGIC.serverSign : MAGIC.clientSign);
    // 128-bit keys; 56/40-bit truncation (3.4.5.3) is not offered by this client.
    this.#sendSeal = new Rc4(key(client ? MAGIC.clientSeal : MAGIC.serverSeal));
    this.#recvSeal = new Rc4(key(client ? MAGIC.serverSeal : MAGIC.clientSeal));
    this.#keyExch = (flags & NEGOTIATE.KEY_EXCH) !== 0;
  }

  /** SEAL (3.4.3): the 16-byte signature and the encrypted message. */
  seal(message: Uint8Array): { signature: Buffer; data: Buffer } {
    const seq = this.#sendSeq++;
    const data = this.#sendSeal.update(message);
    return { signature: this.#mac(this.#sendSign, this.#sendSeal, seq, message), data };
  }

  /** UNSEAL: decrypts and checks the signature; throws when it does not match. */
  unseal(signature: Buffer, data: Buffer): Buffer {
    const seq = this.#recvSeq++;
    const message = this.#recvSeal.update(data);
    const expected = this.#mac(this.#recvSign, this.#recvSeal, seq, message);
    if (signature.length !== 16 || !expected.equals(signature))
      throw new NtlmError('the NTLM signature of a sealed message does not verify');
    return message;
  }

  #mac(signKey: Buffer, handle: Rc4, seq: number, message: Uint8Array): Buffer {
    const seqBuf = Buffer.alloc(4);
    seqBuf.writeUInt32LE(seq);
    let checksum: Buffer = hmacMd5(signKey, seqBuf, message).subarray(0, 8);
    if (this.#keyExch) checksum = handle.update(checksum);
    const sig = Buffer.alloc(16);
    sig.writeUInt32LE(1, 0);
    checksum.copy(sig, 4);
    seqBuf.copy(sig, 12);
    return sig;
  }
}
