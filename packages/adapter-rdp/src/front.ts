import net from 'node:net';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';
import { readFrame } from './io.js';
import {
  decodeResponse,
  derMessageLength,
  encodeRequest,
  type RDCleanPathResponse,
} from './wire/rdcleanpath.js';
import { readTpkt } from './wire/tpkt.js';
import {
  decodeConnectionConfirm,
  decodeConnectionRequest,
  encodeConnectionRequest,
  PROTOCOL,
} from './wire/x224.js';

/** Bound on the gateway's RDCleanPath answer (a confirm and a certificate chain). */
const MAX_RESPONSE = 256 * 1024;
/** Each handshake step (the client's request, the gateway's answer). */
const HANDSHAKE_MS = 15_000;

export interface LocalFrontOptions {
  /** The desktop to open (the RDCleanPath destination). */
  desktop: string;
  /** A fresh single-use desktop token from core (POST /v1/desktops/NAME/token). */
  token(): Promise<string>;
  /** Opens the gateway's RDCleanPath WebSocket (/v1/ws/desktop) as a byte stream. */
  openSocket(): Promise<Duplex>;
  /** The TLS certificate and key the native client sees (it talks TLS to this front only). */
  cert: string;
  key: string;
  /** Where the native client connects; default 127.0.0.1 and a free port. */
  host?: string;
  port?: number;
  log?: (msg: string, err?: unknown) => void;
}

export interface LocalFront {
  /** host:port for `xfreerdp /v:` or mstsc. */
  address: string;
  close(): Promise<void>;
}

/**
 * The native-client path without a server-side RDP front: a local port for
 * xfreerdp or mstsc that speaks RDCleanPath to the gateway, like the browser
 * does. It takes the client's X.224 request, offers TLS only (the gateway
 * holds the Windows credential; CredSSP with the front's key would not bind
 * to the desktop), answers with the desktop's confirm, ends the client's TLS
 * locally and relays plaintext RDP over the WebSocket.
 */
export async function startLocalFront(o: LocalFrontOptions): Promise<LocalFront> {
  const secureContext = tls.createSecureContext({ cert: o.cert, key: o.key, minVersion: 'TLSv1.2' });
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    sockets.add(client);
    client.on('close', () => sockets.delete(client));
    client.on('error', (err) => o.log?.('native client connection failed', err));
    serve(client).catch((err: unknown) => {
      o.log?.('desktop connection failed', err);
      client.destroy();
    });
  });

  async function serve(client: net.Socket): Promise<void> {
    const cr = decodeConnectionRequest(
      await readFrame(client, (b) => readTpkt(b)?.length, 'X.224 request', HANDSHAKE_MS),
    );
    const ws = await o.openSocket();
    ws.on('error', (err) => o.log?.('gateway WebSocket failed', err));
    const x224 = encodeConnectionRequest({
      ...cr,
      negotiation: { flags: cr.negotiation?.flags ?? 0, requestedProtocols: PROTOCOL.SSL },
    });
    ws.write(encodeRequest({ destination: o.desktop, proxyAuth: await o.token(), x224 }));
    const answer: RDCleanPathResponse = decodeResponse(
      await readFrame(ws, (b) => derMessageLength(b, MAX_RESPONSE), 'RDCleanPath response', HANDSHAKE_MS),
    );
    if (answer.type === 'error') {
      const e = answer.error;
      throw new Error(
        `the gateway refused the desktop (code ${e.errorCode}${e.httpStatusCode ? `, HTTP ${e.httpStatusCode}` : ''}${e.tlsAlertCode !== undefined ? `, TLS alert ${e.tlsAlertCode}` : ''}${e.wsaLastError ? `, socket error ${e.wsaLastError}` : ''})`,
      );
    }
    const confirm = decodeConnectionConfirm(answer.x224);
    if (confirm.type !== 'response' || confirm.selectedProtocol !== PROTOCOL.SSL) {
      throw new Error('the desktop did not select TLS security');
    }
    client.write(answer.x224);
    const secure = new tls.TLSSocket(client, { isServer: true, secureContext });
    secure.on('error', (err) => {
      o.log?.('native client TLS failed', err);
      ws.destroy();
    });
    secure.once('secure', () => {
      secure.pipe(ws).pipe(secure);
      client.resume();
    });
    ws.once('close', () => secure.destroy());
    secure.once('close', () => ws.destroy());
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port ?? 0, o.host ?? '127.0.0.1', () => resolve());
  });
  const a = server.address() as net.AddressInfo;
  return {
    address: `${a.address}:${a.port}`,
    close: () =>
      new Promise((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
