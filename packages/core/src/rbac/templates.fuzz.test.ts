import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Traits } from '../identity/types.js';
import { fuzz } from '../testing/fuzz.js';
import { expandValue, expandValues, parseTemplate, type TemplateExpr } from './templates.js';

/** Template expressions without RegExp objects, so generated and parsed ones compare. */
type Expr =
  | { kind: 'trait'; namespace: 'internal' | 'external'; name: string; quoted: boolean }
  | { kind: 'email.local'; arg: Expr }
  | { kind: 'regexp.replace'; arg: Expr; source: string; replacement: string };

const identName = fc.stringMatching(/^[A-Za-z0-9_-]{1,12}$/);
const anyText = fc.string({ unit: 'grapheme', maxLength: 12 });
/** Regular expressions that compile (the parser reports the others as syntax errors). */
const regexSource = fc.oneof(
  fc.constantFrom('^env-(.*)$', '\\d+', '(a|b)', '[^@]+', '.*', 'x"y', 'a\\\\b', '^$'),
  fc.stringMatching(/^[A-Za-z0-9 _-]{0,8}$/),
);

const expr: fc.Arbitrary<Expr> = fc.letrec<{ e: Expr }>((tie) => ({
  e: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.oneof(
      fc.record({
        kind: fc.constant('trait' as const),
        namespace: fc.constantFrom('internal' as const, 'external' as const),
        name: identName,
        quoted: fc.constant(false),
      }),
      fc.record({
        kind: fc.constant('trait' as const),
        namespace: fc.constantFrom('internal' as const, 'external' as const),
        name: anyText.filter((s) => s.length > 0),
        quoted: fc.constant(true),
      }),
    ),
    fc.record({ kind: fc.constant('email.local' as const), arg: tie('e') }),
    fc.record({
      kind: fc.constant('regexp.replace' as const),
      arg: tie('e'),
      source: regexSource,
      replacement: anyText,
    }),
  ),
})).e;

const ws = fc.constantFrom('', ' ', '  ', '\t');
const quote = (s: string) => `"${s.replace(/["\\]/g, '\\$&')}"`;

function render(e: Expr, pad: string): string {
  switch (e.kind) {
    case 'trait':
      return e.quoted ? `${e.namespace}[${pad}${quote(e.name)}${pad}]` : `${e.namespace}.${e.name}`;
    case 'email.local':
      return `email.local(${pad}${render(e.arg, pad)}${pad})`;
    case 'regexp.replace':
      return `regexp.replace(${render(e.arg, pad)},${pad}${quote(e.source)},${pad}${quote(e.replacement)})`;
  }
}

function shape(e: TemplateExpr): unknown {
  switch (e.kind) {
    case 'trait':
      return { kind: 'trait', namespace: e.namespace, name: e.name };
    case 'email.local':
      return { kind: 'email.local', arg: shape(e.arg) };
    case 'regexp.replace':
      return {
        kind: 'regexp.replace',
        arg: shape(e.arg),
        source: e.pattern.source,
        replacement: e.replacement,
      };
  }
}

function expected(e: Expr): unknown {
  switch (e.kind) {
    case 'trait':
      return { kind: 'trait', namespace: e.namespace, name: e.name };
    case 'email.local':
      return { kind: 'email.local', arg: expected(e.arg) };
    case 'regexp.replace':
      return {
        kind: 'regexp.replace',
        arg: expected(e.arg),
        source: new RegExp(e.source).source,
        replacement: e.replacement,
      };
  }
}

/** Literal text around a template: anything without braces. */
const literal = fc
  .string({ unit: 'grapheme', maxLength: 10 })
  .filter((s) => !s.includes('{{') && !s.includes('}}') && !s.endsWith('{') && !s.startsWith('}'));

/** Role values as admins might write them, right or wrong. */
const value = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.string({
    unit: fc.constantFrom(
      '{',
      '}',
      '{{',
      '}}',
      'internal',
      'external',
      '.',
      '(',
      ')',
      ',',
      '[',
      ']',
      '"',
      '\\',
      ' ',
      'x',
      'email.local',
      'regexp.replace',
    ),
    maxLength: 16,
  }),
  fc.tuple(literal, expr, literal, ws).map(([p, e, s, pad]) => `${p}{{${pad}${render(e, pad)}${pad}}}${s}`),
);

const traits: fc.Arbitrary<Traits> = fc.dictionary(
  fc.oneof(identName, anyText),
  fc.array(fc.oneof(anyText, fc.emailAddress()), { maxLength: 3 }),
  { maxKeys: 4, noNullPrototype: true },
);

describe('role templates (fuzz)', () => {
  it('parseTemplate answers every value without throwing; literal values have no template', () => {
    fuzz(
      fc.property(value, (v) => {
        const t = parseTemplate(v);
        if (!t.ok) expect(t.error.length).toBeGreaterThan(0);
        else if (!v.includes('{{') && !v.includes('}}')) expect(t.template).toBeUndefined();
      }),
      { runs: 3000 },
    );
  });

  it('parses every well-formed template into the expression it spells', () => {
    fuzz(
      fc.property(literal, expr, literal, ws, (prefix, e, suffix, pad) => {
        const t = parseTemplate(`${prefix}{{${pad}${render(e, pad)}${pad}}}${suffix}`);
        if (!t.ok) throw new Error(t.error);
        expect(t.template?.prefix).toBe(prefix);
        expect(t.template?.suffix).toBe(suffix);
        expect(shape(t.template!.expr)).toEqual(expected(e));
      }),
      { runs: 2000 },
    );
  });

  it('expands every value without throwing, never to the template text, and literals to themselves', () => {
    fuzz(
      fc.property(fc.array(value, { maxLength: 4 }), traits, (values, tr) => {
        const out = expandValues(values, tr);
        expect(new Set(out).size).toBe(out.length);
        for (const v of values) {
          const t = parseTemplate(v);
          const e = expandValue(v, tr);
          if (t.ok && !t.template) expect(e).toEqual([v]);
          if (!t.ok) expect(e).toEqual([]);
          if (t.ok && t.template)
            for (const x of e)
              expect(x.startsWith(t.template.prefix) && x.endsWith(t.template.suffix)).toBe(true);
        }
      }),
      { runs: 2000 },
    );
  });

  it('a trait template expands to each non-empty trait value, wrapped in its literal text', () => {
    fuzz(
      fc.property(
        literal,
        identName,
        literal,
        traits,
        fc.array(anyText, { maxLength: 4 }),
        (p, name, s, tr, vals) => {
          const withTrait = { ...tr, [name]: vals };
          expect(expandValue(`${p}{{internal.${name}}}${s}`, withTrait)).toEqual(
            vals.filter((v) => v.length > 0).map((v) => `${p}${v}${s}`),
          );
        },
      ),
      { runs: 1000 },
    );
  });
});
