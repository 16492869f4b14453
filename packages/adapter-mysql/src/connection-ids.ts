import { randomInt } from 'node:crypto';

/** The session behind a connection id the gateway put in its greeting. */
export interface ConnectionTarget {
  sessionId: string;
  /** Gatehouse user who owns it. */
  user: string;
  /** The registered database it runs on: a KILL means something only to that server. */
  service: string;
  /** The database's own id for the session's connection (its CONNECTION_ID()). */
  upstreamId: number;
}

/**
 * Gateway ids are drawn from [2^30, 2^31): positive for clients that read the
 * id as a signed 32-bit number, and above the ids a server hands out (from 1,
 * one per connection) for its first billion connections, so an id a client
 * got from the server (CONNECTION_ID(), SHOW PROCESSLIST) is rarely one of
 * ours. Random, like PostgreSQL cancel keys: they say nothing about how many
 * sessions the gateway runs.
 */
const FIRST_ID = 2 ** 30;
const END_ID = 2 ** 31;

/**
 * The connection ids clients see in the greeting, and the database
 * connections they stand for (see docs/decisions/0021). The greeting goes out
 * before anyone logged in, so it cannot carry the database's id; a `KILL
 * [QUERY] <id>` (or COM_PROCESS_KILL) naming one of these is translated to
 * the database's id on its way to the same database. The database then
 * applies its own rule for who may kill what (the same database user, or
 * CONNECTION ADMIN / SUPER).
 */
export class ConnectionIds {
  readonly #live = new Map<number, ConnectionTarget>();

  /** A fresh id for a greeting (not one a live session holds). */
  issue(): number {
    let id: number;
    do id = randomInt(FIRST_ID, END_ID);
    while (this.#live.has(id));
    return id;
  }

  /** The session that greeted with `id` now runs on the database connection `target.upstreamId`. */
  bind(id: number, target: ConnectionTarget): void {
    this.#live.set(id, target);
  }

  /** The session moved to another database connection (COM_CHANGE_USER to another user). */
  move(id: number, upstreamId: number): void {
    const t = this.#live.get(id);
    if (t) this.#live.set(id, { ...t, upstreamId });
  }

  get(id: number): ConnectionTarget | undefined {
    return this.#live.get(id);
  }

  release(id: number): void {
    this.#live.delete(id);
  }

  get size(): number {
    return this.#live.size;
  }
}
