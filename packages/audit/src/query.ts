import { AuditValidationError } from './errors.js';
import { type AuditEvent, type AuditEventType, EVENT_CODES } from './events.js';

/** A search over the audit log. Results are newest first. */
export interface AuditQuery {
  /** Inclusive lower bound: an ISO 8601 date or date-time with a zone (`2026-01-01`, `2026-01-01T10:00:00Z`). */
  from?: string;
  /** Exclusive upper bound, same format as `from`. */
  to?: string;
  /** Only these event types (empty or absent: all types). */
  types?: string[];
  /** Only events whose `user` is exactly this. */
  user?: string;
  /** Only events of this session (`session_id` exactly), e.g. a recording's enhanced events. */
  session_id?: string;
  /** Free text: every word must appear in the event (case-insensitive, whole words, no operators). */
  q?: string;
  /** Page size, default 100, at most 1000 (larger values are capped). */
  limit?: number;
  /** `next_cursor` from the previous page. */
  cursor?: string;
}

export interface AuditSearchResult {
  events: AuditEvent[];
  /** Present when more events may follow; pass it back as `cursor`. */
  next_cursor?: string;
}

export const DEFAULT_LIMIT = 100;
export const MAX_LIMIT = 1000;

/** A validated query with dates normalized to the stored form (ISO, ms, UTC). */
export interface NormalizedQuery {
  from?: string;
  to?: string;
  types?: AuditEventType[];
  user?: string;
  session_id?: string;
  /** Search words; each matched as a phrase of its tokens. */
  terms: string[];
  limit: number;
  /** Keyset position: return only events strictly older than (time, id). */
  after?: { time: string; id: string };
}

const ISO_DATE = /^\d{4}-\d{2}-\d{2}$/;
const ISO_DATE_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2})$/;
const STORED_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

function normalizeDate(name: 'from' | 'to', v: unknown): string {
  if (typeof v !== 'string' || !(ISO_DATE.test(v) || ISO_DATE_TIME.test(v))) {
    throw new AuditValidationError(
      `'${name}' must be an ISO 8601 date or date-time with a time zone, got ${JSON.stringify(v)}`,
      { hint: `Use e.g. 2026-01-31 or 2026-01-31T12:00:00Z for '${name}'.` },
    );
  }
  const t = Date.parse(v);
  // Date.parse rolls 2026-02-31 over to March; reject it instead of guessing.
  if (Number.isNaN(t) || (ISO_DATE.test(v) && new Date(t).toISOString().slice(0, 10) !== v)) {
    throw new AuditValidationError(`'${name}' is not a real date: ${JSON.stringify(v)}`, {
      hint: `Use e.g. 2026-01-31 or 2026-01-31T12:00:00Z for '${name}'.`,
    });
  }
  return new Date(t).toISOString();
}

export function encodeCursor(e: { time: string; id: string }): string {
  return Buffer.from(JSON.stringify([e.time, e.id]), 'utf8').toString('base64url');
}

