import { randomBytes } from 'node:crypto';
import type { AuditEmitter } from '@gatehouse/audit';
import type { Backend } from '../backend/types.js';
import type { Clock } from '../clock.js';
import { GatehouseError } from '../errors.js';
import type { LockRecord } from './types.js';

export interface LockServiceOptions {
  backend: Backend;
  clock: Clock;
  audit: AuditEmitter;
}

const PREFIX = 'locks/';

/**
 * Locks block every new and live session of a user or of everyone holding a
 * role. Stored at `locks/<id>`; a lock with a TTL also expires in the backend.
 * Lookups never swallow backend errors: a caller that cannot check locks
 * must deny.
 */
export class LockService {
  readonly #backend: Backend;
  readonly #clock: Clock;
  readonly #audit: AuditEmitter;

  constructor(opts: LockServiceOptions) {
    for (const k of ['backend', 'clock', 'audit'] as const) {
      if (!opts[k]) throw new TypeError(`LockService: missing option "${k}"`);
    }
    this.#backend = opts.backend;
    this.#clock = opts.clock;
    this.#audit = opts.audit;
  }

  async create(
    req: { target: LockRecord['target']; message?: string | undefined; ttlMs?: number | undefined },
    actor: string,
  ): Promise<LockRecord> {
    const target = normalizeTarget(req.target);
    if (req.ttlMs !== undefined && !(Number.isFinite(req.ttlMs) && req.ttlMs > 0)) {
      throw new GatehouseError(
        'GH_ERR_VALIDATION',
        `lock TTL must be a positive duration, got ${req.ttlMs}`,
        {
          hint: 'pass a TTL like 30m or 8h, or none for a lock that lasts until removed',
        },
      );
    }
    const now = this.#clock.now();
    const lock: LockRecord = {
      id: randomBytes(12).toString('hex'),
      target,
      ...(req.message ? { message: req.message } : {}),
      ...(req.ttlMs !== undefined ? { expires: new Date(now.getTime() + req.ttlMs).toISOString() } : {}),
      createdAt: now.toISOString(),
      createdBy: actor,
    };
    await this.#backend.create(
      PREFIX + lock.id,
      JSON.stringify(lock),
      req.ttlMs ? { ttlMs: req.ttlMs } : undefined,
    );
    await this.#audit.emit({
      type: 'lock.create',
      user: actor,
      lock_id: lock.id,
      target: { ...target },
      ...(lock.expires ? { expires: lock.expires } : {}),
      ...(lock.message ? { message: lock.message } : {}),
    });
    return lock;
  }

  /** Active locks (expired ones are left out even if the backend has not swept them yet). */
  async list(): Promise<LockRecord[]> {
    const now = this.#clock.now().getTime();
    const items = await this.#backend.range(PREFIX);
    return items.map((i) => decode(i.value)).filter((l) => isActive(l, now));
  }

  async get(id: string): Promise<LockRecord | undefined> {
    if (!/^[0-9a-f]{1,64}$/.test(id)) return undefined;
    const item = await this.#backend.get(PREFIX + id);
    const lock = item ? decode(item.value) : undefined;
    return lock && isActive(lock, this.#clock.now().getTime()) ? lock : undefined;
  }

  async delete(id: string, actor: string): Promise<void> {
    await this.#remove(id, actor);
  }

  async #remove(id: string, actor: string): Promise<LockRecord> {
    const lock = await this.get(id);
    if (!lock || !(await this.#backend.delete(PREFIX + id))) {
      throw new GatehouseError('GH_ERR_NOT_FOUND', `lock "${id}" not found`, {
        hint: 'list locks with `gatehouse locks ls`',
        details: { lock_id: id },
      });
    }
    await this.#audit.emit({ type: 'lock.delete', user: actor, lock_id: id, target: { ...lock.target } });
    return lock;
  }

  /** Remove every lock that targets `user` by name; returns what was removed. */
  async deleteForUser(user: string, actor: string): Promise<LockRecord[]> {
    const mine = (await this.list()).filter((l) => 'user' in l.target && l.target.user === user);
    const out: LockRecord[] = [];
    for (const l of mine) out.push(await this.#remove(l.id, actor));
    return out;
  }

  /** Active locks that target the user or any of the roles. */
  async find(who: { user: string; roles: readonly string[] }): Promise<LockRecord[]> {
    const roles = new Set(who.roles);
    return (await this.list()).filter((l) =>
      'user' in l.target ? l.target.user === who.user : roles.has(l.target.role),
    );
  }
}

function isActive(lock: LockRecord, nowMs: number): boolean {
  return lock.expires === undefined || Date.parse(lock.expires) > nowMs;
}

function normalizeTarget(target: LockRecord['target']): LockRecord['target'] {
  const t = target as { user?: unknown; role?: unknown };
  const hasUser = typeof t.user === 'string' && t.user.length > 0;
  const hasRole = typeof t.role === 'string' && t.role.length > 0;
  if (hasUser === hasRole) {
    throw new GatehouseError('GH_ERR_VALIDATION', 'a lock targets exactly one user or one role', {
      hint: 'pass { user: "<name>" } or { role: "<name>" }',
    });
  }
  return hasUser ? { user: t.user as string } : { role: t.role as string };
}

function decode(value: string): LockRecord {
  try {
    return JSON.parse(value) as LockRecord;
  } catch (e) {
    // A lock we cannot read must not be silently dropped: that would unlock someone.
    throw new GatehouseError('GH_ERR_INTERNAL', 'a stored lock is unreadable', {
      hint: 'inspect the locks/ keys in the backend; remove or repair the broken entry',
      cause: e,
    });
  }
}
