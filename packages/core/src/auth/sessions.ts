import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Backend } from '../backend/types.js';
import type { Clock } from '../clock.js';

export interface WebSession {
  user: string;
  /** The user record's id at login (a user re-created under the name is another user). */
  userId?: string | undefined;
  roles: string[];
  /** Approved access requests whose roles this session carries (checked on every call, like a certificate's). */
  accessRequests?: string[] | undefined;
  createdAt: string;
  expires: string;
  /** Sent back by the browser in X-CSRF-Token on every state-changing request. */
  csrf: string;
}

/** Where web sessions live in the backend (watched, so a logout reaches open sockets). */
export const WEB_SESSIONS_PREFIX = 'web_sessions/';
const PREFIX = WEB_SESSIONS_PREFIX;
const hash = (id: string) => createHash('sha256').update(id).digest('hex');

/**
 * Browser sessions behind the HttpOnly cookie. Only the SHA-256 of the
 * session id is stored, so a backend dump cannot be replayed as cookies.
 */
export class WebSessions {
  readonly #backend: Backend;
  readonly #clock: Clock;
  readonly #ttlMs: number;

  constructor(deps: { backend: Backend; clock: Clock; ttlMs: number }) {
    this.#backend = deps.backend;
    this.#clock = deps.clock;
    this.#ttlMs = deps.ttlMs;
  }

  async create(
    user: string,
    roles: string[],
    maxTtlMs: number,
    userId?: string,
    accessRequests?: string[],
  ): Promise<{ id: string; session: WebSession }> {
    const id = randomBytes(32).toString('base64url');
    const now = this.#clock.now().getTime();
    const ttl = Math.min(this.#ttlMs, maxTtlMs);
    const session: WebSession = {
      user,
      ...(userId ? { userId } : {}),
      roles,
      ...(accessRequests?.length ? { accessRequests } : {}),
      createdAt: new Date(now).toISOString(),
      expires: new Date(now + ttl).toISOString(),
      csrf: randomBytes(24).toString('base64url'),
    };
    await this.#backend.create(PREFIX + hash(id), JSON.stringify(session), { ttlMs: ttl });
    return { id, session };
  }

  async get(id: string): Promise<WebSession | undefined> {
    if (!/^[A-Za-z0-9_-]{20,100}$/.test(id)) return undefined;
    const item = await this.#backend.get(PREFIX + hash(id));
    if (!item) return undefined;
    const s = JSON.parse(item.value) as WebSession;
    return Date.parse(s.expires) > this.#clock.now().getTime() ? s : undefined;
  }

  async delete(id: string): Promise<void> {
    await this.#backend.delete(PREFIX + hash(id));
  }

  async deleteForUser(user: string): Promise<number> {
    let n = 0;
    for (const item of await this.#backend.range(PREFIX)) {
      if ((JSON.parse(item.value) as WebSession).user === user && (await this.#backend.delete(item.key))) n++;
    }
    return n;
  }

  static csrfMatches(session: WebSession, header: string | undefined): boolean {
    if (!header) return false;
    const a = Buffer.from(session.csrf);
    const b = Buffer.from(header);
    return a.length === b.length && timingSafeEqual(a, b);
  }
}
