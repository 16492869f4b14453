import { generateKeyPairSync, sign } from 'node:crypto';
import { mkdtemp, readFile, rm, truncate, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { GENESIS, type HeadSigner, lineHash } from './chain.js';
import { removeExpiredFiles } from './chain-writer.js';
import type { AuditEvent } from './events.js';
import { AuditLog } from './log.js';
import { JsonlFileSink } from './sinks/jsonl.js';
import { verifyAuditChain } from './verify.js';

let dir: string;
const { publicKey, privateKey } = generateKeyPairSync('ed25519');
const signer: HeadSigner = { keyId: 'k1', sign: (d) => sign(null, d, privateKey) };
const keys = { k1: publicKey };

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'gh-audit-chain-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

function ev(i: number, day = '2026-03-04'): AuditEvent {
  return {
    id: `id-${String(i).padStart(4, '0')}`,
    time: `${day}T05:06:07.000Z`,
    type: 'user.logout',
    code: 'GH1002I',
    cluster: 'c',
    user: 'alice',
  };
}

function sink(maxBytes?: number): JsonlFileSink {
  const s = new JsonlFileSink({ dir, chain: true, ...(maxBytes ? { maxBytes } : {}) });
  s.setHeadSigner(signer);
  return s;
}

async function fileLines(f: string): Promise<string[]> {
  return (await readFile(join(dir, f), 'utf8')).split('\n').filter((l) => l !== '');
}

async function writeLines(f: string, lines: string[]): Promise<void> {
  await writeFile(join(dir, f), `${lines.join('\n')}\n`);
}

describe('hash-chained JSON lines', () => {
  it('links every line to the one before, across files and writers, and verifies', async () => {
    const a = sink(600);
    const b = sink(600);
    for (let i = 1; i <= 12; i++) (i % 3 === 0 ? b : a).write(ev(i, i > 8 ? '2026-03-05' : '2026-03-04'));
    a.writeBatch([ev(13, '2026-03-05'), ev(14, '2026-03-05')]);
    await a.close();
    await b.close();
    const files = a.files();
    expect(files.length).toBeGreaterThan(2);
    const all = (await Promise.all(files.map(fileLines))).flat();
    expect(all).toHaveLength(14);
    expect(all.map((l) => (JSON.parse(l) as AuditEvent).id)).toEqual(
      Array.from({ length: 14 }, (_, i) => ev(i + 1).id),
    );
    let prev = GENESIS;
    all.forEach((l, i) => {
      expect(l.startsWith(`{"chain":{"seq":${i + 1},"prev":"${prev}"},`)).toBe(true);
      prev = lineHash(l);
    });
    const r = verifyAuditChain({ dir, keys });
    expect(r).toMatchObject({ ok: true, events: 14, files: files.length, problems: [], warnings: [] });
    expect(r.first).toEqual({ file: files[0], seq: 1, from: 'genesis' });
    expect(r.last).toEqual({ file: files.at(-1), seq: 14, hash: prev });
  });

  it('gives the event object its link, so other sinks export the same one', () => {
    const s = sink();
    const e1 = ev(1);
    const e2 = ev(2);
    s.writeBatch([e1, e2]);
    expect(e1.chain).toEqual({ seq: 1, prev: GENESIS });
    expect(e2.chain?.seq).toBe(2);
  });

  it('the AuditLog hands other sinks the event with its link, in the bytes of the file', async () => {
    const record = sink();
    const seen: { e: AuditEvent; line: string | undefined }[] = [];
    const exporter = {
      name: 'export',
      write: (e: AuditEvent) => void seen.push({ e, line: undefined }),
      writeBatch: (es: AuditEvent[], lines?: readonly string[]) =>
        es.forEach((e, i) => void seen.push({ e, line: lines?.[i] })),
    };
    const log = new AuditLog({ cluster: 'c', sinks: [record, exporter], spoolDir: join(dir, 'spool') });
    await Promise.all([1, 2, 3].map(() => log.emit({ type: 'user.logout', user: 'bob' })));
    await log.close();
    const file = await fileLines(record.files()[0] as string);
    expect(seen.map((s) => s.e.chain?.seq)).toEqual([1, 2, 3]);
    expect(seen.map((s) => s.line?.trimEnd())).toEqual(file);
  });

  it('reports an edited, a deleted and two swapped events with file, line and id', async () => {
    const s = sink();
    for (let i = 1; i <= 10; i++) s.write(ev(i));
    await s.close();
    const f = 'events-2026-03-04.jsonl';
    const orig = await fileLines(f);

    const edited = [...orig];
    edited[2] = (edited[2] as string).replace('"alice"', '"mallory"');
    await writeLines(f, edited);
    let r = verifyAuditChain({ dir, keys });
    expect(r.ok).toBe(false);
    expect(r.problems).toEqual([
      expect.objectContaining({ kind: 'edited', file: f, line: 3, id: 'id-0003' }),
    ]);

    await writeLines(
      f,
      orig.filter((_, i) => i !== 4),
    );
    r = verifyAuditChain({ dir, keys });
    expect(r.problems).toEqual([
      expect.objectContaining({ kind: 'deleted', file: f, line: 5, id: 'id-0006', seq: 5 }),
    ]);

    const swapped = [...orig];
    [swapped[5], swapped[6]] = [swapped[6] as string, swapped[5] as string];
    await writeLines(f, swapped);
    r = verifyAuditChain({ dir, keys });
    expect(r.problems).toEqual([
      expect.objectContaining({ kind: 'reordered', file: f, line: 6, id: 'id-0007' }),
    ]);
    expect(r.problems[0]?.message).toContain('id-0006');

    await writeLines(f, orig);
    expect(verifyAuditChain({ dir, keys }).ok).toBe(true);
  });

  it('reports a file removed from the middle, and a forged head', async () => {
    const s = sink(400);
    for (let i = 1; i <= 9; i++) s.write(ev(i));
    await s.close();
    const files = s.files();
    expect(files.length).toBeGreaterThanOrEqual(3);
    await unlink(join(dir, files[1] as string));
    const r = verifyAuditChain({ dir, keys });
    expect(r.problems).toEqual([expect.objectContaining({ kind: 'file_missing', file: files[2], line: 1 })]);
    expect(r.problems[0]?.message).toContain(`between ${files[0]} and ${files[2]}`);

    const other = generateKeyPairSync('ed25519');
    const r2 = verifyAuditChain({ dir, keys: { k1: other.publicKey } });
    expect(r2.problems.filter((p) => p.kind === 'head_invalid').map((p) => p.file)).toEqual(
      files.filter((_, i) => i !== 1),
    );
  });

  it('a line torn by a crash is "truncated", and the next writer continues the chain past it', async () => {
    const s = sink();
    for (let i = 1; i <= 5; i++) s.write(ev(i));
    await s.close();
    const f = join(dir, 'events-2026-03-04.jsonl');
    const size = (await readFile(f)).length;
    await truncate(f, size - 30);
    let r = verifyAuditChain({ dir, keys });
    expect(r.ok).toBe(true);
    expect(r.warnings).toEqual([expect.objectContaining({ kind: 'truncated', line: 5 })]);
    expect(r.last?.seq).toBe(4);

    const next = sink();
    next.write(ev(6));
    await next.close();
    const lines = await fileLines('events-2026-03-04.jsonl');
    expect(lines).toHaveLength(6);
    expect(JSON.parse(lines[5] as string).chain).toEqual({ seq: 5, prev: lineHash(lines[3] as string) });
    r = verifyAuditChain({ dir, keys });
    expect(r.ok).toBe(true);
    expect(r.warnings).toEqual([expect.objectContaining({ kind: 'truncated', line: 5 })]);
    expect(r.last?.seq).toBe(5);
  });

  it('continues a record written before the chain was enabled: the old lines are "unchained", the rest verifies', async () => {
    const plain = new JsonlFileSink({ dir });
    plain.write(ev(1));
    plain.write(ev(2));
    await plain.close();
    const s = sink();
    s.write(ev(3));
    s.write(ev(4));
    await s.close();
    const lines = await fileLines('events-2026-03-04.jsonl');
    expect(lines).toHaveLength(4);
    expect(JSON.parse(lines[2] as string).chain).toEqual({ seq: 1, prev: GENESIS });
    const r = verifyAuditChain({ dir, keys });
    expect(r.problems).toEqual([]);
    expect(r.events).toBe(2);
    // The file's first chained line got its signed head.
    expect(r.warnings.map((w) => w.kind)).toEqual(['unchained']);
  });

  it('retention removes old files with a signed anchor; removing more without one is reported', async () => {
    const s = sink();
    for (let d = 1; d <= 4; d++) s.write(ev(d, `2026-03-0${d}`));
    await s.close();
    const removed = removeExpiredFiles(dir, (f) => f < 'events-2026-03-03', signer);
    expect(removed).toEqual(['events-2026-03-01.jsonl', 'events-2026-03-02.jsonl']);
    const r = verifyAuditChain({ dir, keys });
    expect(r).toMatchObject({ ok: true, events: 2 });
    expect(r.first).toEqual({ file: 'events-2026-03-03.jsonl', seq: 3, from: 'anchor' });

    await unlink(join(dir, 'events-2026-03-03.jsonl'));
    const r2 = verifyAuditChain({ dir, keys });
    expect(r2.problems).toEqual([
      expect.objectContaining({ kind: 'start_missing', file: 'events-2026-03-04.jsonl' }),
    ]);
  });
});
