import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { afterEach, describe, expect, it } from 'vitest';
import { FileRecordingStore } from './file-store.js';
import { MemoryRecordingStore } from './memory-store.js';
import type { RecordingEvent, RecordingMeta, RecordingStore } from './types.js';

const enc = new TextEncoder();
const bytes = (s: string) => enc.encode(s);

async function all(it: AsyncIterable<RecordingEvent>): Promise<RecordingEvent[]> {
  const out: RecordingEvent[] = [];
  for await (const e of it) out.push(e);
  return out;
}

async function waitFor<T>(fn: () => Promise<T | undefined | false>, what: string, ms = 10_000): Promise<T> {
  const until = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

function baseMeta(id: string, extra: Partial<RecordingMeta> = {}) {
  return {
    session_id: id,
    kind: 'ssh' as const,
    user: 'alice',
    login: 'root',
    server: 'node1',
    cols: 80,
    rows: 24,
    ...extra,
  };
}

/** A clock that moves only when told (timestamps are then exact). */
function manualClock(start = Date.parse('2025-03-01T10:00:00Z')) {
  let now = start;
  return {
    clock: () => new Date(now),
    advance: (ms: number) => {
      now += ms;
    },
  };
}

const dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

async function tempDir(): Promise<string> {
  const d = await mkdtemp(path.join(os.tmpdir(), 'gh-rec-'));
  dirs.push(d);
  return d;
}

type Factory = (o: { clock?: () => Date; chunkBytes?: number; flushMs?: number }) => Promise<RecordingStore>;

const factories: [string, Factory][] = [
  [
    'FileRecordingStore',
    async (o) => new FileRecordingStore({ dir: path.join(await tempDir(), 'recordings'), pollMs: 20, ...o }),
  ],
  ['MemoryRecordingStore', async (o) => new MemoryRecordingStore(o)],
];

describe.each(factories)('%s (shared semantics)', (_name, make) => {
  it('round-trips every event type in order with a timestamp on each', async () => {
    const c = manualClock();
    const store = await make({ clock: c.clock });
    const rec = await store.create(baseMeta('s1'));
    const live = await store.get('s1');
    expect(live?.started).toBe('2025-03-01T10:00:00.000Z');
    expect(live?.ended).toBeUndefined();
    rec.output(bytes('$ '));
    c.advance(150);
    rec.input(bytes('ls\r'));
    c.advance(5);
    rec.output(Uint8Array.of(0x1b, 0x5b, 0x33, 0x31, 0x6d, 0xe2, 0x82)); // ESC[31m + half of "€"
    rec.output(Uint8Array.of(0xac, 0x0d, 0x0a)); // the rest of "€"
    c.advance(1000);
    rec.resize(120, 40);
    rec.marker('bob joined');
    c.advance(45);
    await rec.close();
    await rec.close(); // idempotent
    const events = await all(store.read('s1'));
    expect(events).toEqual([
      { t: 0, type: 'output', data: bytes('$ ') },
      { t: 150, type: 'input', data: bytes('ls\r') },
      { t: 155, type: 'output', data: Uint8Array.of(0x1b, 0x5b, 0x33, 0x31, 0x6d, 0xe2, 0x82) },
      { t: 155, type: 'output', data: Uint8Array.of(0xac, 0x0d, 0x0a) },
      { t: 1155, type: 'resize', cols: 120, rows: 40 },
      { t: 1155, type: 'marker', text: 'bob joined' },
    ]);
    const meta = await store.get('s1');
    expect(meta?.ended).toBe('2025-03-01T10:00:01.200Z');
    expect(meta?.output_bytes).toBe(2 + 7 + 3);
    expect(meta?.chunks).toBe(1);
    expect(meta?.stored_bytes).toBeGreaterThan(0);
    expect(meta).toMatchObject({
      user: 'alice',
      login: 'root',
      server: 'node1',
      kind: 'ssh',
      cols: 80,
      rows: 24,
    });
  });

  it('copies the caller buffer (adapters reuse theirs)', async () => {
    const store = await make({});
    const rec = await store.create(baseMeta('s-copy'));
    const buf = bytes('first');
    rec.output(buf);
    buf.set(bytes('XXXXX'));
    await rec.close();
    const [e] = await all(store.read('s-copy'));
    expect(e?.type === 'output' && Buffer.from(e.data).toString()).toBe('first');
  });

  it('seals chunks by size while the session runs', async () => {
    const store = await make({ chunkBytes: 1024, flushMs: 3_600_000 });
    const rec = await store.create(baseMeta('s-size'));
    const payload = new Uint8Array(300).fill(0x61);
    for (let i = 0; i < 10; i++) rec.output(payload);
    // 10 * (300 + overhead) bytes at 1 KiB a chunk: at least 2 sealed chunks are readable before close.
    const seen = await waitFor(async () => {
      const n = (await all(store.read('s-size'))).length;
      return n >= 6 ? n : false;
    }, 'sealed chunks');
    expect(seen).toBeLessThan(10);
    expect((await store.get('s-size'))?.ended).toBeUndefined();
    await rec.close();
    expect((await all(store.read('s-size'))).length).toBe(10);
    expect((await store.get('s-size'))?.chunks).toBeGreaterThanOrEqual(3);
  });

  it('seals a chunk after flushMs with pending data, and not before', async () => {
    const slow = await make({ flushMs: 3_600_000 });
    const r1 = await slow.create(baseMeta('s-noflush'));
    r1.output(bytes('pending'));
    await new Promise((r) => setTimeout(r, 50));
    expect(await all(slow.read('s-noflush'))).toEqual([]);
    await r1.close();
    expect((await all(slow.read('s-noflush'))).length).toBe(1);

    const fast = await make({ flushMs: 20 });
    const r2 = await fast.create(baseMeta('s-flush'));
    r2.output(bytes('soon'));
    await waitFor(async () => (await all(fast.read('s-flush'))).length === 1, 'flushed chunk');
    r2.output(bytes('later'));
    await waitFor(async () => (await all(fast.read('s-flush'))).length === 2, 'second flushed chunk');
    await r2.close();
  });

  it('follow: a reader of a live recording gets new events until the end', async () => {
    const store = await make({ flushMs: 10 });
    const rec = await store.create(baseMeta('s-follow'));
    rec.output(bytes('one '));
    const got: string[] = [];
    const reader = (async () => {
      for await (const e of store.read('s-follow', { follow: true })) {
        if (e.type === 'output') got.push(Buffer.from(e.data).toString());
      }
    })();
    await waitFor(async () => got.length === 1, 'first event');
    rec.output(bytes('two '));
    await waitFor(async () => got.length === 2, 'second event');
    rec.output(bytes('three'));
    await rec.close();
    await reader;
    expect(got.join('')).toBe('one two three');
  });

  it('follow ends when the signal aborts', async () => {
    const store = await make({ flushMs: 10 });
    const rec = await store.create(baseMeta('s-abort'));
    rec.output(bytes('x'));
    const ac = new AbortController();
    const got: RecordingEvent[] = [];
    const reader = (async () => {
      for await (const e of store.read('s-abort', { follow: true, signal: ac.signal })) got.push(e);
    })();
    await waitFor(async () => got.length === 1, 'first event');
    ac.abort();
    await reader;
    expect((await store.get('s-abort'))?.ended).toBeUndefined();
    await rec.close();
  });

  it('lists newest first with filters and a limit', async () => {
    const c = manualClock();
    const store = await make({ clock: c.clock });
    const make3 = [
      baseMeta('a1', { user: 'alice' }),
      baseMeta('b1', { user: 'bob', kind: 'kube' }),
      baseMeta('a2', { user: 'alice' }),
    ];
    for (const m of make3) {
      await (await store.create(m)).close();
      c.advance(60_000);
    }
    expect((await store.list()).map((m) => m.session_id)).toEqual(['a2', 'b1', 'a1']);
    expect((await store.list({ user: 'alice' })).map((m) => m.session_id)).toEqual(['a2', 'a1']);
    expect((await store.list({ kind: 'kube' })).map((m) => m.session_id)).toEqual(['b1']);
    expect((await store.list({ limit: 1 })).map((m) => m.session_id)).toEqual(['a2']);
    expect((await store.list({ from: '2025-03-01T10:01:00Z' })).map((m) => m.session_id)).toEqual([
      'a2',
      'b1',
    ]);
    expect((await store.list({ to: '2025-03-01T10:01:00Z' })).map((m) => m.session_id)).toEqual(['b1', 'a1']);
    await expect(store.list({ from: 'yesterday' })).rejects.toMatchObject({ code: 'GH_ERR_VALIDATION' });
    await expect(store.list({ limit: 0 })).rejects.toMatchObject({ code: 'GH_ERR_VALIDATION' });
  });

  it('refuses unsafe or duplicate session ids and unknown recordings', async () => {
    const store = await make({});
    for (const bad of ['../x', 'a/b', '..', '.', '', 'a\\b', '.hidden', 'x'.repeat(200), 'a..b']) {
      await expect(store.create(baseMeta(bad))).rejects.toMatchObject({ code: 'GH_ERR_VALIDATION' });
      await expect(store.get(bad)).rejects.toMatchObject({ code: 'GH_ERR_VALIDATION' });
      await expect(all(store.read(bad))).rejects.toMatchObject({ code: 'GH_ERR_VALIDATION' });
    }
    await (await store.create(baseMeta('dup'))).close();
    await expect(store.create(baseMeta('dup'))).rejects.toMatchObject({ code: 'GH_ERR_ALREADY_EXISTS' });
    expect(await store.get('nope')).toBeUndefined();
    await expect(all(store.read('nope'))).rejects.toMatchObject({ code: 'GH_ERR_NOT_FOUND' });
  });

  it('closing the store ends live recordings and refuses new ones', async () => {
    const store = await make({ flushMs: 3_600_000 });
    const rec = await store.create(baseMeta('s-close'));
    rec.output(bytes('bye'));
    await store.close();
    expect((await store.get('s-close'))?.ended).toBeDefined();
    expect((await all(store.read('s-close'))).length).toBe(1);
    await expect(store.create(baseMeta('s-after'))).rejects.toMatchObject({
      code: 'GH_ERR_AUDIT_UNAVAILABLE',
    });
  });
});

describe('FileRecordingStore on disk', () => {
  it('writes meta.json and gzip JSON-lines chunks with private modes', async () => {
    const dir = path.join(await tempDir(), 'recordings');
    const store = new FileRecordingStore({ dir, chunkBytes: 64 });
    const rec = await store.create(baseMeta('disk1'));
    const text = 'hello world, this is longer than sixty-four bytes of data, really';
    rec.output(bytes(text));
    rec.resize(100, 30);
    await rec.close();
    const sdir = path.join(dir, 'disk1');
    expect((await readdir(sdir)).sort()).toEqual(['000001.jsonl.gz', '000002.jsonl.gz', 'meta.json']);
    expect((await stat(dir)).mode & 0o777).toBe(0o700);
    expect((await stat(sdir)).mode & 0o777).toBe(0o700);
    for (const f of await readdir(sdir)) expect((await stat(path.join(sdir, f))).mode & 0o777).toBe(0o600);
    const lines = gunzipSync(await readFile(path.join(sdir, '000001.jsonl.gz')))
      .toString()
      .trimEnd()
      .split('\n');
    expect(lines).toHaveLength(1);
    const first = JSON.parse(lines[0] ?? '');
    expect(first).toMatchObject({ type: 'output', t: expect.any(Number) });
    expect(Buffer.from(first.data, 'base64').toString()).toMatch(/^hello world/);
    const second = gunzipSync(await readFile(path.join(sdir, '000002.jsonl.gz'))).toString();
    expect(JSON.parse(second)).toMatchObject({ type: 'resize', cols: 100, rows: 30, t: expect.any(Number) });
    const meta = JSON.parse(await readFile(path.join(sdir, 'meta.json'), 'utf8'));
    expect(meta).toMatchObject({ session_id: 'disk1', chunks: 2, output_bytes: text.length });
    expect(meta.stored_bytes).toBe(
      (await stat(path.join(sdir, '000001.jsonl.gz'))).size +
        (await stat(path.join(sdir, '000002.jsonl.gz'))).size,
    );
  });

  it('the store directory removed under a running store: the next recording makes it again, with its live marker', async () => {
    // The store makes its directories once (issue 22) and must not lose a
    // recording, or its crash-recovery marker, when they disappear later.
    const dir = path.join(await tempDir(), 'recordings');
    const store = new FileRecordingStore({ dir });
    await (await store.create(baseMeta('before'))).close();
    await rm(dir, { recursive: true });
    const rec = await store.create(baseMeta('after'));
    expect(await readdir(path.join(dir, '.live'))).toEqual(['after']);
    rec.output(bytes('kept'));
    await rec.close();
    expect(await readdir(path.join(dir, '.live'))).toEqual([]);
    const events = await all(store.read('after'));
    expect(events.map((e) => e.type === 'output' && Buffer.from(e.data).toString())).toEqual(['kept']);
    expect((await store.get('after'))?.ended).toEqual(expect.any(String));
  });

  it('a crash loses only the unsealed tail: a second store reads what was written', async () => {
    const dir = path.join(await tempDir(), 'recordings');
    const writer = new FileRecordingStore({ dir, flushMs: 10 });
    const rec = await writer.create(baseMeta('crash'));
    rec.output(bytes('saved'));
    await waitFor(
      async () => (await readdir(path.join(dir, 'crash'))).includes('000001.jsonl.gz'),
      'chunk 1',
    );
    // The "crashed" process never calls close(); another process (the CLI) reads the directory.
    const reader = new FileRecordingStore({ dir });
    const events = await all(reader.read('crash'));
    expect(events.map((e) => e.type === 'output' && Buffer.from(e.data).toString())).toEqual(['saved']);
    expect((await reader.get('crash'))?.ended).toBeUndefined();
    expect((await reader.list()).map((m) => m.session_id)).toEqual(['crash']);
    await rec.close();
  });

  it('list skips stray entries but reports a corrupt meta.json', async () => {
    const dir = path.join(await tempDir(), 'recordings');
    const store = new FileRecordingStore({ dir });
    await (await store.create(baseMeta('ok1'))).close();
    await writeFile(path.join(dir, 'ok1', 'meta.json.abc.tmp'), 'partial');
    await writeFile(path.join(dir, '.DS_Store'), 'x');
    expect((await store.list()).map((m) => m.session_id)).toEqual(['ok1']);
    await (await store.create(baseMeta('bad1'))).close();
    await writeFile(path.join(dir, 'bad1', 'meta.json'), '{"session_id":');
    await expect(store.list()).rejects.toMatchObject({ code: 'GH_ERR_VALIDATION' });
  });

  it('a corrupt chunk is an error naming the file, after the good chunks', async () => {
    const dir = path.join(await tempDir(), 'recordings');
    const store = new FileRecordingStore({ dir, chunkBytes: 1 });
    const rec = await store.create(baseMeta('rot'));
    rec.output(bytes('good'));
    rec.output(bytes('lost'));
    await rec.close();
    await writeFile(path.join(dir, 'rot', '000002.jsonl.gz'), 'not gzip');
    const got: RecordingEvent[] = [];
    await expect(
      (async () => {
        for await (const e of store.read('rot')) got.push(e);
      })(),
    ).rejects.toMatchObject({ code: 'GH_ERR_VALIDATION', message: expect.stringContaining('chunk 2') });
    expect(got).toHaveLength(1);
  });

  it('a write failure calls onError exactly once and ends accepting events', async () => {
    const dir = path.join(await tempDir(), 'recordings');
    const store = new FileRecordingStore({ dir, flushMs: 5 });
    const errors: Error[] = [];
    const rec = await store.create(baseMeta('gone'), { onError: (e) => errors.push(e) });
    // Root ignores permission bits, so make the writes fail by removing the directory under the recorder.
    await rm(path.join(dir, 'gone'), { recursive: true });
    rec.output(bytes('a'));
    await waitFor(async () => errors.length > 0, 'onError');
    rec.output(bytes('b'));
    await new Promise((r) => setTimeout(r, 30));
    await rec.close();
    expect(errors).toHaveLength(1);
    expect((errors[0] as NodeJS.ErrnoException).code).toBe('ENOENT');
  });

  it('without onError, close() rejects with the write failure', async () => {
    const dir = path.join(await tempDir(), 'recordings');
    const store = new FileRecordingStore({ dir });
    const rec = await store.create(baseMeta('gone2'));
    await rm(path.join(dir, 'gone2'), { recursive: true });
    rec.output(bytes('a'));
    await expect(rec.close()).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('figure: bytes per second the file recorder sustains (printed, not asserted)', async () => {
    const dir = path.join(await tempDir(), 'recordings');
    const store = new FileRecordingStore({ dir });
    const rec = await store.create(baseMeta('perf'));
    // Terminal-like output: text lines with escapes, in 16 KiB reads like an SSH channel delivers.
    const line = '\x1b[32mdrwxr-xr-x\x1b[0m  2 root root 4096 Mar  1 10:00 some-directory-name-here\r\n';
    const block = bytes(line.repeat(Math.ceil(16_384 / line.length)).slice(0, 16_384));
    const total = 256 * 1024 * 1024;
    const t0 = performance.now();
    for (let sent = 0; sent < total; sent += block.byteLength) {
      rec.output(block);
      if (rec.needsDrain) await rec.drain?.();
    }
    await rec.close();
    const secs = (performance.now() - t0) / 1000;
    const meta = await store.get('perf');
    console.log(
      `recorder: ${(total / 1048576).toFixed(0)} MiB of terminal output in ${secs.toFixed(2)} s = ` +
        `${(total / 1048576 / secs).toFixed(0)} MiB/s; on disk ${((meta?.stored_bytes ?? 0) / 1048576).toFixed(1)} MiB ` +
        `(${meta?.chunks} chunks)`,
    );
    expect(meta?.output_bytes).toBe(total);
  }, 120_000);
});
