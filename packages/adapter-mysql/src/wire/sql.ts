import { StringDecoder } from 'node:string_decoder';

/**
 * How the server lexes quotes, which depends on the session's sql_mode:
 * - `default`: backslash escapes in '...' and "..." (both strings);
 * - `ansi_quotes` (ANSI_QUOTES): "..." is an identifier, where a backslash is
 *   an ordinary character (only "" escapes);
 * - `no_backslash_escapes` (NO_BACKSLASH_ESCAPES, with or without
 *   ANSI_QUOTES): a backslash is an ordinary character in every quote.
 * Comments, semicolons and backticks lex the same in all three.
 */
export type LexMode = 'default' | 'ansi_quotes' | 'no_backslash_escapes';

/** Every lexing a server may apply to a text: the gateway cannot know the session's sql_mode. */
export const LEX_MODES: readonly LexMode[] = ['default', 'ansi_quotes', 'no_backslash_escapes'];

/**
 * Just enough SQL lexing to see the statements the gateway must check before
 * a server runs them: `USE db` (re-authorized like COM_INIT_DB) and
 * `LOAD DATA|XML LOCAL` (refused). Quotes and comments are respected; the
 * contents of executable comments (`/*! ... *\/`, `/*M! ... *\/`) count as
 * code, because the server runs them. One scanner lexes in one `LexMode`.
 *
 * The text may arrive in pieces of any size (a statement streamed to the
 * database): each statement keeps at most `keep` characters, with comments
 * and runs of whitespace outside quotes shrunk to one space, which is all a
 * USE or LOAD check needs. A few characters of a piece may wait for the next
 * one when a token (`/*!`, `--`, a doubled quote) could straddle the two.
 */
export class StatementScanner {
  readonly #keep: number;
  readonly #quotes: Record<string, QuoteScan>;
  readonly #onStatement: (text: string, truncated: boolean) => void;
  #carry = '';
  #state: 'code' | 'quote' | 'block' | 'line' = 'code';
  #quote: QuoteScan | undefined;
  /** Inside an executable comment, whose closing marker is dropped. */
  #exec = false;
  #cur = '';
  #truncated = false;

  constructor(
    onStatement: (text: string, truncated: boolean) => void,
    opts: { keep?: number; mode?: LexMode } = {},
  ) {
    this.#onStatement = onStatement;
    this.#keep = opts.keep ?? Number.POSITIVE_INFINITY;
    this.#quotes = QUOTES[opts.mode ?? 'default'];
  }

  push(text: string): void {
    const s = this.#carry.length > 0 ? this.#carry + text : text;
    this.#carry = '';
    this.#scan(s, false);
  }

  end(): void {
    const s = this.#carry;
    this.#carry = '';
    this.#scan(s, true);
    this.#flush();
  }

