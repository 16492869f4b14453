import { createHash, timingSafeEqual } from 'node:crypto';
import * as http from 'node:http';
import * as https from 'node:https';
import type { AddressInfo } from 'node:net';

/**
 * Whether a signature or secret a tool sent equals the expected one, in
 * constant time whatever the lengths (both are compared as SHA-256
 * digests, so neither the content nor the length of the expected one
 * leaks). Every plugin's callback check ends here.
 */
export function secretMatches(got: unknown, want: string): boolean {
  if (typeof got !== 'string') return false;
  const d = (s: string) => createHash('sha256').update(s).digest();
  return timingSafeEqual(d(got), d(want));
}

/** Callback bodies are small (a review); anything larger is cut off. */
const MAX_CALLBACK_BYTES = 64 * 1024;

export interface CallbackServer {
  port: number;
  close(): Promise<void>;
}

export interface CallbackReply {
  status: number;
  body: string;
  contentType: string;
}

export const reply = (status: number, body: unknown): CallbackReply => ({
  status,
  body: JSON.stringify(body),
  contentType: 'application/json',
});

/**
 * The plugins' callback listener: POST `path` only, the body read whole
 * (bounded) and handed to `handle` with lower-case single-valued headers;
 * the handler checks the tool's signature before anything else.
 */
export async function listenCallbacks(
  listen: string,
  path: string,
  handle: (
    body: string,
    headers: Record<string, string | undefined>,
    remote: string,
  ) => Promise<CallbackReply>,
): Promise<CallbackServer> {
  const server = http.createServer((req, res) => {
    const send = (r: CallbackReply) => res.writeHead(r.status, { 'content-type': r.contentType }).end(r.body);
    if (req.method !== 'POST' || req.url !== path) return send(reply(404, { message: `POST ${path}` }));
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_CALLBACK_BYTES) req.destroy();
      else chunks.push(c);
    });
    req.on('error', () => res.destroy());
    req.on('end', () => {
      const headers: Record<string, string | undefined> = {};
      for (const [k, v] of Object.entries(req.headers)) headers[k] = typeof v === 'string' ? v : undefined;
      handle(Buffer.concat(chunks).toString('utf8'), headers, req.socket.remoteAddress ?? '')
        .then(send)
        .catch((e: unknown) => send(reply(500, { message: (e as Error).message })));
    });
  });
  const i = listen.lastIndexOf(':');
  const host = listen.slice(0, i).replace(/^\[|\]$/g, '') || '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(Number(listen.slice(i + 1)), host, resolve);
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

/** POSTs `body` (JSON); resolves with the answer's body on 2xx, rejects otherwise. */
export function post(url: string, body: string, headers: Record<string, string>): Promise<string> {
  return call('POST', url, headers, body);
}

/**
 * One HTTP call to a tool's API (http or https by the URL); resolves with
 * the answer's body on 2xx and rejects otherwise (the watcher then tries the
 * change again after reconnecting), within 10 s.
 */
export function call(
  method: 'GET' | 'POST' | 'PUT',
  url: string,
  headers: Record<string, string>,
  body?: string,
): Promise<string> {
  const u = new URL(url);
  const lib = u.protocol === 'https:' ? https : http;
  return new Promise((resolve, reject) => {
    const req = lib.request(
      u,
      {
        method,
        headers: {
          ...(body === undefined
            ? {}
            : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }),
          ...headers,
        },
        timeout: 10_000,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          (res.statusCode ?? 0) >= 200 && (res.statusCode ?? 0) < 300
            ? resolve(Buffer.concat(chunks).toString('utf8'))
            : reject(new Error(`${u.host} answered HTTP ${res.statusCode} to ${method} ${u.pathname}`)),
        );
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${u.host} did not answer in 10 s`)));
    req.on('error', reject);
    req.end(body);
  });
}
