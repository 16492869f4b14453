import { once } from 'node:events';
import { describe, expect, it } from 'vitest';
import { duplexPair } from './pair.js';

describe('duplexPair', () => {
  it('carries bytes both ways', async () => {
    const [a, b] = duplexPair();
    a.write('ping');
    const [got] = (await once(b, 'data')) as [Buffer];
    expect(got.toString()).toBe('ping');
    b.write(Buffer.from([1, 2, 3]));
    const [back] = (await once(a, 'data')) as [Buffer];
    expect([...back]).toEqual([1, 2, 3]);
  });

  it('holds writes back until the peer reads (backpressure)', async () => {
    const [a, b] = duplexPair();
    const big = Buffer.alloc(64 * 1024, 7);
    let done = 0;
    for (let i = 0; i < 8; i++) a.write(big, () => done++);
    await new Promise((r) => setImmediate(r));
    // Nobody reads b: only what fits its buffer was accepted.
    expect(done).toBeLessThan(8);
    let total = 0;
    b.on('data', (d: Buffer) => {
      total += d.length;
    });
    await new Promise<void>((r) => a.write(Buffer.alloc(0), () => r()));
    expect(done).toBe(8);
    expect(total).toBe(8 * big.length);
  });

  it('ending one side ends the other; both close', async () => {
    const [a, b] = duplexPair();
    b.resume();
    a.resume();
    const closed = Promise.all([once(a, 'close'), once(b, 'close')]);
    a.end('bye');
    await once(b, 'end');
    await closed;
    expect(a.destroyed && b.destroyed).toBe(true);
  });

  it('destroying one side closes the other', async () => {
    const [a, b] = duplexPair();
    const closed = once(b, 'close');
    a.destroy();
    await closed;
    expect(b.destroyed).toBe(true);
  });
});
