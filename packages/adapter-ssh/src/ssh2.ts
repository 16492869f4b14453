import { createRequire } from 'node:module';
import ssh2 from 'ssh2';

/** The one place the adapter imports ssh2 from (a CommonJS package). */
export const { Server, Client, utils } = ssh2;
export type {
  AuthContext,
  ClientChannel,
  ConnectConfig,
  Connection,
  ParsedKey,
  PseudoTtyInfo,
  PublicKeyAuthContext,
  ServerChannel,
  Session,
} from 'ssh2';

const CERT_SUFFIX = '-cert-v01@openssh.com';

/**
 * Gatehouse needs four small changes to ssh2 1.17 (patches/ssh2+1.17.0.patch,
 * applied by the root postinstall): client user-certificate auth, server host
 * certificates, client acceptance of host certificates, and reasons in auth
 * banners and channel-open failures. Without them certificates silently do
 * not work, so the adapter refuses to start instead.
 */
export function assertSsh2Patched(): void {
  const require = createRequire(import.meta.url);
  const Protocol = require('ssh2/lib/protocol/Protocol.js') as { prototype: { authBanner?: unknown } };
  const constants = require('ssh2/lib/protocol/constants.js') as { SUPPORTED_SERVER_HOST_KEY: string[] };
  const ok =
    typeof Protocol.prototype.authBanner === 'function' &&
    constants.SUPPORTED_SERVER_HOST_KEY.includes(`ssh-ed25519${CERT_SUFFIX}`);
  if (!ok) {
    throw new Error(
      'ssh2 is not patched for SSH certificates: run `npm install` at the repository root (its postinstall applies patches/ssh2+1.17.0.patch)',
    );
  }
}

/** A private key that ssh2's patched client offers as `<algo>-cert-v01@openssh.com` with this certificate. */
export function withCertificate(key: ssh2.ParsedKey, certBlob: Buffer): ssh2.ParsedKey {
  const k = Object.create(key) as ssh2.ParsedKey & { certificate: Buffer };
  k.certificate = certBlob;
  return k;
}

/** Sends a USERAUTH_BANNER (patched Protocol.authBanner); OpenSSH prints it on stderr. */
export function authBanner(conn: ssh2.Connection, text: string): void {
  const proto = (conn as unknown as { _protocol?: { authBanner?: (m: string) => void } })._protocol;
  proto?.authBanner?.(
    text.endsWith('\n') ? text.replace(/\r?\n/g, '\r\n') : `${text.replace(/\r?\n/g, '\r\n')}\r\n`,
  );
}

export { CERT_SUFFIX };