  #add(text: string): void {
    if (text.length === 0) return;
    const room = this.#keep - this.#cur.length;
    if (text.length > room) {
      this.#truncated = true;
      if (room > 0) this.#cur += text.slice(0, room);
      return;
    }
    this.#cur += text;
  }

  #space(): void {
    if (this.#cur.length > 0 && !this.#cur.endsWith(' ')) this.#add(' ');
  }

  #flush(): void {
    const text = this.#cur.trim();
    if (text) this.#onStatement(text, this.#truncated);
    this.#cur = '';
    this.#truncated = false;
  }

  #scan(s: string, final: boolean): void {
    const n = s.length;
    let i = 0;
    /** Keeps s[at..] for the next piece, when a token starting at `at` needs `need` more characters. */
    const wait = (at: number, need: number): boolean => {
      if (final || at + need < n) return false;
      this.#carry = s.slice(at);
      return true;
    };
    while (i < n) {
      switch (this.#state) {
        case 'quote': {
          const q = this.#quote as QuoteScan;
          q.re.lastIndex = i;
          const m = q.re.exec(s);
          if (!m) {
            this.#add(s.slice(i));
            i = n;
            break;
          }
          const j = m.index;
          if (wait(j, 1)) {
            this.#add(s.slice(i, j));
            return;
          }
          if (s[j] === '\\' || s[j + 1] === q.char) {
            // An escaped character or a doubled quote: still inside.
            this.#add(s.slice(i, j + 2));
            i = j + 2;
            break;
          }
          this.#add(s.slice(i, j + 1));
          i = j + 1;
          this.#state = 'code';
          break;
        }
        case 'block': {
          const j = s.indexOf('*/', i);
          if (j < 0) {
            // A '*' at the very end may be half of the closing marker.
            if (!final && s.endsWith('*')) this.#carry = '*';
            i = n;
            break;
          }
          i = j + 2;
          this.#state = 'code';
          break;
        }
        case 'line': {
          const j = s.indexOf('\n', i);
          i = j < 0 ? n : j + 1;
          if (j >= 0) this.#state = 'code';
          break;
        }
        case 'code': {
          CODE_SPECIAL.lastIndex = i;
          const m = CODE_SPECIAL.exec(s);
          const j = m ? m.index : n;
          this.#add(s.slice(i, j));
          if (!m) {
            i = n;
            break;
          }
          const c = s[j] as string;
          const next = s[j + 1];
          if (c === "'" || c === '"' || c === '`') {
            this.#add(c);
            this.#quote = this.#quotes[c];
            this.#state = 'quote';
            i = j + 1;
          } else if (c === ';') {
            this.#flush();
            i = j + 1;
          } else if (c === '#') {
            this.#space();
            this.#state = 'line';
            i = j + 1;
          } else if (c === '/') {
            if (wait(j, 1)) return;
            if (next !== '*') {
              this.#add(c);
              i = j + 1;
              break;
            }
            // `/*M!` and up to 6 version digits: 10 characters decide what kind of comment this is.
            if (wait(j, 10)) return;
            const exec = /^\/\*M?!\d{0,6}/.exec(s.slice(j, j + 10));
            this.#space();
            if (exec && !this.#exec) {
              this.#exec = true;
              i = j + exec[0].length;
            } else {
              this.#state = 'block';
              i = j + 2;
            }
          } else if (c === '*') {
            if (!this.#exec) {
              this.#add(c);
              i = j + 1;
              break;
            }
            if (wait(j, 1)) return;
            if (next === '/') {
              this.#exec = false;
              this.#space();
              i = j + 2;
            } else {
              this.#add(c);
              i = j + 1;
            }
          } else if (c === '-') {
            if (wait(j, 2)) return;
            // `--` starts a comment only when whitespace (or the end) follows.
            if (next === '-' && /\s/.test(s[j + 2] ?? ' ')) {
              this.#space();
              this.#state = 'line';
              i = j + 2;
            } else {
              this.#add(c);
              i = j + 1;
            }
          } else {
            this.#space();
            i = j + 1;
          }
          break;
        }
      }
    }
  }
}

interface QuoteScan {
  char: string;
  /** The next character that may end the quote: the quote itself, or a backslash where it escapes. */
  re: RegExp;
  /** Whether a backslash escapes the next character. */
  escapes: boolean;
}

const ESCAPING = (char: string): QuoteScan => ({
  char,
  re: new RegExp(`[${char}\\\\]`, 'g'),
  escapes: true,
});
const DOUBLING = (char: string): QuoteScan => ({ char, re: new RegExp(char, 'g'), escapes: false });

const QUOTES: Record<LexMode, Record<string, QuoteScan>> = {
  default: { "'": ESCAPING("'"), '"': ESCAPING('"'), '`': DOUBLING('`') },
  ansi_quotes: { "'": ESCAPING("'"), '"': DOUBLING('"'), '`': DOUBLING('`') },
  no_backslash_escapes: { "'": DOUBLING("'"), '"': DOUBLING('"'), '`': DOUBLING('`') },
};

