/**
 * The kubelet's side of `kubectl port-forward` for the fixture API server.
 *
 * kubectl 1.32 speaks SPDY/3.1 with the `portforward.k8s.io` stream protocol
 * (client-go tools/portforward): per forwarded TCP connection it opens an
 * `error` stream (which it half-closes at once and reads to the end) and a
 * `data` stream, both with the headers `streamtype`, `port` and `requestid`.
 * The SPDY connection comes either from a plain HTTP upgrade (`Upgrade:
 * SPDY/3.1`, `X-Stream-Protocol-Version: portforward.k8s.io`, POST) or, by
 * default since kubectl 1.31 (KUBECTL_PORT_FORWARD_WEBSOCKETS), tunneled in a
 * WebSocket (GET, subprotocol `SPDY/3.1+portforward.k8s.io`) whose binary
 * messages carry the SPDY byte stream; kube-apiserver relays that tunnel to
 * the kubelet's SPDY server.
 */
import type { IncomingMessage } from 'node:http';
import { createRequire } from 'node:module';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import { createWebSocketStream, WebSocketServer } from 'ws';

/** The stream protocol kubectl asks for (client-go PortForwardProtocolV1Name). */
export const PORTFORWARD_PROTOCOL = 'portforward.k8s.io';
/** The WebSocket subprotocol of the tunneled variant (apimachinery WebsocketsSPDYTunnelingPrefix + protocol). */
export const PORTFORWARD_TUNNEL_PROTOCOL = `SPDY/3.1+${PORTFORWARD_PROTOCOL}`;

/** The few parts of spdy-transport (CommonJS, untyped) the fixture uses. */
interface SpdyWindowSide {
  on(event: 'drain', listener: () => void): void;
  update(delta: number): void;
  getDelta(): number;
}
export interface SpdyStream extends Duplex {
  headers: Record<string, string>;
  _spdyState: { window: { send: SpdyWindowSide } };
  respond(status: number, headers: Record<string, string>): void;
}
interface SpdyParser {
  parseKVs(buf: unknown, cb: (err: Error | null, headers?: Record<string, string>) => void): void;
}
export interface SpdyConnection {
  _spdyState: { parser: SpdyParser };
  on(event: 'stream', listener: (s: SpdyStream) => void): this;
  on(event: 'error' | 'close', listener: (err?: Error) => void): this;
}
const spdy = createRequire(import.meta.url)('spdy-transport') as {
  connection: { create(socket: Duplex, opts: { protocol: 'spdy'; isServer: true }): SpdyConnection };
};

export interface PortForwardTarget {
  pod: string;
  namespace: string;
  uid: string;
  /** The pod's listening ports: container port -> loopback port that serves it here. */
  ports: Record<number, number>;
}

/** Why an upgrade was refused, for the caller's Status answer. */
export interface PortForwardRefusal {
  code: number;
  reason: string;
  message: string;
}

