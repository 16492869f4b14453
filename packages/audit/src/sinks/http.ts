import http from 'node:http';
import https from 'node:https';
import type { SendResult } from './export.js';

/** How the HTTP sinks reach their receiver. */
export interface HttpTarget {
  /** http:// or https:// URL. */
  url: string;
  /** PEM of the CA that signed the receiver's certificate (https); default: the system's CAs. */
  ca?: string | undefined;
  /** Extra request headers (e.g. a tenant header for Loki, Authorization). */
  headers?: Record<string, string> | undefined;
  /** Per request. Default 10 s: a receiver that hangs counts as down. */
  timeoutMs?: number | undefined;
}

export interface HttpResponse {
  status: number;
  body: string;
}

/** Thrown for what is worth retrying: no connection, a timeout, 408, 429 or 5xx. */
export class RetryableHttpError extends Error {
  override name = 'RetryableHttpError';
}

/**
 * One request with node's own http/https (no client library: the sinks send
 * one kind of POST). Resolves with any HTTP answer; rejects only when there
 * was none (connection refused, TLS failure, timeout).
 */
export function request(
  target: HttpTarget,
  method: string,
  path: string,
  body: Buffer | string | undefined,
  headers: Record<string, string>,
  signal?: AbortSignal,
): Promise<HttpResponse> {
  const url = resolveUrl(target.url, path);
  const mod = url.protocol === 'https:' ? https : http;
  return new Promise((resolve, reject) => {
    const req = mod.request(
      url,
      {
        method,
        headers: {
          ...target.headers,
          ...headers,
          ...(body === undefined ? {} : { 'content-length': String(Buffer.byteLength(body)) }),
        },
        ...(url.protocol === 'https:' && target.ca ? { ca: target.ca } : {}),
        // Each sink sends one request at a time; a kept-alive socket saves the handshakes.
        agent: url.protocol === 'https:' ? httpsAgent : httpAgent,
        ...(signal ? { signal } : {}),
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }),
        );
        res.on('error', reject);
      },
    );
    req.setTimeout(target.timeoutMs ?? 10_000, () =>
      req.destroy(
        new RetryableHttpError(`no answer from ${url.origin} within ${target.timeoutMs ?? 10_000} ms`),
      ),
    );
    req.on('error', reject);
    req.end(body);
  });
}

const urls = new Map<string, URL>();

/** `path` under `base`, parsed once per pair (a sink sends to one or two URLs, many times). */
function resolveUrl(base: string, path: string): URL {
  const key = `${base}\n${path}`;
  let url = urls.get(key);
  if (!url) {
    url = new URL(path, base.endsWith('/') ? base : `${base}/`);
    if (urls.size > 1000) urls.clear();
    urls.set(key, url);
  }
  return url;
}

const httpAgent = new http.Agent({ keepAlive: true, maxSockets: 4 });
const httpsAgent = new https.Agent({ keepAlive: true, maxSockets: 4 });

/** Statuses that say "try again later" rather than "this is wrong". */
export function retryableStatus(status: number): boolean {
  return status === 408 || status === 429 || status >= 500;
}

/**
 * The usual reading of a whole-batch answer: 2xx delivered, retryable
 * statuses thrown (the batch is sent again after a backoff), anything else
 * rejects every item (a receiver that says 400 will say it again).
 */
export function batchOutcome(res: HttpResponse, count: number, what: string): SendResult | undefined {
  if (res.status >= 200 && res.status < 300) return undefined;
  const reason = `${what} answered ${res.status}: ${res.body.slice(0, 300)}`;
  if (retryableStatus(res.status)) throw new RetryableHttpError(reason);
  return {
    rejected: Array.from({ length: count }, (_, index) => ({ index, status: String(res.status), reason })),
  };
}