export function decodeCursor(cursor: unknown): { time: string; id: string } {
  const bad = () =>
    new AuditValidationError('invalid cursor', {
      hint: 'Pass the next_cursor value from the previous page unchanged, or omit cursor to start over.',
    });
  if (
    typeof cursor !== 'string' ||
    cursor.length === 0 ||
    cursor.length > 512 ||
    !/^[A-Za-z0-9_-]+$/.test(cursor)
  ) {
    throw bad();
  }
  let v: unknown;
  try {
    v = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch (err) {
    throw new AuditValidationError('invalid cursor', { hint: bad().hint, cause: err });
  }
  if (
    !Array.isArray(v) ||
    v.length !== 2 ||
    typeof v[0] !== 'string' ||
    typeof v[1] !== 'string' ||
    !STORED_TIME.test(v[0]) ||
    v[1].length === 0
  ) {
    throw bad();
  }
  return { time: v[0], id: v[1] };
}

/** A character that the full-text tokenizer keeps (letters and digits). */
const TOKEN_CHAR = /[\p{L}\p{N}]/u;

/**
 * Splits free text into search words. Words without any letter or digit
 * (`*`, `(`, `"`) can never match a token, so they are dropped rather than
 * turning the whole search into "no results".
 */
export function splitTerms(q: string): string[] {
  return q
    .split(/\s+/)
    .filter((t) => t.length > 0 && TOKEN_CHAR.test(t))
    .slice(0, 32);
}

export function normalizeQuery(q: AuditQuery = {}): NormalizedQuery {
  if (typeof q !== 'object' || q === null) throw new AuditValidationError('query must be an object');
  const out: NormalizedQuery = { terms: [], limit: DEFAULT_LIMIT };
  if (q.from !== undefined) out.from = normalizeDate('from', q.from);
  if (q.to !== undefined) out.to = normalizeDate('to', q.to);
  if (q.types !== undefined) {
    if (!Array.isArray(q.types)) throw new AuditValidationError("'types' must be a list of event types");
    for (const t of q.types) {
      if (typeof t !== 'string' || !Object.hasOwn(EVENT_CODES, t)) {
        throw new AuditValidationError(`unknown event type ${JSON.stringify(t)}`, {
          hint: `Known types: ${Object.keys(EVENT_CODES).join(', ')}.`,
        });
      }
    }
    if (q.types.length > 0) out.types = [...new Set(q.types)] as AuditEventType[];
  }
  if (q.user !== undefined) {
    if (typeof q.user !== 'string') throw new AuditValidationError("'user' must be a string");
    out.user = q.user;
  }
  if (q.session_id !== undefined) {
    if (typeof q.session_id !== 'string') throw new AuditValidationError("'session_id' must be a string");
    out.session_id = q.session_id;
  }
  if (q.q !== undefined) {
    if (typeof q.q !== 'string') throw new AuditValidationError("'q' must be a string");
    out.terms = splitTerms(q.q);
  }
  if (q.limit !== undefined) {
    if (typeof q.limit !== 'number' || !Number.isInteger(q.limit) || q.limit < 1) {
      throw new AuditValidationError(`'limit' must be a positive integer, got ${JSON.stringify(q.limit)}`, {
        hint: `Use a limit between 1 and ${MAX_LIMIT}.`,
      });
    }
    out.limit = Math.min(q.limit, MAX_LIMIT);
  }
  if (q.cursor !== undefined) out.after = decodeCursor(q.cursor);
  return out;
}

/** Newest first: time descending, then id descending (ids break ties within a millisecond). */
export function compareNewestFirst(a: { time: string; id: string }, b: { time: string; id: string }): number {
  if (a.time !== b.time) return a.time < b.time ? 1 : -1;
  if (a.id !== b.id) return a.id < b.id ? 1 : -1;
  return 0;
}

/**
 * Lower-cased, accent-free tokens of a text, split like SQLite's unicode61
 * tokenizer, so in-memory search matches what the SQLite index finds.
 */
export function tokenize(text: string): string[] {
  return text
    .normalize('NFKD')
    .replace(/\p{M}/gu, '')
    .toLowerCase()
    .split(/[^\p{L}\p{N}]+/u)
    .filter((t) => t.length > 0);
}

function containsPhrase(haystack: string[], phrase: string[]): boolean {
  if (phrase.length === 0) return false;
  outer: for (let i = 0; i + phrase.length <= haystack.length; i++) {
    for (let j = 0; j < phrase.length; j++) if (haystack[i + j] !== phrase[j]) continue outer;
    return true;
  }
  return false;
}

/** The in-memory equivalent of the SQLite index's WHERE clause. */
export function matchesQuery(e: AuditEvent, q: NormalizedQuery): boolean {
  if (q.from !== undefined && e.time < q.from) return false;
  if (q.to !== undefined && e.time >= q.to) return false;
  if (q.types !== undefined && !q.types.includes(e.type)) return false;
  if (q.user !== undefined && e.user !== q.user) return false;
  if (q.session_id !== undefined && e.session_id !== q.session_id) return false;
  if (q.after !== undefined && compareNewestFirst(e, q.after) <= 0) return false;
  if (q.terms.length > 0) {
    const tokens = tokenize(JSON.stringify(e));
    for (const term of q.terms) if (!containsPhrase(tokens, tokenize(term))) return false;
  }
  return true;
}

/** Applies a query to events held in memory (used by MemoryAuditLog). */
export function searchInMemory(events: readonly AuditEvent[], query: AuditQuery): AuditSearchResult {
  const q = normalizeQuery(query);
  const hits = events.filter((e) => matchesQuery(e, q)).sort(compareNewestFirst);
  const page = hits.slice(0, q.limit);
  const last = page.at(-1);
  return hits.length > q.limit && last ? { events: page, next_cursor: encodeCursor(last) } : { events: page };
}
