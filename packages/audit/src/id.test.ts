import { describe, expect, it } from 'vitest';
import { createIdGenerator } from './id.js';

const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

describe('createIdGenerator', () => {
  it('makes UUIDv7 ids carrying the millisecond time', () => {
    const t = Date.UTC(2026, 0, 2, 3, 4, 5, 678);
    const id = createIdGenerator(() => t)();
    expect(id).toMatch(UUID_V7);
    expect(Number.parseInt(id.replace('-', '').slice(0, 12), 16)).toBe(t);
  });

  it('keeps ids increasing within one millisecond and when the clock steps back', () => {
    let t = Date.UTC(2026, 0, 1);
    const gen = createIdGenerator(() => t);
    const ids: string[] = [];
    for (let i = 0; i < 5000; i++) ids.push(gen()); // more than the 12-bit counter holds
    t -= 10_000;
    for (let i = 0; i < 10; i++) ids.push(gen());
    t += 60_000;
    ids.push(gen());
    expect(new Set(ids).size).toBe(ids.length);
    expect([...ids].sort()).toEqual(ids);
    for (const id of ids) expect(id).toMatch(UUID_V7);
  });
});
