import { describe, expect, it } from 'vitest';
import { decodeChunk } from './codec.js';
import { ChunkedRecorder, type ChunkSink, type RecordingTotals } from './recorder.js';

/** A sink whose commits wait until the test releases them (a stalled disk). */
function stallingSink() {
  const committed: string[] = [];
  const prepared: number[] = [];
  const discarded: string[] = [];
  let release: () => void = () => {};
  let gate = new Promise<void>((r) => {
    release = r;
  });
  const finished: RecordingTotals[] = [];
  const sink: ChunkSink<string> = {
    prepare: async (seq, body) => {
      prepared.push(seq);
      return body;
    },
    commit: async (_seq, body) => {
      await gate;
      committed.push(body);
    },
    discard: async (body) => {
      discarded.push(body);
    },
    finish: async (t) => {
      finished.push(t);
    },
  };
  return {
    sink,
    committed,
    prepared,
    discarded,
    finished,
    unstall: () => release(),
    stallAgain: () => {
      gate = new Promise<void>((r) => {
        release = r;
      });
    },
  };
}

const tick = () => new Promise((r) => setTimeout(r, 0));

describe('ChunkedRecorder', () => {
  it('timestamps never go backwards when the wall clock does', async () => {
    let now = 1_000_000;
    const s = stallingSink();
    s.unstall();
    const r = new ChunkedRecorder({ sessionId: 's', startMs: now, clock: () => new Date(now), sink: s.sink });
    now += 500;
    r.output(Uint8Array.of(1));
    now -= 300; // NTP step back
    r.output(Uint8Array.of(2));
    now += 1000;
    r.output(Uint8Array.of(3));
    await r.close();
    const ts = s.committed.flatMap((b) => decodeChunk(b)).map((e) => e.t);
    expect(ts).toEqual([500, 500, 1200]);
    expect(s.finished[0]?.ended).toBe(new Date(1_001_200).toISOString());
  });

  it('past the backlog limit it calls onError once (not re-entrantly) and drops nothing silently', async () => {
    const s = stallingSink();
    const errors: Error[] = [];
    let inOutput = false;
    const r = new ChunkedRecorder({
      sessionId: 'slow',
      startMs: 0,
      clock: () => new Date(0),
      sink: s.sink,
      chunkBytes: 1024,
      maxBacklogBytes: 8 * 1024,
      onError: (e) => {
        expect(inOutput).toBe(false);
        errors.push(e);
      },
    });
    const block = new Uint8Array(1000);
    for (let i = 0; i < 20; i++) {
      inOutput = true;
      r.output(block);
      inOutput = false;
    }
    await tick();
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({
      code: 'GH_ERR_AUDIT_UNAVAILABLE',
      message: expect.stringContaining('fell'),
    });
    s.unstall();
    await r.close();
    expect(errors).toHaveLength(1);
    // The adapter was told; the end is still written, marked incomplete.
    expect(s.finished[0]?.error).toMatch(/fell/);
  });

  it('needsDrain / drain give flow control before the hard limit', async () => {
    const s = stallingSink();
    const errors: Error[] = [];
    const r = new ChunkedRecorder({
      sessionId: 'fc',
      startMs: 0,
      clock: () => new Date(0),
      sink: s.sink,
      chunkBytes: 1024,
      maxBacklogBytes: 16 * 1024,
      highWaterBytes: 4 * 1024,
      onError: (e) => errors.push(e),
    });
    expect(r.needsDrain).toBe(false);
    const block = new Uint8Array(1000);
    let n = 0;
    while (!r.needsDrain) {
      r.output(block);
      n++;
    }
    expect(n).toBeLessThan(10);
    expect(r.backlogBytes).toBeGreaterThan(4 * 1024);
    let drained = false;
    const d = r.drain().then(() => {
      drained = true;
    });
    await tick();
    expect(drained).toBe(false);
    s.unstall();
    await d;
    expect(r.needsDrain).toBe(false);
    await r.close();
    expect(errors).toEqual([]);
    expect(s.committed.flatMap((b) => decodeChunk(b))).toHaveLength(n);
  });

  it('a failed commit discards chunks prepared after it and reports once', async () => {
    const committed: number[] = [];
    const discarded: number[] = [];
    const errors: Error[] = [];
    const r = new ChunkedRecorder({
      sessionId: 'f',
      startMs: 0,
      clock: () => new Date(0),
      chunkBytes: 1,
      onError: (e) => errors.push(e),
      sink: {
        prepare: async (seq) => seq,
        commit: async (seq) => {
          if (seq === 2) throw new Error('disk full');
          committed.push(seq);
        },
        discard: async (seq) => {
          discarded.push(seq);
        },
        finish: async () => {},
      },
    });
    for (let i = 0; i < 4; i++) r.output(Uint8Array.of(i));
    await r.close();
    expect(committed).toEqual([1]);
    expect(discarded).toEqual([2, 3, 4]);
    expect(errors.map((e) => e.message)).toEqual(['disk full']);
  });

  it('events after close are ignored and close is idempotent', async () => {
    const s = stallingSink();
    s.unstall();
    const r = new ChunkedRecorder({ sessionId: 'c', startMs: 0, clock: () => new Date(0), sink: s.sink });
    r.output(Uint8Array.of(1));
    const p1 = r.close();
    r.output(Uint8Array.of(2));
    await Promise.all([p1, r.close()]);
    expect(s.finished).toHaveLength(1);
    expect(s.committed.flatMap((b) => decodeChunk(b))).toHaveLength(1);
    expect(s.finished[0]).toMatchObject({ output_bytes: 1, chunks: 1 });
  });
});
