import { describe, expect, it } from 'vitest';
import { secretMatches } from './http.js';

describe('secretMatches (every plugin callback check)', () => {
  it('accepts the same string only', () => {
    expect(secretMatches('sha256=abcd', 'sha256=abcd')).toBe(true);
    expect(secretMatches('sha256=abce', 'sha256=abcd')).toBe(false);
    // Another length, a prefix and nothing are refused without comparing byte by byte.
    expect(secretMatches('sha256=abc', 'sha256=abcd')).toBe(false);
    expect(secretMatches('', 'sha256=abcd')).toBe(false);
    expect(secretMatches(undefined, 'sha256=abcd')).toBe(false);
    expect(secretMatches(['sha256=abcd'], 'sha256=abcd')).toBe(false);
  });
});
