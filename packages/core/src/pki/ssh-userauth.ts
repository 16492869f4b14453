import { createPublicKey, type KeyObject, verify } from 'node:crypto';
import { GatehouseError } from '../errors.js';
import type { Identity } from '../identity/types.js';
import {
  parseSshCertificate,
  SESSION_ID_PATTERN,
  SSH_SESSION_ID_EXTENSION,
  SSH_SESSION_POLICY_EXTENSION,
  type SshCertificate,
  sshCertificateIdentity,
  sshEd25519PublicKeyToKeyObject,
  verifySshCertificate,
} from './sshcert.js';
import type { SshSessionPolicy } from './types.js';

/**
 * The one check of an SSH user-certificate login, for the SSH proxy and the
 * node service alike: exactly what sshd checks with `TrustedUserCAKeys` and
 * `AuthorizedKeysFile none` — a user certificate from a trusted CA, valid
 * now, naming the login as a principal, with its critical options honoured —
 * plus the client's proof that it holds the certified key. Roles are core's
 * Authorizer's business, after this. No I/O here.
 */

export const CERT_SUFFIX = '-cert-v01@openssh.com';

/** A plain key (or a password) where a Gatehouse certificate is required: callers explain what to do. */
export class NotACertificateError extends GatehouseError {
  constructor(algo: string) {
    super('GH_ERR_UNAUTHENTICATED', `the key offered (${algo}) is not a Gatehouse certificate`, {
      hint: 'run gatehouse login, then connect with its certificate (gatehouse config ssh prints the settings)',
    });
  }
}

/** Signature algorithms accepted per certified key type (no SHA-1 RSA, as in OpenSSH 8.8+). */
const SIG_ALGOS: Record<string, readonly string[]> = {
  'ssh-ed25519': ['ssh-ed25519'],
  'ecdsa-sha2-nistp256': ['ecdsa-sha2-nistp256'],
  'ecdsa-sha2-nistp384': ['ecdsa-sha2-nistp384'],
  'ecdsa-sha2-nistp521': ['ecdsa-sha2-nistp521'],
  'ssh-rsa': ['rsa-sha2-256', 'rsa-sha2-512'],
};

const HASH: Record<string, string | null> = {
  'ssh-ed25519': null,
  'ecdsa-sha2-nistp256': 'sha256',
  'ecdsa-sha2-nistp384': 'sha384',
  'ecdsa-sha2-nistp521': 'sha512',
  'rsa-sha2-256': 'sha256',
  'rsa-sha2-512': 'sha512',
};

const CURVES: Record<string, { crv: string; size: number }> = {
  nistp256: { crv: 'P-256', size: 32 },
  nistp384: { crv: 'P-384', size: 48 },
  nistp521: { crv: 'P-521', size: 66 },
};

function refused(message: string, hint?: string): GatehouseError {
  return new GatehouseError('GH_ERR_CERT_INVALID', message, {
    hint: hint ?? 'Log in with `gatehouse login` and connect with the certificate it issued.',
  });
}

/** Bounds-checked SSH wire reader for the few fields parsed here. */
function readStrings(buf: Buffer, count: number): Buffer[] {
  const out: Buffer[] = [];
  let off = 0;
  for (let i = 0; i < count; i++) {
    if (off + 4 > buf.length) throw refused('malformed SSH structure');
    const n = buf.readUInt32BE(off);
    off += 4;
    if (off + n > buf.length) throw refused('malformed SSH structure');
    out.push(buf.subarray(off, off + n));
    off += n;
  }
  if (off !== buf.length) throw refused('trailing bytes in SSH structure');
  return out;
}

/** Strips an mpint's sign byte and left-pads it to the curve size (for IEEE P1363 signatures / JWK). */
function fixed(mpint: Buffer, size: number): Buffer {
  let b = mpint;
  while (b.length > size && b[0] === 0) b = b.subarray(1);
  if (b.length > size) throw refused('ECDSA value is too large for its curve');
  return Buffer.concat([Buffer.alloc(size - b.length), b]);
}

