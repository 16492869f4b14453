import { type IncomingMessage, type ServerResponse, STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import type { AuditEmitter } from '@gatehouse/audit';
import { type ErrorCode, GatehouseError } from '../errors.js';

/** Handlers reading a body now (readJson): a missed body deadline fails their read instead of cutting the connection. */
const bodyReaders = new WeakMap<IncomingMessage, (err: Error) => void>();

/**
 * Reads a JSON body, refusing more than `limit` bytes before buffering them.
 * An oversized body is left unread (the stream paused, not destroyed): the
 * caller answers 413 with `Connection: close`, which the client can still
 * read, and the server closes the connection after that answer. A body that
 * misses its deadline (requestBodyDeadline) fails the same way with
 * GH_ERR_REQUEST_TIMEOUT (408).
 */
export async function readJson(req: IncomingMessage, limit: number): Promise<unknown> {
  const body = await readBody(req, limit);
  if (body.length === 0) return {};
  const type = String(req.headers['content-type'] ?? '');
  if (!type.includes('json')) {
    throw new GatehouseError('GH_ERR_BAD_REQUEST', 'request body must be JSON', {
      hint: 'send Content-Type: application/json',
    });
  }
  try {
    return JSON.parse(body.toString('utf8'));
  } catch (cause) {
    throw new GatehouseError('GH_ERR_BAD_REQUEST', 'request body is not valid JSON', { cause });
  }
}

/** An HTML form's body (application/x-www-form-urlencoded), as a browser POSTs it. */
export async function readForm(req: IncomingMessage, limit: number): Promise<URLSearchParams> {
  const body = await readBody(req, limit);
  const type = String(req.headers['content-type'] ?? '');
  if (body.length > 0 && !type.includes('application/x-www-form-urlencoded')) {
    throw new GatehouseError('GH_ERR_BAD_REQUEST', 'request body must be a form', {
      hint: 'send Content-Type: application/x-www-form-urlencoded',
    });
  }
  return new URLSearchParams(body.toString('utf8'));
}

async function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = Number(req.headers['content-length'] ?? '0');
  if (declared > limit) throw tooLarge(limit);
  // A connection that died before the handler got here has already said so
  // ('aborted', 'close'): waiting for those events again would wait for ever.
  if (req.destroyed && !req.complete) {
    throw new GatehouseError('GH_ERR_BAD_REQUEST', 'the connection failed before the request body ended');
  }
  return new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const done = (err?: Error) => {
      bodyReaders.delete(req);
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      req.off('close', onClose);
      if (err) {
        req.pause();
        reject(err);
      } else resolve(Buffer.concat(chunks));
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) done(tooLarge(limit));
      else chunks.push(chunk);
    };
    const onEnd = () => done();
    // The client resetting mid-body ('aborted') is its request failing, not ours.
    const onError = (err: Error) =>
      done(
        new GatehouseError('GH_ERR_BAD_REQUEST', 'the connection failed before the request body ended', {
          cause: err,
        }),
      );
    const onClose = () =>
      done(new GatehouseError('GH_ERR_BAD_REQUEST', 'the connection closed before the request body ended'));
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
    req.on('close', onClose);
    bodyReaders.set(req, done);
  });
}

function tooLarge(limit: number): GatehouseError {
  return new GatehouseError('GH_ERR_PAYLOAD_TOO_LARGE', `request body larger than ${limit} bytes`, {
    hint: 'send a smaller request (listener.max_body_bytes sets the limit)',
  });
}

const SECURITY_HEADERS = {
  'cache-control': 'no-store',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
  'content-security-policy': "default-src 'none'; frame-ancestors 'none'",
} as const;

export function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string | string[]> = {},
): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    ...SECURITY_HEADERS,
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
}

export function sendText(res: ServerResponse, status: number, text: string): void {
  res.writeHead(status, {
    ...SECURITY_HEADERS,
    'content-type': 'text/plain; charset=utf-8',
    'content-length': Buffer.byteLength(text),
  });
  res.end(text);
}

export function sendProblem(
  res: ServerResponse,
  err: GatehouseError,
  headers: Record<string, string> = {},
): void {
  res.writeHead(err.status, {
    ...SECURITY_HEADERS,
    'content-type': 'application/problem+json; charset=utf-8',
    ...headers,
  });
  res.end(JSON.stringify(err.toProblem()));
}

/**
 * A problem answer written straight to a socket (a refused WebSocket
 * upgrade, which has no ServerResponse); the connection closes after it.
 */
export function sendProblemOnSocket(socket: Duplex, err: GatehouseError): void {
  const body = JSON.stringify(err.toProblem());
  const head = [
    `HTTP/1.1 ${err.status} ${STATUS_CODES[err.status] ?? 'Error'}`,
    ...Object.entries(SECURITY_HEADERS).map(([k, v]) => `${k}: ${v}`),
    'content-type: application/problem+json; charset=utf-8',
    `content-length: ${Buffer.byteLength(body)}`,
    'connection: close',
  ];
  if (socket.writable) socket.end(`${head.join('\r\n')}\r\n\r\n${body}`);
  else socket.destroy();
}

