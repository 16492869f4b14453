import { isMap, isPair, isScalar, isSeq, LineCounter, type Node, parseDocument } from 'yaml';
import type { z } from 'zod';
import type { LintMessage } from '../api/types.js';
import { closest } from '../util/yaml-validate.js';
import { conditionsSchema, optionsSchema, roleSchema } from './role-schema.js';
import type { Role } from './types.js';

export interface LintResult {
  /** Present only when there are no errors (warnings allowed). */
  role?: Role | undefined;
  messages: LintMessage[];
}

type PathSeg = string | number;

const TOP_KEYS = Object.keys(roleSchema.shape);
const CONDITION_KEYS = Object.keys(conditionsSchema.shape);
const OPTION_KEYS = Object.keys(optionsSchema.shape);

/** Known keys of the strict object at `path` (array indexes ignored). */
function knownKeysAt(path: readonly PathSeg[]): string[] {
  const p = path.filter((s) => typeof s === 'string').join('.');
  switch (p) {
    case '':
      return TOP_KEYS;
    case 'allow':
    case 'deny':
      return CONDITION_KEYS;
    case 'allow.request':
    case 'deny.request':
      return ['roles', 'search_as_roles', 'max_duration', 'thresholds', 'reason'];
    case 'allow.request.thresholds':
    case 'deny.request.thresholds':
      return ['approve', 'deny'];
    case 'allow.request.reason':
    case 'deny.request.reason':
      return ['mode'];
    case 'allow.review_requests':
    case 'deny.review_requests':
      return ['roles', 'where'];
    case 'allow.rules':
    case 'deny.rules':
      return ['resources', 'verbs'];
    case 'options':
      return OPTION_KEYS;
    case 'options.record_session':
      return ['ssh', 'desktop', 'kube'];
    case 'options.restrict_network':
      return ['deny', 'allow'];
    case 'options.enhanced_recording_paths':
      return ['include', 'exclude'];
    default:
      return [];
  }
}

/**
 * Lint a role document (YAML or JSON). Every message carries the 1-based line
 * and column of the offending node, so `gatehouse role lint` and the web
 * editor can point at it.
 */
export function lintRole(text: string): LintResult {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: true });
  const messages: LintMessage[] = [];
  const at = (offset: number) => {
    const { line, col } = lc.linePos(offset);
    return { line, column: col };
  };

  if (doc.errors.length > 0) {
    for (const e of doc.errors) {
      messages.push({
        ...at(e.pos[0]),
        key: '',
        message: `YAML syntax error: ${firstLine(e.message)}`,
        severity: 'error',
      });
    }
    return { messages };
  }

  const root = doc.contents;
  if (root === null || (isScalar(root) && (root.value === null || root.value === ''))) {
    messages.push({
      line: 1,
      column: 1,
      key: '',
      message: 'the role document is empty',
      suggestion: 'start with "kind: role" and "name: <role name>"',
      severity: 'error',
    });
    return { messages };
  }
  if (!isMap(root)) {
    messages.push({
      ...at(root.range?.[0] ?? 0),
      key: '',
      message: 'a role document must be a mapping of keys to values',
      suggestion: 'start with "kind: role" and "name: <role name>"',
      severity: 'error',
    });
    return { messages };
  }

  let data: unknown;
  try {
    data = doc.toJS({ maxAliasCount: 100 });
  } catch (e) {
    // yaml throws (a ReferenceError) when aliases expand past maxAliasCount: "billion laughs".
    messages.push({
      ...at(root.range?.[0] ?? 0),
      key: '',
      message: `YAML aliases expand too far: ${firstLine((e as Error).message)}`,
      suggestion: 'write the values out instead of nesting aliases (*name) in aliases',
      severity: 'error',
    });
    return { messages };
  }
  const parsed = roleSchema.safeParse(data, { reportInput: true });
  if (!parsed.success) {
    for (const issue of parsed.error.issues) messages.push(...issueMessages(issue, root, at));
    messages.sort((a, b) => a.line - b.line || a.column - b.column);
    return { messages };
  }

  const role = parsed.data;
  messages.push(...warnings(role, root, at));
  return { role, messages };
}

type At = (offset: number) => { line: number; column: number };

function issueMessages(issue: z.core.$ZodIssue, root: Node, at: At): LintMessage[] {
  const path = issue.path.filter((s): s is PathSeg => typeof s !== 'symbol');
  if (issue.code === 'unrecognized_keys') {
    const known = knownKeysAt(path);
    return issue.keys.map((key) => {
      const found = locate(root, [...path, key]);
      return {
        ...at(found.keyOffset ?? found.offset),
        key: dotted([...path, key]),
        message: `unknown key "${key}" ${path.length ? `in ${dotted(path)}` : 'at the top level'}`,
        suggestion: suggestKey(key, path, known),
        severity: 'error' as const,
      };
    });
  }
  const found = locate(root, path);
  const missing = !found.exact;
  let message = issue.message;
  if (missing && path.length > 0) {
    message = `missing required key "${String(path[path.length - 1])}"`;
  } else if (issue.code === 'invalid_type') {
    message = `expected ${issue.expected === 'array' ? 'a list' : issue.expected === 'object' ? 'a mapping' : `a ${issue.expected}`} (got ${typeName(issue.input)})`;
  }
  const atKey = issue.code === 'custom' && issue.params?.['at'] === 'key';
  return [
    {
      ...at(atKey ? (found.keyOffset ?? found.offset) : found.offset),
      key: dotted(path),
      message,
      suggestion: missing && path[0] === 'kind' ? 'add "kind: role" at the top' : undefined,
      severity: 'error',
    },
  ];
}

