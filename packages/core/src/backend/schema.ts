import { GatehouseError } from '../errors.js';
import { VERSION } from '../version.js';
import type { Backend, Item } from './types.js';

/**
 * Data-dir schema versioning (decision 0031-install). The backend records which version of the
 * stored data's layout (key names, value shapes) it holds; `createGateway` brings an older store
 * forward with MIGRATIONS, in order, and refuses a store a newer Gatehouse wrote, since this
 * binary could misread it or overwrite what it does not know. The SQLite file's own table layout
 * has a separate version (PRAGMA user_version in sqlite.ts) that works the same way.
 */
export const SCHEMA_KEY = 'cluster/schema';

export interface Migration {
  /** The schema version this step produces; steps are 1, 2, 3, ... in order. */
  version: number;
  description: string;
  /**
   * Rewrites the store from `version - 1` to `version`. Must be idempotent: a step that was
   * interrupted (crash, another process) runs again from the start.
   */
  up(backend: Backend): Promise<void>;
}

/** Every step a data dir has been through, oldest first. A release that changes stored data appends one. */
export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    description: 'baseline: the layout of Gatehouse 0.1.0 (data dirs from before versioning already have it)',
    up: async () => {},
  },
];

export const UPGRADE_HINT =
  'Upgrade gatehouse to the version that last wrote this data dir or a newer one (`gatehouse --version` says ' +
  'which runs now), or restore a backup taken by this version into an empty data dir. Do not downgrade a data dir.';

interface Stored {
  version: number;
  written_by: string;
}

export interface SchemaResult {
  /** The version found (0: a store from before versioning; the current one for a new store). */
  from: number;
  to: number;
  /** The steps that ran, in order. */
  applied: Migration[];
}

function parse(item: Item): Stored {
  const v = JSON.parse(item.value) as Partial<Stored>;
  if (!Number.isInteger(v.version) || (v.version as number) < 0) {
    throw new GatehouseError(
      'GH_ERR_BACKEND_UNAVAILABLE',
      `${SCHEMA_KEY} holds no schema version: ${item.value}`,
      {
        hint: 'The data dir is damaged: restore it from a backup.',
      },
    );
  }
  return { version: v.version as number, written_by: String(v.written_by ?? 'unknown') };
}

/**
 * Checks the store's schema version and runs the forward migrations it lacks, recording each
 * step as it completes. `where` names the store in messages (the data dir).
 */
export async function migrateSchema(
  backend: Backend,
  opts: { where: string; migrations?: readonly Migration[]; softwareVersion?: string },
): Promise<SchemaResult> {
  const migrations = opts.migrations ?? MIGRATIONS;
  const software = opts.softwareVersion ?? VERSION;
  migrations.forEach((m, i) => {
    if (m.version !== i + 1) throw new Error(`migration ${i} has version ${m.version}, expected ${i + 1}`);
  });
  const current = migrations.length;
  const record = (version: number) => JSON.stringify({ version, written_by: software } satisfies Stored);

  let item = await backend.get(SCHEMA_KEY);
  if (!item) {
    // Nothing stored at all: a new data dir starts at the current version. Items without the
    // key: a data dir from before versioning, version 0.
    const empty = (await backend.range('', { limit: 1 })).length === 0;
    if (empty) {
      try {
        await backend.create(SCHEMA_KEY, record(current));
        return { from: current, to: current, applied: [] };
      } catch (e) {
        // Another process sharing the store created it first: check what it wrote.
        if (!(e instanceof GatehouseError && e.code === 'GH_ERR_ALREADY_EXISTS')) throw e;
        item = await backend.get(SCHEMA_KEY);
      }
    }
  }
  const from = item ? parse(item).version : 0;
  if (item && from > current) {
    const s = parse(item);
    throw new GatehouseError(
      'GH_ERR_DATA_DIR_NEWER',
      `the data dir ${opts.where} was written by Gatehouse ${s.written_by} (data schema ${s.version}); this is Gatehouse ${software}, which knows schemas up to ${current} and does not run on a newer data dir`,
      { hint: UPGRADE_HINT },
    );
  }
  const applied: Migration[] = [];
  let revision = item?.revision ?? null;
  for (const m of migrations.slice(from)) {
    await m.up(backend);
    // Compare-and-swap: two processes migrating at once both run the (idempotent) step; the
    // loser's record fails, and it reads what the winner recorded.
    try {
      revision = (await backend.compareAndSwap(SCHEMA_KEY, revision, record(m.version))).revision;
    } catch (e) {
      if (!(e instanceof GatehouseError && e.code === 'GH_ERR_CONFLICT')) throw e;
      const now = await backend.get(SCHEMA_KEY);
      if (!now || parse(now).version < m.version) throw e;
      revision = now.revision;
    }
    applied.push(m);
  }
  return { from, to: Math.max(from, current), applied };
}
