import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { decodeChunk } from './codec.js';
import { MemoryRecordingStore } from './memory-store.js';
import {
  collect,
  exportRecording,
  isRecordingFormat,
  play,
  toAsciicast,
  toJson,
  toText,
} from './playback.js';
import type { RecordingEvent, RecordingMeta } from './types.js';

const run = promisify(execFile);

async function* from(events: RecordingEvent[]): AsyncGenerator<RecordingEvent> {
  yield* events;
}

const meta: RecordingMeta = {
  session_id: 'sess-1',
  kind: 'ssh',
  user: 'alice',
  login: 'root',
  server: 'node1',
  started: '2025-03-01T10:00:00.000Z',
  ended: '2025-03-01T10:00:05.000Z',
  cols: 80,
  rows: 24,
};

// "€" is e2 82 ac: split across two output events; ESC starts a color sequence.
const SEEN = [
  Uint8Array.of(0x24, 0x20), // "$ "
  Uint8Array.of(0x1b, 0x5b, 0x33, 0x31, 0x6d, 0xe2, 0x82), // ESC[31m + first 2 bytes of €
  Uint8Array.of(0xac, 0x1b, 0x5b, 0x30, 0x6d, 0x0d, 0x0a), // last byte of € + ESC[0m\r\n
  Uint8Array.of(0xff, 0x41), // an invalid byte the terminal still received
];

const EVENTS: RecordingEvent[] = [
  { t: 0, type: 'output', data: SEEN[0]! },
  { t: 100, type: 'input', data: Uint8Array.of(0x6c, 0x73, 0x0d) },
  { t: 250, type: 'output', data: SEEN[1]! },
  { t: 260, type: 'output', data: SEEN[2]! },
  { t: 3000, type: 'resize', cols: 100, rows: 30 },
  { t: 3000, type: 'marker', text: 'bob joined' },
  { t: 4500, type: 'output', data: SEEN[3]! },
];

const seenBytes = Buffer.concat(SEEN.map((b) => Buffer.from(b)));

