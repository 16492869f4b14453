import { describe, expect, it } from 'vitest';
import { SessionRegistry } from './registry.js';

describe('SessionRegistry', () => {
  it('lists, kills and re-checks live sessions; unregister removes only its own entry', () => {
    const reg = new SessionRegistry();
    const calls: string[] = [];
    const control = (id: string) => ({
      terminate: (reason: string) => calls.push(`${id} terminate ${reason}`),
      recheck: () => calls.push(`${id} recheck`),
    });
    const base = { kind: 'ssh' as const, user: 'alice', server: 'web1' };
    const off1 = reg.register({ ...base, id: 's1', started: '2026-01-01T00:00:01Z' }, control('s1'));
    reg.register({ ...base, id: 's2', started: '2026-01-01T00:00:00Z' }, control('s2'));
    expect(reg.list().map((s) => s.id)).toEqual(['s2', 's1']);
    expect(reg.kill('s1', 'ended by admin')).toBe(true);
    expect(reg.kill('nope', 'x')).toBe(false);
    reg.recheckAll();
    expect(calls).toEqual(['s1 terminate ended by admin', 's1 recheck', 's2 recheck']);
    reg.update('s1', { interactive: true, command: 'top' });
    reg.update('nope', { interactive: true });
    expect(reg.get('s1')).toMatchObject({ interactive: true, command: 'top' });
    expect(reg.get('s2')?.interactive).toBeUndefined();
    off1();
    expect(reg.get('s1')).toBeUndefined();
    // A later session reusing the id is not removed by the stale unregister.
    reg.register({ ...base, id: 's1', started: '2026-01-01T00:00:02Z' }, control('s1b'));
    off1();
    expect(reg.size).toBe(2);
  });
});
