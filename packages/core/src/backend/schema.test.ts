import { describe, expect, it } from 'vitest';
import { GatehouseError } from '../errors.js';
import { VERSION } from '../version.js';
import { MemoryBackend } from './memory.js';
import { MIGRATIONS, type Migration, migrateSchema, SCHEMA_KEY } from './schema.js';

const stored = async (b: MemoryBackend) => JSON.parse((await b.get(SCHEMA_KEY))!.value);

/** Three steps that each leave a mark, so order and re-runs show. */
function steps(log: string[]): Migration[] {
  return [1, 2, 3].map((version) => ({
    version,
    description: `step ${version}`,
    up: async (b) => {
      log.push(`up ${version}`);
      await b.put(`test/step${version}`, String(version));
    },
  }));
}

describe('migrateSchema', () => {
  it('a new store records the current version without running any step', async () => {
    const b = new MemoryBackend();
    const log: string[] = [];
    const r = await migrateSchema(b, { where: '/d', migrations: steps(log), softwareVersion: '1.2.3' });
    expect(r).toMatchObject({ from: 3, to: 3, applied: [] });
    expect(log).toEqual([]);
    expect(await stored(b)).toEqual({ version: 3, written_by: '1.2.3' });
  });

  it('a store from before versioning (items, no version) runs every step in order, once', async () => {
    const b = new MemoryBackend();
    await b.put('users/alice', '{}');
    const log: string[] = [];
    const r = await migrateSchema(b, { where: '/d', migrations: steps(log) });
    expect(r.from).toBe(0);
    expect(r.applied.map((m) => m.version)).toEqual([1, 2, 3]);
    expect(log).toEqual(['up 1', 'up 2', 'up 3']);
    expect(await stored(b)).toEqual({ version: 3, written_by: VERSION });
    // Started again: nothing left to do.
    await migrateSchema(b, { where: '/d', migrations: steps(log) });
    expect(log).toEqual(['up 1', 'up 2', 'up 3']);
  });

  it('an older store runs only the steps after its version', async () => {
    const b = new MemoryBackend();
    const log: string[] = [];
    await migrateSchema(b, { where: '/d', migrations: steps(log).slice(0, 1), softwareVersion: '0.1.0' });
    expect(await stored(b)).toEqual({ version: 1, written_by: '0.1.0' });
    const r = await migrateSchema(b, { where: '/d', migrations: steps(log), softwareVersion: '0.3.0' });
    expect(r).toMatchObject({ from: 1, to: 3 });
    expect(log).toEqual(['up 2', 'up 3']);
    expect(await b.get('test/step1')).toBeUndefined();
    expect((await b.get('test/step3'))?.value).toBe('3');
    expect(await stored(b)).toEqual({ version: 3, written_by: '0.3.0' });
  });

  it('a step that fails leaves the version at the last completed step, and the next start resumes there', async () => {
    const b = new MemoryBackend();
    await b.put('users/alice', '{}');
    const log: string[] = [];
    const failing = steps(log);
    failing[1] = { ...failing[1]!, up: () => Promise.reject(new Error('disk full')) };
    await expect(migrateSchema(b, { where: '/d', migrations: failing })).rejects.toThrow('disk full');
    expect((await stored(b)).version).toBe(1);
    await migrateSchema(b, { where: '/d', migrations: steps(log) });
    expect(log).toEqual(['up 1', 'up 2', 'up 3']);
  });

  it('an older binary refuses a newer store, saying to upgrade, and changes nothing', async () => {
    const b = new MemoryBackend();
    await migrateSchema(b, { where: '/d', migrations: steps([]), softwareVersion: '0.3.0' });
    const before = await b.get(SCHEMA_KEY);
    const log: string[] = [];
    const e = await migrateSchema(b, {
      where: '/var/lib/gatehouse',
      migrations: steps(log).slice(0, 1),
      softwareVersion: '0.1.0',
    }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(GatehouseError);
    expect((e as GatehouseError).code).toBe('GH_ERR_DATA_DIR_NEWER');
    expect((e as GatehouseError).message).toBe(
      'the data dir /var/lib/gatehouse was written by Gatehouse 0.3.0 (data schema 3); this is Gatehouse 0.1.0, which knows schemas up to 1 and does not run on a newer data dir',
    );
    expect((e as GatehouseError).hint).toMatch(/^Upgrade gatehouse/);
    expect(log).toEqual([]);
    expect(await b.get(SCHEMA_KEY)).toEqual(before);
  });

  it("the shipped steps are numbered 1..N (a gap or a reorder would skip a step on someone's data dir)", () => {
    expect(MIGRATIONS.map((m) => m.version)).toEqual(MIGRATIONS.map((_, i) => i + 1));
  });
});