describe('playback and export', () => {
  it('a recorded byte stream plays back byte-exactly through a store', async () => {
    const store = new MemoryRecordingStore({ chunkBytes: 4 });
    const rec = await store.create({
      session_id: 'p1',
      kind: 'ssh',
      user: 'alice',
      server: 'n',
      cols: 80,
      rows: 24,
    });
    for (const b of SEEN) rec.output(b);
    await rec.close();
    const written: Buffer[] = [];
    const r = await play(store.read('p1'), {
      write: (d) => void written.push(Buffer.from(d)),
      sleep: async () => {},
    });
    expect(Buffer.concat(written).equals(seenBytes)).toBe(true);
    expect(r.bytes).toBe(seenBytes.length);
    expect((await collect(toText(store.read('p1')))).equals(seenBytes)).toBe(true);
  });

  it('play: speed divides and maxIdle caps the gaps; input is not replayed', async () => {
    const sleeps: number[] = [];
    const resizes: string[] = [];
    const markers: string[] = [];
    const out: Buffer[] = [];
    const opts = {
      write: (d: Uint8Array) => void out.push(Buffer.from(d)),
      sleep: async (ms: number) => void sleeps.push(ms),
      onResize: (c: number, r: number) => void resizes.push(`${c}x${r}`),
      onMarker: (t: string) => void markers.push(t),
    };
    const r1 = await play(from(EVENTS), opts);
    // Gaps: 0→250 (the input at 100 is not replayed), 250→260, 260→3000, 3000→4500.
    expect(sleeps).toEqual([250, 10, 2740, 1500]);
    expect(r1.sleptMs).toBe(4500);
    expect(resizes).toEqual(['100x30']);
    expect(markers).toEqual(['bob joined']);
    expect(Buffer.concat(out).equals(seenBytes)).toBe(true);

    sleeps.length = 0;
    const r2 = await play(from(EVENTS), { ...opts, speed: 2, maxIdleMs: 1000 });
    expect(sleeps).toEqual([125, 5, 500, 500]);
    expect(r2.sleptMs).toBe(1130);

    await expect(play(from(EVENTS), { ...opts, speed: 0 })).rejects.toThrow(RangeError);
    await expect(play(from(EVENTS), { ...opts, maxIdleMs: -1 })).rejects.toThrow(RangeError);
  });

  it('play stops when the signal aborts', async () => {
    const ac = new AbortController();
    const out: number[] = [];
    const r = await play(from(EVENTS), {
      write: (d) => {
        out.push(d.byteLength);
        ac.abort();
      },
      sleep: async () => {},
      signal: ac.signal,
    });
    expect(r.aborted).toBe(true);
    expect(out).toEqual([2]);
  });

  it('asciicast v2: header, timed events, resize as COLSxROWS, UTF-8 split across events kept whole', async () => {
    const text = (await collect(toAsciicast(meta, from(EVENTS)))).toString('utf8');
    const lines = text
      .trimEnd()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(lines[0]).toEqual({
      version: 2,
      width: 80,
      height: 24,
      timestamp: Date.parse('2025-03-01T10:00:00Z') / 1000,
      title: 'alice root@node1 (sess-1)',
    });
    expect(lines.slice(1)).toEqual([
      [0, 'o', '$ '],
      [0.1, 'i', 'ls\r'],
      [0.25, 'o', '\x1b[31m'],
      [0.26, 'o', '€\x1b[0m\r\n'],
      [3, 'r', '100x30'],
      [3, 'm', 'bob joined'],
      [4.5, 'o', '\ufffdA'],
    ]);
    expect(text).not.toContain('\ufffd\ufffd');
    // Every event line is [number, one of o/i/r/m, string] with non-decreasing times.
    let prev = 0;
    for (const l of lines.slice(1)) {
      expect(l).toHaveLength(3);
      expect(typeof l[0]).toBe('number');
      expect(l[0]).toBeGreaterThanOrEqual(prev);
      prev = l[0];
      expect(['o', 'i', 'r', 'm']).toContain(l[1]);
      expect(typeof l[2]).toBe('string');
    }
  });

  it('asciicast: a trailing incomplete character is flushed, not lost', async () => {
    const text = (
      await collect(
        toAsciicast(meta, from([{ t: 5, type: 'output', data: Uint8Array.of(0x61, 0xe2, 0x82) }])),
      )
    ).toString();
    expect(
      text
        .trimEnd()
        .split('\n')
        .slice(1)
        .map((l) => JSON.parse(l)),
    ).toEqual([
      [0.005, 'o', 'a'],
      [0.005, 'o', '\ufffd'],
    ]);
  });

  it('the real asciinema cat accepts the file and prints the bytes the user saw', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'gh-cast-'));
    try {
      const file = path.join(dir, 'rec.cast');
      const valid = EVENTS.slice(0, 6); // asciinema writes U+FFFD for invalid bytes, so compare on valid UTF-8
      await writeFile(file, await collect(toAsciicast(meta, from(valid))));
      // asciinema cat opens /dev/tty, so give it one (script(1)), raw so the tty adds no \r.
      const { stdout } = await run(
        'script',
        ['-qec', `stty raw -echo; asciinema cat '${file}'`, '/dev/null'],
        {
          encoding: 'buffer',
          timeout: 30_000,
        },
      );
      const want = Buffer.concat(SEEN.slice(0, 3).map((b) => Buffer.from(b)));
      expect(Buffer.from(stdout).equals(want)).toBe(true);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('exportRecording gives the same bytes as each format', async () => {
    const cast = await collect(exportRecording(meta, from(EVENTS), 'asciicast'));
    expect(cast.equals(await collect(toAsciicast(meta, from(EVENTS))))).toBe(true);
    const json = await collect(exportRecording(meta, from(EVENTS), 'json'));
    expect(json.equals(await collect(toJson(from(EVENTS))))).toBe(true);
    const text = await collect(exportRecording(meta, from(EVENTS), 'text'));
    expect(text.equals(seenBytes)).toBe(true);
    expect(isRecordingFormat('asciicast')).toBe(true);
    expect(isRecordingFormat('yaml')).toBe(false);
  });

  it('exportRecording hands over buffered lines when the source waits (regression: a followed live session showed nothing until it ended)', async () => {
    let release: () => void = () => {};
    const gate = new Promise<void>((r) => {
      release = r;
    });
    async function* live(): AsyncGenerator<RecordingEvent> {
      yield EVENTS[0]!;
      yield EVENTS[1]!;
      await gate; // the session is quiet: nothing new until it says more
      yield EVENTS[2]!;
    }
    const out = exportRecording(meta, live(), 'json')[Symbol.asyncIterator]();
    const first = await out.next();
    expect(first.done).toBe(false);
    expect(decodeChunk(Buffer.from(first.value!).toString())).toEqual(EVENTS.slice(0, 2));
    release();
    const rest: Buffer[] = [];
    for (let r = await out.next(); !r.done; r = await out.next()) rest.push(Buffer.from(r.value));
    expect(decodeChunk(Buffer.concat(rest).toString())).toEqual(EVENTS.slice(2, 3));
  });

  it('toJson writes the storage encoding (one event per line, base64 data)', async () => {
    const text = (await collect(toJson(from(EVENTS)))).toString();
    expect(text.endsWith('\n')).toBe(true);
    expect(decodeChunk(text)).toEqual(EVENTS);
  });
});
