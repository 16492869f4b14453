import { type Server, STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';

/**
 * Serves sockets someone else accepted on an `http.Server` that never
 * listens itself (the gateway's API gets TLS sockets from the listener, the
 * Kubernetes adapter gets them by SNI), with a deadline on each request's
 * headers.
 *
 * node:http enforces `headersTimeout` only on servers that listen(): its
 * check starts on 'listening'. Without this, a client that sends its
 * headers slowly, or none at all after TLS, would hold its connection (and a
 * file descriptor) for ever; the listener's handshake limits stop counting
 * it once TLS is done.
 *
 * The first request's headers must arrive within `headersTimeoutMs` of the
 * connection. After an answer, an idle connection is node's to close
 * (`keepAliveTimeout`); one still open `headersTimeoutMs` after that is
 * trickling a request and gets the same deadline. A missed deadline is a
 * `clientError` (code ERR_HTTP_REQUEST_TIMEOUT) like node's own, so the
 * server's handler answers 408 the way it answers other unparsable requests.
 */
export class HttpConnections {
  readonly #server: Server;
  readonly #headersTimeoutMs: number;
  readonly #state = new WeakMap<Duplex, { inflight: number; timer?: NodeJS.Timeout | undefined }>();

  constructor(server: Server, opts: { headersTimeoutMs: number }) {
    this.#server = server;
    this.#headersTimeoutMs = opts.headersTimeoutMs;
    server.on('request', (req, res) => {
      const st = this.#state.get(req.socket);
      if (!st) return;
      st.inflight++;
      this.#disarm(st);
      res.once('close', () => {
        st.inflight--;
        if (st.inflight === 0 && !req.socket.destroyed) {
          this.#arm(req.socket, st, server.keepAliveTimeout + this.#headersTimeoutMs);
        }
      });
    });
    server.on('upgrade', (req) => {
      const st = this.#state.get(req.socket);
      if (st) this.#disarm(st);
      // The socket belongs to the upgrade's handler now.
      this.#state.delete(req.socket);
    });
  }

  /** Hands `socket` to the server, its first request's headers due within the deadline. */
  serve(socket: Duplex): void {
    const st: { inflight: number; timer?: NodeJS.Timeout } = { inflight: 0 };
    this.#state.set(socket, st);
    this.#arm(socket, st, this.#headersTimeoutMs);
    socket.once('close', () => this.#disarm(st));
    this.#server.emit('connection', socket);
  }

  #arm(socket: Duplex, st: { inflight: number; timer?: NodeJS.Timeout | undefined }, ms: number): void {
    this.#disarm(st);
    st.timer = setTimeout(() => {
      st.timer = undefined;
      if (socket.destroyed || st.inflight > 0) return;
      const err = Object.assign(
        new Error(`the request headers did not arrive within ${this.#headersTimeoutMs} ms`),
        { code: 'ERR_HTTP_REQUEST_TIMEOUT' },
      );
      if (!this.#server.emit('clientError', err, socket)) socket.destroy();
    }, ms);
    st.timer.unref();
  }

  #disarm(st: { timer?: NodeJS.Timeout | undefined }): void {
    clearTimeout(st.timer);
    st.timer = undefined;
  }
}

/** How long a refused connection may take to read our answer before it is cut. */
const ANSWER_GRACE_MS = 5_000;
const answered = new WeakSet<Duplex>();

/**
 * The status for a request node:http refused before it was one (a
 * 'clientError'): 431 for oversized headers, 408 for a missed deadline,
 * else 400, as node itself answers when no handler is installed.
 */
export function clientErrorStatus(err: NodeJS.ErrnoException): 400 | 408 | 431 {
  if (err.code === 'HPE_HEADER_OVERFLOW') return 431;
  if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') return 408;
  return 400;
}

/**
 * Whether a 'clientError' only says the client went away (a reset, or its
 * FIN in the middle of a request): nothing to answer, and nothing refused;
 * a handler reading a body reports its own request.
 */
export function clientLeft(err: NodeJS.ErrnoException): boolean {
  return err.code === 'ECONNRESET' || err.code === 'EPIPE' || err.code === 'HPE_INVALID_EOF_STATE';
}

/** What went wrong with a request node:http refused, for the client and the audit log. */
export function unparsedRequestError(status: number, err: Error): string {
  if (status === 431) return 'request headers too large';
  if (status === 408) return err.message;
  return `malformed HTTP request (${(err as NodeJS.ErrnoException).code ?? err.message})`;
}

/** A socket's peer address, IPv4-mapped IPv6 written as plain IPv4. */
export function socketRemoteAddress(socket: Duplex): string {
  const a = (socket as Duplex & { remoteAddress?: string }).remoteAddress ?? '';
  return a.startsWith('::ffff:') ? a.slice(7) : a;
}

/**
 * Answers a 'clientError' once per connection and closes it. The parser
 * reports every later chunk of a broken stream again; answering (or
 * destroying) then would reset the connection under the first answer, and a
 * reset can discard it before the client reads it. The socket keeps reading
 * (and dropping) what the client still sends until it closes, for at most a
 * few seconds. Returns false for the repeats (nothing to audit again).
 */
export function answerClientError(
  socket: Duplex,
  status: number,
  answer: { contentType: string; body: string } = { contentType: 'text/plain; charset=utf-8', body: '' },
): boolean {
  if (answered.has(socket)) return false;
  answered.add(socket);
  if (!socket.writable) {
    socket.destroy();
    return true;
  }
  const head = [
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}`,
    `Content-Type: ${answer.contentType}`,
    `Content-Length: ${Buffer.byteLength(answer.body)}`,
    'Connection: close',
  ];
  socket.end(`${head.join('\r\n')}\r\n\r\n${answer.body}`);
  setTimeout(() => socket.destroy(), ANSWER_GRACE_MS).unref();
  return true;
}
