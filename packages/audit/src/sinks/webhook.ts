import { createHmac } from 'node:crypto';
import { type ExportItem, type ExportOptions, ExportSink, type Transport } from './export.js';
import { batchOutcome, type HttpTarget, request } from './http.js';

export interface WebhookSinkOptions extends Omit<ExportOptions, 'name'>, HttpTarget {
  name?: string;
  /** HMAC-SHA256 key; the receiver recomputes the signature with it. */
  secret: string;
}

export const WEBHOOK_SIGNATURE_HEADER = 'x-gatehouse-signature';
export const WEBHOOK_TIMESTAMP_HEADER = 'x-gatehouse-timestamp';

/**
 * The signature a receiver checks: hex HMAC-SHA256 over `<timestamp>.<body>`,
 * sent as `sha256=<hex>`. The timestamp (Unix seconds, its own header) is
 * inside the MAC so a captured request cannot be replayed later with a fresh
 * one; receivers should refuse timestamps older than a few minutes, and
 * deduplicate events by `id` (a retried batch is sent again, newly signed).
 */
export function webhookSignature(secret: string, timestamp: string, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(`${timestamp}.`).update(body).digest('hex')}`;
}

class WebhookTransport implements Transport {
  readonly #target: HttpTarget;
  readonly #secret: string;
  readonly #path: string;

  constructor(opts: WebhookSinkOptions) {
    this.#target = opts;
    this.#secret = opts.secret;
    this.#path = new URL(opts.url).pathname + new URL(opts.url).search;
  }

  async send(items: ExportItem[], signal: AbortSignal) {
    // The events verbatim as the log wrote them (no re-serialization): {"events":[...]}.
    const body = `{"events":[${items.map((i) => i.json).join(',')}]}`;
    const ts = String(Math.floor(Date.now() / 1000));
    const res = await request(
      this.#target,
      'POST',
      this.#path,
      body,
      {
        'content-type': 'application/json',
        [WEBHOOK_TIMESTAMP_HEADER]: ts,
        [WEBHOOK_SIGNATURE_HEADER]: webhookSignature(this.#secret, ts, body),
      },
      signal,
    );
    return batchOutcome(res, items.length, 'the webhook');
  }
}

/** HTTP POST of JSON batches, HMAC-signed (what Splunk HEC-style and Datadog-style intakes accept behind a small adapter). */
export function webhookSink(opts: WebhookSinkOptions): ExportSink {
  if (!opts.secret) throw new TypeError('webhook audit sink: secret is required (it signs every batch)');
  return new ExportSink('webhook', new WebhookTransport(opts), { ...opts, name: opts.name ?? 'webhook' });
}
