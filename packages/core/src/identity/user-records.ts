import type { Backend } from '../backend/types.js';
import { GatehouseError, isGatehouseError } from '../errors.js';
import type { UserRecord } from './types.js';

/**
 * The stored user records (`users/<name>`), shared by the user service,
 * its invite/reset tokens and password login. Internal to identity/: the
 * public surface is UserService.
 */

export const USER_NAME_RE = /^[a-z0-9][a-z0-9._@-]{0,63}$/;
const USERS = 'users/';

export class UserRecords {
  readonly #backend: Backend;

  constructor(backend: Backend) {
    this.#backend = backend;
  }

  async get(name: string): Promise<UserRecord | undefined> {
    if (typeof name !== 'string' || !USER_NAME_RE.test(name)) return undefined;
    const item = await this.#backend.get(USERS + name);
    return item ? decodeUser(name, item.value) : undefined;
  }

  async list(): Promise<UserRecord[]> {
    const items = await this.#backend.range(USERS);
    return items.map((i) => decodeUser(i.key.slice(USERS.length), i.value));
  }

  /** Stores a new record; the backend's GH_ERR_ALREADY_EXISTS propagates. */
  async insert(user: UserRecord): Promise<void> {
    await this.#backend.create(USERS + user.name, JSON.stringify(user));
  }

  /** Whether there was a record to delete. */
  async remove(name: string): Promise<boolean> {
    return USER_NAME_RE.test(name) && (await this.#backend.delete(USERS + name));
  }

  /**
   * Read-modify-write through compare-and-swap, so concurrent changes (two
   * logins, a login and an update) cannot lose a failure count or replay a
   * TOTP code. `fn` may throw to abort.
   */
  async mutate(name: string, fn: (cur: UserRecord) => UserRecord): Promise<UserRecord> {
    if (!USER_NAME_RE.test(name)) throw userNotFound(name);
    for (let attempt = 0; attempt < 32; attempt++) {
      const item = await this.#backend.get(USERS + name);
      if (!item) throw userNotFound(name);
      const next = fn(decodeUser(name, item.value));
      try {
        await this.#backend.compareAndSwap(USERS + name, item.revision, JSON.stringify(next));
        return next;
      } catch (e) {
        if (!isGatehouseError(e, 'GH_ERR_CONFLICT')) throw e;
      }
    }
    throw new GatehouseError('GH_ERR_CONFLICT', `user "${name}" is being changed concurrently`, {
      hint: 'try again in a moment',
    });
  }
}

export function userNotFound(name: string): GatehouseError {
  return new GatehouseError('GH_ERR_NOT_FOUND', `user "${name}" not found`, {
    hint: 'list users with `gatehouse users ls`',
    details: { user: name },
  });
}

/** The sealing context of a user's enrolled TOTP secret (tokens enroll it, login opens it). */
export function userTotpAad(name: string): string {
  return `users/${name}/totp`;
}

function decodeUser(name: string, value: string): UserRecord {
  try {
    const rec = JSON.parse(value) as UserRecord;
    if (rec.name !== name || !Array.isArray(rec.roles)) throw new Error('record does not match its key');
    return rec;
  } catch (e) {
    throw new GatehouseError('GH_ERR_INTERNAL', `stored user "${name}" is unreadable`, {
      hint: `repair or delete users/${name} in the backend, then re-create the user`,
      cause: e,
    });
  }
}
