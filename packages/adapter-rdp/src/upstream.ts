import { X509Certificate } from 'node:crypto';
import type { Socket } from 'node:net';
import tls, { type DetailedPeerCertificate, type TLSSocket } from 'node:tls';
import { type DesktopListing, type Dialer, desktopHostPort, normalizeFingerprint } from '@gatehouse/core';
import { DesktopError, httpError, TLS_ALERT } from './errors.js';
import { type FrameError, readFrame } from './io.js';
import { RDCLEANPATH_ERROR } from './wire/rdcleanpath.js';
import { readTpkt } from './wire/tpkt.js';
import { type ConnectionConfirm, decodeConnectionConfirm, PROTOCOL } from './wire/x224.js';

/** RDP_NEG_FAILURE code of a server that only accepts NLA (MS-RDPBCGR 2.2.1.2.2). */
const HYBRID_REQUIRED_BY_SERVER = 5;

/** The desktop end of a session: TLS up, the server's confirm and chain in hand. */
export interface DesktopUpstream {
  socket: TLSSocket;
  /** The server's X.224 Connection Confirm as it sent it. */
  confirmFrame: Buffer;
  confirm: Extract<ConnectionConfirm, { type: 'response' }>;
  /** DER certificates, leaf first. */
  chain: Buffer[];
  /** host:port the gateway connected to. */
  serverAddr: string;
  tlsVerify: 'ca' | 'fingerprint' | 'skipped';
}

export interface UpstreamOptions {
  dialer: Dialer;
  /** For the X.224 answer and the TLS handshake together. */
  timeoutMs: number;
}

/**
 * Dials the desktop, sends the client's X.224 Connection Request, reads the
 * Confirm, and does TLS as the client, trusting the desktop's certificate
 * the one way its registration says (a CA, a pinned fingerprint, or
 * explicitly not at all). Fails with a DesktopError that says why in
 * RDCleanPath's terms, or the dialer's GatehouseError.
 */
export async function connectDesktop(
  desktop: DesktopListing,
  request: Buffer,
  opts: UpstreamOptions,
): Promise<DesktopUpstream> {
  const { host, port } = desktopHostPort(desktop);
  const raw = await opts.dialer.dial({ host, port }, { timeoutMs: opts.timeoutMs });
  try {
    raw.write(request);
    let confirmFrame: Buffer;
    try {
      confirmFrame = await readFrame(raw, (b) => readTpkt(b)?.length, 'X.224 confirm', opts.timeoutMs);
    } catch (err) {
      throw new DesktopError(
        `desktop "${desktop.name}": ${(err as Error).message}`,
        httpError((err as FrameError).kind === 'timeout' ? 504 : 502),
        'upstream',
      );
    }
    let confirm: ConnectionConfirm;
    try {
      confirm = decodeConnectionConfirm(confirmFrame);
    } catch (err) {
      throw new DesktopError(
        `desktop "${desktop.name}" answered with a malformed X.224 confirm: ${(err as Error).message}`,
        httpError(502),
        'upstream',
      );
    }
    if (confirm.type === 'failure') {
      throw new DesktopError(
        confirm.failureCode === HYBRID_REQUIRED_BY_SERVER
          ? `desktop "${desktop.name}" requires NLA (CredSSP), which the gateway cannot do with a stored credential yet; ` +
              'remove the credential so the client logs in itself, or allow TLS security on the desktop'
          : `desktop "${desktop.name}" refused the security protocols offered (failure code ${confirm.failureCode})`,
        { errorCode: RDCLEANPATH_ERROR.negotiation },
        'upstream',
        confirmFrame,
      );
    }
    if (confirm.type === 'legacy' || confirm.selectedProtocol === PROTOCOL.RDP) {
      // Standard RDP security has no TLS: the gateway could not verify the desktop at all.
      throw new DesktopError(
        `desktop "${desktop.name}" offers only standard RDP security (no TLS)`,
        httpError(502),
        'unsupported',
      );
    }
    const { socket, tlsVerify, chain } = await startTls(raw, desktop, host, opts.timeoutMs);
    return {
      socket,
      confirmFrame,
      confirm,
      chain,
      serverAddr: `${raw.remoteAddress ?? host}:${raw.remotePort ?? port}`,
      tlsVerify,
    };
  } catch (err) {
    raw.destroy();
    throw err;
  }
}

