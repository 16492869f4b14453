import { MemoryAuditLog } from '@gatehouse/audit/testing';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MemoryBackend } from '../backend/memory.js';
import type { Backend } from '../backend/types.js';
import { ManualClock } from '../clock.js';
import { GatehouseError } from '../errors.js';
import { LockService } from './locks.js';

describe('LockService', () => {
  let clock: ManualClock;
  let backend: MemoryBackend;
  let audit: MemoryAuditLog;
  let locks: LockService;

  beforeEach(() => {
    clock = new ManualClock();
    backend = new MemoryBackend({ clock, sweepIntervalMs: 0 });
    audit = new MemoryAuditLog({ clock: () => clock.now() });
    locks = new LockService({ backend, clock, audit });
  });
  afterEach(async () => {
    await backend.close();
  });

  it('creates, lists, finds and deletes locks, with audit events', async () => {
    const u = await locks.create({ target: { user: 'alice' }, message: 'incident 42' }, 'admin');
    const r = await locks.create({ target: { role: 'dev' } }, 'admin');
    expect(u).toMatchObject({ target: { user: 'alice' }, message: 'incident 42', createdBy: 'admin' });
    expect(u.id).toMatch(/^[0-9a-f]{24}$/);
    expect(u.expires).toBeUndefined();
    expect((await locks.list()).map((l) => l.id).sort()).toEqual([u.id, r.id].sort());
    expect((await locks.find({ user: 'alice', roles: [] })).map((l) => l.id)).toEqual([u.id]);
    expect((await locks.find({ user: 'bob', roles: ['dev', 'x'] })).map((l) => l.id)).toEqual([r.id]);
    expect(await locks.find({ user: 'bob', roles: ['access'] })).toEqual([]);
    await locks.delete(u.id, 'admin2');
    expect(await locks.find({ user: 'alice', roles: [] })).toEqual([]);
    expect(audit.events.map((e) => [e.type, e.user])).toEqual([
      ['lock.create', 'admin'],
      ['lock.create', 'admin'],
      ['lock.delete', 'admin2'],
    ]);
    expect(audit.last('lock.delete')).toMatchObject({ lock_id: u.id, target: { user: 'alice' } });
  });

  it('ignores expired locks even before the backend sweeps them', async () => {
    const l = await locks.create({ target: { user: 'alice' }, ttlMs: 60_000 }, 'admin');
    expect(l.expires).toBe(new Date(clock.now().getTime() + 60_000).toISOString());
    expect(audit.last('lock.create')?.expires).toBe(l.expires);
    clock.advance(59_999);
    expect(await locks.find({ user: 'alice', roles: [] })).toHaveLength(1);
    clock.advance(1);
    expect(await locks.find({ user: 'alice', roles: [] })).toEqual([]);
    expect(await locks.list()).toEqual([]);
  });

  it("deleteForUser removes only that user's locks", async () => {
    await locks.create({ target: { user: 'alice' } }, 'a');
    await locks.create({ target: { user: 'alice' } }, 'a');
    const keep = await locks.create({ target: { user: 'bob' } }, 'a');
    const removed = await locks.deleteForUser('alice', 'a');
    expect(removed).toHaveLength(2);
    expect((await locks.list()).map((l) => l.id)).toEqual([keep.id]);
  });

  it('validates targets and TTLs, and reports unknown ids', async () => {
    await expect(locks.create({ target: {} as { user: string } }, 'a')).rejects.toMatchObject({
      code: 'GH_ERR_VALIDATION',
    });
    await expect(
      locks.create({ target: { user: 'a', role: 'b' } as unknown as { user: string } }, 'a'),
    ).rejects.toMatchObject({ code: 'GH_ERR_VALIDATION' });
    await expect(locks.create({ target: { user: 'a' }, ttlMs: -5 }, 'a')).rejects.toMatchObject({
      code: 'GH_ERR_VALIDATION',
    });
    await expect(locks.delete('0123abcd', 'a')).rejects.toMatchObject({ code: 'GH_ERR_NOT_FOUND' });
    await expect(locks.delete('../users/x', 'a')).rejects.toMatchObject({ code: 'GH_ERR_NOT_FOUND' });
  });

  it('backend errors propagate so callers fail closed', async () => {
    const down = {
      kind: 'down',
      range: async () => {
        throw new GatehouseError('GH_ERR_BACKEND_UNAVAILABLE', 'backend down');
      },
    } as unknown as Backend;
    const l = new LockService({ backend: down, clock, audit });
    await expect(l.find({ user: 'alice', roles: [] })).rejects.toMatchObject({
      code: 'GH_ERR_BACKEND_UNAVAILABLE',
    });
  });

  it('an unreadable lock is an error, not a silent unlock', async () => {
    await backend.put('locks/abc', 'not json');
    await expect(locks.find({ user: 'alice', roles: [] })).rejects.toMatchObject({ code: 'GH_ERR_INTERNAL' });
  });
});
