import { MemoryAuditLog } from '@gatehouse/audit/testing';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { RejectAggregator, RejectAuditor, type RejectKind } from './reject-audit.js';

const A: RejectKind = { port: 3080, source: '203.0.113.7/32', reason: 'too_many_handshakes_from_source' };
const d = (error = 'over the limit') => ({ local: '127.0.0.1:3080', error });

describe('RejectAggregator', () => {
  it('lets the first refusal of a kind through and counts the rest into one summary per window', () => {
    const agg = new RejectAggregator({ windowMs: 60_000, maxSources: 10 });
    expect(agg.note(A, d(), 1_000)).toEqual({ emit: true, source: A.source });
    expect(agg.note(A, d('second'), 1_500).emit).toBe(false);
    expect(agg.note(A, d('third'), 2_000).emit).toBe(false);
    expect(agg.drain(60_000)).toEqual([
      { ...A, count: 2, first: 1_500, last: 2_000, local: '127.0.0.1:3080', error: 'third' },
    ]);
    // Nothing new: the next window has no summary.
    expect(agg.drain(120_000)).toEqual([]);
  });

  it('keeps kinds apart: another source, reason or port is audited at once', () => {
    const agg = new RejectAggregator({ windowMs: 60_000, maxSources: 10 });
    expect(agg.note(A, d(), 0).emit).toBe(true);
    expect(agg.note({ ...A, source: '203.0.113.8/32' }, d(), 0).emit).toBe(true);
    expect(agg.note({ ...A, reason: 'first_byte_timeout' }, d(), 0).emit).toBe(true);
    expect(agg.note({ ...A, port: 3306 }, d(), 0).emit).toBe(true);
    expect(agg.note(A, d(), 0).emit).toBe(false);
  });

  it('a sustained flood gets one summary per window and no new immediate event; a quiet kind is forgotten', () => {
    const agg = new RejectAggregator({ windowMs: 1_000, maxSources: 10 });
    expect(agg.note(A, d(), 0).emit).toBe(true);
    for (let w = 1; w <= 3; w++) {
      for (let i = 0; i < 5; i++) expect(agg.note(A, d(), w * 1_000 - 500 + i).emit).toBe(false);
      expect(agg.drain(w * 1_000).map((s) => s.count)).toEqual([5]);
    }
    // A window without refusals: the kind is dropped, and the next refusal is news again.
    expect(agg.drain(5_000)).toEqual([]);
    expect(agg.size).toBe(0);
    expect(agg.note(A, d(), 5_100).emit).toBe(true);
  });

  it('bounds its memory: past maxSources every new source is merged into source "*"', () => {
    const agg = new RejectAggregator({ windowMs: 60_000, maxSources: 2 });
    const src = (i: number): RejectKind => ({ ...A, source: `198.51.100.${i}/32` });
    expect(agg.note(src(1), d(), 0)).toEqual({ emit: true, source: '198.51.100.1/32' });
    expect(agg.note(src(2), d(), 0)).toEqual({ emit: true, source: '198.51.100.2/32' });
    // The first of the merged ones is still audited at once (as "*"), the rest are counted.
    expect(agg.note(src(3), d(), 0)).toEqual({ emit: true, source: '*' });
    for (let i = 4; i < 1_000; i++) expect(agg.note(src(i), d(), 1)).toEqual({ emit: false, source: '*' });
    // A known source keeps its own entry.
    expect(agg.note(src(1), d(), 2).emit).toBe(false);
    expect(agg.size).toBe(3);
    const sums = agg.drain(10);
    expect(sums.map((s) => [s.source, s.count])).toEqual([
      ['198.51.100.1/32', 1],
      ['*', 996],
    ]);
  });

  it('drain(all) on close leaves nothing behind', () => {
    const agg = new RejectAggregator({ windowMs: 60_000, maxSources: 10 });
    agg.note(A, d(), 0);
    agg.note(A, d(), 1);
    expect(agg.drain(2, true).map((s) => s.count)).toEqual([1]);
    expect(agg.size).toBe(0);
  });

  it('accounts for every refusal exactly once, whatever the order of refusals and windows (seeded)', () => {
    const step = fc.oneof(
      fc.record({
        kind: fc.constant('note' as const),
        source: fc.integer({ min: 0, max: 12 }),
        reason: fc.constantFrom('first_byte_timeout', 'too_many_handshakes') as fc.Arbitrary<
          RejectKind['reason']
        >,
        dt: fc.integer({ min: 0, max: 400 }),
      }),
      fc.record({ kind: fc.constant('drain' as const), dt: fc.integer({ min: 0, max: 2_000 }) }),
    );
    fc.assert(
      fc.property(fc.array(step, { maxLength: 300 }), fc.integer({ min: 1, max: 6 }), (steps, maxSources) => {
        const agg = new RejectAggregator({ windowMs: 1_000, maxSources });
        let now = 0;
        let noted = 0;
        let accounted = 0;
        for (const s of steps) {
          now += s.dt;
          if (s.kind === 'note') {
            noted++;
            const r = agg.note({ port: 1, source: `s${s.source}`, reason: s.reason }, d(), now);
            if (r.emit) accounted++;
          } else {
            for (const x of agg.drain(now)) accounted += x.count;
          }
          expect(agg.size).toBeLessThanOrEqual(maxSources + 2);
        }
        for (const x of agg.drain(now, true)) accounted += x.count;
        expect(accounted).toBe(noted);
      }),
      { seed: 16, numRuns: 300 },
    );
  });
});

describe('RejectAuditor', () => {
  const info = {
    remoteAddr: '203.0.113.7',
    remotePort: 50_000,
    localAddr: '127.0.0.1',
    localPort: 3080,
    proxied: false,
  };

  it('writes the first refusal as listener.reject, the rest as a listener.reject.summary on close', async () => {
    const audit = new MemoryAuditLog();
    let now = Date.parse('2026-01-01T00:00:00Z');
    const r = new RejectAuditor({
      audit,
      now: () => now,
      windowMs: 60_000,
      maxSources: 8,
    });
    for (let i = 0; i < 5; i++) {
      r.reject(
        { ...info, remotePort: 50_000 + i },
        '203.0.113.7/32',
        'too_many_handshakes_from_source',
        `n${i}`,
      );
      now += 10;
    }
    await r.close();
    expect(audit.find('listener.reject')).toEqual([
      expect.objectContaining({
        code: 'GH1100W',
        reason: 'too_many_handshakes_from_source',
        source: '203.0.113.7/32',
        error: 'n0',
        addr: { remote: '203.0.113.7:50000', local: '127.0.0.1:3080' },
      }),
    ]);
    expect(audit.find('listener.reject.summary')).toEqual([
      expect.objectContaining({
        code: 'GH1103W',
        reason: 'too_many_handshakes_from_source',
        source: '203.0.113.7/32',
        count: 4,
        first_time: '2026-01-01T00:00:00.010Z',
        last_time: '2026-01-01T00:00:00.040Z',
        error: 'n4',
        addr: { local: '127.0.0.1:3080' },
      }),
    ]);
    // After close nothing drains the table any more: each refusal is its own event.
    r.reject(info, '203.0.113.7/32', 'too_many_handshakes_from_source', 'late');
    await new Promise((res) => setImmediate(res));
    expect(audit.find('listener.reject').map((e) => e.error)).toEqual(['n0', 'late']);
  });
});
