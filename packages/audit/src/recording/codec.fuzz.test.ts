import { fuzz, hostileBytes, onlyThrows } from '@gatehouse/core/testing';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeChunk, decodeEvent, encodeEvent, RecordingFormatError } from './codec.js';
import type { RecordingEvent } from './types.js';

const t = fc.oneof(fc.nat(), fc.double({ min: 0, noNaN: true, noDefaultInfinity: true }));
const dim = fc.integer({ min: 0, max: 65535 });

/** Every event a recorder writes: any bytes, any text (lone surrogates too), any size the format allows. */
const event: fc.Arbitrary<RecordingEvent> = fc.oneof(
  fc.record({
    t,
    type: fc.constantFrom('output' as const, 'input' as const),
    data: fc.uint8Array({ maxLength: 200 }),
  }),
  fc.record({ t, type: fc.constant('resize' as const), cols: dim, rows: dim }),
  fc.record({ t, type: fc.constant('marker' as const), text: fc.string({ unit: 'binary', maxLength: 60 }) }),
  fc.record({
    t,
    type: fc.constant('desktop_input' as const),
    input: fc.oneof(
      fc.constant({ kind: 'key' as const }),
      fc.record({
        kind: fc.constant('key' as const),
        special: fc.constantFrom('ctrl+alt+del' as const, 'windows' as const),
      }),
      fc.record({ kind: fc.constant('move' as const), x: dim, y: dim }),
      fc.record({
        kind: fc.constant('button' as const),
        button: fc.constantFrom(
          'left' as const,
          'right' as const,
          'middle' as const,
          'x1' as const,
          'x2' as const,
        ),
        down: fc.boolean(),
        x: dim,
        y: dim,
      }),
      fc.record({
        kind: fc.constant('wheel' as const),
        delta: fc.integer({ min: -512, max: 511 }),
        horizontal: fc.boolean(),
        x: dim,
        y: dim,
      }),
      fc.record({ kind: fc.constant('dropped' as const), n: fc.integer({ min: 1, max: 1e9 }) }),
    ),
  }),
);

/** Lines a damaged or edited chunk may hold. */
const line = fc.oneof(
  hostileBytes(event.map((e) => Buffer.from(encodeEvent(e)))).map((b) => b.toString('utf8')),
  fc
    .tuple(
      event,
      fc.constantFrom('t', 'type', 'data', 'cols', 'rows', 'text', 'input'),
      fc.jsonValue({ maxDepth: 2 }),
    )
    .map(([e, k, v]) => JSON.stringify({ ...JSON.parse(encodeEvent(e)), [k]: v })),
  fc.jsonValue().map((v) => JSON.stringify(v)),
  fc.string({ unit: 'binary', maxLength: 60 }),
);

describe('recording codec (fuzz)', () => {
  it('decodeEvent reads back every event encodeEvent writes, and each line is one line of JSON', () => {
    fuzz(
      fc.property(event, (e) => {
        const text = encodeEvent(e);
        expect(text).not.toContain('\n');
        expect(decodeEvent(text)).toEqual(
          e.type === 'output' || e.type === 'input' ? { ...e, data: new Uint8Array(e.data) } : e,
        );
      }),
      { runs: 2000 },
    );
  });

  it('every resize encodeEvent writes is readable, whatever sizes a client sent', () => {
    const size = fc.oneof(fc.integer(), fc.double(), fc.nat(2 ** 32 - 1));
    fuzz(
      fc.property(t, size, size, (time, cols, rows) => {
        const e = decodeEvent(encodeEvent({ t: time, type: 'resize', cols, rows }));
        if (e.type !== 'resize') throw new Error(`read back a ${e.type}`);
        for (const [got, sent] of [
          [e.cols, cols],
          [e.rows, rows],
        ] as const) {
          if (Number.isInteger(sent) && sent >= 0 && sent <= 65535) expect(got === sent).toBe(true);
        }
      }),
      { runs: 1000 },
    );
  });

  it('decodeChunk reads back a chunk of events, with or without the last newline', () => {
    fuzz(
      fc.property(fc.array(event, { maxLength: 10 }), fc.boolean(), (events, lastNewline) => {
        const text = events.map(encodeEvent).join('\n') + (lastNewline ? '\n' : '');
        expect(decodeChunk(text)).toEqual(
          events.map((e) => ('data' in e ? { ...e, data: new Uint8Array(e.data) } : e)),
        );
      }),
      { runs: 1000 },
    );
  });

  it('throws only RecordingFormatError on damaged lines, and what it reads is a well-formed event', () => {
    fuzz(
      fc.property(line, (l) => {
        const e = onlyThrows(() => decodeEvent(l), RecordingFormatError);
        if (!e) return;
        expect(Number.isFinite(e.t) && e.t >= 0).toBe(true);
        if (e.type === 'resize')
          for (const n of [e.cols, e.rows]) expect(Number.isInteger(n) && n >= 0 && n <= 65535).toBe(true);
        if (e.type === 'output' || e.type === 'input') expect(e.data).toBeInstanceOf(Uint8Array);
        if (e.type === 'marker') expect(typeof e.text).toBe('string');
        // A desktop input read back never carries more than the recorder writes (no key code).
        if (e.type === 'desktop_input') expect(decodeEvent(encodeEvent(e))).toEqual(e);
      }),
      { runs: 3000 },
    );
  });
});
