/** Validation and filtering of RecordingMeta documents. Pure: no I/O. */
import { RecordingError } from './errors.js';
import type { RecordingKind, RecordingMeta, RecordingQuery } from './types.js';

const KINDS: readonly RecordingKind[] = ['ssh', 'kube', 'desktop'];

export function parseMeta(text: string, where: string): RecordingMeta {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (err) {
    throw corrupt(where, err);
  }
  if (typeof v !== 'object' || v === null) throw corrupt(where);
  const m = v as Partial<RecordingMeta>;
  if (
    typeof m.session_id !== 'string' ||
    !KINDS.includes(m.kind as RecordingKind) ||
    typeof m.user !== 'string' ||
    typeof m.server !== 'string' ||
    typeof m.started !== 'string' ||
    Number.isNaN(Date.parse(m.started)) ||
    typeof m.cols !== 'number' ||
    typeof m.rows !== 'number'
  ) {
    throw corrupt(where);
  }
  return m as RecordingMeta;
}

function corrupt(where: string, cause?: unknown): RecordingError {
  return new RecordingError('GH_ERR_VALIDATION', `recording metadata ${where} is corrupt`, {
    hint: 'the recording directory was damaged or edited; its chunks may still be readable',
    cause,
  });
}

export const DEFAULT_LIST_LIMIT = 100;
export const MAX_LIST_LIMIT = 10_000;

/** Applies a RecordingQuery: newest first, `from`/`to` on the start time (inclusive). */
export function filterMetas(metas: RecordingMeta[], q: RecordingQuery = {}): RecordingMeta[] {
  const from = q.from === undefined ? undefined : parseTime(q.from, 'from');
  const to = q.to === undefined ? undefined : parseTime(q.to, 'to');
  const limit = q.limit ?? DEFAULT_LIST_LIMIT;
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_LIST_LIMIT) {
    throw new RecordingError('GH_ERR_VALIDATION', `invalid limit ${limit}`, {
      hint: `use a whole number from 1 to ${MAX_LIST_LIMIT}`,
    });
  }
  return metas
    .filter((m) => {
      if (q.user !== undefined && m.user !== q.user) return false;
      if (q.kind !== undefined && m.kind !== q.kind) return false;
      const s = Date.parse(m.started);
      if (from !== undefined && s < from) return false;
      if (to !== undefined && s > to) return false;
      return true;
    })
    .sort((a, b) => Date.parse(b.started) - Date.parse(a.started) || (a.session_id < b.session_id ? 1 : -1))
    .slice(0, limit);
}

function parseTime(s: string, field: string): number {
  const t = Date.parse(s);
  if (Number.isNaN(t)) {
    throw new RecordingError('GH_ERR_VALIDATION', `invalid ${field} time ${JSON.stringify(s)}`, {
      hint: 'use an ISO 8601 time such as 2025-01-31T12:00:00Z',
    });
  }
  return t;
}
