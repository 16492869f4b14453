import fc from 'fast-check';
import { RE2JS } from 're2js';
import { describe, expect, it } from 'vitest';
import { chunks, cutsArb, fuzz } from '../testing/fuzz.js';
import { GuardSet } from './guards.js';

/** Text made of pieces that are, or nearly are, what the guards look for. */
const piece = fc.oneof(
  fc.constantFrom('AKIA', 'AKIAABCDEFGHIJKLMNOP', 'AKIA123', 'gh-canary', 'canary', 'xx', '\n', ' '),
  fc.string({ maxLength: 12 }),
  fc.stringMatching(/^[0-9A-Z]{1,20}$/),
);
const text = fc.array(piece, { maxLength: 40 }).map((p) => Buffer.from(p.join(''), 'latin1'));

const GUARDS = [
  { name: 'aws key', match: 'AKIA[0-9A-Z]{16}', on: ['output' as const], action: 'audit' as const },
  { name: 'canary', literal: 'gh-canary', on: ['output' as const], action: 'audit' as const },
];

/** How many times each guard matches `whole` when scanned at once, by plain re2js / indexOf. */
function expected(whole: Buffer): Map<string, number> {
  const s = whole.toString('latin1');
  const out = new Map<string, number>();
  const m = RE2JS.compile('AKIA[0-9A-Z]{16}').matcher(s);
  let n = 0;
  while (m.find()) n++;
  out.set('aws key', n);
  let c = 0;
  for (let at = s.indexOf('gh-canary'); at >= 0; at = s.indexOf('gh-canary', at + 1)) c++;
  out.set('canary', c);
  return out;
}

describe('fuzz: content guards over a stream cut anywhere', () => {
  it('find a match whatever the cuts, and never one that is not in the text', () => {
    fuzz(
      fc.property(text, cutsArb, (whole, cuts) => {
        const scanner = new GuardSet(GUARDS).scanner('output')!;
        const seen = new Set<string>();
        for (const c of chunks(whole, cuts)) {
          for (const hit of scanner.scan(c)) seen.add(hit.rule);
        }
        const want = expected(whole);
        for (const [rule, n] of want) {
          // A guard reports at least one match when the text holds one, and never when it holds none.
          expect(seen.has(rule), `${rule} in ${JSON.stringify(whole.toString('latin1'))}`).toBe(n > 0);
        }
      }),
      { runs: 500 },
    );
  });
});
