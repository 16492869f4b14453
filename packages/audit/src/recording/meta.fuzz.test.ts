import { fuzz, onlyThrows } from '@gatehouse/core/testing';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { RecordingError } from './errors.js';
import { filterMetas, MAX_LIST_LIMIT, parseMeta } from './meta.js';
import type { RecordingMeta, RecordingQuery } from './types.js';

const iso = fc
  .date({ min: new Date('2000-01-01T00:00:00Z'), max: new Date('2100-01-01T00:00:00Z'), noInvalidDate: true })
  .map((d) => d.toISOString());
const users = fc.constantFrom('alice', 'bob', 'carol');

const meta: fc.Arbitrary<RecordingMeta> = fc.record(
  {
    session_id: fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,20}$/),
    kind: fc.constantFrom('ssh' as const, 'kube' as const, 'desktop' as const),
    user: users,
    login: fc.string({ maxLength: 8 }),
    server: fc.string({ maxLength: 8 }),
    command: fc.string({ maxLength: 8 }),
    started: iso,
    ended: iso,
    cols: fc.nat(500),
    rows: fc.nat(200),
    output_bytes: fc.nat(),
    stored_bytes: fc.nat(),
    chunks: fc.nat(100),
    error: fc.string({ maxLength: 8 }),
  },
  { requiredKeys: ['session_id', 'kind', 'user', 'server', 'started', 'cols', 'rows'] },
);

const query: fc.Arbitrary<RecordingQuery> = fc.record(
  {
    user: users,
    kind: fc.constantFrom('ssh' as const, 'kube' as const, 'desktop' as const),
    from: iso,
    to: iso,
    limit: fc.integer({ min: 1, max: 20 }),
  },
  { requiredKeys: [] },
);

describe('recording metadata (fuzz)', () => {
  it('parseMeta reads back every meta.json, and throws only RecordingError on any other text', () => {
    fuzz(
      fc.property(
        meta,
        fc.oneof(
          fc.string({ unit: 'binary', maxLength: 40 }),
          fc.jsonValue().map((v) => JSON.stringify(v)),
          fc
            .tuple(
              meta,
              fc.constantFrom('session_id', 'kind', 'user', 'server', 'started', 'cols', 'rows'),
              fc.jsonValue({ maxDepth: 1 }),
            )
            .map(([m, k, v]) => JSON.stringify({ ...m, [k]: v })),
        ),
        (m, junk) => {
          expect(parseMeta(JSON.stringify(m), 'x')).toEqual(m);
          onlyThrows(() => parseMeta(junk, 'x'), RecordingError);
        },
      ),
      { runs: 2000 },
    );
  });

  it('filterMetas returns the newest matches first, at most limit of them, and none that do not match', () => {
    fuzz(
      fc.property(fc.array(meta, { maxLength: 30 }), query, (metas, q) => {
        const out = filterMetas(metas, q);
        const matches = (m: RecordingMeta) =>
          (q.user === undefined || m.user === q.user) &&
          (q.kind === undefined || m.kind === q.kind) &&
          (q.from === undefined || Date.parse(m.started) >= Date.parse(q.from)) &&
          (q.to === undefined || Date.parse(m.started) <= Date.parse(q.to));
        expect(out.length).toBe(Math.min(q.limit ?? 100, metas.filter(matches).length));
        for (const m of out) expect(matches(m) && metas.includes(m)).toBe(true);
        for (let i = 1; i < out.length; i++)
          expect(Date.parse(out[i - 1]!.started)).toBeGreaterThanOrEqual(Date.parse(out[i]!.started));
      }),
      { runs: 1000 },
    );
  });

  it('filterMetas throws only RecordingError on a bad query', () => {
    fuzz(
      fc.property(
        fc.record(
          {
            from: fc.string({ maxLength: 30 }),
            to: fc.string({ maxLength: 30 }),
            limit: fc.oneof(fc.integer(), fc.double(), fc.constant(MAX_LIST_LIMIT + 1)),
          },
          { requiredKeys: [] },
        ),
        (q) => {
          onlyThrows(() => filterMetas([], q as RecordingQuery), RecordingError);
        },
      ),
      { runs: 1000 },
    );
  });
});
