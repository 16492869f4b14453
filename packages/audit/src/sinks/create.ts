import { type ElasticsearchSinkOptions, elasticsearchSink } from './elasticsearch.js';
import type { ExportSink } from './export.js';
import { type LokiSinkOptions, lokiSink } from './loki.js';
import { type SyslogSinkOptions, syslogSink } from './syslog.js';
import { type WebhookSinkOptions, webhookSink } from './webhook.js';

type WithoutDir<T> = Omit<T, 'dir'> & { dir?: string };

/**
 * An export sink described as data (the config file's `audit.sinks` entries,
 * or the embedding API's `auditSinks`), camelCase, secrets already read.
 * `dir` defaults to the one the gateway gives.
 */
export type ExportSinkConfig =
  | ({ type: 'syslog' } & WithoutDir<SyslogSinkOptions>)
  | ({ type: 'loki' } & WithoutDir<LokiSinkOptions>)
  | ({ type: 'elasticsearch' } & WithoutDir<ElasticsearchSinkOptions>)
  | ({ type: 'webhook' } & WithoutDir<WebhookSinkOptions>);

/** Builds the sink a config entry describes; its spool lives in `dir` unless the entry names one. */
export function createExportSink(config: ExportSinkConfig, dir: string): ExportSink {
  switch (config.type) {
    case 'syslog':
      return syslogSink({ dir, ...config });
    case 'loki':
      return lokiSink({ dir, ...config });
    case 'elasticsearch':
      return elasticsearchSink({ dir, ...config });
    case 'webhook':
      return webhookSink({ dir, ...config });
    default:
      throw new TypeError(
        `unknown audit sink type ${JSON.stringify((config as { type?: unknown }).type)} (syslog, loki, elasticsearch or webhook)`,
      );
  }
}
