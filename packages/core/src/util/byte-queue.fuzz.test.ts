import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { chunks, cutsArb, fuzz } from '../testing/fuzz.js';
import { ByteQueue } from './byte-queue.js';

describe('ByteQueue (fuzz)', () => {
  it('gives back the bytes pushed, in order, whatever the chunks and the peeks and takes', () => {
    fuzz(
      fc.property(
        fc.uint8Array({ maxLength: 500 }),
        cutsArb,
        fc.array(fc.tuple(fc.boolean(), fc.nat(60)), { maxLength: 30 }),
        (bytes, cuts, ops) => {
          const input = Buffer.from(bytes);
          const q = new ByteQueue();
          let pushed = 0;
          let taken = 0;
          const pieces = chunks(input, cuts);
          for (const [i, [isTake, n]] of ops.entries()) {
            const piece = pieces[i];
            if (piece) {
              q.push(piece);
              pushed += piece.length;
            }
            expect(q.length).toBe(pushed - taken);
            const want = input.subarray(taken, taken + n);
            if (isTake) {
              const got = q.take(n);
              expect(got).toEqual(want.subarray(0, Math.min(n, pushed - taken)));
              taken += got.length;
            } else {
              const got = q.peek(n);
              if (n > pushed - taken) expect(got).toBeUndefined();
              else expect(got).toEqual(want);
            }
          }
          expect(q.take(q.length)).toEqual(input.subarray(taken, pushed));
        },
      ),
      { runs: 2000 },
    );
  });
});
