import { RE2JS } from 're2js';

/**
 * Content guards (restricted sessions): patterns the gateway watches for in
 * what flows through a session, and what it does on a match. A role says
 * `options.guards: [{ match | literal, on, action }]`; core compiles them
 * per session and scans each stream as it passes, so a canary value or a
 * secret pattern ends the session (or is audited) wherever it shows up.
 *
 * Matching is linear-time whatever the pattern: literals with Buffer's
 * native search, regular expressions with RE2 semantics (re2js), which has
 * no backtracking to blow up. A match split across two packets is found:
 * each stream keeps the last `window` bytes it scanned and scans them again
 * with the next piece (a match longer than the window and split across
 * pieces can be missed; the default window is 1 KiB).
 */

export type GuardStream = 'output' | 'input' | 'query' | 'result';
export const GUARD_STREAMS: readonly GuardStream[] = ['output', 'input', 'query', 'result'];

/** One guard as a role document spells it. */
export interface GuardSpec {
  /** A label for audit and messages; default: `guard <n>`. */
  name?: string | undefined;
  /** A regular expression (RE2 syntax: no backreferences or lookaround). */
  match?: string | undefined;
  /** A string to find as it is. */
  literal?: string | undefined;
  /** Where to look: terminal output, keyboard input, database statements, database results. */
  on: GuardStream[];
  /** terminate: end the session (the default); audit: record the match and go on. */
  action?: 'terminate' | 'audit' | undefined;
  /** Ignore case (ASCII for literals, Unicode for patterns). */
  ignore_case?: boolean | undefined;
}

/** What a stream scan found. */
export interface GuardHit {
  rule: string;
  on: GuardStream;
  action: 'terminate' | 'audit';
  /** How long the match was (the match itself is never kept: it may be the secret). */
  length: number;
}

/** Bytes of earlier data each stream scans again with the next piece. */
const WINDOW = 1024;

/** Why a guard cannot be compiled; the role linter reports it with the key's line. */
export class GuardSyntaxError extends Error {
  override name = 'GuardSyntaxError';
}

interface Compiled {
  rule: string;
  on: ReadonlySet<GuardStream>;
  action: 'terminate' | 'audit';
  /** The length of a match in `text` that ends after `minEnd`, if there is one. */
  find(text: Buffer, minEnd: number): number | undefined;
}

/** Checks one guard (the linter calls it per role); throws GuardSyntaxError. */
export function compileGuard(g: GuardSpec, index: number): Compiled {
  const rule = g.name ?? `guard ${index + 1}`;
  const on = new Set(g.on);
  const action = g.action ?? 'terminate';
  if ((g.match === undefined) === (g.literal === undefined)) {
    throw new GuardSyntaxError(`${rule}: give exactly one of match (a pattern) or literal (a string)`);
  }
  if (g.literal !== undefined) {
    if (g.literal.length === 0)
      throw new GuardSyntaxError(`${rule}: an empty literal would match everything`);
    const needle = Buffer.from(g.ignore_case ? g.literal.toLowerCase() : g.literal, 'utf8');
    if (needle.length > WINDOW)
      throw new GuardSyntaxError(`${rule}: a literal may be at most ${WINDOW} bytes`);
    return {
      rule,
      on,
      action,
      find: (text, minEnd) => {
        const hay = g.ignore_case ? asciiLower(text) : text;
        // An occurrence starting here or later ends after minEnd.
        return hay.indexOf(needle, Math.max(0, minEnd - needle.length + 1)) >= 0 ? needle.length : undefined;
      },
    };
  }
  let re: RE2JS;
  try {
    re = RE2JS.compile(g.match as string, g.ignore_case ? RE2JS.CASE_INSENSITIVE : 0);
  } catch (err) {
    throw new GuardSyntaxError(`${rule}: ${(err as Error).message}`);
  }
  if (re.matches(''))
    throw new GuardSyntaxError(`${rule}: the pattern matches the empty string (so everything)`);
  const prefix = literalPrefix(g.match as string);
  if (prefix.length >= 3) {
    // A pattern that starts with a fixed string (AKIA[0-9A-Z]{16}, -----BEGIN …): the native
    // search finds where a match may start, and the pattern runs only there, anchored and
    // bounded by the window. Most data holds no such start, and costs one memchr-speed pass.
    const needle = Buffer.from(g.ignore_case ? prefix.toLowerCase() : prefix, 'latin1');
    return {
      rule,
      on,
      action,
      find: (text, minEnd) => {
        const hay = g.ignore_case ? asciiLower(text) : text;
        for (let at = hay.indexOf(needle); at >= 0; at = hay.indexOf(needle, at + 1)) {
          const m = re.matcher(text.toString('latin1', at, Math.min(text.length, at + WINDOW)));
          if (m.lookingAt() && at + m.end() > minEnd) return m.end();
        }
        return undefined;
      },
    };
  }
  return {
    rule,
    on,
    action,
    find: (text, minEnd) => {
      // latin1 keeps every byte as one character: offsets stay byte offsets, and
      // ASCII patterns (where secrets live) match whatever the bytes around them are.
      const m = re.matcher(text.toString('latin1'));
      // Matches come left to right; those ending inside the window were reported before.
      while (m.find()) if (m.end() > minEnd) return m.end() - m.start();
      return undefined;
    },
  };
}

