import { describe, expect, it } from 'vitest';
import { ManualClock } from '../clock.js';
import { backendContract } from '../testing/backend-contract.js';
import { openBackend } from './index.js';
import { MemoryBackend } from './memory.js';

backendContract('memory', async (clock) => {
  const backend = new MemoryBackend({ clock, sweepIntervalMs: 0 });
  return { backend, cleanup: () => backend.close() };
});

describe('MemoryBackend', () => {
  it('hands out copies, so callers cannot change stored items', async () => {
    const b = new MemoryBackend({ clock: new ManualClock(), sweepIntervalMs: 0 });
    const item = await b.put('k', 'v', { ttlMs: 1000 });
    item.value = 'changed';
    item.expires?.setTime(0);
    const got = await b.get('k');
    expect(got?.value).toBe('v');
    expect(got?.expires?.getTime()).toBe(Date.UTC(2026, 0, 1) + 1000);
    await b.close();
  });

  it('openBackend({ type: "memory" }) uses the given clock', async () => {
    const clock = new ManualClock();
    const b = await openBackend({ type: 'memory' }, clock);
    expect(b.kind).toBe('memory');
    await b.put('k', 'v', { ttlMs: 5 });
    clock.advance(5);
    expect(await b.get('k')).toBeUndefined();
    await b.close();
  });
});