function startTls(
  raw: Socket,
  desktop: DesktopListing,
  host: string,
  timeoutMs: number,
): Promise<{ socket: TLSSocket; tlsVerify: DesktopUpstream['tlsVerify']; chain: Buffer[] }> {
  const mode: DesktopUpstream['tlsVerify'] = desktop.insecureSkipVerify
    ? 'skipped'
    : desktop.tlsFingerprint
      ? 'fingerprint'
      : 'ca';
  const servername = desktop.serverName ?? host;
  return new Promise((resolve, reject) => {
    const socket = tls.connect({
      socket: raw,
      // SNI only for names (an IP address in SNI is not allowed).
      ...(/^[\d.]+$|:/.test(servername) ? {} : { servername }),
      minVersion: 'TLSv1.2',
      // The CA mode lets node verify the chain and the name; the other two decide below.
      rejectUnauthorized: mode === 'ca',
      ...(mode === 'ca'
        ? {
            ca: desktop.caPem,
            checkServerIdentity: (_h: string, cert) => tls.checkServerIdentity(servername, cert),
          }
        : {}),
    });
    const fail = (message: string, alert: number) => {
      clearTimeout(timer);
      socket.destroy();
      reject(
        new DesktopError(message, { errorCode: RDCLEANPATH_ERROR.general, tlsAlertCode: alert }, 'upstream'),
      );
    };
    const timer = setTimeout(
      () =>
        fail(
          `TLS with desktop "${desktop.name}" did not finish within ${timeoutMs} ms`,
          TLS_ALERT.handshakeFailure,
        ),
      timeoutMs,
    );
    socket.once('error', (err: NodeJS.ErrnoException) => {
      const untrusted = /certificate|self.signed|unable to verify|Hostname/i.test(err.message);
      fail(
        `TLS with desktop "${desktop.name}" failed: ${err.message}`,
        untrusted ? TLS_ALERT.unknownCa : TLS_ALERT.handshakeFailure,
      );
    });
    socket.once('secureConnect', () => {
      let chain: Buffer[];
      try {
        chain = peerChain(socket);
      } catch (err) {
        fail((err as Error).message, TLS_ALERT.badCertificate);
        return;
      }
      if (mode === 'fingerprint') {
        const got = normalizeFingerprint(new X509Certificate(chain[0]!).fingerprint256);
        if (got !== desktop.tlsFingerprint) {
          fail(
            `the TLS certificate of desktop "${desktop.name}" has fingerprint ${got}, not the pinned one`,
            TLS_ALERT.badCertificate,
          );
          return;
        }
      }
      clearTimeout(timer);
      socket.removeAllListeners('error');
      resolve({ socket, tlsVerify: mode, chain });
    });
  });
}

/** The chain the desktop presented, leaf first, as DER. */
function peerChain(socket: TLSSocket): Buffer[] {
  const out: Buffer[] = [];
  let c: DetailedPeerCertificate | undefined = socket.getPeerCertificate(true);
  const seen = new Set<string>();
  while (c?.raw && !seen.has(c.fingerprint256)) {
    seen.add(c.fingerprint256);
    out.push(Buffer.from(c.raw));
    c = c.issuerCertificate;
  }
  if (out.length === 0)
    throw new DesktopError('the desktop presented no TLS certificate', httpError(502), 'upstream');
  // Checked here once so a malformed leaf fails the session, not the browser's CredSSP later.
  new X509Certificate(out[0]!);
  return out;
}
