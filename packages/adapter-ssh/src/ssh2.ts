import { createRequire } from 'node:module';
import type { Duplex } from 'node:stream';
import ssh2 from 'ssh2';

/** The one place the adapter imports ssh2 from (a CommonJS package). */
export const { Server, Client, utils, BaseAgent } = ssh2;
export type {
  AuthContext,
  AuthenticationType,
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
 * Gatehouse needs a few small changes to ssh2 1.17 (patches/ssh2+1.17.0.patch,
 * applied by the root postinstall): client user-certificate auth, server host
 * certificates, client acceptance of host certificates, reasons in auth
 * banners and channel-open failures, and server-side agent channels (`ssh -A`).
 * Without them certificates silently do not work, so the adapter refuses to
 * start instead.
 */
export function assertSsh2Patched(): void {
  const require = createRequire(import.meta.url);
  const Protocol = require('ssh2/lib/protocol/Protocol.js') as { prototype: { authBanner?: unknown } };
  const constants = require('ssh2/lib/protocol/constants.js') as { SUPPORTED_SERVER_HOST_KEY: string[] };
  const { IncomingClient } = require('ssh2/lib/server.js') as {
    IncomingClient: { prototype: { openssh_authAgent?: unknown } };
  };
  const ok =
    typeof Protocol.prototype.authBanner === 'function' &&
    typeof IncomingClient.prototype.openssh_authAgent === 'function' &&
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

/**
 * The agent the proxy's connection to a node offers for `ssh -A`. ssh2
 * relays each auth-agent@openssh.com channel the node opens (only after the
 * proxy asked for forwarding on a session) to `getStream`, which opens one
 * to the user's own client, whose ssh-agent answers. The proxy never signs
 * with it: it authenticates to nodes with its own certificate.
 */
export class ForwardedAgent extends BaseAgent {
  readonly #open: (cb: (err: Error | undefined, stream?: Duplex) => void) => void;

  constructor(open: (cb: (err: Error | undefined, stream?: Duplex) => void) => void) {
    super();
    this.#open = open;
  }

  override getIdentities(cb: (err: Error | undefined) => void): void {
    cb(new Error('the forwarded agent is only relayed, never used by the gateway'));
  }

  override sign(_key: unknown, _data: Buffer, options: unknown, cb?: (err: Error | undefined) => void): void {
    const done = typeof options === 'function' ? (options as typeof cb) : cb;
    done?.(new Error('the forwarded agent is only relayed, never used by the gateway'));
  }

  override getStream(cb: (err: Error | undefined, stream?: Duplex) => void): void {
    this.#open(cb);
  }
}

/** Opens an auth-agent@openssh.com channel to the client of `conn` (patched ssh2 server). */
export function openAgentChannel(
  conn: ssh2.Connection,
  cb: (err: Error | undefined, stream?: Duplex) => void,
): void {
  (
    conn as unknown as {
      openssh_authAgent(cb: (err: Error | undefined, ch?: ssh2.ServerChannel) => void): void;
    }
  ).openssh_authAgent((err, ch) => cb(err, ch));
}

/** Sends a USERAUTH_BANNER (patched Protocol.authBanner); OpenSSH prints it on stderr. */
export function authBanner(conn: ssh2.Connection, text: string): void {
  const proto = (conn as unknown as { _protocol?: { authBanner?: (m: string) => void } })._protocol;
  proto?.authBanner?.(
    text.endsWith('\n') ? text.replace(/\r?\n/g, '\r\n') : `${text.replace(/\r?\n/g, '\r\n')}\r\n`,
  );
}

/**
 * Tells a client why its bytes were refused (DISCONNECT, protocol error,
 * with `text`; OpenSSH prints it). ssh2 says nothing for a packet it cannot
 * frame (e.g. a bad packet length): it reports the error and ends the
 * socket. When ssh2 already sent its own DISCONNECT its protocol is torn
 * down (`_destruct` gone), and nothing more is sent.
 */
export function protocolErrorDisconnect(conn: ssh2.Connection, text: string): void {
  const proto = (
    conn as unknown as {
      _protocol?: { _destruct?: unknown; disconnect?: (reason: number, description?: string) => void };
    }
  )._protocol;
  if (typeof proto?._destruct !== 'function') return;
  proto.disconnect?.(PROTOCOL_ERROR, text);
}

/** SSH_DISCONNECT_PROTOCOL_ERROR (RFC 4253 11.1). */
const PROTOCOL_ERROR = 2;

export { CERT_SUFFIX };

/** How a command on a node ended: its exit code, or the signal that killed it. */
export type ChannelExit = { code: number } | { signal: string; dump: boolean; desc: string };

const exits = new WeakMap<ssh2.ClientChannel, ChannelExit>();

/**
 * Starts keeping `ch`'s exit status; call it in the callback that hands the
 * channel over. The status is a plain event, and for a quick command it comes
 * in the same read as the open confirmation, before code awaiting that
 * callback resumes: without this it is lost, and OpenSSH exits 255.
 */
export function keepExit(ch: ssh2.ClientChannel): ssh2.ClientChannel {
  ch.once('exit', (code: number | null, signal?: string, dump?: boolean, desc?: string) => {
    exits.set(
      ch,
      code !== null && code !== undefined
        ? { code }
        : { signal: signal ?? 'KILL', dump: dump ?? false, desc: desc ?? '' },
    );
  });
  return ch;
}

/** The exit status `keepExit` caught, once the node sent it. */
export function exitOf(ch: ssh2.ClientChannel): ChannelExit | undefined {
  return exits.get(ch);
}