/** A node KeyObject from an SSH public key blob (Ed25519, ECDSA, RSA). */
export function sshPublicKeyObject(blob: Buffer): KeyObject {
  if (blob.length < 4 || 4 + blob.readUInt32BE(0) > blob.length) throw refused('malformed public key');
  const type = blob.subarray(4, 4 + blob.readUInt32BE(0)).toString();
  if (type === 'ssh-ed25519') return sshEd25519PublicKeyToKeyObject(blob);
  if (type.startsWith('ecdsa-sha2-')) {
    const [, curveName, point] = readStrings(blob, 3) as [Buffer, Buffer, Buffer];
    const curve = CURVES[curveName.toString()];
    if (!curve || `ecdsa-sha2-${curveName}` !== type) throw refused(`unsupported ECDSA key ${type}`);
    if (point[0] !== 4 || point.length !== 1 + 2 * curve.size)
      throw refused('ECDSA point is not uncompressed');
    return createPublicKey({
      key: {
        kty: 'EC',
        crv: curve.crv,
        x: point.subarray(1, 1 + curve.size).toString('base64url'),
        y: point.subarray(1 + curve.size).toString('base64url'),
      },
      format: 'jwk',
    });
  }
  if (type === 'ssh-rsa') {
    const [, e, n] = readStrings(blob, 3) as [Buffer, Buffer, Buffer];
    const strip = (b: Buffer) => (b[0] === 0 ? b.subarray(1) : b);
    return createPublicKey({
      key: { kty: 'RSA', e: strip(e).toString('base64url'), n: strip(n).toString('base64url') },
      format: 'jwk',
    });
  }
  throw refused(`unsupported key type ${type}`);
}

/**
 * Checks the client's USERAUTH signature. `sigBlob` is what ssh2 hands over
 * for certificate algorithms: the whole SSH signature (algorithm name +
 * bytes), because ssh2 does not know these algorithm names.
 */
export function verifyClientSignature(cert: SshCertificate, data: Buffer, sigBlob: Buffer): boolean {
  const [algoBuf, sig] = readStrings(sigBlob, 2) as [Buffer, Buffer];
  const algo = algoBuf.toString();
  if (!SIG_ALGOS[cert.keyType]?.includes(algo)) {
    throw refused(`signature algorithm ${algo} does not fit a ${cert.keyType} key`);
  }
  const key = sshPublicKeyObject(cert.publicKey);
  const hash = HASH[algo] ?? null;
  if (algo.startsWith('ecdsa-sha2-')) {
    const curve = CURVES[algo.slice('ecdsa-sha2-'.length)] as { size: number };
    const [r, s] = readStrings(sig, 2) as [Buffer, Buffer];
    const p1363 = Buffer.concat([fixed(r, curve.size), fixed(s, curve.size)]);
    return verify(hash, data, { key, dsaEncoding: 'ieee-p1363' }, p1363);
  }
  return verify(hash, data, key, sig);
}

export interface UserAuthRequest {
  /**
   * The login the client asked for (SSH user name), which the certificate
   * must name; absent where the user name names no login (the proxy's outer
   * hop, `-J alice@proxy`).
   */
  login?: string | undefined;
  /** ssh2's ctx.key.algo: the offered public key algorithm. */
  algo: string;
  /** ssh2's ctx.key.data: for certificate algorithms, the whole certificate. */
  keyBlob: Buffer;
  clientAddress: string;
  /** Absent on the "would you accept this key?" query. */
  signature?: { data: Buffer; blob: Buffer } | undefined;
  /** The gateway's proxy: certificates with the session MFA option are its to judge (see SSH_SESSION_MFA_OPTION). */
  acceptSessionMfa?: boolean | undefined;
}

/**
 * Verifies a publickey auth attempt. Returns the verified certificate or
 * throws a GatehouseError whose message is safe to show the client.
 */
export function verifyUserAuth(
  req: UserAuthRequest,
  trustedCaKeys: readonly string[],
  now: Date,
): SshCertificate {
  if (!req.algo.endsWith(CERT_SUFFIX)) throw new NotACertificateError(req.algo);
  if (trustedCaKeys.length === 0) {
    // Fail closed: with no CA loaded, nothing is trusted.
    throw refused(
      'this node trusts no user CA yet',
      'The node has not received the cluster user CA; re-join it.',
    );
  }
  const cert = parseSshCertificate(req.keyBlob);
  // rsa-sha2-*-cert algorithms carry an ssh-rsa certificate; others must match exactly.
  const offeredBase = req.algo.slice(0, -CERT_SUFFIX.length);
  const fits =
    cert.keyType === 'ssh-rsa' ? SIG_ALGOS['ssh-rsa']?.includes(offeredBase) : offeredBase === cert.keyType;
  if (!fits) throw refused(`offered algorithm ${req.algo} does not match a ${cert.certType} certificate`);
  const verified = verifySshCertificate(cert, trustedCaKeys, now, {
    type: 'user',
    principal: req.login,
    clientAddress: req.clientAddress,
    ...(req.acceptSessionMfa ? { acceptSessionMfa: true } : {}),
  });
  if (req.signature && !verifyClientSignature(verified, req.signature.data, req.signature.blob)) {
    throw refused('the signature does not match the certified key');
  }
  return verified;
}