/** Takes over authorized port-forward upgrades, in either of kubectl's protocols. */
export class PortForwardServer {
  // ws refuses a subprotocol with "/" (not an RFC 7230 token; gorilla/websocket in kube-apiserver
  // accepts it), so upgrade() hands ws a placeholder and the answer carries the real name.
  static readonly #PLACEHOLDER = 'fixture-spdy-tunnel';
  readonly #wss = new WebSocketServer({
    noServer: true,
    handleProtocols: (protocols) =>
      protocols.has(PortForwardServer.#PLACEHOLDER) ? PORTFORWARD_TUNNEL_PROTOCOL : false,
  });
  /** Live port-forward connections (SPDY sockets or tunnel streams). */
  readonly #live = new Set<Duplex>();

  /** Serves the upgrade, or returns why not (the socket is then still the caller's). */
  upgrade(
    req: IncomingMessage,
    socket: Duplex,
    head: Buffer,
    target: PortForwardTarget,
  ): PortForwardRefusal | undefined {
    const serve = (s: Duplex) => {
      this.#live.add(s);
      s.once('close', () => this.#live.delete(s));
      servePortForward(s, target);
    };
    if (String(req.headers.upgrade).toLowerCase() === 'websocket') {
      const offered = String(req.headers['sec-websocket-protocol'] ?? '')
        .split(',')
        .map((x) => x.trim());
      if (!offered.includes(PORTFORWARD_TUNNEL_PROTOCOL)) {
        return {
          code: 400,
          reason: 'BadRequest',
          message: `fixture: port-forward over WebSocket needs the subprotocol ${PORTFORWARD_TUNNEL_PROTOCOL}`,
        };
      }
      req.headers['sec-websocket-protocol'] = PortForwardServer.#PLACEHOLDER;
      this.#wss.handleUpgrade(req, socket, head, (ws) => serve(createWebSocketStream(ws)));
      return undefined;
    }
    // The kubelet's SPDY handshake (apimachinery httpstream.Handshake): the client names the stream
    // protocols it speaks in X-Stream-Protocol-Version, the server answers with the one it picked.
    const offered = (req.headersDistinct['x-stream-protocol-version'] ?? []).flatMap((v) =>
      v.split(',').map((x) => x.trim()),
    );
    if (!offered.includes(PORTFORWARD_PROTOCOL)) {
      return {
        code: 403,
        reason: 'Forbidden',
        message:
          `unable to upgrade: unable to negotiate protocol: client supports [${offered.join(' ')}], ` +
          `server supports [${PORTFORWARD_PROTOCOL}]`,
      };
    }
    socket.write(
      'HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n' +
        `X-Stream-Protocol-Version: ${PORTFORWARD_PROTOCOL}\r\n\r\n`,
    );
    if (head.length > 0) socket.unshift(head);
    serve(socket);
    return undefined;
  }

  close(): void {
    for (const c of this.#wss.clients) c.terminate();
    for (const s of this.#live) s.destroy();
  }
}

/**
 * Serves port-forward streams on `socket` (the upgraded TLS socket, or a
 * Duplex over the tunnel WebSocket) until it closes.
 */
function servePortForward(socket: Duplex, target: PortForwardTarget): void {
  const conn = spdyServer(socket);
  const pending = new Map<string, { error?: SpdyStream; data?: SpdyStream }>();
  conn.on('stream', (stream) => {
    const type = stream.headers.streamtype;
    const id = stream.headers.requestid ?? '';
    if (type !== 'error' && type !== 'data') {
      stream.destroy();
      return;
    }
    const pair = pending.get(id) ?? {};
    pair[type] = stream;
    pending.set(id, pair);
    if (pair.error && pair.data) {
      pending.delete(id);
      forward(target, Number(stream.headers.port), pair.error, pair.data);
    }
  });
}

/**
 * The kubelet's SPDY server on an upgraded socket, as Kubernetes' streams
 * need it: each stream the client opens is answered (SYN_REPLY) and emitted
 * as 'stream' with its headers.
 */
export function spdyServer(socket: Duplex): SpdyConnection {
  const conn = spdy.connection.create(socket, { protocol: 'spdy', isServer: true });
  // spdy-transport implements HTTP over SPDY: its parser refuses a SYN_STREAM without `:method` and
  // `:path`. Kubernetes' streams carry only their own headers, so the parser gets placeholders
  // (nothing here reads them).
  const parser = conn._spdyState.parser;
  const parseKVs = parser.parseKVs.bind(parser);
  parser.parseKVs = (buf, cb) =>
    parseKVs(buf, (err, headers) => cb(err, err ? headers : { ':method': 'POST', ':path': '/', ...headers }));
  // A peer that goes away mid-stream is normal here; the streams' own handlers clean up.
  conn.on('error', () => socket.destroy());
  conn.on('stream', (stream) => {
    // kubectl resets each data stream once it is done with it: spdy-transport reports that as 'error'.
    stream.on('error', () => stream.destroy());
    // The SPDY library of kubectl and the kubelet (moby/spdystream) does no flow control: it never
    // sends WINDOW_UPDATE. spdy-transport would stall a stream once the initial 64 KiB window is
    // used up, so the fixture hands the window back itself whenever it runs low.
    const send = stream._spdyState.window.send;
    send.on('drain', () => send.update(send.getDelta()));
    // The SYN_REPLY: kubectl waits for it before it creates the next stream.
    stream.respond(200, {});
  });
  return conn;
}

/** Like the kubelet: copies between the data stream and the pod's port; failures go to the error stream. */
function forward(target: PortForwardTarget, port: number, error: SpdyStream, data: SpdyStream): void {
  // kubectl half-closed the error stream; its readable side must still be drained to see that.
  error.resume();
  const fail = (reason: string) => {
    if (error.writableEnded) return;
    error.end(
      `error forwarding port ${port} to pod ${target.pod}, uid ${target.uid}: ` +
        `failed to connect to localhost:${port} inside namespace "${target.namespace}": ${reason}`,
    );
    // Closed, not reset: kubectl reads the error stream once the data stream has ended.
    if (!data.writableEnded) data.end();
  };
  const local = target.ports[port];
  if (local === undefined) {
    fail(`dial tcp4 127.0.0.1:${port}: connect: connection refused`);
    return;
  }
  const tcp = net.connect(local, '127.0.0.1');
  tcp.on('error', (err) => fail(err.message));
  data.pipe(tcp);
  tcp.pipe(data);
  // The kubelet closes the error stream (empty: no error) once the copy is done.
  tcp.on('close', () => {
    if (!error.writableEnded) error.end();
  });
  data.on('close', () => tcp.destroy());
}
