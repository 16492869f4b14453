import type { X509Certificate } from 'node:crypto';
import type { Socket } from 'node:net';
import tls, { type TLSSocket } from 'node:tls';
import type { ListenerRejectReason } from '@gatehouse/audit';
import type { Identity } from '../identity/types.js';

/** Why core refused a TLS connection; `reason` is the listener.reject reason to audit. */
export class TlsRefused extends Error {
  override name = 'TlsRefused';
  readonly reason: Extract<
    ListenerRejectReason,
    'tls_handshake_failed' | 'client_cert_untrusted' | 'client_cert_invalid'
  >;
  /** `cause`: core's own error (e.g. GH_ERR_CERT_EXPIRED), so an adapter can word the refusal for its client. */
  constructor(reason: TlsRefused['reason'], message: string, opts: { cause?: unknown } = {}) {
    super(message, opts.cause !== undefined ? { cause: opts.cause } : {});
    this.reason = reason;
  }
}

/** Verifies a client certificate (user CA, validity, identity); throws GH_ERR_CERT_* or a decoding error. */
export type VerifyClientCert = (cert: X509Certificate) => Identity;

/**
 * Server-side TLS over a socket Gatehouse accepted. Client certificates are
 * requested, never required here (the login API needs none). One presented
 * is verified by core itself right after the handshake, before any data: a
 * TLSSocket we wrap ourselves never sets `authorized` (only tls.Server does),
 * so OpenSSL's verdict is not used.
 */
export function wrapServerTls(
  raw: Socket,
  opts: { secureContext: tls.SecureContext } & Omit<
    tls.TLSSocketOptions,
    'isServer' | 'secureContext' | 'requestCert' | 'rejectUnauthorized'
  >,
): TLSSocket {
  return new tls.TLSSocket(raw, {
    ...opts,
    isServer: true,
    requestCert: true,
    rejectUnauthorized: false,
  });
}

/** The verified identity of the client certificate on `socket`, if it presented one; throws TlsRefused. */
export function clientIdentity(socket: TLSSocket, verify: VerifyClientCert): Identity | undefined {
  const peer = socket.getPeerX509Certificate();
  if (!peer) return undefined;
  try {
    return verify(peer);
  } catch (err) {
    const code = (err as { code?: string }).code;
    throw new TlsRefused(
      code === 'GH_ERR_CERT_INVALID' || code === 'GH_ERR_CERT_EXPIRED'
        ? 'client_cert_untrusted'
        : 'client_cert_invalid',
      `client certificate "${peer.subject.replace(/\n/g, ', ')}" refused: ${(err as Error).message}`,
      { cause: err },
    );
  }
}

/**
 * For protocols that switch to TLS mid-stream on their own port (MySQL's
 * SSLRequest): the TLS socket at once (so a deadline can destroy it), and
 * the client's verified identity once the handshake is done.
 */
export function acceptTls(
  raw: Socket,
  opts: {
    secureContext: tls.SecureContext;
    verifyClientCert: VerifyClientCert;
    /** Errors after the handshake, while no adapter listens yet (the socket then closes). */
    onLateError: (err: Error) => void;
  },
): { socket: TLSSocket; identity: Promise<Identity | undefined> } {
  const socket = wrapServerTls(raw, { secureContext: opts.secureContext });
  // Errors nobody else listens for (after a refusal, while the adapter awaits
  // core) end this socket only; adapters add their own listeners.
  socket.on('error', opts.onLateError);
  const identity = new Promise<Identity | undefined>((resolve, reject) => {
    const onError = (err: Error) => reject(new TlsRefused('tls_handshake_failed', err.message));
    socket.once('error', onError);
    socket.once('close', () =>
      reject(new TlsRefused('tls_handshake_failed', 'connection closed during the TLS handshake')),
    );
    socket.once('secure', () => {
      socket.off('error', onError);
      try {
        resolve(clientIdentity(socket, opts.verifyClientCert));
      } catch (err) {
        reject(err);
      }
    });
  });
  return { socket, identity };
}
