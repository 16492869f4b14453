import { createHash, timingSafeEqual } from 'node:crypto';
import { children, DerError, expectTlv, TAG } from './der.js';
import {
  type Credential,
  encodeAuthenticate,
  encodeNegotiate,
  NTLMSSP_SIGNATURE,
  NtlmError,
  NtlmSecurity,
} from './ntlm.js';
import {
  CREDSSP_VERSION,
  decodeTSRequest,
  encodeTSCredentials,
  encodeTSRequest,
  type TSRequest,
} from './tsrequest.js';

/**
 * The client side of CredSSP (MS-CSSP 3.1.5) with NTLM, as three pure
 * steps the caller drives over the TLS connection to the target:
 *
 *   start()            -> TSRequest { negoTokens: NEGOTIATE }
 *   onChallenge(ts)    -> TSRequest { negoTokens: AUTHENTICATE, pubKeyAuth, clientNonce }
 *   onPubKeyAuth(ts)   -> TSRequest { authInfo: sealed TSCredentials }
 *
 * pubKeyAuth binds the NTLM session to the target's TLS public key: for
 * CredSSP 5 and later a SHA-256 over a client nonce and the key, for 2..4
 * the key itself. The server's answer must prove the same key (the
 * server-to-client hash, or the key with its first byte plus one); a
 * mismatch means someone else holds the TLS session (a MITM), and the
 * credential is never sent. NTLM tokens travel raw (NTLMSSP), which
 * Windows and FreeRDP accept; SPNEGO wrapping and Kerberos are not done.
 */

export class CredSspError extends Error {
  override name = 'CredSspError';
  constructor(
    message: string,
    /** rejected: the target refused the credential; mitm: the key binding failed; protocol: anything else. */
    readonly kind: 'rejected' | 'mitm' | 'protocol',
    /** The NTSTATUS the target reported, when it did. */
    readonly status?: number,
  ) {
    super(message);
  }
}

/** NTSTATUS codes a target sends for a refused logon (MS-ERREF 2.3.1). */
export const LOGON_FAILURES: Record<number, string> = {
  3221225581: 'STATUS_LOGON_FAILURE',
  3221225578: 'STATUS_WRONG_PASSWORD',
  3221225572: 'STATUS_NO_SUCH_USER',
  3221225585: 'STATUS_PASSWORD_EXPIRED',
  3221225586: 'STATUS_ACCOUNT_DISABLED',
  3221226020: 'STATUS_PASSWORD_MUST_CHANGE',
  3221226036: 'STATUS_ACCOUNT_LOCKED_OUT',
  3221225582: 'STATUS_ACCOUNT_RESTRICTION',
  3221225819: 'STATUS_LOGON_TYPE_NOT_GRANTED',
};

const CLIENT_TO_SERVER = Buffer.from('CredSSP Client-To-Server Binding Hash\0', 'latin1');
const SERVER_TO_CLIENT = Buffer.from('CredSSP Server-To-Client Binding Hash\0', 'latin1');
/** From this version on the key is bound through a nonce and SHA-256 (MS-CSSP 3.1.5, CVE-2018-0886). */
const NONCE_VERSION = 5;
const MIN_VERSION = 2;

const sha256 = (...parts: Buffer[]) => {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest();
};

/** The subjectPublicKey bits of a DER SubjectPublicKeyInfo (what CredSSP binds to). */
export function subjectPublicKey(spki: Buffer): Buffer {
  const seq = expectTlv(spki, TAG.SEQUENCE, 'SubjectPublicKeyInfo');
  const items = children(seq.value, 'SubjectPublicKeyInfo');
  const bits = items[1];
  if (
    items.length !== 2 ||
    items[0]!.tag !== TAG.SEQUENCE ||
    bits?.tag !== TAG.BIT_STRING ||
    bits.value.length < 1
  )
    throw new DerError('malformed SubjectPublicKeyInfo');
  if (bits.value[0] !== 0) throw new DerError('a public key BIT STRING with unused bits');
  return Buffer.from(bits.value.subarray(1));
}

export interface CredSspOptions {
  credential: Credential;
  /** The target's subjectPublicKey (subjectPublicKey() of its TLS leaf certificate). */
  publicKey: Buffer;
  random(n: number): Buffer;
  now(): number;
}

type State = 'new' | 'negotiated' | 'authenticated' | 'done';

export class CredSspClient {
  readonly #o: CredSspOptions;
  #state: State = 'new';
  #negotiate: Buffer = Buffer.alloc(0);
  #nonce: Buffer = Buffer.alloc(0);
  #peerVersion = CREDSSP_VERSION;
  #security: NtlmSecurity | undefined;

  constructor(o: CredSspOptions) {
    this.#o = o;
  }

