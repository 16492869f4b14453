import { afterEach, describe, expect, it, vi } from 'vitest';
import { ByteQueue } from './byte-queue.js';

afterEach(() => {
  vi.restoreAllMocks();
});

describe('ByteQueue', () => {
  it('peeks and takes across chunk boundaries, in order', () => {
    const q = new ByteQueue();
    q.push(Buffer.from('ab'));
    q.push(Buffer.alloc(0));
    q.push(Buffer.from('cde'));
    expect(q.length).toBe(5);
    expect(q.peek(6)).toBeUndefined();
    expect(q.peek(3)?.toString()).toBe('abc');
    expect(q.take(1).toString()).toBe('a');
    expect(q.take(3).toString()).toBe('bcd');
    expect(q.length).toBe(1);
    expect(q.take(9).toString()).toBe('e');
    expect(q.length).toBe(0);
    expect(q.peek(0)?.length).toBe(0);
  });

  it('copies each byte a bounded number of times however finely a message is split', () => {
    const concat = vi.spyOn(Buffer, 'concat');
    const q = new ByteQueue();
    const total = 1 << 20;
    for (let i = 0; i < total; i += 100) {
      q.push(Buffer.alloc(Math.min(100, total - i)));
      q.peek(8);
      if (q.length >= total) q.take(total);
    }
    const copied = concat.mock.results.reduce((n, r) => n + (r.value as Buffer).length, 0);
    expect(copied).toBeLessThanOrEqual(2 * total);
  });
});
