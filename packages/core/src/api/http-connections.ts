import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';

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
