import { timingSafeEqual } from 'node:crypto';
import * as http from 'node:http';
import * as https from 'node:https';
import type { AddressInfo } from 'node:net';
import { WEBHOOK_SIGNATURE_HEADER, WEBHOOK_TIMESTAMP_HEADER, webhookSignature } from '@gatehouse/audit';
import type { AccessRequestView, AdminApi } from '@gatehouse/core';
import type { NotifyTarget, Posted } from './watcher.js';

/**
 * The generic signed webhook plugin. Outgoing: each new request and each
 * change is POSTed to `url` as `{event, request}` JSON, signed like the
 * audit webhook sink (`X-Gatehouse-Signature: sha256=HMAC(secret,
 * "<timestamp>.<body>")`, `X-Gatehouse-Timestamp`). Incoming: `POST
 * /callback` with `{request_id, verdict, reviewer, reason?}` signed the same
 * way with `callback_secret` reviews the request as the plugin's bot user;
 * a wrong or stale signature is refused (401) before anything is read into
 * a review.
 */
export interface WebhookPluginConfig {
  url: string;
  secret: string;
  callbackSecret: string;
  /** host:port for callbacks (127.0.0.1:0 picks a port). */
  listen: string;
}

/** Callbacks older (or newer) than this are refused: a captured one cannot be replayed later. */
const MAX_SKEW_S = 300;
const MAX_CALLBACK_BYTES = 16_384;

export function webhookTarget(cfg: Pick<WebhookPluginConfig, 'url' | 'secret'>): NotifyTarget {
  return {
    async notify(r: AccessRequestView, prev: Posted | undefined) {
      const body = JSON.stringify({
        event: prev ? 'access_request.updated' : 'access_request.created',
        request: r,
      });
      const ts = String(Math.floor(Date.now() / 1000));
      await post(cfg.url, body, {
        [WEBHOOK_TIMESTAMP_HEADER]: ts,
        [WEBHOOK_SIGNATURE_HEADER]: webhookSignature(cfg.secret, ts, body),
      });
      return undefined;
    },
  };
}

function post(url: string, body: string, headers: Record<string, string>): Promise<void> {
  const u = new URL(url);
  const lib = u.protocol === 'https:' ? https : http;
  return new Promise((resolve, reject) => {
    const req = lib.request(
      u,
      {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(body),
          ...headers,
        },
        timeout: 10_000,
      },
      (res) => {
        res.resume();
        res.on('end', () =>
          (res.statusCode ?? 0) >= 200 && (res.statusCode ?? 0) < 300
            ? resolve()
            : reject(new Error(`the webhook receiver answered HTTP ${res.statusCode}`)),
        );
      },
    );
    req.on('timeout', () => req.destroy(new Error('the webhook receiver did not answer in 10 s')));
    req.on('error', reject);
    req.end(body);
  });
}

/** Whether `sig` is the callback signature of `body` at `ts` (constant-time), and `ts` is recent. */
export function callbackSignatureValid(
  secret: string,
  ts: string | undefined,
  sig: string | undefined,
  body: string,
): boolean {
  if (!ts || !sig || !/^\d{1,12}$/.test(ts)) return false;
  if (Math.abs(Date.now() / 1000 - Number(ts)) > MAX_SKEW_S) return false;
  const want = Buffer.from(webhookSignature(secret, ts, body));
  const got = Buffer.from(sig);
  return got.length === want.length && timingSafeEqual(got, want);
}

/** The callback listener; reviews go through `api` (the bot user), where core decides. */
export async function startCallbackServer(
  cfg: Pick<WebhookPluginConfig, 'callbackSecret' | 'listen'>,
  api: () => { api: Pick<AdminApi, 'reviewAccessRequest'>; close(): void },
  log: (msg: string) => void,
): Promise<{ port: number; close(): Promise<void> }> {
  const server = http.createServer((req, res) => {
    const answer = (status: number, msg: string) =>
      res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify({ message: msg }));
    if (req.method !== 'POST' || req.url !== '/callback') return answer(404, 'POST /callback');
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_CALLBACK_BYTES) req.destroy();
      else chunks.push(c);
    });
    req.on('error', () => res.destroy());
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const ts = req.headers[WEBHOOK_TIMESTAMP_HEADER];
      const sig = req.headers[WEBHOOK_SIGNATURE_HEADER];
      if (!callbackSignatureValid(cfg.callbackSecret, str(ts), str(sig), body)) {
        log(`refused a callback from ${req.socket.remoteAddress}: bad or stale signature`);
        return answer(401, 'bad or stale signature');
      }
      let cb: { request_id?: unknown; verdict?: unknown; reviewer?: unknown; reason?: unknown };
      try {
        cb = JSON.parse(body) as typeof cb;
      } catch {
        return answer(400, 'the body is not JSON');
      }
      if (
        typeof cb.request_id !== 'string' ||
        (cb.verdict !== 'approve' && cb.verdict !== 'deny') ||
        typeof cb.reviewer !== 'string'
      ) {
        return answer(400, 'send {request_id, verdict: approve|deny, reviewer, reason?}');
      }
      const reason = `${cb.reviewer} via webhook${typeof cb.reason === 'string' && cb.reason ? `: ${cb.reason}` : ''}`;
      const c = api();
      c.api
        .reviewAccessRequest(cb.request_id, { verdict: cb.verdict, reason })
        .then((r) => answer(200, `request ${r.id} is ${r.state}`))
        .catch((e: { status?: number; message?: string }) =>
          answer(e.status ?? 502, e.message ?? 'review failed'),
        )
        .finally(() => c.close());
    });
  });
  const { host, port } = splitListen(cfg.listen);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, resolve);
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

function str(v: string | string[] | undefined): string | undefined {
  return typeof v === 'string' ? v : undefined;
}

function splitListen(listen: string): { host: string; port: number } {
  const i = listen.lastIndexOf(':');
  return {
    host: listen.slice(0, i).replace(/^\[|\]$/g, '') || '127.0.0.1',
    port: Number(listen.slice(i + 1)),
  };
}
