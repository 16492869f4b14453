import { MAX_LIMIT as AUDIT_PAGE_MAX, MAX_LIST_LIMIT, type RecordingQuery } from '@gatehouse/audit';
import { GatehouseError } from '../errors.js';
import { parseIsoTime } from '../util/time.js';
import type { AuditQuery } from './types.js';

/**
 * The admin API's list queries, checked where requests come in (the HTTP
 * server and the local admin API) with one wording: a bad bound or page size
 * is a GH_ERR_VALIDATION the caller can act on, never a search that quietly
 * ignores it, and never a page so large that building it exhausts the
 * gateway's memory.
 */

export { AUDIT_PAGE_MAX, MAX_LIST_LIMIT as RECORDINGS_LIST_MAX };

function checkLimit(limit: unknown, max: number, hint: string): number {
  if (typeof limit !== 'number' || !Number.isInteger(limit) || limit < 1 || limit > max) {
    throw new GatehouseError(
      'GH_ERR_VALIDATION',
      `limit must be a whole number from 1 to ${max}, got ${JSON.stringify(limit)}`,
      { hint },
    );
  }
  return limit;
}

function checkTime(name: 'from' | 'to', value: unknown): void {
  if (typeof value !== 'string' || parseIsoTime(value) === undefined) {
    throw new GatehouseError(
      'GH_ERR_VALIDATION',
      `${name} must be an ISO 8601 date or date-time with a zone, got ${JSON.stringify(value)}`,
      { hint: `e.g. ${name}=2026-01-31 or ${name}=2026-01-31T12:00:00Z` },
    );
  }
}

function checkRange(q: { from?: string | undefined; to?: string | undefined }): void {
  if (q.from !== undefined) checkTime('from', q.from);
  if (q.to !== undefined) checkTime('to', q.to);
}

/** An audit search as the API takes it: `limit` is a page size of 1 to 1000 (follow `next_cursor` for more). */
export function checkAuditQuery(q: AuditQuery): AuditQuery {
  checkRange(q);
  if (q.limit !== undefined) {
    checkLimit(
      q.limit,
      AUDIT_PAGE_MAX,
      `a page holds at most ${AUDIT_PAGE_MAX} events: ask for fewer and pass each next_cursor back as cursor for the next page`,
    );
  }
  return q;
}

/** A recording listing as the API takes it: at most 10000 at once (narrow it with user, kind, from, to). */
export function checkRecordingQuery(q: RecordingQuery): RecordingQuery {
  checkRange(q);
  if (q.limit !== undefined) {
    checkLimit(
      q.limit,
      MAX_LIST_LIMIT,
      `a listing holds at most ${MAX_LIST_LIMIT} recordings: narrow it with user, kind, from or to`,
    );
  }
  return q;
}

/**
 * The `limit` query parameter: digits only ("1e9", "0x10" and " 5" are not
 * numbers a client meant); its range is checked with the rest of the query.
 */
export function limitParam(text: string | null): number | undefined {
  if (text === null || text === '') return undefined;
  if (!/^\d{1,12}$/.test(text)) {
    throw new GatehouseError(
      'GH_ERR_VALIDATION',
      `limit must be a whole number, got "${text.slice(0, 40)}"`,
      {
        hint: 'e.g. limit=100',
      },
    );
  }
  return Number(text);
}
