import { randomBytes, X509Certificate } from 'node:crypto';
import type { Socket } from 'node:net';
import tls, { type DetailedPeerCertificate, type TLSSocket } from 'node:tls';
import {
  type DesktopCredential,
  type DesktopListing,
  type Dialer,
  desktopHostPort,
  normalizeFingerprint,
} from '@gatehouse/core';
import { CredSspClient, CredSspError, subjectPublicKey, tsRequestLength } from './credssp/index.js';
import { DesktopError, httpError, TLS_ALERT } from './errors.js';
import { type FrameError, readFrame } from './io.js';
import { RDCLEANPATH_ERROR } from './wire/rdcleanpath.js';
import { readTpkt } from './wire/tpkt.js';
import {
  type ConnectionConfirm,
  decodeConnectionConfirm,
  encodeConnectionConfirm,
  PROTOCOL,
} from './wire/x224.js';

/** RDP_NEG_FAILURE code of a server that only accepts NLA (MS-RDPBCGR 2.2.1.2.2). */
const HYBRID_REQUIRED_BY_SERVER = 5;

/** The desktop end of a session: TLS up, the server's confirm and chain in hand. */
export interface DesktopUpstream {
  socket: TLSSocket;
  /** The server's X.224 Connection Confirm as it sent it. */
  confirmFrame: Buffer;
  /**
   * The confirm the client is given: the server's own, or, when the gateway
   * ran CredSSP itself, the same with PROTOCOL_SSL selected (the client then
   * never starts CredSSP and never needs the password).
   */
  clientConfirmFrame: Buffer;
  /** The gateway logged in with CredSSP (NLA) using the stored credential. */
  gatewayNla: boolean;
  confirm: Extract<ConnectionConfirm, { type: 'response' }>;
  /** DER certificates, leaf first. */
  chain: Buffer[];
  /** host:port the gateway connected to. */
  serverAddr: string;
  tlsVerify: 'ca' | 'fingerprint' | 'skipped';
}

export interface UpstreamOptions {
  dialer: Dialer;
  /** For the X.224 answer and the TLS handshake together, and again for CredSSP. */
  timeoutMs: number;
  /** The stored credential: when the desktop selects NLA the gateway runs CredSSP with it. */
  credential?: DesktopCredential | undefined;
}

