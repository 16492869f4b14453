import { PostgresAdapter, type PostgresAdapterOptions } from './adapter.js';

export { PostgresAdapter, type PostgresAdapterOptions } from './adapter.js';
export { CancelKeys } from './cancel.js';
export { denialToPg, SQLSTATE } from './errors.js';
export { formatParams, QueryAuditor, type QueryRecord } from './query-audit.js';
export * from './wire/backend.js';
export * from './wire/errors.js';
export * from './wire/frontend.js';
export * from './wire/reader.js';
export * from './wire/stream.js';

/** The PostgreSQL adapter: `gw.use(postgres())`. Databases come from the gateway's registry. */
export function postgres(opts: PostgresAdapterOptions = {}): PostgresAdapter {
  return new PostgresAdapter(opts);
}
