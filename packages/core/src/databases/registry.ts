import { readFile } from 'node:fs/promises';
import type { AuditEmitter } from '@gatehouse/audit';
import type { Backend } from '../backend/types.js';
import { splitHostPort } from '../config/load.js';
import { GatehouseError, isGatehouseError } from '../errors.js';
import { putStatic } from '../util/static-entries.js';

export type DbProtocol = 'postgres' | 'mysql';
export const DB_PROTOCOLS: readonly DbProtocol[] = ['postgres', 'mysql'];

/** A database Gatehouse fronts. */
export interface DatabaseSpec {
  name: string;
  protocol: DbProtocol;
  /** host:port of the database server (a postgres:// or mysql:// URL is accepted too). */
  uri: string;
  labels: Record<string, string>;
  /** PEM of the CA that signed the database's server certificate; absent: the system roots. */
  caPem?: string | undefined;
  /** Name to verify in the database's certificate; default: the host of `uri`. */
  serverName?: string | undefined;
  description?: string | undefined;
  /** Where it was registered: config/adapter options are read-only. */
  source?: 'config' | 'dynamic' | undefined;
}

const PREFIX = 'databases/';
const NAME_RE = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

export function dbHostPort(spec: Pick<DatabaseSpec, 'uri' | 'protocol'>): { host: string; port: number } {
  const m = /^(?:postgres(?:ql)?|mysql|mariadb):\/\/([^/?#]+)/.exec(spec.uri);
  const hp = m ? m[1]!.replace(/^.*@/, '') : spec.uri;
  if (!/:\d+$/.test(hp))
    return { host: hp.replace(/^\[|\]$/g, ''), port: spec.protocol === 'mysql' ? 3306 : 5432 };
  return splitHostPort(hp);
}

export function validateDatabase(spec: DatabaseSpec): DatabaseSpec {
  if (!NAME_RE.test(spec.name)) {
    throw new GatehouseError('GH_ERR_VALIDATION', `database name "${spec.name}" is invalid`, {
      hint: 'use lowercase letters, digits and dashes (a DNS label)',
    });
  }
  if (!DB_PROTOCOLS.includes(spec.protocol)) {
    throw new GatehouseError('GH_ERR_VALIDATION', `unknown database protocol "${spec.protocol}"`, {
      hint: `use one of ${DB_PROTOCOLS.join(', ')}`,
    });
  }
  dbHostPort(spec);
  for (const [k, v] of Object.entries(spec.labels ?? {})) {
    if (typeof v !== 'string' || !/^[A-Za-z0-9._/-]{1,63}$/.test(k)) {
      throw new GatehouseError('GH_ERR_VALIDATION', `label "${k}" is invalid`, {
        hint: 'labels are key=value',
      });
    }
  }
  if (spec.caPem !== undefined && !spec.caPem.includes('BEGIN CERTIFICATE')) {
    throw new GatehouseError('GH_ERR_VALIDATION', 'the database CA is not a PEM certificate', {
      hint: 'pass --ca-file with the CA that signed the database server certificate',
    });
  }
  return { ...spec, labels: spec.labels ?? {} };
}

/** Reads a CA file named in config or on the command line. */
export async function readCaFile(file: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (cause) {
    throw new GatehouseError('GH_ERR_CONFIG_INVALID', `cannot read CA file ${file}`, {
      cause,
      hint: 'check the path',
    });
  }
}

/**
 * Registered databases: static ones (config file, adapter options) plus
 * dynamic ones in the backend (`gatehouse db add`, the API).
 */
export class DatabaseRegistry {
  readonly #backend: Backend;
  readonly #audit: AuditEmitter;
  readonly #static = new Map<string, DatabaseSpec>();

  constructor(deps: { backend: Backend; audit: AuditEmitter }) {
    this.#backend = deps.backend;
    this.#audit = deps.audit;
  }

  /** Config and adapter-option databases; a name registered twice throws. */
  addStatic(spec: DatabaseSpec): void {
    this.replaceStatic([], [spec]);
  }

  /**
   * Swaps the configured entries named `previous` for `next` (a SIGHUP
   * reload); nothing changes when one of `next` is invalid or its name is taken.
   */
  replaceStatic(previous: readonly string[], next: readonly DatabaseSpec[]): void {
    putStatic(this.#static, next, {
      validate: (s) => validateDatabase({ ...s, source: 'config' }),
      what: 'database',
      hint: 'give each database a unique name',
      remove: previous,
    });
  }

  async get(name: string): Promise<DatabaseSpec | undefined> {
    const s = this.#static.get(name);
    if (s) return s;
    const item = await this.#backend.get(PREFIX + name);
    return item ? { ...(JSON.parse(item.value) as DatabaseSpec), source: 'dynamic' } : undefined;
  }

  async list(): Promise<DatabaseSpec[]> {
    const dynamic = (await this.#backend.range(PREFIX)).map(
      (i) => ({ ...(JSON.parse(i.value) as DatabaseSpec), source: 'dynamic' }) as DatabaseSpec,
    );
    const all = [...this.#static.values(), ...dynamic.filter((d) => !this.#static.has(d.name))];
    return all.sort((a, b) => a.name.localeCompare(b.name));
  }

  async add(spec: DatabaseSpec, actor: string): Promise<DatabaseSpec> {
    const v = validateDatabase({ ...spec, source: undefined });
    if (this.#static.has(v.name)) {
      throw new GatehouseError('GH_ERR_ALREADY_EXISTS', `database "${v.name}" is defined in the config`, {
        hint: 'change it in the config file, or pick another name',
      });
    }
    try {
      await this.#backend.create(PREFIX + v.name, JSON.stringify(v));
    } catch (err) {
      if (isGatehouseError(err, 'GH_ERR_ALREADY_EXISTS')) {
        throw new GatehouseError('GH_ERR_ALREADY_EXISTS', `database "${v.name}" already exists`, {
          hint: `remove it first with gatehouse db rm ${v.name}`,
        });
      }
      throw err;
    }
    await this.#audit.emit({
      type: 'db.create',
      user: actor,
      name: v.name,
      protocol: v.protocol,
      uri: v.uri,
    });
    return { ...v, source: 'dynamic' };
  }

  async remove(name: string, actor: string): Promise<void> {
    if (this.#static.has(name)) {
      throw new GatehouseError('GH_ERR_VALIDATION', `database "${name}" is defined in the config`, {
        hint: 'remove it from the config file',
      });
    }
    if (!(await this.#backend.delete(PREFIX + name))) {
      throw new GatehouseError('GH_ERR_NOT_FOUND', `database "${name}" not found`, {
        hint: 'list databases with gatehouse db ls',
      });
    }
    await this.#audit.emit({ type: 'db.delete', user: actor, name });
  }
}
