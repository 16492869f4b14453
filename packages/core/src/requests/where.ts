import { GatehouseError } from '../errors.js';

/**
 * `review_requests.where`: a predicate on the request a reviewer looks at,
 * in a small subset of the forms of Teleport's predicate language:
 *
 *   contains(reviewer.traits["team"], "payments") && !equals(request.user, "root")
 *
 * - functions: `contains(LIST, STRING)` (the list holds the string) and
 *   `equals(STRING, STRING)`;
 * - operators `&&`, `||`, `!` and parentheses (`!` binds tightest, then `&&`);
 * - string literals in double quotes (`\"` and `\\` escapes);
 * - fields: `request.roles` (list), `request.reason`, `request.user`
 *   (strings), `reviewer.roles` (list), `reviewer.traits["KEY"]` and
 *   `requester.traits["KEY"]` (lists; a missing trait is an empty list).
 *
 * A real parser (recursive descent over tokens) that builds a tree checked
 * for types before it is ever evaluated: nothing is eval'd, an unknown
 * field or function, a wrong argument type or trailing input is a
 * GH_ERR_VALIDATION at role lint time, and evaluation cannot fail.
 */
export interface WhereInput {
  request: { roles: readonly string[]; reason: string; user: string };
  reviewer: { roles: readonly string[]; traits: Readonly<Record<string, readonly string[]>> };
  requester: { traits: Readonly<Record<string, readonly string[]>> };
}

type Str = { t: 'str'; v: string } | { t: 'field'; f: 'request.reason' | 'request.user' };
type List =
  | { t: 'list'; f: 'request.roles' | 'reviewer.roles' }
  | { t: 'traits'; who: 'reviewer' | 'requester'; key: string };
type Value = Str | List;

export type WhereExpr =
  | { t: 'and' | 'or'; l: WhereExpr; r: WhereExpr }
  | { t: 'not'; e: WhereExpr }
  | { t: 'contains'; list: List; item: Str }
  | { t: 'equals'; a: Str; b: Str };

/** Longer predicates are refused; so is nesting deeper than this. */
const MAX_LENGTH = 2048;
const MAX_DEPTH = 32;

type Token =
  | { k: 'ident'; v: string; at: number }
  | { k: 'str'; v: string; at: number }
  | { k: 'op'; v: '&&' | '||' | '!' | '(' | ')' | '[' | ']' | ','; at: number }
  | { k: 'end'; at: number };

function bad(text: string, at: number, what: string): GatehouseError {
  return new GatehouseError('GH_ERR_VALIDATION', `where: ${what} at character ${at + 1}`, {
    hint: 'write e.g. contains(reviewer.traits["team"], "payments") && !equals(request.user, "root")',
    details: { expression: text.slice(0, 200), position: at + 1 },
  });
}

function tokenize(text: string): Token[] {
  const out: Token[] = [];
  let i = 0;
  while (i < text.length) {
    const c = text[i]!;
    if (c === ' ' || c === '\t' || c === '\n' || c === '\r') {
      i++;
    } else if (c === '&' || c === '|') {
      if (text[i + 1] !== c) throw bad(text, i, `"${c}" alone (write ${c}${c})`);
      out.push({ k: 'op', v: c === '&' ? '&&' : '||', at: i });
      i += 2;
    } else if ('!()[],'.includes(c)) {
      out.push({ k: 'op', v: c as '!', at: i });
      i++;
    } else if (c === '"') {
      const start = i++;
      let v = '';
      for (;;) {
        if (i >= text.length) throw bad(text, start, 'a string that does not end');
        const d = text[i]!;
        if (d === '"') break;
        if (d === '\\') {
          const e = text[i + 1];
          if (e !== '"' && e !== '\\') throw bad(text, i, 'an escape other than \\" or \\\\');
          v += e;
          i += 2;
        } else {
          v += d;
          i++;
        }
      }
      out.push({ k: 'str', v, at: start });
      i++;
    } else if (/[A-Za-z_]/.test(c)) {
      const start = i;
      while (i < text.length && /[A-Za-z0-9_.]/.test(text[i]!)) i++;
      out.push({ k: 'ident', v: text.slice(start, i), at: start });
    } else {
      throw bad(text, i, `unexpected "${c}"`);
    }
  }
  out.push({ k: 'end', at: text.length });
  return out;
}