/** What to tell an admin whose stored credential a desktop refused. */
function updateCredentialHint(desktop: DesktopListing, login: string): string {
  return (
    `update the stored password: gatehouse desktops rm ${desktop.name}, then gatehouse desktops add ${desktop.name} ` +
    `--addr ${desktop.addr} --login ${login} --password-file FILE (with its TLS and label options)`
  );
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
          ? `desktop "${desktop.name}" requires NLA (CredSSP) and the gateway has no credential stored for this login; ` +
              `store one (gatehouse desktops add ${desktop.name} ... --login L --password-file FILE) so the gateway logs in, ` +
              'or connect with a client that runs NLA itself (the browser tab)'
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
    let clientConfirmFrame = confirmFrame;
    const nla = (confirm.selectedProtocol & (PROTOCOL.HYBRID | PROTOCOL.HYBRID_EX)) !== 0;
    if (nla && opts.credential) {
      try {
        await loginWithCredSsp(socket, desktop, chain[0]!, opts.credential, opts.timeoutMs);
        if (confirm.selectedProtocol & PROTOCOL.HYBRID_EX)
          await readEarlyUserAuthorization(socket, desktop, opts.credential.login, opts.timeoutMs);
      } catch (err) {
        socket.destroy();
        throw err;
      }
      clientConfirmFrame = encodeConnectionConfirm({
        type: 'response',
        flags: confirm.flags,
        selectedProtocol: PROTOCOL.SSL,
      });
    }
    return {
      socket,
      confirmFrame,
      clientConfirmFrame,
      gatewayNla: nla && opts.credential !== undefined,
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

/**
 * CredSSP (MS-CSSP) over the TLS connection to the desktop with the stored
 * credential: NTLM tokens, then the public-key proof (checked: a mismatch
 * fails closed as a possible MITM), then the sealed credential. A refusal by
 * the desktop (an NTSTATUS in its TSRequest, or the connection closed right
 * after the NTLM AUTHENTICATE) says the stored password is wrong and how to
 * replace it.
 */
async function loginWithCredSsp(
  socket: TLSSocket,
  desktop: DesktopListing,
  leaf: Buffer,
  cred: DesktopCredential,
  timeoutMs: number,
): Promise<void> {
  let publicKey: Buffer;
  try {
    publicKey = subjectPublicKey(new X509Certificate(leaf).publicKey.export({ type: 'spki', format: 'der' }));
  } catch (err) {
    throw new DesktopError(
      `the TLS public key of desktop "${desktop.name}" cannot be read for CredSSP: ${(err as Error).message}`,
      { errorCode: RDCLEANPATH_ERROR.general, tlsAlertCode: TLS_ALERT.badCertificate },
      'upstream',
    );
  }
  const client = new CredSspClient({
    credential: { user: cred.login, domain: cred.domain ?? '', password: cred.password },
    publicKey,
    random: (n) => randomBytes(n),
    now: () => Date.now(),
  });
  const refused = (detail: string) =>
    new DesktopError(
      `desktop "${desktop.name}" refused the stored credential for login "${cred.login}" (${detail}); ` +
        updateCredentialHint(desktop, cred.login),
      httpError(502),
      'upstream',
    );
  const read = async (what: string, afterAuthenticate: boolean) => {
    try {
      return await readFrame(socket, tsRequestLength, what, timeoutMs);
    } catch (err) {
      const e = err as FrameError;
      // Servers without the CredSSP error field (or that just drop the logon) close here.
      // FreeRDP closes the same way when the public key proof does not match (something
      // between the gateway and the desktop holds the TLS session): the message says both.
      if (afterAuthenticate && e.kind === 'closed')
        throw refused(
          'it closed the connection after the NTLM logon; less likely, it saw another TLS key than the gateway did',
        );
      throw new DesktopError(
        `CredSSP with desktop "${desktop.name}": ${e.message}`,
        httpError(e.kind === 'timeout' ? 504 : 502),
        'upstream',
      );
    }
  };
  try {
    socket.write(client.start());
    socket.write(client.onChallenge(await read('CredSSP challenge', false)));
    socket.write(client.onPubKeyAuth(await read('CredSSP public key proof', true)));
  } catch (err) {
    if (!(err instanceof CredSspError)) throw err;
    if (err.kind === 'rejected') throw refused(err.message);
    throw new DesktopError(
      `CredSSP with desktop "${desktop.name}" failed: ${err.message}`,
      err.kind === 'mitm'
        ? { errorCode: RDCLEANPATH_ERROR.general, tlsAlertCode: TLS_ALERT.badCertificate }
        : httpError(502),
      'upstream',
    );
  }
}

/** Early User Authorization Result PDU (MS-RDPBCGR 2.2.10.2), sent after CredSSP when HYBRID_EX was selected. */
async function readEarlyUserAuthorization(
  socket: TLSSocket,
  desktop: DesktopListing,
  login: string,
  timeoutMs: number,
): Promise<void> {
  let b: Buffer;
  try {
    b = await readFrame(socket, () => 4, 'Early User Authorization Result', timeoutMs);
  } catch (err) {
    throw new DesktopError(
      `desktop "${desktop.name}": ${(err as Error).message}`,
      httpError(502),
      'upstream',
    );
  }
  const result = b.readUInt32LE(0);
  if (result !== 0) {
    throw new DesktopError(
      `desktop "${desktop.name}" denies login "${login}" remote access (Early User Authorization Result 0x${result.toString(16)}); ` +
        'allow the account to log on through Remote Desktop on the desktop',
      httpError(403),
      'upstream',
    );
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
