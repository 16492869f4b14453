import type { Traits } from '../identity/types.js';

/**
 * Trait templates in role values: `{{internal.logins}}`, `{{external.email}}`,
 * `{{email.local(external.email)}}`,
 * `{{regexp.replace(internal.groups, "^env-(.*)$", "$1")}}`, optionally with
 * literal text around them (`prefix-{{internal.logins}}-suffix`).
 *
 * A small hand-written parser (no eval): the grammar is tiny and every error
 * must say what is wrong, since admins write these by hand.
 */

export type TemplateExpr =
  | { kind: 'trait'; namespace: 'internal' | 'external'; name: string }
  | { kind: 'email.local'; arg: TemplateExpr }
  | { kind: 'regexp.replace'; arg: TemplateExpr; pattern: RegExp; replacement: string };

export interface ParsedTemplate {
  prefix: string;
  expr: TemplateExpr;
  suffix: string;
}

export type TemplateParse =
  | { ok: true; template?: ParsedTemplate | undefined }
  | { ok: false; error: string };

const NAMESPACES = ['internal', 'external'] as const;
const FUNCTIONS = ['email.local', 'regexp.replace'] as const;

/** True when the value contains template braces (valid or not). */
export function hasTemplate(value: string): boolean {
  return value.includes('{{') || value.includes('}}');
}

/** Parse one value; `template` is absent for plain literal values. */
export function parseTemplate(value: string): TemplateParse {
  const open = value.indexOf('{{');
  if (open === -1) {
    if (value.includes('}}')) return { ok: false, error: 'found "}}" without a matching "{{"' };
    return { ok: true };
  }
  const close = value.indexOf('}}', open + 2);
  if (close === -1) {
    return { ok: false, error: `unclosed template "${value.slice(open)}": missing "}}"` };
  }
  const suffix = value.slice(close + 2);
  if (suffix.includes('{{') || suffix.includes('}}') || value.slice(0, open).includes('}}')) {
    return { ok: false, error: 'only one {{...}} template is allowed per value' };
  }
  const inner = value.slice(open + 2, close);
  try {
    const p = new ExprParser(inner);
    const expr = p.parseExpr();
    p.expectEnd();
    return { ok: true, template: { prefix: value.slice(0, open), expr, suffix } };
  } catch (e) {
    if (e instanceof TemplateSyntaxError) return { ok: false, error: `${e.message} in "{{${inner}}}"` };
    throw e;
  }
}

/**
 * Expand one value against the traits. A literal value expands to itself; a
 * template expands to one value per trait value, and to nothing when the trait
 * is missing or the template is invalid (never to the template text itself,
 * which could otherwise match a real login literally).
 */
export function expandValue(value: string, traits: Traits): string[] {
  const parsed = parseTemplate(value);
  if (!parsed.ok) return [];
  if (!parsed.template) return [value];
  const { prefix, expr, suffix } = parsed.template;
  return evaluate(expr, traits)
    .filter((v) => v.length > 0)
    .map((v) => prefix + v + suffix);
}

/** Expand a list; the result is deduplicated and keeps first-seen order. */
export function expandValues(values: readonly string[], traits: Traits): string[] {
  const out = new Set<string>();
  for (const v of values) for (const e of expandValue(v, traits)) out.add(e);
  return [...out];
}

function evaluate(expr: TemplateExpr, traits: Traits): string[] {
  switch (expr.kind) {
    case 'trait': {
      // Traits are plain objects from JSON; never walk the prototype chain.
      if (!Object.hasOwn(traits, expr.name)) return [];
      const values = traits[expr.name];
      return Array.isArray(values) ? values.filter((v): v is string => typeof v === 'string') : [];
    }
    case 'email.local':
      return evaluate(expr.arg, traits).flatMap((v) => {
        const at = v.indexOf('@');
        return at > 0 ? [v.slice(0, at)] : [];
      });
    case 'regexp.replace':
      // Values the pattern does not match are dropped, so a role can pick a
      // subset of a trait (e.g. only the env-* groups).
      return evaluate(expr.arg, traits).flatMap((v) =>
        expr.pattern.test(v) ? [v.replace(expr.pattern, expr.replacement)] : [],
      );
    default: {
      const _exhaustive: never = expr;
      return _exhaustive;
    }
  }
}

class TemplateSyntaxError extends Error {}

type Token =
  | { t: 'ident'; v: string }
  | { t: 'string'; v: string }
  | { t: '.' | '(' | ')' | ',' | '[' | ']' };