  /** The CredSSP version both sides use (the lower of the two). */
  get version(): number {
    return Math.min(CREDSSP_VERSION, this.#peerVersion);
  }

  start(): Buffer {
    this.#expect('new');
    this.#negotiate = encodeNegotiate();
    this.#state = 'negotiated';
    return encodeTSRequest({ version: CREDSSP_VERSION, negoTokens: [this.#negotiate] });
  }

  onChallenge(der: Buffer): Buffer {
    this.#expect('negotiated');
    const ts = this.#read(der);
    if (ts.version < MIN_VERSION)
      throw new CredSspError(
        `the target speaks CredSSP version ${ts.version}, below ${MIN_VERSION}`,
        'protocol',
      );
    this.#peerVersion = ts.version;
    const challenge = ts.negoTokens?.[0];
    if (!challenge || ts.negoTokens!.length !== 1)
      throw new CredSspError('the target answered without exactly one NTLM challenge token', 'protocol');
    if (!challenge.subarray(0, 8).equals(NTLMSSP_SIGNATURE))
      throw new CredSspError(
        'the target answered with a SPNEGO or Kerberos token; only raw NTLM is supported',
        'protocol',
      );
    const auth = this.#ntlm(() =>
      encodeAuthenticate({
        negotiate: this.#negotiate,
        challenge,
        credential: this.#o.credential,
        clientChallenge: this.#o.random(8),
        exportedSessionKey: this.#o.random(16),
        now: this.#o.now(),
      }),
    );
    this.#security = new NtlmSecurity(auth.exportedSessionKey, auth.flags);
    const req: TSRequest = { version: CREDSSP_VERSION, negoTokens: [auth.message] };
    let bound: Buffer;
    if (this.version >= NONCE_VERSION) {
      this.#nonce = this.#o.random(32);
      req.clientNonce = this.#nonce;
      bound = sha256(CLIENT_TO_SERVER, this.#nonce, this.#o.publicKey);
    } else bound = this.#o.publicKey;
    const sealed = this.#security.seal(bound);
    req.pubKeyAuth = Buffer.concat([sealed.signature, sealed.data]);
    this.#state = 'authenticated';
    return encodeTSRequest(req);
  }

  onPubKeyAuth(der: Buffer): Buffer {
    this.#expect('authenticated');
    const ts = this.#read(der);
    const answer = ts.pubKeyAuth;
    if (!answer || answer.length < 16)
      throw new CredSspError('the target sent no public key proof after authentication', 'protocol');
    let proof: Buffer;
    try {
      proof = this.#security!.unseal(answer.subarray(0, 16), answer.subarray(16));
    } catch (err) {
      throw new CredSspError(
        `the target's public key proof does not verify (${(err as Error).message}): possible man in the middle`,
        'mitm',
      );
    }
    let expected: Buffer;
    if (this.version >= NONCE_VERSION) expected = sha256(SERVER_TO_CLIENT, this.#nonce, this.#o.publicKey);
    else {
      expected = Buffer.from(this.#o.publicKey);
      expected[0] = (expected[0]! + 1) & 0xff;
    }
    if (proof.length !== expected.length || !timingSafeEqual(proof, expected))
      throw new CredSspError(
        "the target's public key proof does not match its TLS certificate: possible man in the middle",
        'mitm',
      );
    const c = this.#o.credential;
    const sealed = this.#security!.seal(
      encodeTSCredentials({ domain: c.domain, user: c.user, password: c.password }),
    );
    this.#state = 'done';
    return encodeTSRequest({
      version: CREDSSP_VERSION,
      authInfo: Buffer.concat([sealed.signature, sealed.data]),
    });
  }

  #expect(s: State): void {
    if (this.#state !== s)
      throw new CredSspError(`CredSSP step out of order (in state ${this.#state})`, 'protocol');
  }

  /** A TSRequest from the target; an errorCode in it is the target's refusal. */
  #read(der: Buffer): TSRequest {
    let ts: TSRequest;
    try {
      ts = decodeTSRequest(der);
    } catch (err) {
      throw new CredSspError(`malformed TSRequest from the target: ${(err as Error).message}`, 'protocol');
    }
    if (ts.errorCode !== undefined && ts.errorCode !== 0) {
      const name = LOGON_FAILURES[ts.errorCode];
      throw new CredSspError(
        `the target refused the logon: ${name ?? 'NTSTATUS'} 0x${ts.errorCode.toString(16).padStart(8, '0')}`,
        name ? 'rejected' : 'protocol',
        ts.errorCode,
      );
    }
    return ts;
  }

  #ntlm<T>(f: () => T): T {
    try {
      return f();
    } catch (err) {
      if (err instanceof NtlmError || err instanceof DerError)
        throw new CredSspError(`NTLM: ${err.message}`, 'protocol');
      throw err;
    }
  }
}
