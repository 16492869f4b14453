import {
  type ExportItem,
  type ExportOptions,
  ExportSink,
  type SendResult,
  type Transport,
} from './export.js';
import { batchOutcome, type HttpTarget, RetryableHttpError, request, retryableStatus } from './http.js';

export interface ElasticsearchSinkOptions extends Omit<ExportOptions, 'name'>, HttpTarget {
  name?: string;
  /** Index name prefix: events go to `<index>-YYYY.MM.DD` (UTC day of the event). Default `gatehouse-audit`. */
  index?: string;
  username?: string | undefined;
  password?: string | undefined;
  /** An Elasticsearch API key (the base64 `id:key` form), sent as `Authorization: ApiKey …`. */
  apiKey?: string | undefined;
}

const INDEX_NAME = /^[a-z0-9][a-z0-9._-]*$/;

/**
 * The index template installed at start. Only the fields every search needs
 * are mapped; `dynamic: false` keeps the rest in `_source` unindexed, because
 * event fields vary by type (a statement parameter is a string in one event
 * and a number in the next) and dynamic mapping would then reject events.
 */
export function indexTemplate(index: string): object {
  const keyword = { type: 'keyword' };
  return {
    index_patterns: [`${index}-*`],
    priority: 200,
    template: {
      mappings: {
        dynamic: false,
        properties: {
          id: keyword,
          time: { type: 'date' },
          '@timestamp': { type: 'alias', path: 'time' },
          type: keyword,
          code: keyword,
          cluster: keyword,
          user: keyword,
          login: keyword,
          session_id: keyword,
          server: keyword,
          success: { type: 'boolean' },
          message: { type: 'text' },
          addr: { properties: { remote: keyword, local: keyword } },
        },
      },
    },
    _meta: { managed_by: 'gatehouse' },
  };
}

/** Bulk item statuses that mean "this one is in": created, or already there (a resent event, same `_id`). */
function itemDelivered(status: number): boolean {
  return (status >= 200 && status < 300) || status === 409;
}

class ElasticsearchTransport implements Transport {
  readonly #target: HttpTarget;
  readonly #index: string;
  readonly #auth: Record<string, string>;

  constructor(opts: ElasticsearchSinkOptions) {
    this.#target = opts;
    this.#index = opts.index ?? 'gatehouse-audit';
    if (!INDEX_NAME.test(this.#index)) {
      throw new TypeError(
        `elasticsearch audit sink: index ${JSON.stringify(this.#index)} must match ${INDEX_NAME}`,
      );
    }
    this.#auth = opts.apiKey
      ? { authorization: `ApiKey ${opts.apiKey}` }
      : opts.username !== undefined
        ? {
            authorization: `Basic ${Buffer.from(`${opts.username}:${opts.password ?? ''}`).toString('base64')}`,
          }
        : {};
  }

  async start(signal: AbortSignal): Promise<void> {
    const res = await request(
      this.#target,
      'PUT',
      `_index_template/${this.#index}`,
      JSON.stringify(indexTemplate(this.#index)),
      { 'content-type': 'application/json', ...this.#auth },
      signal,
    );
    if (res.status < 200 || res.status >= 300) {
      // Not installed, nothing sent: retried with backoff like a failed batch.
      throw new RetryableHttpError(
        `installing index template ${this.#index} answered ${res.status}: ${res.body.slice(0, 300)}`,
      );
    }
  }

  async send(items: ExportItem[], signal: AbortSignal): Promise<SendResult | undefined> {
    // `create` with the event id as `_id`: a batch sent twice (at least once) is stored once (409 on the copy).
    const body = items
      .map(
        (i) =>
          `{"create":{"_index":"${this.#index}-${i.event.time.slice(0, 10).replaceAll('-', '.')}","_id":${JSON.stringify(i.id)}}}\n${i.json}\n`,
      )
      .join('');
    const res = await request(
      this.#target,
      'POST',
      '_bulk',
      body,
      {
        'content-type': 'application/x-ndjson',
        ...this.#auth,
      },
      signal,
    );
    const whole = batchOutcome(res, items.length, 'Elasticsearch _bulk');
    if (whole) return whole;
    let parsed: { errors?: boolean; items?: Record<string, { status?: number; error?: unknown }>[] };
    try {
      parsed = JSON.parse(res.body) as typeof parsed;
    } catch {
      throw new RetryableHttpError(`Elasticsearch _bulk answered ${res.status} with a body that is not JSON`);
    }
    if (parsed.errors !== true) return undefined;
    if (!Array.isArray(parsed.items) || parsed.items.length !== items.length) {
      throw new RetryableHttpError(
        `Elasticsearch _bulk answered ${parsed.items?.length ?? 'no'} items for ${items.length} events`,
      );
    }
    const retry: number[] = [];
    const rejected: NonNullable<SendResult['rejected']> = [];
    parsed.items.forEach((entry, index) => {
      const r = Object.values(entry)[0];
      const status = r?.status ?? 0;
      if (itemDelivered(status)) return;
      if (retryableStatus(status)) retry.push(index);
      else rejected.push({ index, status: String(status), reason: errorReason(r?.error) });
    });
    return { retry, rejected };
  }
}

function errorReason(error: unknown): string {
  if (error && typeof error === 'object') {
    const e = error as { type?: unknown; reason?: unknown };
    return `${String(e.type ?? 'error')}: ${String(e.reason ?? '')}`.slice(0, 300);
  }
  return String(error ?? 'unknown error');
}

/** Elasticsearch / OpenSearch `_bulk`, with an index template installed at start. */
export function elasticsearchSink(opts: ElasticsearchSinkOptions): ExportSink {
  return new ExportSink('elasticsearch', new ElasticsearchTransport(opts), {
    ...opts,
    name: opts.name ?? 'elasticsearch',
  });
}
