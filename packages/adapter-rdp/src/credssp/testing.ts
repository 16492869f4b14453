import { createHash, createHmac } from 'node:crypto';
import {
  AV,
  type AvPair,
  CLIENT_FLAGS,
  decodeAuthenticate,
  encodeAvPairs,
  encodeChallenge,
  fileTime,
  NtlmError,
  NtlmSecurity,
  ntowfv2,
} from './ntlm.js';
import { rc4 } from './rc4.js';
import { decodeTSCredentials, decodeTSRequest, encodeTSRequest, type PasswordCreds } from './tsrequest.js';

/**
 * The server side of CredSSP with NTLM as a test stand-in for a desktop:
 * it checks the client's NTLMv2 proof against the password it knows, the
 * MIC, and the public key binding, then unseals the credential. Tests use
 * it to check the client end to end without a network, and to play a
 * target that lies (another key, another version, a refusal).
 */
export interface FakeTargetOptions {
  user: string;
  domain: string;
  password: string;
  publicKey: Buffer;
  version: number;
  serverChallenge: Buffer;
  /** Answer the AUTHENTICATE with this NTSTATUS instead of checking it. */
  refuseWith?: number;
  /** Prove a different key than the one the client bound (what a MITM would have to do). */
  proveKey?: Buffer;
  /** Omit the MsvAvTimestamp (older servers). */
  noTimestamp?: boolean;
}

export class FakeTarget {
  readonly #o: FakeTargetOptions;
  #negotiate: Buffer = Buffer.alloc(0);
  #challenge: Buffer = Buffer.alloc(0);
  #security: NtlmSecurity | undefined;
  #nonce: Buffer | undefined;
  credentials: PasswordCreds | undefined;

  constructor(o: FakeTargetOptions) {
    this.#o = o;
  }

  onNegotiate(der: Buffer): Buffer {
    const ts = decodeTSRequest(der);
    this.#negotiate = ts.negoTokens![0]!;
    const pairs: AvPair[] = [
      { id: AV.NB_DOMAIN_NAME, value: Buffer.from('VM', 'utf16le') },
      { id: AV.NB_COMPUTER_NAME, value: Buffer.from('VM', 'utf16le') },
    ];
    if (!this.#o.noTimestamp) pairs.push({ id: AV.TIMESTAMP, value: fileTime(1_700_000_000_000) });
    this.#challenge = encodeChallenge({
      // A target that offers exactly what the gateway asks for (as FreeRDP's does).
      flags: CLIENT_FLAGS,
      serverChallenge: this.#o.serverChallenge,
      targetName: Buffer.from('VM', 'utf16le'),
      targetInfo: encodeAvPairs(pairs),
    });
    return encodeTSRequest({ version: this.#o.version, negoTokens: [this.#challenge] });
  }

  onAuthenticate(der: Buffer): Buffer {
    const ts = decodeTSRequest(der);
    if (this.#o.refuseWith !== undefined)
      return encodeTSRequest({ version: this.#o.version, errorCode: this.#o.refuseWith });
    const msg = ts.negoTokens![0]!;
    const a = decodeAuthenticate(msg);
    const key = ntowfv2(this.#o.password, a.user, a.domain);
    const proof = createHmac('md5', key)
      .update(this.#o.serverChallenge)
      .update(a.ntChallengeResponse.subarray(16))
      .digest();
    if (!proof.equals(a.ntChallengeResponse.subarray(0, 16)))
      throw new NtlmError('fake target: wrong password');
    const base = createHmac('md5', key).update(proof).digest();
    const exported = rc4(base, a.encryptedRandomSessionKey);
    const zeroed = Buffer.from(msg);
    zeroed.fill(0, 72, 88);
    const mic = createHmac('md5', exported)
      .update(this.#negotiate)
      .update(this.#challenge)
      .update(zeroed)
      .digest();
    if (!mic.equals(a.mic)) throw new NtlmError('fake target: MIC mismatch');
    this.#security = new NtlmSecurity(exported, a.flags, 'server');
    const pub = ts.pubKeyAuth!;
    const got = this.#security.unseal(pub.subarray(0, 16), pub.subarray(16));
    const key2 = this.#o.publicKey;
    const v5 = this.#o.version >= 5;
    this.#nonce = ts.clientNonce;
    const expected = v5
      ? createHash('sha256')
          .update('CredSSP Client-To-Server Binding Hash\0')
          .update(ts.clientNonce!)
          .update(key2)
          .digest()
      : key2;
    if (!got.equals(expected)) throw new NtlmError('fake target: the client bound another key');
    const proven = this.#o.proveKey ?? key2;
    let answer: Buffer;
    if (v5) {
      answer = createHash('sha256')
        .update('CredSSP Server-To-Client Binding Hash\0')
        .update(this.#nonce!)
        .update(proven)
        .digest();
    } else {
      answer = Buffer.from(proven);
      answer[0] = (answer[0]! + 1) & 0xff;
    }
    const sealed = this.#security.seal(answer);
    return encodeTSRequest({
      version: this.#o.version,
      pubKeyAuth: Buffer.concat([sealed.signature, sealed.data]),
    });
  }

  onAuthInfo(der: Buffer): void {
    const ts = decodeTSRequest(der);
    const info = ts.authInfo!;
    this.credentials = decodeTSCredentials(this.#security!.unseal(info.subarray(0, 16), info.subarray(16)));
  }
}