/** `verifyUserAuth`, and the Gatehouse identity the certificate carries (what the proxy authorizes). */
export function verifyUserAuthIdentity(
  req: UserAuthRequest,
  trustedCaKeys: readonly string[],
  now: Date,
): { cert: SshCertificate; identity: Identity } {
  // Only the proxy reads identities, and it enforces session MFA through them and the roles.
  const cert = verifyUserAuth({ ...req, acceptSessionMfa: true }, trustedCaKeys, now);
  return { cert, identity: sshCertificateIdentity(cert) };
}

/** The permit-* extensions and force-command a session must honour. */
export interface CertPermissions {
  pty: boolean;
  portForwarding: boolean;
  agentForwarding: boolean;
  x11Forwarding: boolean;
  forceCommand?: string | undefined;
  /** What the node must record and restrict (empty lists: nothing). */
  sessionPolicy: SshSessionPolicy;
  /** The proxy's session id, in certificates core minted for one proxied session; absent in login certificates. */
  sessionId?: string | undefined;
}

const strings = (v: unknown): v is string[] => Array.isArray(v) && v.every((x) => typeof x === 'string');

/**
 * The session policy extension. It is signed by the user CA, but a value the
 * node cannot read still refuses the login: ignoring it would drop
 * restrictions (fail closed). Core writes it on every user certificate
 * (empty when the roles ask for nothing), so a certificate without it was
 * minted before nodes enforced policies, or not by Gatehouse: its session
 * would run unrestricted whatever the roles say, so it is refused too.
 */
function sessionPolicy(cert: SshCertificate): SshSessionPolicy {
  const json = cert.extensions[SSH_SESSION_POLICY_EXTENSION];
  const critical = cert.criticalOptions[SSH_SESSION_POLICY_EXTENSION];
  if (critical !== undefined && critical !== json) {
    throw new GatehouseError(
      'GH_ERR_CERT_INVALID',
      'the certificate session policy differs between its critical option and its extension',
    );
  }
  if (json === undefined) {
    throw new GatehouseError(
      'GH_ERR_CERT_INVALID',
      `the certificate of "${cert.keyId}" carries no session policy (it predates session policies)`,
      { hint: 'log in again with gatehouse login to get a current certificate' },
    );
  }
  let v: {
    enhanced_recording?: unknown;
    restrict_network?: { deny?: unknown; allow?: unknown };
    recording_paths?: { include?: unknown; exclude?: unknown };
  };
  try {
    v = JSON.parse(json) as typeof v;
  } catch (e) {
    throw new GatehouseError('GH_ERR_CERT_INVALID', 'the certificate session policy is not JSON', {
      cause: e,
    });
  }
  const rec = v?.enhanced_recording ?? [];
  const deny = v?.restrict_network?.deny ?? [];
  const allow = v?.restrict_network?.allow ?? [];
  const include = v?.recording_paths?.include ?? [];
  const exclude = v?.recording_paths?.exclude ?? [];
  if (!strings(rec) || !strings(deny) || !strings(allow) || !strings(include) || !strings(exclude)) {
    throw new GatehouseError('GH_ERR_CERT_INVALID', 'the certificate session policy is malformed');
  }
  return {
    enhancedRecording: rec,
    restrictNetwork: { deny, allow },
    ...(v?.recording_paths ? { recordingPaths: { include, exclude } } : {}),
  };
}

function sessionIdOf(cert: SshCertificate): { sessionId?: string } {
  const id = cert.extensions[SSH_SESSION_ID_EXTENSION];
  if (id === undefined) return {};
  if (!SESSION_ID_PATTERN.test(id)) {
    throw new GatehouseError('GH_ERR_CERT_INVALID', 'the certificate session id is malformed');
  }
  return { sessionId: id };
}

/**
 * The permit-* extensions, force-command and session policy a node session
 * must honour. Throws GH_ERR_CERT_INVALID for a certificate a node must not
 * serve (no or an unreadable session policy).
 */
export function certPermissions(cert: SshCertificate): CertPermissions {
  const ext = cert.extensions;
  const force = cert.criticalOptions['force-command'];
  return {
    pty: 'permit-pty' in ext,
    portForwarding: 'permit-port-forwarding' in ext,
    agentForwarding: 'permit-agent-forwarding' in ext,
    x11Forwarding: 'permit-X11-forwarding' in ext,
    ...(force !== undefined ? { forceCommand: force } : {}),
    sessionPolicy: sessionPolicy(cert),
    ...sessionIdOf(cert),
  };
}