/** Parses and type-checks a predicate; throws GH_ERR_VALIDATION saying where it is wrong. */
export function parseWhere(text: string): WhereExpr {
  if (text.length > MAX_LENGTH) throw bad(text, MAX_LENGTH, `longer than ${MAX_LENGTH} characters`);
  const toks = tokenize(text);
  let pos = 0;
  const peek = () => toks[pos]!;
  const isOp = (v: string) => {
    const t = peek();
    return t.k === 'op' && t.v === v;
  };
  const expect = (v: string) => {
    const t = peek();
    if (t.k !== 'op' || t.v !== v) throw bad(text, t.at, `expected "${v}"`);
    pos++;
  };

  const or = (depth: number): WhereExpr => {
    if (depth > MAX_DEPTH) throw bad(text, peek().at, `nesting deeper than ${MAX_DEPTH}`);
    let l = and(depth);
    while (isOp('||')) {
      pos++;
      l = { t: 'or', l, r: and(depth) };
    }
    return l;
  };
  const and = (depth: number): WhereExpr => {
    let l = unary(depth);
    while (isOp('&&')) {
      pos++;
      l = { t: 'and', l, r: unary(depth) };
    }
    return l;
  };
  const unary = (depth: number): WhereExpr => {
    if (isOp('!')) {
      pos++;
      if (depth > MAX_DEPTH) throw bad(text, peek().at, `nesting deeper than ${MAX_DEPTH}`);
      return { t: 'not', e: unary(depth + 1) };
    }
    if (isOp('(')) {
      pos++;
      const e = or(depth + 1);
      expect(')');
      return e;
    }
    const t = peek();
    if (t.k !== 'ident') throw bad(text, t.at, 'expected contains(...), equals(...), ! or (');
    pos++;
    if (t.v !== 'contains' && t.v !== 'equals') {
      throw bad(text, t.at, `unknown function "${t.v}" (use contains or equals)`);
    }
    expect('(');
    const a = value();
    expect(',');
    const b = value();
    expect(')');
    if (t.v === 'contains') {
      if (a.v.t !== 'list' && a.v.t !== 'traits')
        throw bad(text, a.at, 'contains() takes a list first (request.roles, reviewer.traits["k"], ...)');
      if (b.v.t !== 'str' && b.v.t !== 'field') throw bad(text, b.at, 'contains() takes a string second');
      return { t: 'contains', list: a.v, item: b.v };
    }
    for (const x of [a, b]) {
      if (x.v.t !== 'str' && x.v.t !== 'field')
        throw bad(text, x.at, 'equals() compares strings (use contains() for a list)');
    }
    return { t: 'equals', a: a.v as Str, b: b.v as Str };
  };
  const value = (): { v: Value; at: number } => {
    const t = peek();
    pos++;
    if (t.k === 'str') return { v: { t: 'str', v: t.v }, at: t.at };
    if (t.k !== 'ident') throw bad(text, t.at, 'expected a field or a "string"');
    switch (t.v) {
      case 'request.roles':
      case 'reviewer.roles':
        return { v: { t: 'list', f: t.v }, at: t.at };
      case 'request.reason':
      case 'request.user':
        return { v: { t: 'field', f: t.v }, at: t.at };
      case 'reviewer.traits':
      case 'requester.traits': {
        expect('[');
        const k = peek();
        if (k.k !== 'str') throw bad(text, k.at, 'expected a trait name in quotes');
        pos++;
        expect(']');
        return {
          v: { t: 'traits', who: t.v === 'reviewer.traits' ? 'reviewer' : 'requester', key: k.v },
          at: t.at,
        };
      }
      default:
        throw bad(
          text,
          t.at,
          `unknown field "${t.v}" (fields: request.roles, request.reason, request.user, reviewer.roles, reviewer.traits["k"], requester.traits["k"])`,
        );
    }
  };

  const e = or(0);
  if (peek().k !== 'end') throw bad(text, peek().at, 'unexpected input after the expression');
  return e;
}

/** Evaluates a parsed predicate; total (no input makes it throw). */
export function evalWhere(e: WhereExpr, input: WhereInput): boolean {
  const str = (s: Str) =>
    s.t === 'str' ? s.v : s.f === 'request.reason' ? input.request.reason : input.request.user;
  const list = (l: List): readonly string[] => {
    if (l.t === 'list') return l.f === 'request.roles' ? input.request.roles : input.reviewer.roles;
    const traits = l.who === 'reviewer' ? input.reviewer.traits : input.requester.traits;
    return Object.hasOwn(traits, l.key) ? (traits[l.key] ?? []) : [];
  };
  switch (e.t) {
    case 'and':
      return evalWhere(e.l, input) && evalWhere(e.r, input);
    case 'or':
      return evalWhere(e.l, input) || evalWhere(e.r, input);
    case 'not':
      return !evalWhere(e.e, input);
    case 'contains':
      return list(e.list).includes(str(e.item));
    case 'equals':
      return str(e.a) === str(e.b);
    default: {
      const never: never = e;
      throw new Error(`unknown predicate node ${JSON.stringify(never)}`);
    }
  }
}
