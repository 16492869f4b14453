import { describe, expect, it } from 'vitest';
import { AuditValidationError } from './errors.js';
import { decodeCursor, encodeCursor, normalizeQuery, splitTerms, tokenize } from './query.js';

function validationError(fn: () => unknown): AuditValidationError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(AuditValidationError);
    expect((err as AuditValidationError).code).toBe('GH_ERR_VALIDATION');
    return err as AuditValidationError;
  }
  throw new Error('expected a validation error');
}

describe('normalizeQuery', () => {
  it('fills defaults and caps the limit', () => {
    expect(normalizeQuery({})).toEqual({ terms: [], limit: 100 });
    expect(normalizeQuery({ limit: 5000 }).limit).toBe(1000);
  });

  it('normalizes dates to the stored form', () => {
    const q = normalizeQuery({ from: '2026-01-02', to: '2026-01-02T10:00:00+02:00' });
    expect(q.from).toBe('2026-01-02T00:00:00.000Z');
    expect(q.to).toBe('2026-01-02T08:00:00.000Z');
  });

  it('rejects bad dates with a message naming the field', () => {
    expect(validationError(() => normalizeQuery({ from: 'yesterday' })).message).toMatch(/'from'/);
    expect(validationError(() => normalizeQuery({ to: '2026-02-31' })).message).toMatch(
      /'to' is not a real date/,
    );
    // A time without a zone is ambiguous.
    validationError(() => normalizeQuery({ from: '2026-01-01T10:00:00' }));
  });

  it('rejects unknown types and bad limits', () => {
    expect(validationError(() => normalizeQuery({ types: ['user.logn'] })).message).toContain('user.logn');
    validationError(() => normalizeQuery({ limit: 0 }));
    validationError(() => normalizeQuery({ limit: 1.5 }));
  });

  it('rejects cursors that were not made by encodeCursor', () => {
    for (const c of ['', 'not base64!', Buffer.from('[1,2]').toString('base64url'), 'e30', 'x'.repeat(600)]) {
      expect(validationError(() => normalizeQuery({ cursor: c })).message).toBe('invalid cursor');
    }
  });
});

describe('cursor', () => {
  it('round-trips time and id', () => {
    const pos = { time: '2026-01-01T00:00:00.000Z', id: '0190-x' };
    const c = encodeCursor(pos);
    expect(c).toMatch(/^[A-Za-z0-9_-]+$/);
    expect(decodeCursor(c)).toEqual(pos);
  });
});

describe('terms', () => {
  it('drops words with nothing searchable and keeps the rest verbatim', () => {
    expect(splitTerms('  alice  *  "  (x) NEAR ')).toEqual(['alice', '(x)', 'NEAR']);
  });

  it('tokenizes like unicode61 (case and accents folded)', () => {
    expect(tokenize('{"user":"Zoë O\'Brien"}')).toEqual(['user', 'zoe', 'o', 'brien']);
  });
});