/** Characters code cannot just be copied past. */
const CODE_SPECIAL = /['"`;#/*\-\s]/g;

/** Statements split on semicolons outside quotes and comments (comments and whitespace runs become one space). */
export function splitStatements(sql: string, mode: LexMode = 'default'): string[] {
  const out: string[] = [];
  const s = new StatementScanner((text) => out.push(text), { mode });
  s.push(sql);
  s.end();
  return out;
}

/**
 * The database a `USE` statement switches to, or undefined for any other
 * statement; `mode` is the lexing the statement was split with.
 */
export function useTarget(statement: string, mode: LexMode = 'default'): string | undefined {
  // A quote may follow USE directly (`USE"db"` under ANSI_QUOTES).
  const m = /^use(?:\s+|(?=[`"']))([\s\S]+)$/i.exec(statement.trim());
  if (!m) return undefined;
  const arg = (m[1] as string).trim();
  const q = arg[0] as string;
  if (q === '`' || q === '"' || q === "'") {
    const end = quoteEnd(arg, q, (QUOTES[mode][q] as QuoteScan).escapes);
    return arg
      .slice(1, end - 1)
      .split(q + q)
      .join(q);
  }
  return arg.split(/\s/)[0];
}

/** Where the quoted string at the start of `s` ends (just past its closing quote). */
function quoteEnd(s: string, q: string, backslashEscapes: boolean): number {
  let i = 1;
  while (i < s.length) {
    const c = s[i];
    if (c === '\\' && backslashEscapes) {
      i += 2;
      continue;
    }
    if (c === q) {
      if (s[i + 1] === q) {
        i += 2;
        continue;
      }
      return i + 1;
    }
    i++;
  }
  return s.length;
}

export function isLoadDataLocal(statement: string): boolean {
  return /^\s*load\s+(?:data|xml)\s+(?:(?:low_priority|concurrent)\s+)?local\b/i.test(statement);
}

/** What the relay must check in one COM_QUERY text. */
export interface QueryCheck {
  /** Databases `USE` statements switch to (each once). */
  useDatabases: string[];
  loadDataLocal: boolean;
  /** Why the text cannot be checked (the gateway refuses it then). */
  unchecked?: string | undefined;
}

/** Characters of each statement a USE or LOAD check looks at: far more than either needs. */
const CHECKED_CHARS = 1024;
/** Distinct USE targets one query may have; each is a full authorization. */
const MAX_USE_TARGETS = 64;

/**
 * Checks a COM_QUERY text that may arrive in pieces of bytes (`pushBytes`,
 * UTF-8 across piece boundaries) or as a string, holding a bounded amount of
 * it whatever its size.
 */
export class QueryInspector {
  /**
   * One scanner per lexing the server may use (the session's sql_mode can
   * change with any SET, and the server's default is not ours to know): a
   * quote that hides a USE or LOAD in one mode shows it in another, and the
   * check is the union of what all of them find. A text that lexes
   * differently in two modes can only be refused more, never less.
   */
  readonly #scanners = LEX_MODES.map(
    (mode) =>
      new StatementScanner((s, truncated) => this.#statement(s, truncated, mode), {
        keep: CHECKED_CHARS,
        mode,
      }),
  );
  readonly #decoder = new StringDecoder('utf8');
  readonly #use = new Set<string>();
  #loadDataLocal = false;
  #unchecked: string | undefined;

  push(text: string): void {
    for (const s of this.#scanners) s.push(text);
  }

  pushBytes(b: Buffer): void {
    this.push(this.#decoder.write(b));
  }

  end(): QueryCheck {
    const rest = this.#decoder.end();
    if (rest) this.push(rest);
    for (const s of this.#scanners) s.end();
    return { useDatabases: [...this.#use], loadDataLocal: this.#loadDataLocal, unchecked: this.#unchecked };
  }

  #statement(s: string, truncated: boolean, mode: LexMode): void {
    // A cut USE could name another database than the prefix shows. (LOAD needs no such care: its
    // LOCAL comes within the first words, and whitespace and comments are already one space.)
    if (truncated && /^use[\s`"']/i.test(s)) {
      this.#unchecked ??= `a USE statement of more than ${CHECKED_CHARS} characters cannot be checked`;
    }
    const db = useTarget(s, mode);
    if (db !== undefined) {
      this.#use.add(db);
      if (this.#use.size > MAX_USE_TARGETS) {
        this.#unchecked ??= `more than ${MAX_USE_TARGETS} databases in USE statements in one query cannot be checked`;
      }
    }
    if (isLoadDataLocal(s)) this.#loadDataLocal = true;
  }
}

/** What the relay must check in one COM_QUERY (or COM_STMT_PREPARE) text held whole. */
export function inspectQuery(sql: string): QueryCheck {
  // Fast path: most queries mention neither keyword.
  if (!/use|local/i.test(sql)) return { useDatabases: [], loadDataLocal: false };
  const q = new QueryInspector();
  q.push(sql);
  return q.end();
}

/** A `KILL [HARD|SOFT] [QUERY|CONNECTION] <id>` sent as the whole query: how clients cancel. */
export interface KillStatement {
  /** The statement up to the id, e.g. `KILL QUERY ` (upper case, single spaces). */
  prefix: string;
  id: number;
}

/**
 * The KILL a client sends to stop a statement or a connection (the mariadb
 * client's Ctrl-C, Connector/J's Statement.cancel(), a DBA's KILL QUERY),
 * when it is the whole query; undefined for anything else, which reaches the
 * database untranslated. `KILL QUERY ID <n>` names a query id, not a
 * connection, and is not one.
 */
export function parseKill(sql: string): KillStatement | undefined {
  const m = /^\s*kill\s+((?:(?:hard|soft)\s+)?(?:(?:query|connection)\s+)?)(\d{1,10})\s*;?\s*$/i.exec(sql);
  if (!m) return undefined;
  const id = Number(m[2]);
  if (id > 0xffffffff) return undefined;
  const words = (m[1] as string).trim().toUpperCase().split(/\s+/).filter(Boolean);
  return { prefix: ['KILL', ...words].join(' ') + ' ', id };
}
