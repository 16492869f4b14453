import { describe, expect, it } from 'vitest';
import { commandLineToken } from './token.js';

describe('commandLineToken', () => {
  it('never starts with "-" (1 in 64 plain base64url tokens does) and keeps its length and alphabet', () => {
    const tokens = Array.from({ length: 5000 }, () => commandLineToken(32));
    // With 5000 draws, a plain base64url token would start with '-' about 78 times.
    expect(tokens.filter((t) => t.startsWith('-'))).toEqual([]);
    for (const t of tokens) expect(t).toMatch(/^[A-Za-z0-9_][A-Za-z0-9_-]{42}$/);
    expect(new Set(tokens).size).toBe(tokens.length);
    expect(commandLineToken(24)).toHaveLength(32);
  });
});
