import type { AuditEmitter } from '@gatehouse/audit';
import type { Backend } from '../backend/types.js';
import type { Clock } from '../clock.js';
import { GatehouseError, isGatehouseError } from '../errors.js';
import { BUILTIN_ROLES, builtinRole, isBuiltinRole } from './builtin.js';
import { lintRole } from './lint.js';
import { parseRole, ROLE_NAME_RE } from './role-schema.js';
import type { Role } from './types.js';

export interface RoleServiceOptions {
  backend: Backend;
  audit: AuditEmitter;
  clock: Clock;
}

const PREFIX = 'roles/';

/**
 * Roles: built-ins plus documents stored as JSON under `roles/<name>`.
 * Every write is linted first; lookups of unknown roles fail closed.
 */
export class RoleService {
  readonly #backend: Backend;
  readonly #audit: AuditEmitter;
  /**
   * Stored roles already parsed, by name, with the revision and JSON they came
   * from. Every lookup still reads the backend (so a change, here or by another
   * gateway, is seen by the next lookup without waiting for a watch) and only
   * the schema parse is skipped when the stored item is the one parsed before:
   * the parse was ~0.1 ms of every new connection (issue 22). Fails closed by
   * construction: anything but an exact match parses again.
   */
  readonly #parsed = new Map<string, { revision: number; value: string; role: Role }>();

  constructor(opts: RoleServiceOptions) {
    for (const k of ['backend', 'audit', 'clock'] as const) {
      if (!opts[k]) throw new TypeError(`RoleService: missing option "${k}"`);
    }
    this.#backend = opts.backend;
    this.#audit = opts.audit;
  }

  async list(): Promise<Role[]> {
    const items = await this.#backend.range(PREFIX);
    const stored = items.map((i) => decode(i.key.slice(PREFIX.length), i.value));
    return [...BUILTIN_ROLES.map((r) => structuredClone(r)), ...stored].sort((a, b) =>
      a.name.localeCompare(b.name),
    );
  }

  async get(name: string): Promise<Role> {
    const role = await this.find(name);
    if (!role) {
      throw new GatehouseError('GH_ERR_NOT_FOUND', `role "${name}" not found`, {
        hint: 'list roles with `gatehouse roles ls`',
        details: { role: name },
      });
    }
    return role;
  }

  /** The role, or undefined when it does not exist. Backend errors propagate. */
  async find(name: string): Promise<Role | undefined> {
    const builtin = builtinRole(name);
    if (builtin) return builtin;
    if (!isStorableName(name)) return undefined;
    const item = await this.#backend.get(PREFIX + name);
    if (!item) {
      this.#parsed.delete(name);
      return undefined;
    }
    const hit = this.#parsed.get(name);
    if (hit && hit.revision === item.revision && hit.value === item.value) return structuredClone(hit.role);
    const role = decode(name, item.value);
    this.#parsed.set(name, { revision: item.revision, value: item.value, role: structuredClone(role) });
    return role;
  }

  async exists(name: string): Promise<boolean> {
    return (await this.find(name)) !== undefined;
  }

  /**
   * Create or replace a role from YAML/JSON text or a Role object.
   * `create: true` refuses to replace an existing role.
   */
  async put(
    input: string | Role,
    actor: string,
    opts: { create?: boolean } = {},
  ): Promise<{ role: Role; created: boolean }> {
    const text = typeof input === 'string' ? input : JSON.stringify(input, null, 2);
    const { role, messages } = lintRole(text);
    const errors = messages.filter((m) => m.severity === 'error');
    if (!role || errors.length > 0) {
      const shown = errors
        .slice(0, 3)
        .map(
          (m) =>
            `line ${m.line}:${m.column}${m.key ? ` ${m.key}` : ''}: ${m.message}${m.suggestion ? ` (${m.suggestion})` : ''}`,
        );
      const more = errors.length > 3 ? `; and ${errors.length - 3} more` : '';
      throw new GatehouseError('GH_ERR_ROLE_INVALID', `invalid role: ${shown.join('; ')}${more}`, {
        hint: 'fix the role document and try again; `gatehouse roles lint FILE` shows every problem',
        details: { messages },
      });
    }
    if (isBuiltinRole(role.name)) {
      throw new GatehouseError('GH_ERR_VALIDATION', `role "${role.name}" is built in and cannot be changed`, {
        hint: `create a new role with another name (e.g. "${role.name}-custom") and assign it instead`,
        details: { role: role.name },
      });
    }
    const key = PREFIX + role.name;
    const value = JSON.stringify(role);
    let created: boolean;
    if (opts.create) {
      try {
        await this.#backend.create(key, value);
      } catch (e) {
        if (isGatehouseError(e, 'GH_ERR_ALREADY_EXISTS')) {
          throw new GatehouseError('GH_ERR_ALREADY_EXISTS', `role "${role.name}" already exists`, {
            hint: 'update it without --create, or pick another name',
            cause: e,
            details: { role: role.name },
          });
        }
        throw e;
      }
      created = true;
    } else {
      created = (await this.#backend.get(key)) === undefined;
      await this.#backend.put(key, value);
    }
    await this.#audit.emit({ type: created ? 'role.create' : 'role.update', user: actor, name: role.name });
    return { role, created };
  }

  async delete(name: string, actor: string): Promise<void> {
    if (isBuiltinRole(name)) {
      throw new GatehouseError('GH_ERR_VALIDATION', `role "${name}" is built in and cannot be deleted`, {
        hint: 'remove the role from users that should not have it instead',
        details: { role: name },
      });
    }
    const deleted = isStorableName(name) && (await this.#backend.delete(PREFIX + name));
    if (!deleted) {
      throw new GatehouseError('GH_ERR_NOT_FOUND', `role "${name}" not found`, {
        hint: 'list roles with `gatehouse roles ls`',
        details: { role: name },
      });
    }
    await this.#audit.emit({ type: 'role.delete', user: actor, name });
  }

  /**
   * The roles behind a user's role names. An unknown name is an error, not a
   * silent skip: the caller must deny rather than decide on a partial set.
   */
  async resolve(names: readonly string[]): Promise<Role[]> {
    const out: Role[] = [];
    for (const name of new Set(names)) {
      const role = await this.find(name);
      if (!role) {
        throw new GatehouseError('GH_ERR_ACCESS_DENIED', `role "${name}" does not exist`, {
          hint: `ask an admin to recreate role "${name}" or remove it from your user`,
          details: { role: name },
        });
      }
      out.push(role);
    }
    return out;
  }
}

function isStorableName(name: string): boolean {
  // Keeps names like "../x" or "a/b" out of backend keys.
  return ROLE_NAME_RE.test(name);
}

function decode(name: string, value: string): Role {
  try {
    return parseRole(JSON.parse(value));
  } catch (e) {
    // A corrupt stored role must not be half-applied: fail the lookup.
    throw new GatehouseError('GH_ERR_INTERNAL', `stored role "${name}" is unreadable`, {
      hint: `re-create the role with \`gatehouse roles put\` (its stored JSON under roles/${name} is invalid)`,
      cause: e,
      details: { role: name },
    });
  }
}
