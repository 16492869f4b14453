import { WEBHOOK_SIGNATURE_HEADER, WEBHOOK_TIMESTAMP_HEADER, webhookSignature } from '@gatehouse/audit';
import type { AccessRequestView, AdminApi } from '@gatehouse/core';
import { type CallbackServer, listenCallbacks, post, reply, secretMatches } from './http.js';
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

/** Whether `sig` is the callback signature of `body` at `ts` (constant-time), and `ts` is recent. */
export function callbackSignatureValid(
  secret: string,
  ts: string | undefined,
  sig: string | undefined,
  body: string,
): boolean {
  if (!ts || !sig || !/^\d{1,12}$/.test(ts)) return false;
  if (Math.abs(Date.now() / 1000 - Number(ts)) > MAX_SKEW_S) return false;
  return secretMatches(sig, webhookSignature(secret, ts, body));
}

/** The callback listener; reviews go through `api` (the bot user), where core decides. */
export function startCallbackServer(
  cfg: Pick<WebhookPluginConfig, 'callbackSecret' | 'listen'>,
  api: () => { api: Pick<AdminApi, 'reviewAccessRequest'>; close(): void },
  log: (msg: string) => void,
): Promise<CallbackServer> {
  return listenCallbacks(cfg.listen, '/callback', async (body, headers, remote) => {
    if (
      !callbackSignatureValid(
        cfg.callbackSecret,
        headers[WEBHOOK_TIMESTAMP_HEADER],
        headers[WEBHOOK_SIGNATURE_HEADER],
        body,
      )
    ) {
      log(`refused a callback from ${remote}: bad or stale signature`);
      return reply(401, { message: 'bad or stale signature' });
    }
    let cb: { request_id?: unknown; verdict?: unknown; reviewer?: unknown; reason?: unknown };
    try {
      cb = JSON.parse(body) as typeof cb;
    } catch {
      return reply(400, { message: 'the body is not JSON' });
    }
    if (
      typeof cb.request_id !== 'string' ||
      (cb.verdict !== 'approve' && cb.verdict !== 'deny') ||
      typeof cb.reviewer !== 'string'
    ) {
      return reply(400, { message: 'send {request_id, verdict: approve|deny, reviewer, reason?}' });
    }
    const reason = `${cb.reviewer} via webhook${typeof cb.reason === 'string' && cb.reason ? `: ${cb.reason}` : ''}`;
    const c = api();
    try {
      const r = await c.api.reviewAccessRequest(cb.request_id, { verdict: cb.verdict, reason });
      return reply(200, { message: `request ${r.id} is ${r.state}` });
    } catch (e) {
      const ge = e as { status?: number; message?: string };
      return reply(ge.status ?? 502, { message: ge.message ?? 'review failed' });
    } finally {
      c.close();
    }
  });
}
