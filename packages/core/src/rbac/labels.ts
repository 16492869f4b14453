import type { LabelSelector } from './types.js';

/**
 * Value patterns shared by label selectors and by logins, db_users,
 * db_names and kube groups/users:
 * - `*` matches any value (including the empty string);
 * - `^...$` is an anchored regular expression;
 * - any other value containing `*` is a glob where `*` is any run of characters;
 * - anything else matches itself exactly.
 */
export type ValueMatcher = (value: string) => boolean;

const never: ValueMatcher = () => false;

export function isRegexPattern(pattern: string): boolean {
  return pattern.length >= 2 && pattern.startsWith('^') && pattern.endsWith('$');
}

/** A literal value, usable as an SSH principal or a kube group as-is. */
export function isLiteralPattern(pattern: string): boolean {
  return !pattern.includes('*') && !isRegexPattern(pattern);
}

/** Compile `pattern`; an invalid regex compiles to a matcher that never matches. */
export function compilePattern(pattern: string): ValueMatcher {
  if (pattern === '*') return () => true;
  if (isRegexPattern(pattern)) {
    let re: RegExp;
    try {
      re = new RegExp(pattern);
    } catch {
      // The linter reports invalid regexes; at match time they simply grant nothing.
      return never;
    }
    return (v) => re.test(v);
  }
  if (pattern.includes('*')) {
    const re = new RegExp(`^${pattern.split('*').map(escapeRegExp).join('.*')}$`, 's');
    return (v) => re.test(v);
  }
  return (v) => v === pattern;
}

/** Checks whether a regex pattern compiles; returns the error message or undefined. */
export function regexError(pattern: string): string | undefined {
  if (!isRegexPattern(pattern)) return undefined;
  try {
    new RegExp(pattern);
    return undefined;
  } catch (e) {
    // V8 repeats the pattern ("Invalid regular expression: /x/: reason"); keep the reason.
    const msg = (e as Error).message;
    const i = msg.lastIndexOf('/: ');
    return i >= 0 ? msg.slice(i + 3) : msg;
  }
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}

/** Compiled patterns, kept per AccessChecker so each regex is compiled once. */
export class PatternCache {
  readonly #compiled = new Map<string, ValueMatcher>();

  matcher(pattern: string): ValueMatcher {
    let m = this.#compiled.get(pattern);
    if (!m) {
      m = compilePattern(pattern);
      this.#compiled.set(pattern, m);
    }
    return m;
  }

  get size(): number {
    return this.#compiled.size;
  }
}

export function matchValue(pattern: string, value: string, cache?: PatternCache): boolean {
  return (cache ? cache.matcher(pattern) : compilePattern(pattern))(value);
}

/** True when any of `patterns` matches `value`. */
export function matchAny(patterns: readonly string[], value: string, cache?: PatternCache): boolean {
  return patterns.some((p) => matchValue(p, value, cache));
}

export type LabelMatch =
  | { matched: true /** The labels that satisfied the selector, e.g. "env=prod". */; detail: string }
  | { matched: false /** Why not, e.g. "label env=prod does not match dev, staging". */; detail: string };

function asList(v: string | readonly string[]): readonly string[] {
  return typeof v === 'string' ? [v] : v;
}

/**
 * Every selector key must match (AND), through any of its values (OR).
 * `'*': '*'` matches every resource, even one without labels. An empty
 * selector matches nothing: a role grants access only to what it names.
 * Keys are literal, or a glob/regex matched against the resource's label keys.
 */
export function matchLabels(
  selector: LabelSelector,
  labels: Record<string, string>,
  cache?: PatternCache,
): LabelMatch {
  const keys = Object.keys(selector);
  if (keys.length === 0) return { matched: false, detail: 'the selector is empty' };
  const hits: string[] = [];
  for (const key of keys) {
    const values = asList(selector[key] ?? []);
    if (key === '*') {
      if (values.includes('*')) {
        hits.push('*=*');
        continue;
      }
      // '*' keys with specific values are ambiguous; the linter rejects them and here they never match.
      return { matched: false, detail: `"*" label key only accepts the value "*"` };
    }
    let hit: string | undefined;
    if (isLiteralPattern(key)) {
      const value = Object.hasOwn(labels, key) ? labels[key] : undefined;
      if (value === undefined) {
        return { matched: false, detail: `the resource has no label "${key}"` };
      }
      if (matchAny(values, value, cache)) hit = `${key}=${value}`;
      else {
        return {
          matched: false,
          detail: `label ${key}=${value} does not match ${values.length ? values.join(', ') : '(no values)'}`,
        };
      }
    } else {
      const keyMatches = cache ? cache.matcher(key) : compilePattern(key);
      for (const [k, v] of Object.entries(labels)) {
        if (keyMatches(k) && matchAny(values, v, cache)) {
          hit = `${k}=${v}`;
          break;
        }
      }
      if (hit === undefined) {
        return {
          matched: false,
          detail: `no label matching ${key} has a value matching ${values.join(', ')}`,
        };
      }
    }
    hits.push(hit);
  }
  return { matched: true, detail: hits.join(', ') };
}

/** "env=prod, team=db" or "no labels", for messages. */
export function formatLabels(labels: Record<string, string>): string {
  const entries = Object.entries(labels);
  return entries.length ? entries.map(([k, v]) => `${k}=${v}`).join(', ') : 'no labels';
}
