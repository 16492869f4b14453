import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { clipBytes, clipString, ParameterClipper, renderUtf8, TextDigest } from './clip.js';

const sha = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

describe('clipping audit text', () => {
  it('keeps a text that fits whole, and a longer one as prefix, length and hash of the whole', () => {
    expect(clipBytes(Buffer.from('select 1'), 8)).toBe('select 1');
    const long = Buffer.from('select 12345');
    expect(clipBytes(long, 8)).toEqual({ text: 'select 1', length: 12, sha256: sha(long) });
    expect(clipString('select 1', 8)).toBe('select 1');
    expect(clipString('select 12345', 8)).toEqual({ text: 'select 1', length: 12, sha256: sha(long) });
  });

  it('never ends a prefix in the middle of a character', () => {
    // 'é' is 2 bytes, '€' 3, '𝄞' 4: cutting inside any of them drops the whole character.
    const text = 'aé€𝄞z';
    const bytes = Buffer.from(text);
    const prefixes = [
      [1, 'a'],
      [2, 'a'],
      [3, 'aé'],
      [4, 'aé'],
      [5, 'aé'],
      [6, 'aé€'],
      [9, 'aé€'],
      [10, 'aé€𝄞'],
    ] as const;
    for (const [n, want] of prefixes) {
      expect(clipBytes(bytes, n)).toMatchObject({ text: want, length: bytes.length, sha256: sha(bytes) });
    }
    // Bytes that are not UTF-8 at all are not mistaken for a cut character.
    expect(renderUtf8(Buffer.from([0x61, 0x80, 0x80]), true)).toBe('a\uFFFD\uFFFD');
  });

  it('digests a text fed in any split exactly as clipping it whole', () => {
    const text = Buffer.from(`select '${'x€'.repeat(40)}' -- the end`);
    for (const keep of [0, 1, 7, 50, text.length - 1, text.length, text.length + 5]) {
      const whole = clipBytes(text, keep);
      for (let a = 0; a <= text.length; a += 7) {
        for (let b = a; b <= text.length; b += 11) {
          const d = new TextDigest(keep);
          d.update(text.subarray(0, a));
          d.update(text.subarray(a, b));
          d.update(text.subarray(b));
          expect(d.length).toBe(text.length);
          expect(d.result()).toEqual(whole);
        }
      }
    }
  });

  it('shares one budget between the parameters of a statement', () => {
    const c = new ParameterClipper({ maxQueryBytes: 10, maxParameterBytes: 4 });
    expect(c.clip(Buffer.from('abc'))).toBe('abc');
    const cut = c.clip(Buffer.from('defgh'));
    expect(cut).toEqual({ text: 'defg', length: 5, sha256: sha('defgh') });
    // 3 bytes of budget left: this value gets 3 even though its own limit is 4.
    const d = c.digest();
    d.update(Buffer.from('ijkl'));
    expect(c.take(d)).toEqual({ text: 'ijk', length: 4, sha256: sha('ijkl') });
    // Budget spent: length and hash only; an empty value still shows as empty.
    expect(c.clip(Buffer.from('m'))).toEqual({ text: '', length: 1, sha256: sha('m') });
    expect(c.clip(Buffer.alloc(0))).toBe('');
  });

  it('renders a prefix with the caller’s renderer', () => {
    const hex = (b: Buffer) => `\\x${b.toString('hex')}`;
    expect(clipBytes(Buffer.from([1, 2, 3]), 2, hex)).toMatchObject({ text: '\\x0102', length: 3 });
  });
});