function suggestKey(key: string, path: readonly PathSeg[], known: string[]): string | undefined {
  const best = closest(key, known);
  if (best) return `did you mean \`${best}\`?`;
  // Right key, wrong place: the most common mistake after typos.
  if (path.length === 0 && CONDITION_KEYS.includes(key))
    return `\`${key}\` belongs under \`allow\` or \`deny\``;
  if (path.length === 0 && OPTION_KEYS.includes(key)) return `\`${key}\` belongs under \`options\``;
  if ((path[0] === 'allow' || path[0] === 'deny') && path.length === 1 && OPTION_KEYS.includes(key)) {
    return `\`${key}\` belongs under \`options\`, not \`${path[0]}\``;
  }
  if (path[0] === 'options' && path.length === 1 && CONDITION_KEYS.includes(key)) {
    return `\`${key}\` belongs under \`allow\` or \`deny\`, not \`options\``;
  }
  if (known.length > 0) return `known keys: ${known.join(', ')}`;
  return undefined;
}

interface Located {
  /** Offset of the value node (or of the deepest existing ancestor). */
  offset: number;
  /** Offset of the key, when the last segment is a mapping key that exists. */
  keyOffset?: number | undefined;
  exact: boolean;
}

/** Find the YAML node at `path`; falls back to the deepest ancestor that exists. */
function locate(root: Node, path: readonly PathSeg[]): Located {
  let node: unknown = root;
  let offset = root.range?.[0] ?? 0;
  let keyOffset: number | undefined;
  for (const seg of path) {
    keyOffset = undefined;
    if (isMap(node)) {
      const pair = node.items.find(
        (p) => isPair(p) && isScalar(p.key) && String(p.key.value) === String(seg),
      );
      if (!pair) return { offset, exact: false };
      const keyNode = pair.key as Node;
      keyOffset = keyNode.range?.[0];
      const value = pair.value as Node | null;
      // `allow:` with nothing after it has no value node: point at the key.
      offset = value?.range?.[0] ?? keyOffset ?? offset;
      if (value && isScalar(value) && value.value === null && keyOffset !== undefined) offset = keyOffset;
      node = value;
    } else if (isSeq(node) && typeof seg === 'number') {
      const item = node.items[seg] as Node | undefined;
      if (!item) return { offset, exact: false };
      offset = item.range?.[0] ?? offset;
      node = item;
    } else {
      return { offset, exact: false };
    }
  }
  return { offset, keyOffset, exact: true };
}

function dotted(path: readonly PathSeg[]): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else out += out ? `.${seg}` : seg;
  }
  return out;
}

function typeName(v: unknown): string {
  if (v === null || v === undefined) return 'nothing';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  return `${typeof v} ${JSON.stringify(v)}`;
}

function firstLine(s: string): string {
  return s.split('\n')[0] ?? s;
}

/** Pairs of (grant, selector that must accompany it) for the "has no effect" warning. */
const NEEDS_SELECTOR: [keyof Role['allow'], keyof Role['allow']][] = [
  ['logins', 'node_labels'],
  ['db_users', 'db_labels'],
  ['db_names', 'db_labels'],
  ['kube_groups', 'kube_labels'],
  ['kube_users', 'kube_labels'],
  ['desktop_logins', 'desktop_labels'],
];

function warnings(role: Role, root: Node, at: At): LintMessage[] {
  const out: LintMessage[] = [];
  const grants = Object.entries(role.allow).filter(([, v]) =>
    Array.isArray(v) ? v.length > 0 : v !== undefined && Object.keys(v).length > 0,
  );
  if (grants.length === 0) {
    const found = locate(root, ['allow']);
    out.push({
      ...at(found.exact ? (found.keyOffset ?? found.offset) : 0),
      key: 'allow',
      message: `role "${role.name}" grants nothing: its allow section is empty`,
      suggestion: 'add conditions under allow, e.g. logins and node_labels',
      severity: 'warning',
    });
  }
  for (const [grant, selector] of NEEDS_SELECTOR) {
    if (role.allow[grant] !== undefined && role.allow[selector] === undefined) {
      const found = locate(root, ['allow', grant]);
      out.push({
        ...at(found.keyOffset ?? found.offset),
        key: `allow.${grant}`,
        message: `allow.${grant} has no effect on resources without allow.${selector}`,
        suggestion: `add ${selector} (e.g. '*': '*') to choose where ${grant} apply`,
        severity: 'warning',
      });
    }
  }
  return out;
}
