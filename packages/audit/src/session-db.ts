import type { AuditEmitter } from './emitter.js';
import { errorText } from './errors.js';
import type { CommonFields, DbSessionFields } from './events.js';

export const REDACTED = '<redacted>';

/**
 * The audit API a database adapter calls for one session. Adapters never
 * build event records themselves; this keeps PostgreSQL and MySQL events
 * identical in shape.
 */
export class DbSessionAudit {
  readonly #emit: AuditEmitter;
  readonly #base: DbSessionFields & Pick<CommonFields, 'user' | 'addr' | 'server'>;
  readonly #redact: boolean;
  readonly #startedAt: number;
  readonly #now: () => number;
  #queries = 0;
  #ended = false;

  constructor(
    emitter: AuditEmitter,
    base: DbSessionFields & Pick<CommonFields, 'user' | 'addr' | 'server'>,
    opts: { redactParameters?: boolean; now?: () => number } = {},
  ) {
    this.#emit = emitter;
    this.#base = base;
    this.#redact = opts.redactParameters ?? false;
    this.#now = opts.now ?? Date.now;
    this.#startedAt = this.#now();
  }

  get sessionId(): string {
    return this.#base.session_id;
  }

  /** A precondition: if it cannot be written the session does not start, and that failure is recorded instead. */
  async onSessionStart(): Promise<void> {
    try {
      await this.#emit.emit(
        { type: 'db.session.start', success: true, ...this.#base },
        { precondition: true },
      );
    } catch (err) {
      await this.onSessionStartFailed(`the audit log is unavailable: ${errorText(err)}`);
      throw err;
    }
  }

  async onSessionStartFailed(error: string): Promise<void> {
    this.#ended = true;
    await this.#emit.record({ type: 'db.session.start', success: false, error, ...this.#base });
  }

  async onQuery(q: {
    query: string;
    parameters?: string[];
    statement?: string;
    rows?: number;
  }): Promise<void> {
    this.#queries++;
    // A precondition: a statement whose record cannot be written is not run (the
    // adapter refuses it and ends the session; its end records why).
    await this.#emit.emit(
      {
        type: 'db.session.query',
        ...this.#base,
        query: q.query,
        ...(q.parameters
          ? { parameters: this.#redact ? q.parameters.map(() => REDACTED) : q.parameters }
          : {}),
        ...(q.statement !== undefined ? { statement: q.statement } : {}),
        ...(q.rows !== undefined ? { rows: q.rows } : {}),
      },
      { precondition: true },
    );
  }

  /** Idempotent: the first call wins, so every path that ends a session may call it. */
  async onSessionEnd(opts: { error?: string } = {}): Promise<void> {
    if (this.#ended) return;
    this.#ended = true;
    await this.#emit.record({
      type: 'db.session.end',
      ...this.#base,
      duration_ms: this.#now() - this.#startedAt,
      queries: this.#queries,
      ...(opts.error ? { error: opts.error } : {}),
    });
  }
}
