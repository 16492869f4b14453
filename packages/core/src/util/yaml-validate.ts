import { isMap, isScalar, LineCounter, type Node, parseDocument } from 'yaml';
import type { z } from 'zod';
import type { LintMessage } from '../api/types.js';

/** Edit distance, for "did you mean" suggestions on misspelled keys. */
export function editDistance(a: string, b: string): number {
  const prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0]!;
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = prev[j]!;
      prev[j] = Math.min(prev[j]! + 1, prev[j - 1]! + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = tmp;
    }
  }
  return prev[b.length]!;
}

export function closest(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestD = Number.POSITIVE_INFINITY;
  for (const c of candidates) {
    const d = editDistance(word.toLowerCase(), c.toLowerCase());
    if (d < bestD) {
      bestD = d;
      best = c;
    }
  }
  // Only suggest when the typo is plausible: about a third of the word may differ.
  return best !== undefined && bestD <= Math.max(2, Math.floor(word.length / 3)) ? best : undefined;
}

/** Known keys of the object schema at `path`, walking through defaults/optionals. */
function knownKeysAt(schema: z.ZodType, path: readonly PropertyKey[]): string[] {
  let s: unknown = schema;
  const unwrap = () => {
    for (let i = 0; i < 10; i++) {
      const def = (s as { def?: { type?: string; innerType?: unknown; in?: unknown } }).def;
      if (!def) return;
      if (
        def.type === 'default' ||
        def.type === 'optional' ||
        def.type === 'nullable' ||
        def.type === 'prefault'
      ) {
        s = def.innerType;
      } else if (def.type === 'pipe') {
        s = def.in;
      } else return;
    }
  };
  unwrap();
  for (const seg of path) {
    const def = (
      s as {
        def?: { type?: string; shape?: Record<string, unknown>; element?: unknown; valueType?: unknown };
      }
    ).def;
    if (def?.type === 'object' && typeof seg === 'string') s = def.shape?.[seg];
    else if (def?.type === 'array') s = def.element;
    else if (def?.type === 'record') s = def.valueType;
    else return [];
    unwrap();
  }
  const def = (s as { def?: { type?: string; shape?: Record<string, unknown>; options?: unknown[] } }).def;
  if (def?.type === 'union') {
    // A discriminated union (e.g. audit.sinks entries): the keys of every variant.
    const keys = new Set<string>();
    for (const o of def.options ?? []) for (const k of knownKeysAt(o as z.ZodType, [])) keys.add(k);
    return [...keys];
  }
  return def?.type === 'object' ? Object.keys(def.shape ?? {}) : [];
}

export interface YamlValidation<T> {
  value?: T;
  messages: LintMessage[];
}

/**
 * Parses YAML (or JSON, which is YAML) and validates it with a zod schema,
 * reporting every problem with its line, column, dotted key and, for unknown
 * keys, the closest known key.
 */
export function validateYaml<S extends z.ZodType>(text: string, schema: S): YamlValidation<z.output<S>> {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: true });
  const messages: LintMessage[] = [];
  const at = (offset: number | undefined) => {
    const p = lc.linePos(offset ?? 0);
    return { line: p.line, column: p.col };
  };
  for (const err of doc.errors) {
    messages.push({
      ...at(err.pos[0]),
      key: '',
      message: err.message.split('\n')[0] ?? err.message,
      severity: 'error',
    });
  }
  if (messages.length > 0) return { messages };

  const data = doc.toJS({ maxAliasCount: 100 });
  const result = schema.safeParse(data ?? {});
  if (result.success) return { value: result.data, messages };

  const nodeAt = (path: readonly PropertyKey[]): Node | undefined => {
    for (let n = path.length; n >= 0; n--) {
      const node = doc.getIn(path.slice(0, n) as unknown[], true) as Node | undefined;
      if (node && typeof node === 'object' && 'range' in node) return node;
    }
    return undefined;
  };
  const keyNode = (path: readonly PropertyKey[], key: string): Node | undefined => {
    const parent = nodeAt(path);
    if (parent && isMap(parent)) {
      const pair = parent.items.find((p) => isScalar(p.key) && p.key.value === key);
      if (pair && isScalar(pair.key)) return pair.key;
    }
    return parent;
  };

  for (const issue of result.error.issues) {
    const path = issue.path;
    if (issue.code === 'unrecognized_keys') {
      const known = knownKeysAt(schema, path);
      for (const key of issue.keys) {
        const node = keyNode(path, key);
        const suggestion = closest(key, known);
        messages.push({
          ...at(node?.range?.[0]),
          key: [...path, key].join('.'),
          message: `unknown key "${key}"`,
          suggestion: suggestion
            ? `did you mean "${suggestion}"?`
            : known.length > 0
              ? `known keys here: ${known.join(', ')}`
              : undefined,
          severity: 'error',
        });
      }
      continue;
    }
    const node = nodeAt(path);
    messages.push({
      ...at(node?.range?.[0]),
      key: path.join('.'),
      message: issue.message,
      severity: 'error',
    });
  }
  messages.sort((a, b) => a.line - b.line || a.column - b.column);
  return { messages };
}

export function formatLintMessages(file: string, messages: readonly LintMessage[]): string {
  return messages
    .map(
      (m) =>
        `${file}:${m.line}:${m.column}: ${m.key ? `${m.key}: ` : ''}${m.message}${m.suggestion ? ` (${m.suggestion})` : ''}`,
    )
    .join('\n');
}
