import { type AuditText, type AuditTextLimits, clipString, DEFAULT_AUDIT_TEXT_LIMITS } from './clip.js';
import type { AuditEmitter } from './emitter.js';
import { errorText } from './errors.js';
import type { AuditEventInput, CommonFields, DbSessionFields, TruncatedParameter } from './events.js';

export const REDACTED = '<redacted>';

const DONE: Promise<void> = Promise.resolve();
const PRECONDITION = { precondition: true } as const;
const noop = (): void => undefined;

/**
 * The audit API a database adapter calls for one session. Adapters never
 * build event records themselves; this keeps PostgreSQL and MySQL events
 * identical in shape.
 */
export class DbSessionAudit {
  readonly #emit: AuditEmitter;
  readonly #base: DbSessionFields & Pick<CommonFields, 'user' | 'addr' | 'server'>;
  readonly #redact: boolean;
  readonly #limits: AuditTextLimits;
  readonly #startedAt: number;
  readonly #now: () => number;
  readonly #statements: boolean;
  #queries = 0;
  #ended = false;

  constructor(
    emitter: AuditEmitter,
    base: DbSessionFields & Pick<CommonFields, 'user' | 'addr' | 'server'>,
    opts: {
      redactParameters?: boolean;
      now?: () => number;
      limits?: Partial<AuditTextLimits>;
      /**
       * Records each statement (default). False: only the session's start (which
       * says so) and end; core decides this from the roles (`db_audit`).
       */
      statements?: boolean;
    } = {},
  ) {
    this.#emit = emitter;
    this.#base = { ...base };
    this.#redact = opts.redactParameters ?? false;
    this.#limits = { ...DEFAULT_AUDIT_TEXT_LIMITS, ...opts.limits };
    this.#now = opts.now ?? Date.now;
    this.#statements = opts.statements ?? true;
    this.#startedAt = this.#now();
  }

  /**
   * Whether each statement is recorded before it runs. When false the adapter
   * need not decode statements for the audit (it calls `countQuery` instead
   * of `onQuery`); `onQuery` then only counts too.
   */
  get auditsStatements(): boolean {
    return this.#statements;
  }

  get sessionId(): string {
    return this.#base.session_id;
  }

  /** How much of a statement and its parameters a record keeps (config `audit.max_query_bytes`, ...). */
  get limits(): Readonly<AuditTextLimits> {
    return this.#limits;
  }

  /** A precondition: if it cannot be written the session does not start, and that failure is recorded instead. */
  async onSessionStart(): Promise<void> {
    try {
      await this.#emit.emit(
        {
          type: 'db.session.start',
          success: true,
          ...this.#base,
          ...(this.#statements ? {} : { db_audit: 'sessions' as const }),
        },
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

  /**
   * One statement, written before it runs. A query text longer than the
   * limit is clipped here; parameters arrive clipped already (the adapter
   * renders them from their bytes with a `ParameterClipper`), so their
   * lengths and hashes are those of the bytes the client sent.
   */
  onQuery(q: {
    query: AuditText;
    parameters?: AuditText[];
    statement?: string;
    rows?: number;
  }): Promise<void> {
    this.#queries++;
    if (!this.#statements) return DONE;
    const query = typeof q.query === 'string' ? clipString(q.query, this.#limits.maxQueryBytes) : q.query;
    // Built field by field (no spreads of partial objects): this runs for every statement.
    const e: Record<string, unknown> = { type: 'db.session.query' };
    const base = this.#base as unknown as Record<string, unknown>;
    for (const k in base) e[k] = base[k];
    if (typeof query === 'string') e.query = query;
    else {
      e.query = query.text;
      e.query_truncated = true;
      e.query_length = query.length;
      e.query_sha256 = query.sha256;
    }
    if (q.parameters) Object.assign(e, this.#parameters(q.parameters));
    if (q.statement !== undefined) e.statement = q.statement;
    if (q.rows !== undefined) e.rows = q.rows;
    // A precondition: a statement whose record cannot be written is not run (the
    // adapter refuses it and ends the session; its end records why).
    // (An emitter that throws instead of rejecting still gives a rejection, as when this was async.)
    try {
      return this.#emit.emit(e as unknown as AuditEventInput, PRECONDITION).then(noop);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** A statement of a session whose statements are not recorded (`auditsStatements` false): counted for its end. */
  countQuery(n = 1): void {
    this.#queries += n;
  }

  #parameters(ps: AuditText[]): { parameters: string[]; parameters_truncated?: TruncatedParameter[] } {
    // A redacted value keeps no length or hash either: a hash of a short secret can be brute-forced.
    if (this.#redact) return { parameters: ps.map(() => REDACTED) };
    if (ps.every((p) => typeof p === 'string')) return { parameters: ps };
    const truncated: TruncatedParameter[] = [];
    const parameters = ps.map((p, index) => {
      if (typeof p === 'string') return p;
      truncated.push({ index, length: p.length, sha256: p.sha256 });
      return p.text;
    });
    return { parameters, parameters_truncated: truncated };
  }

  /**
   * The client switched to another database user or name (MySQL
   * COM_CHANGE_USER). A precondition when it succeeded: a switch whose record
   * cannot be written does not happen. From then on every event of the session
   * names the new user and database. A refused switch (`error`) is recorded and
   * changes nothing.
   */
  async onChangeUser(next: { dbUser: string; dbName: string }, error?: string): Promise<void> {
    const event = {
      type: 'db.session.change_user' as const,
      ...this.#base,
      db_user: next.dbUser,
      db_name: next.dbName,
      previous_db_user: this.#base.db_user,
      previous_db_name: this.#base.db_name,
    };
    if (error !== undefined) {
      await this.#emit.record({ ...event, success: false, error });
      return;
    }
    await this.#emit.emit({ ...event, success: true }, { precondition: true });
    this.#base.db_user = next.dbUser;
    this.#base.db_name = next.dbName;
  }

  /** Idempotent: the first call wins, so every path that ends a session may call it. */
  async onSessionEnd(opts: { error?: string | undefined; reason?: string | undefined } = {}): Promise<void> {
    if (this.#ended) return;
    this.#ended = true;
    await this.#emit.record({
      type: 'db.session.end',
      ...this.#base,
      duration_ms: this.#now() - this.#startedAt,
      queries: this.#queries,
      ...(opts.reason ? { reason: opts.reason } : {}),
      ...(opts.error ? { error: opts.error } : {}),
    });
  }
}
