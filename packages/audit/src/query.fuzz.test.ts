import { fuzz, onlyThrows } from '@gatehouse/core/testing';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { AuditValidationError } from './errors.js';
import { type AuditQuery, decodeCursor, encodeCursor, MAX_LIMIT, normalizeQuery } from './query.js';

const storedTime = fc
  .date({
    min: new Date('0000-01-01T00:00:00Z'),
    max: new Date('9999-12-31T23:59:59.999Z'),
    noInvalidDate: true,
  })
  .map((d) => d.toISOString());
const id = fc.string({ unit: 'grapheme', minLength: 1, maxLength: 60 });

describe('audit query (fuzz)', () => {
  it('decodeCursor reads back every cursor encodeCursor writes (within its size cap)', () => {
    fuzz(
      fc.property(storedTime, id, (time, i) => {
        const c = encodeCursor({ time, id: i });
        if (c.length > 512) expect(() => decodeCursor(c)).toThrow(AuditValidationError);
        else expect(decodeCursor(c)).toEqual({ time, id: i });
      }),
      { runs: 2000 },
    );
  });

  it('decodeCursor throws only AuditValidationError on any other value', () => {
    fuzz(
      fc.property(
        fc.oneof(
          fc.anything(),
          fc.string({ unit: 'binary', maxLength: 80 }),
          fc.jsonValue().map((v) => Buffer.from(JSON.stringify(v)).toString('base64url')),
          fc
            .tuple(storedTime, id, fc.jsonValue())
            .map(([t, i, v]) => Buffer.from(JSON.stringify([t, i, v])).toString('base64url')),
        ),
        (c) => {
          const r = onlyThrows(() => decodeCursor(c), AuditValidationError);
          if (r) expect(r.id.length).toBeGreaterThan(0);
        },
      ),
      { runs: 3000 },
    );
  });

  it('normalizeQuery throws only AuditValidationError, and what it returns is within its limits', () => {
    const date = fc.oneof(
      fc.stringMatching(/^\d{4}-\d{2}-\d{2}$/),
      fc.stringMatching(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2})$/),
      fc.anything(),
    );
    fuzz(
      fc.property(
        fc.record(
          {
            from: date,
            to: date,
            types: fc.oneof(
              fc.array(fc.constantFrom('session.start', 'user.login', 'nope', 'constructor')),
              fc.anything(),
            ),
            user: fc.anything(),
            q: fc.oneof(fc.string({ unit: 'grapheme', maxLength: 200 }), fc.anything()),
            limit: fc.oneof(fc.integer(), fc.anything()),
            cursor: fc.anything(),
          },
          { requiredKeys: [] },
        ),
        (q) => {
          const n = onlyThrows(() => normalizeQuery(q as AuditQuery), AuditValidationError);
          if (!n) return;
          expect(n.limit >= 1 && n.limit <= MAX_LIMIT).toBe(true);
          expect(n.terms.length).toBeLessThanOrEqual(32);
          for (const t of [n.from, n.to]) if (t !== undefined) expect(new Date(t).toISOString()).toBe(t);
        },
      ),
      { runs: 3000 },
    );
  });
});
