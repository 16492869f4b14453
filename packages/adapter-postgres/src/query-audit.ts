import type { BoundParam, FrontendMessage } from './wire/frontend.js';

/** One db.session.query event to emit, as DbSessionAudit.onQuery takes it. */
export interface QueryRecord {
  query: string;
  parameters?: string[];
  statement?: string;
}

/** Bound values longer than this are cut in the audit record (blobs would swamp it). */
const MAX_PARAM_CHARS = 4096;
/** Prepared statements and portals remembered per session, like the server's own memory per backend. */
const MAX_NAMES = 10_000;

/**
 * Turns the client's audited messages into query records: a simple Query is
 * one record; in the extended protocol Parse remembers the text, Bind the
 * parameters, and the first Execute of a bound portal is one record with
 * both. No I/O: the session emits what this returns.
 */
export class QueryAuditor {
  readonly #statements = new Map<string, string>();
  readonly #portals = new Map<
    string,
    { statement: string; sql: string; params: string[]; executed: boolean }
  >();

  /** Records to emit for this message (usually zero or one). */
  observe(m: FrontendMessage): QueryRecord[] {
    switch (m.type) {
      case 'query':
        // A simple Query destroys the unnamed statement and portal.
        this.#statements.delete('');
        this.#portals.delete('');
        return [{ query: m.sql }];
      case 'parse':
        this.#remember(this.#statements, m.statement, m.sql);
        return [];
      case 'bind': {
        const sql = this.#statements.get(m.statement) ?? `<unknown prepared statement "${m.statement}">`;
        this.#remember(this.#portals, m.portal, {
          statement: m.statement,
          sql,
          params: m.params.map(formatParam),
          executed: false,
        });
        return [];
      }
      case 'execute': {
        const p = this.#portals.get(m.portal);
        if (!p) return [{ query: `<execute of unknown portal "${m.portal}">` }];
        // Fetching more rows from the same portal is the same query.
        if (p.executed) return [];
        p.executed = true;
        return [
          {
            query: p.sql,
            parameters: p.params,
            ...(p.statement !== '' ? { statement: p.statement } : {}),
          },
        ];
      }
      case 'close':
        if (m.target === 'statement') this.#statements.delete(m.name);
        else this.#portals.delete(m.name);
        return [];
      case 'function-call':
        return [{ query: `<function call oid ${m.oid}>`, parameters: m.args.map(formatParam) }];
      default: {
        const never: never = m;
        return [{ query: `<unknown message ${String(never)}>` }];
      }
    }
  }

  #remember<V>(map: Map<string, V>, name: string, value: V): void {
    map.delete(name);
    if (map.size >= MAX_NAMES) {
      // The oldest name goes first; its later use is audited as unknown rather than growing without bound.
      const oldest = map.keys().next().value;
      if (oldest !== undefined) map.delete(oldest);
    }
    map.set(name, value);
  }
}

/** Text parameters as strings, binary ones as `\x<hex>`, NULL as `NULL` (unquoted, like psql shows it). */
export function formatParam(p: BoundParam): string {
  if (p === null) return 'NULL';
  const s = p.format === 'text' ? p.value.toString('utf8') : `\\x${p.value.toString('hex')}`;
  return s.length > MAX_PARAM_CHARS ? `${s.slice(0, MAX_PARAM_CHARS)}…(${p.value.length} bytes)` : s;
}
