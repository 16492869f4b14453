import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { AuditEvent } from '../events.js';
import { JsonlFileSink } from './jsonl.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'gh-audit-jsonl-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

function ev(i: number, time = '2026-03-04T05:06:07.000Z', pad = ''): AuditEvent {
  return {
    id: `id-${String(i).padStart(5, '0')}`,
    time,
    type: 'user.logout',
    code: 'GH1002I',
    cluster: 'c',
    user: 'alice',
    message: pad,
  };
}

async function lines(file: string, inDir = dir): Promise<AuditEvent[]> {
  const text = await readFile(join(inDir, file), 'utf8');
  expect(text.endsWith('\n')).toBe(true);
  return text
    .trimEnd()
    .split('\n')
    .map((l) => JSON.parse(l) as AuditEvent);
}

describe('JsonlFileSink', () => {
  it('appends one JSON line per event to a 0600 file named after the UTC day', async () => {
    const audit = join(dir, 'audit');
    const sink = new JsonlFileSink({ dir: audit });
    sink.write(ev(1));
    sink.write(ev(2));
    sink.write(ev(3, '2026-03-05T00:00:00.000Z'));
    await sink.close();
    expect((await readdir(audit)).sort()).toEqual(['events-2026-03-04.jsonl', 'events-2026-03-05.jsonl']);
    expect((await lines('events-2026-03-04.jsonl', audit)).map((e) => e.id)).toEqual([
      'id-00001',
      'id-00002',
    ]);
    expect(await lines('events-2026-03-05.jsonl', audit)).toEqual([ev(3, '2026-03-05T00:00:00.000Z')]);
    expect((await stat(join(audit, 'events-2026-03-04.jsonl'))).mode & 0o777).toBe(0o600);
    expect((await stat(audit)).mode & 0o777).toBe(0o700);
  });

  it('rotates to numbered files once a file would exceed maxBytes', async () => {
    const lineLen = Buffer.byteLength(`${JSON.stringify(ev(0, undefined, 'x'.repeat(100)))}\n`);
    const sink = new JsonlFileSink({ dir, maxBytes: lineLen * 3 + 10 });
    for (let i = 0; i < 10; i++) sink.write(ev(i, undefined, 'x'.repeat(100)));
    await sink.close();
    const files = sink.files();
    expect(files).toEqual([
      'events-2026-03-04.jsonl',
      'events-2026-03-04.1.jsonl',
      'events-2026-03-04.2.jsonl',
      'events-2026-03-04.3.jsonl',
    ]);
    const all: string[] = [];
    for (const f of files) {
      expect((await stat(join(dir, f))).size).toBeLessThanOrEqual(lineLen * 3 + 10);
      expect((await stat(join(dir, f))).mode & 0o777).toBe(0o600);
      all.push(...(await lines(f)).map((e) => e.id));
    }
    expect(all).toEqual(Array.from({ length: 10 }, (_, i) => `id-${String(i).padStart(5, '0')}`));
  });

  it('writes an event larger than maxBytes into a file of its own instead of failing', async () => {
    const sink = new JsonlFileSink({ dir, maxBytes: 50 });
    sink.write(ev(1, undefined, 'y'.repeat(200)));
    sink.write(ev(2, undefined, 'y'.repeat(200)));
    await sink.close();
    expect(sink.files()).toEqual(['events-2026-03-04.jsonl', 'events-2026-03-04.1.jsonl']);
  });

  it('keeps at most maxFiles files, deleting the oldest', async () => {
    const sink = new JsonlFileSink({ dir, maxBytes: 1, maxFiles: 2 });
    for (let i = 0; i < 5; i++) sink.write(ev(i));
    await sink.close();
    expect(sink.files()).toEqual(['events-2026-03-04.3.jsonl', 'events-2026-03-04.4.jsonl']);
    expect((await lines('events-2026-03-04.4.jsonl')).map((e) => e.id)).toEqual(['id-00004']);
  });

  it('lets two writers (two processes) share a directory without losing or tearing lines', async () => {
    const lineLen = Buffer.byteLength(`${JSON.stringify(ev(0))}\n`);
    const a = new JsonlFileSink({ dir, maxBytes: lineLen * 20 });
    const b = new JsonlFileSink({ dir, maxBytes: lineLen * 20 });
    for (let i = 0; i < 100; i++) (i % 2 === 0 ? a : b).write(ev(i));
    await a.close();
    await b.close();
    const ids: string[] = [];
    for (const f of a.files()) ids.push(...(await lines(f)).map((e) => e.id));
    expect(ids.sort()).toEqual(Array.from({ length: 100 }, (_, i) => `id-${String(i).padStart(5, '0')}`));
    // Neither writer clobbered the other's rotation: files stay near the limit.
    for (const f of a.files()) expect((await stat(join(dir, f))).size).toBeLessThanOrEqual(lineLen * 21);
  });

  it('refuses an event whose time would make a bad file name', () => {
    const sink = new JsonlFileSink({ dir });
    expect(() => sink.write(ev(1, '../../etc/passwd'))).toThrow(/malformed time/);
  });
});
