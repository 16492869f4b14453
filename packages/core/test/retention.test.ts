import { mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { type AuditEvent, eventFiles, FileRecordingStore } from '@gatehouse/audit';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../src/clock.js';
import { createGateway, type Gateway } from '../src/index.js';

const DAY = 24 * 3600 * 1000;

async function lines(dir: string): Promise<AuditEvent[]> {
  const { readFile } = await import('node:fs/promises');
  const out: AuditEvent[] = [];
  for (const f of eventFiles(dir)) {
    for (const l of (await readFile(path.join(dir, f), 'utf8')).trimEnd().split('\n')) {
      out.push(JSON.parse(l) as AuditEvent);
    }
  }
  return out;
}

describe('retention (audit.retention, recordings.retention)', () => {
  let dir: string;
  let gw: Gateway | undefined;
  beforeEach(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'gh-retention-'));
  });
  afterEach(async () => {
    await gw?.close();
    gw = undefined;
    await rm(dir, { recursive: true, force: true });
  });

  it('deletes old audit files and recordings at start, audits each deletion, and the chain still verifies', async () => {
    const clock = new ManualClock(Date.UTC(2026, 0, 1, 12));
    const recordings = new FileRecordingStore({
      dir: path.join(dir, 'recordings'),
      clock: () => clock.now(),
    });
    const open = () =>
      createGateway({
        dataDir: dir,
        secondFactor: 'off',
        clock,
        env: {},
        recordings,
        values: { audit: { retention: '30d' }, recordings: { retention: '30d' } },
      });
    gw = await open();
    // Ten days of activity, a month and more ago: one audit file a day, one recording a day.
    for (let d = 0; d < 10; d++) {
      await gw.admin.createUser({ name: `u${d}`, roles: ['access'] });
      const rec = await recordings.create({
        session_id: `old-${d}`,
        kind: 'ssh',
        user: `u${d}`,
        server: 'n',
        cols: 80,
        rows: 24,
      });
      rec.output(Buffer.from('hello\r\n'));
      await rec.close();
      clock.advance(DAY);
    }
    // Today: a live recording and a recent one stay.
    clock.set(Date.UTC(2026, 1, 6, 12));
    await gw.admin.createUser({ name: 'recent', roles: ['access'] });
    const recent = await recordings.create({
      session_id: 'recent-1',
      kind: 'ssh',
      user: 'recent',
      server: 'n',
      cols: 80,
      rows: 24,
    });
    await recent.close();
    const live = await recordings.create({
      session_id: 'live-1',
      kind: 'ssh',
      user: 'recent',
      server: 'n',
      cols: 80,
      rows: 24,
    });
    const auditDir = path.join(dir, 'audit');
    expect(eventFiles(auditDir)).toHaveLength(11);
    expect((await gw.audit.search({ types: ['user.create'] })).events).toHaveLength(11);

    // 2026-02-06 minus 30 days: files of days before 2026-01-07 go (six of them), recordings that ended before too.
    await gw.listen({ host: '127.0.0.1', port: 0 });
    const files = eventFiles(auditDir);
    expect(files[0]).toBe('events-2026-01-07.jsonl');
    expect(files).toHaveLength(5);
    expect((await readdir(auditDir)).filter((f) => f.endsWith('.head'))).toHaveLength(5);
    const left = (await recordings.list()).map((m) => m.session_id).sort();
    expect(left).toEqual(['live-1', 'old-6', 'old-7', 'old-8', 'old-9', 'recent-1']);
    // Old events are gone from search too.
    expect(
      (await gw.audit.search({ types: ['user.create'] })).events.map(
        (e) => e.type === 'user.create' && e.name,
      ),
    ).toEqual(['recent', 'u9', 'u8', 'u7', 'u6']);

    const record = await lines(auditDir);
    const fileDeletes = record.filter((e) => e.type === 'audit.retention.delete');
    expect(fileDeletes).toEqual([
      expect.objectContaining({
        user: 'system',
        code: 'GH1212I',
        before: '2026-01-07',
        reason: 'audit.retention 30d',
        anchor: 'events-2026-01-07.jsonl',
        files: [1, 2, 3, 4, 5, 6].map((d) => `events-2026-01-0${d}.jsonl`),
      }),
    ]);
    const recDeletes = record.filter(
      (e): e is Extract<AuditEvent, { type: 'recording.delete' }> => e.type === 'recording.delete',
    );
    expect(recDeletes.map((e) => e.session_id).sort()).toEqual([
      'old-0',
      'old-1',
      'old-2',
      'old-3',
      'old-4',
      'old-5',
    ]);
    expect(recDeletes[0]).toMatchObject({
      user: 'system',
      code: 'GH1213I',
      reason: 'recordings.retention 30d',
      kind: 'ssh',
    });

    // What is left verifies from the anchor retention recorded.
    const r = await gw.verifyAudit();
    expect(r.problems).toEqual([]);
    expect(r.first).toMatchObject({ file: 'events-2026-01-07.jsonl', from: 'anchor' });

    // Removing one more old file by hand is not retention: verify says so.
    await rm(path.join(auditDir, 'events-2026-01-07.jsonl'));
    expect((await gw.verifyAudit()).problems).toEqual([
      expect.objectContaining({ kind: 'start_missing', file: 'events-2026-01-08.jsonl' }),
    ]);
    await live.close();
  });

  it('keeps everything without a retention setting', async () => {
    const clock = new ManualClock(Date.UTC(2020, 0, 1));
    gw = await createGateway({ dataDir: dir, secondFactor: 'off', clock, env: {} });
    await gw.admin.createUser({ name: 'old', roles: ['access'] });
    clock.set(Date.UTC(2026, 0, 1));
    expect(await gw.enforceRetention()).toEqual({ auditFiles: [], recordings: [] });
    expect(eventFiles(path.join(dir, 'audit'))).toEqual(['events-2020-01-01.jsonl']);
  });
});
