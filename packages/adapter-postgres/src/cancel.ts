import { randomInt } from 'node:crypto';

/** What a client's cancel key stands for. */
export interface CancelTarget {
  sessionId: string;
  user: string;
  dbService: string;
  /** The database's own key for the session's backend. */
  upstreamKey: { pid: number; secret: number };
  /** Sends bytes to the session's database over a fresh plaintext connection. */
  send(bytes: Buffer): Promise<void>;
}

/**
 * Cancel keys the gateway hands to clients in BackendKeyData. Each client
 * gets its own random (pid, secret), never the database's, and a cancel must
 * match both: knowing another session's pid (visible in pg_stat_activity of
 * the database, not of the gateway) is not enough to cancel its query.
 */
export class CancelKeys {
  readonly #byPid = new Map<number, CancelTarget & { secret: number }>();

  issue(target: CancelTarget): { pid: number; secret: number } {
    let pid: number;
    do pid = randomInt(1, 0x7fffffff);
    while (this.#byPid.has(pid));
    // A signed 32-bit value, as the wire carries it.
    const secret = randomInt(0, 0x100000000) | 0;
    this.#byPid.set(pid, { ...target, secret });
    return { pid, secret };
  }

  find(pid: number, secret: number): CancelTarget | undefined {
    const e = this.#byPid.get(pid);
    return e && e.secret === secret ? e : undefined;
  }

  /** The session behind a key the gateway issued (for a cancel the gateway sends itself). */
  get(pid: number): CancelTarget | undefined {
    return this.#byPid.get(pid);
  }

  remove(pid: number): void {
    this.#byPid.delete(pid);
  }

  get size(): number {
    return this.#byPid.size;
  }
}
