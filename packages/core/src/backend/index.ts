import type { Clock } from '../clock.js';
import { GatehouseError } from '../errors.js';
import { EtcdBackend, type EtcdBackendOptions } from './etcd.js';
import { MemoryBackend } from './memory.js';
import { SqliteBackend } from './sqlite.js';
import type { Backend } from './types.js';

export {
  ETCD_WATCH_CHANNEL,
  EtcdBackend,
  type EtcdBackendOptions,
  type EtcdWatchState,
  parseEtcdEndpoints,
} from './etcd.js';
export { compareKeys, prefixUpperBound } from './keys.js';
export { MemoryBackend, type MemoryBackendOptions } from './memory.js';
export {
  POSTGRES_BACKEND_ERROR_CHANNEL,
  POSTGRES_LISTENER_NAME,
  POSTGRES_NOTIFY_CHANNEL,
  PostgresBackend,
  type PostgresBackendOptions,
} from './postgres.js';
export {
  BACKEND_PASSWORD_ENV,
  type OpenPostgresOptions,
  openPostgresBackend,
  type PostgresBackendConfig,
  parsePostgresUri,
  postgresConnection,
} from './postgres-config.js';
export { SQLITE_SWEEP_ERROR_CHANNEL, SqliteBackend, type SqliteBackendOptions } from './sqlite.js';
export type * from './types.js';

export type BackendSpec =
  | { type: 'sqlite'; path: string }
  | { type: 'memory' }
  | ({ type: 'etcd' } & Omit<EtcdBackendOptions, 'clock'>);

/** Opens the backend a config names; the one place that maps a spec to an implementation. */
export async function openBackend(spec: BackendSpec, clock: Clock): Promise<Backend> {
  switch (spec.type) {
    case 'sqlite':
      return SqliteBackend.open({ path: spec.path, clock });
    case 'memory':
      return new MemoryBackend({ clock });
    case 'etcd': {
      const { type: _, ...opts } = spec;
      return EtcdBackend.open({ ...opts, clock });
    }
    default: {
      const _: never = spec;
      throw new GatehouseError('GH_ERR_CONFIG_INVALID', `unknown backend type ${JSON.stringify(_)}`, {
        hint: "Set the backend type to 'sqlite', 'etcd' or 'memory'.",
      });
    }
  }
}
export { MIGRATIONS, type Migration, migrateSchema, SCHEMA_KEY, type SchemaResult } from './schema.js';
