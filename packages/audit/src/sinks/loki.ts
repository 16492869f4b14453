import { type ExportItem, type ExportOptions, ExportSink, type Transport } from './export.js';
import { batchOutcome, type HttpTarget, request } from './http.js';
import { snappyCompress } from './snappy.js';

export interface LokiSinkOptions extends Omit<ExportOptions, 'name'>, HttpTarget {
  name?: string;
  /** `protobuf` (snappy-compressed PushRequest, what Promtail sends; default) or `json`. */
  encoding?: 'protobuf' | 'json';
  /** Extra static labels on every stream (e.g. `{ env: 'prod' }`); keep them few and fixed. */
  labels?: Record<string, string>;
  /** Sent as X-Scope-OrgID (multi-tenant Loki). */
  tenant?: string | undefined;
}

const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/**
 * The labels of an event's stream: `source`, `cluster`, `type` and
 * `severity` (the code's last letter: I, W, E), plus the configured static
 * ones. Never the user, session id, address or server: Loki keeps one
 * stream (index entries, an open chunk in every ingester) per distinct label
 * set, so an unbounded label value makes a stream per user or session and
 * degrades the whole Loki. Those fields stay in the line, where LogQL's
 * `| json | user="alice"` finds them.
 */
export function lokiLabels(e: ExportItem['event'], extra: Record<string, string>): Record<string, string> {
  return {
    ...extra,
    source: 'gatehouse',
    cluster: e.cluster,
    type: e.type,
    severity: e.code.slice(-1),
  };
}

/** `{a="x", b="y"}`, the label string PushRequest carries (Prometheus syntax, sorted). */
function labelString(labels: Record<string, string>): string {
  const parts = Object.keys(labels)
    .sort()
    .map((k) => `${k}=${JSON.stringify(labels[k])}`);
  return `{${parts.join(', ')}}`;
}

// --- protobuf: the three messages of logproto.PushRequest, written by hand (a few lines; no codegen) ---

/** A varint (non-negative, below 2^53). */
function varint(n: number): Buffer {
  const out: number[] = [];
  while (n >= 0x80) {
    out.push((n % 0x80) | 0x80);
    n = Math.floor(n / 0x80);
  }
  out.push(n);
  return Buffer.from(out);
}

/** A length-delimited field: tag, length, payload. */
function lenField(no: number, payload: Buffer, out: Buffer[]): void {
  out.push(varint((no << 3) | 2), varint(payload.length), payload);
}

function sizeOf(parts: Buffer[]): number {
  let n = 0;
  for (const p of parts) n += p.length;
  return n;
}

/**
 * PushRequest { repeated StreamAdapter streams = 1 }
 * StreamAdapter { string labels = 1; repeated EntryAdapter entries = 2 }
 * EntryAdapter { google.protobuf.Timestamp timestamp = 1; string line = 2 }
 * Timestamp { int64 seconds = 1; int32 nanos = 2 }
 */
export function encodePushRequest(
  streams: { labels: string; entries: { ms: number; line: string }[] }[],
): Buffer {
  const out: Buffer[] = [];
  for (const s of streams) {
    const stream: Buffer[] = [];
    lenField(1, Buffer.from(s.labels), stream);
    for (const entry of s.entries) {
      const seconds = Math.floor(entry.ms / 1000);
      const nanos = (entry.ms - seconds * 1000) * 1_000_000;
      // Default (zero) values are omitted, as protobuf encoders do.
      const ts = Buffer.concat([
        ...(seconds !== 0 ? [varint(1 << 3), varint(seconds)] : []),
        ...(nanos !== 0 ? [varint(2 << 3), varint(nanos)] : []),
      ]);
      const e: Buffer[] = [];
      lenField(1, ts, e);
      lenField(2, Buffer.from(entry.line), e);
      lenField(2, Buffer.concat(e, sizeOf(e)), stream);
    }
    lenField(1, Buffer.concat(stream, sizeOf(stream)), out);
  }
  return Buffer.concat(out, sizeOf(out));
}

class LokiTransport implements Transport {
  readonly #target: HttpTarget;
  readonly #encoding: 'protobuf' | 'json';
  readonly #labels: Record<string, string>;
  readonly #tenant: Record<string, string>;

  constructor(opts: LokiSinkOptions) {
    this.#target = opts;
    this.#encoding = opts.encoding ?? 'protobuf';
    this.#labels = opts.labels ?? {};
    for (const k of Object.keys(this.#labels)) {
      if (!LABEL_NAME.test(k))
        throw new TypeError(`loki audit sink: label name ${JSON.stringify(k)} must match ${LABEL_NAME}`);
    }
    this.#tenant = opts.tenant ? { 'x-scope-orgid': opts.tenant } : {};
  }

  async send(items: ExportItem[], signal: AbortSignal) {
    // Group by stream, keeping each stream's entries in emit order.
    const streams = new Map<string, { labels: Record<string, string>; items: ExportItem[] }>();
    for (const i of items) {
      const labels = lokiLabels(i.event, this.#labels);
      const key = labelString(labels);
      const s = streams.get(key);
      if (s) s.items.push(i);
      else streams.set(key, { labels, items: [i] });
    }
    let body: Buffer | string;
    let type: string;
    if (this.#encoding === 'json') {
      type = 'application/json';
      body = JSON.stringify({
        streams: [...streams.values()].map((s) => ({
          stream: s.labels,
          values: s.items.map((i) => [`${Date.parse(i.event.time)}000000`, i.json]),
        })),
      });
    } else {
      type = 'application/x-protobuf';
      body = snappyCompress(
        encodePushRequest(
          [...streams.entries()].map(([labels, s]) => ({
            labels,
            entries: s.items.map((i) => ({ ms: Date.parse(i.event.time), line: i.json })),
          })),
        ),
      );
    }
    const res = await request(
      this.#target,
      'POST',
      'loki/api/v1/push',
      body,
      {
        'content-type': type,
        ...this.#tenant,
      },
      signal,
    );
    return batchOutcome(res, items.length, 'Loki push');
  }
}

/** Loki's push API (`/loki/api/v1/push`), protobuf+snappy or JSON. */
export function lokiSink(opts: LokiSinkOptions): ExportSink {
  return new ExportSink('loki', new LokiTransport(opts), { ...opts, name: opts.name ?? 'loki' });
}