/**
 * The fixed text every match of `pattern` starts with: its leading plain
 * characters, up to the first character with a meaning (or a quantifier
 * that could make the last one optional). Empty when there is none.
 */
export function literalPrefix(pattern: string): string {
  // An alternative anywhere may start elsewhere (key|token): no prefix is fixed then.
  if (pattern.includes('|')) return '';
  let out = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if ('\\^$.|?*+()[]{}'.includes(c)) {
      // A quantifier applies to the character before it: that one is not fixed.
      if ('?*{'.includes(c)) out = out.slice(0, -1);
      break;
    }
    out += c;
  }
  return out;
}

function asciiLower(b: Buffer): Buffer {
  let out: Buffer | undefined;
  for (let i = 0; i < b.length; i++) {
    const c = b[i]!;
    if (c >= 0x41 && c <= 0x5a) {
      out ??= Buffer.from(b);
      out[i] = c | 0x20;
    }
  }
  return out ?? b;
}

/** The guards of one session, compiled once. */
export class GuardSet {
  readonly #rules: readonly Compiled[];

  constructor(specs: readonly GuardSpec[]) {
    this.#rules = specs.map((g, i) => compileGuard(g, i));
  }

  get size(): number {
    return this.#rules.length;
  }

  /** Whether any guard looks at `on` (a stream nobody watches is not scanned at all). */
  watches(on: GuardStream): boolean {
    return this.#rules.some((r) => r.on.has(on));
  }

  /** A scanner for one stream of one session (it keeps the window between pieces). */
  scanner(on: GuardStream): GuardScanner | undefined {
    const rules = this.#rules.filter((r) => r.on.has(on));
    return rules.length === 0 ? undefined : new GuardScanner(on, rules);
  }
}

/** Scans one stream piece by piece, finding matches that straddle two pieces too. */
export class GuardScanner {
  readonly #on: GuardStream;
  readonly #rules: readonly Compiled[];
  #tail: Buffer = Buffer.alloc(0);

  /** @internal GuardSet makes these. */
  constructor(on: GuardStream, rules: readonly Compiled[]) {
    this.#on = on;
    this.#rules = rules;
  }

  /**
   * Every guard that matches in what was scanned before (the window) and
   * `piece` together, terminating ones first. Matches wholly inside the
   * window were reported with the piece before and are not reported again.
   */
  scan(piece: Uint8Array): GuardHit[] {
    if (piece.length === 0) return [];
    const chunk = Buffer.from(piece.buffer, piece.byteOffset, piece.byteLength);
    const seen = this.#tail.length;
    const text = seen > 0 ? Buffer.concat([this.#tail, chunk]) : chunk;
    const hits: GuardHit[] = [];
    for (const r of this.#rules) {
      const len = r.find(text, seen);
      if (len !== undefined) hits.push({ rule: r.rule, on: this.#on, action: r.action, length: len });
    }
    this.#tail = Buffer.from(text.subarray(Math.max(0, text.length - WINDOW)));
    return hits.sort((a, b) => (a.action === b.action ? 0 : a.action === 'terminate' ? -1 : 1));
  }
}