class ExprParser {
  #tokens: Token[];
  #i = 0;

  constructor(src: string) {
    this.#tokens = tokenize(src);
  }

  parseExpr(): TemplateExpr {
    const head = this.#ident();
    let name: string;
    const next = this.#peek();
    if (next?.t === '.') {
      this.#i++;
      name = this.#ident();
    } else if (next?.t === '[') {
      this.#i++;
      name = this.#string('a quoted trait name');
      this.#expect(']');
    } else {
      throw new TemplateSyntaxError(`expected "${head}.<name>"`);
    }
    if (this.#peek()?.t === '(') {
      this.#i++;
      return this.#call(`${head}.${name}`);
    }
    if (!(NAMESPACES as readonly string[]).includes(head)) {
      throw new TemplateSyntaxError(
        `unknown namespace "${head}" (use ${NAMESPACES.map((n) => `"${n}"`).join(' or ')})`,
      );
    }
    if (name.length === 0) throw new TemplateSyntaxError('empty trait name');
    return { kind: 'trait', namespace: head as 'internal' | 'external', name };
  }

  expectEnd(): void {
    const t = this.#peek();
    if (t) throw new TemplateSyntaxError(`unexpected ${describe(t)}`);
  }

  #call(fn: string): TemplateExpr {
    switch (fn) {
      case 'email.local': {
        const arg = this.parseExpr();
        this.#expect(')');
        return { kind: 'email.local', arg };
      }
      case 'regexp.replace': {
        const arg = this.parseExpr();
        this.#expect(',');
        const source = this.#string('a quoted regular expression');
        this.#expect(',');
        const replacement = this.#string('a quoted replacement');
        this.#expect(')');
        let pattern: RegExp;
        try {
          pattern = new RegExp(source);
        } catch (e) {
          throw new TemplateSyntaxError(`invalid regular expression "${source}": ${(e as Error).message}`);
        }
        return { kind: 'regexp.replace', arg, pattern, replacement };
      }
      default:
        throw new TemplateSyntaxError(
          `unknown function "${fn}" (known: ${FUNCTIONS.map((f) => `${f}()`).join(', ')})`,
        );
    }
  }

  #peek(): Token | undefined {
    return this.#tokens[this.#i];
  }

  #ident(): string {
    const t = this.#tokens[this.#i++];
    if (t?.t !== 'ident') throw new TemplateSyntaxError(`expected a name, found ${describe(t)}`);
    return t.v;
  }

  #string(what: string): string {
    const t = this.#tokens[this.#i++];
    if (t?.t !== 'string') throw new TemplateSyntaxError(`expected ${what}, found ${describe(t)}`);
    return t.v;
  }

  #expect(kind: '.' | '(' | ')' | ',' | '[' | ']'): void {
    const t = this.#tokens[this.#i++];
    if (t?.t !== kind) throw new TemplateSyntaxError(`expected "${kind}", found ${describe(t)}`);
  }
}

function describe(t: Token | undefined): string {
  if (!t) return 'the end';
  if (t.t === 'ident') return `"${t.v}"`;
  if (t.t === 'string') return `string "${t.v}"`;
  return `"${t.t}"`;
}

const IDENT = /[A-Za-z0-9_-]/;

function tokenize(src: string): Token[] {
  const out: Token[] = [];
  let i = 0;
  while (i < src.length) {
    const c = src[i] as string;
    if (c === ' ' || c === '\t') {
      i++;
    } else if (c === '.' || c === '(' || c === ')' || c === ',' || c === '[' || c === ']') {
      out.push({ t: c });
      i++;
    } else if (c === '"') {
      let v = '';
      i++;
      for (;;) {
        if (i >= src.length) throw new TemplateSyntaxError('unterminated string');
        const d = src[i] as string;
        if (d === '"') break;
        // Only \" and \\ are escapes; other backslashes stay, so regexes like "\d" need no doubling.
        if (d === '\\' && (src[i + 1] === '"' || src[i + 1] === '\\')) {
          v += src[i + 1];
          i += 2;
        } else {
          v += d;
          i++;
        }
      }
      i++;
      out.push({ t: 'string', v });
    } else if (IDENT.test(c)) {
      let v = '';
      while (i < src.length && IDENT.test(src[i] as string)) v += src[i++];
      out.push({ t: 'ident', v });
    } else {
      throw new TemplateSyntaxError(`unexpected character "${c}"`);
    }
  }
  return out;
}