export function parseCookies(header: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of (header ?? '').split(';')) {
    const i = part.indexOf('=');
    if (i > 0) out[part.slice(0, i).trim()] = decodeCookieValue(part.slice(i + 1).trim());
  }
  return out;
}

/**
 * Percent-decoded, or as sent when it is not valid percent-encoding: other
 * applications on the same host set cookies too, and one of theirs must not
 * make every request fail.
 */
function decodeCookieValue(v: string): string {
  try {
    return decodeURIComponent(v);
  } catch {
    return v;
  }
}

/** A route table entry: method + path with `:param` segments. */
export interface Route<C> {
  method: string;
  pattern: string;
  segments: string[];
  handler: (ctx: C, params: Record<string, string>) => Promise<void>;
}

export function compileRoute<C>(method: string, pattern: string, handler: Route<C>['handler']): Route<C> {
  return { method, pattern, segments: pattern.split('/').filter(Boolean), handler };
}

export function matchRoute<C>(
  routes: readonly Route<C>[],
  method: string,
  path: string,
): { route: Route<C>; params: Record<string, string> } | { allowed: string[] } | undefined {
  const parts = path.split('/').filter(Boolean);
  const allowed: string[] = [];
  for (const r of routes) {
    if (r.segments.length !== parts.length) continue;
    const params: Record<string, string> = {};
    let ok = true;
    for (let i = 0; i < parts.length; i++) {
      const seg = r.segments[i]!;
      if (seg.startsWith(':')) {
        try {
          params[seg.slice(1)] = decodeURIComponent(parts[i]!);
        } catch {
          // A malformed %-escape is a non-match, reported as 404 by the caller.
          ok = false;
          break;
        }
      } else if (seg !== parts[i]) {
        ok = false;
        break;
      }
    }
    if (!ok) continue;
    if (r.method === method) return { route: r, params };
    allowed.push(r.method);
  }
  return allowed.length > 0 ? { allowed } : undefined;
}

/** One request header's value (the first, if repeated). */
export function header(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/**
 * Where the listener puts the client's address on a socket it hands to the
 * HTTP server: the address a trusted PROXY header named, which the socket's
 * own remoteAddress (the load balancer) is not.
 */
export const CLIENT_ADDRESS: unique symbol = Symbol('gatehouse.client-address');

/**
 * The client's address (from a trusted PROXY header when there was one), IPv4-mapped
 * IPv6 written as plain IPv4. Logins are rate-limited, pinned and audited by it.
 */
export function remoteAddress(req: IncomingMessage): string {
  const a = (req.socket as { [CLIENT_ADDRESS]?: string })[CLIENT_ADDRESS] ?? req.socket.remoteAddress;
  if (!a) return '';
  return a.startsWith('::ffff:') ? a.slice(7) : a;
}

/**
 * Refusals of malformed, oversized, cross-site or unauthenticated requests:
 * audited as http.reject. (Role decisions are audited as access.denied by
 * the Authorizer; a 404 is not an event.)
 */
const HTTP_REJECT_CODES: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  'GH_ERR_PAYLOAD_TOO_LARGE',
  'GH_ERR_REQUEST_TIMEOUT',
  'GH_ERR_BAD_REQUEST',
  'GH_ERR_CSRF',
  'GH_ERR_UNAUTHENTICATED',
]);

/** Audits `err` as http.reject when it is one of those refusals; an audit failure is logged. */
export async function auditHttpReject(
  audit: AuditEmitter,
  err: GatehouseError,
  r: { method: string; path: string; remoteAddr: string },
  log: (level: 'error', msg: string, err?: unknown) => void,
): Promise<void> {
  if (!HTTP_REJECT_CODES.has(err.code)) return;
  await audit
    .emit({
      type: 'http.reject',
      method: r.method,
      path: r.path,
      status: err.status,
      error: err.message,
      addr: { remote: r.remoteAddr },
    })
    .catch((e: unknown) => log('error', 'audit of an HTTP rejection failed', e));
}

/**
 * Ends a request whose body has not fully arrived within `ms`
 * (listener.request_timeout): a handler reading it answers 408 and the
 * connection closes; with nobody reading, the connection is cut. The HTTP
 * server's own requestTimeout is off because an upload may take longer than
 * any fixed limit; every other request gets this instead.
 */
export function requestBodyDeadline(req: IncomingMessage, res: ServerResponse, ms: number): void {
  const t = setTimeout(() => {
    if (req.complete) return;
    const reader = bodyReaders.get(req);
    if (!reader) {
      req.socket.destroy();
      return;
    }
    reader(
      new GatehouseError('GH_ERR_REQUEST_TIMEOUT', `the request body did not arrive within ${ms} ms`, {
        hint: 'send the whole request at once (listener.request_timeout sets the limit)',
      }),
    );
  }, ms);
  t.unref();
  res.once('close', () => clearTimeout(t));
}
