import { describe, expect, it } from 'vitest';
import { compileGuard, GuardSet, GuardSyntaxError } from './guards.js';

const CANARY = 'gh-canary-7f3a9c';

describe('content guards', () => {
  it('finds a literal split at every point between two pieces, once', () => {
    const text = Buffer.from(`some output ${CANARY} and more`);
    for (let cut = 0; cut <= text.length; cut++) {
      const s = new GuardSet([{ literal: CANARY, on: ['output'] }]).scanner('output')!;
      const hits = [
        ...s.scan(text.subarray(0, cut)),
        ...s.scan(text.subarray(cut)),
        ...s.scan(Buffer.from(' tail')),
      ];
      expect(hits, `cut at ${cut}`).toHaveLength(1);
      expect(hits[0]).toEqual({
        rule: 'guard 1',
        on: 'output',
        action: 'terminate',
        length: CANARY.length,
      });
    }
  });

  it('finds a pattern split across three pieces, and not again once it is only in the window', () => {
    const s = new GuardSet([
      { name: 'aws key', match: 'AKIA[0-9A-Z]{16}', on: ['result'], action: 'audit' },
    ]).scanner('result')!;
    expect(s.scan(Buffer.from('id | secret\n 1 | AKIA1234'))).toEqual([]);
    expect(s.scan(Buffer.from('56789ABC'))).toEqual([]);
    expect(s.scan(Buffer.from('DEFG\n'))).toEqual([
      { rule: 'aws key', on: 'result', action: 'audit', length: 20 },
    ]);
    // The key is still in the window: a following piece does not report it twice.
    expect(s.scan(Buffer.from('(1 row)\n'))).toEqual([]);
    // A second key is a second match.
    expect(s.scan(Buffer.from('AKIAZZZZZZZZZZZZZZZZ'))[0]).toMatchObject({ rule: 'aws key' });
  });

  it('a terminating guard wins over an audit one; streams nobody watches are not scanned', () => {
    const set = new GuardSet([
      { literal: 'secret', on: ['output', 'query'], action: 'audit' },
      { name: 'stop', literal: 'secret', on: ['output'], action: 'terminate' },
    ]);
    expect(set.scanner('output')!.scan(Buffer.from('a secret'))[0]).toMatchObject({
      rule: 'stop',
      action: 'terminate',
    });
    expect(set.scanner('query')!.scan(Buffer.from('select secret'))[0]).toMatchObject({ action: 'audit' });
    expect(set.scanner('input')).toBeUndefined();
    expect(set.watches('result')).toBe(false);
  });

  it('ignores case when asked, for literals and patterns', () => {
    const set = new GuardSet([
      { literal: 'Canary', on: ['output'], ignore_case: true },
      { match: 'password\\s*=', on: ['input'], ignore_case: true },
    ]);
    expect(set.scanner('output')!.scan(Buffer.from('a CANARY here'))).toHaveLength(1);
    expect(set.scanner('input')!.scan(Buffer.from('PassWord = x'))).toHaveLength(1);
  });

  it('refuses guards that cannot work: both or neither kind, empty matches, bad syntax, backreferences', () => {
    const bad = [
      { on: ['output'] },
      { literal: 'a', match: 'a', on: ['output'] },
      { literal: '', on: ['output'] },
      { match: 'x*', on: ['output'] },
      { match: '(a', on: ['output'] },
      { match: '(a)\\1', on: ['output'] },
    ] as const;
    for (const g of bad)
      expect(() => compileGuard({ ...g, on: [...g.on] }, 0), JSON.stringify(g)).toThrow(GuardSyntaxError);
  });

  it('runs a pattern that would backtrack catastrophically in a backtracking engine, in linear time', () => {
    const s = new GuardSet([{ match: '(a+)+$', on: ['output'] }]).scanner('output')!;
    // With a backtracking engine this input takes longer than the universe; RE2 semantics answer at once.
    expect(s.scan(Buffer.from(`${'a'.repeat(40_000)}!`))).toEqual([]);
    expect(s.scan(Buffer.from('aaa'))).toHaveLength(1);
  });
});

describe('literalPrefix (where a pattern scan may start)', () => {
  it('takes the leading plain characters, minus one a quantifier makes optional', async () => {
    const { literalPrefix } = await import('./guards.js');
    expect(literalPrefix('AKIA[0-9A-Z]{16}')).toBe('AKIA');
    expect(literalPrefix('-----BEGIN RSA')).toBe('-----BEGIN RSA');
    expect(literalPrefix('abc?d')).toBe('ab');
    expect(literalPrefix('abcd{2}')).toBe('abc');
    expect(literalPrefix('ab+c')).toBe('ab');
    expect(literalPrefix('(?i)secret')).toBe('');
    expect(literalPrefix('\\d{16}')).toBe('');
    expect(literalPrefix('key|token')).toBe('');
    expect(literalPrefix('secret-(a|b)')).toBe('');
  });
});
