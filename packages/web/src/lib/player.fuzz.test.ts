import { encodeEvent, type RecordingEvent } from '@gatehouse/audit';
import { fuzz, hostileBytes } from '@gatehouse/core/testing';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  decodeLine,
  decodeRecording,
  formatClock,
  parseT,
  searchOutput,
  stripAnsi,
  Timeline,
} from './player';

const t = fc.oneof(fc.nat(), fc.double({ min: 0, noNaN: true, noDefaultInfinity: true }));
/** What the gateway's recorder writes (the audit codec's own range of sizes). */
const event: fc.Arbitrary<RecordingEvent> = fc.oneof(
  fc.record({
    t,
    type: fc.constantFrom('output' as const, 'input' as const),
    data: fc.uint8Array({ maxLength: 100 }),
  }),
  fc.record({ t, type: fc.constant('resize' as const), cols: fc.nat(65535), rows: fc.nat(65535) }),
  fc.record({ t, type: fc.constant('marker' as const), text: fc.string({ unit: 'binary', maxLength: 40 }) }),
);

/** Terminal output with escape sequences (complete and cut), controls and text. */
const output = fc
  .array(
    fc.oneof(
      fc.string({ unit: 'grapheme', maxLength: 8 }),
      fc.constantFrom(
        '\x1b[31m',
        '\x1b[0m',
        '\x1b]0;title\x07',
        '\x1b[',
        '\x1b',
        '\r\n',
        '\x07',
        '\x1b[2J',
        'ls',
        'LS',
      ),
    ),
    { maxLength: 12 },
  )
  .map((parts) => parts.join(''));

const lineOk = (e: unknown) => e instanceof Error && /^recording line \d+ /.test(e.message);

describe('session player (fuzz)', () => {
  it('reads back every event the gateway records (audit encodeEvent -> decodeLine)', () => {
    fuzz(
      fc.property(event, fc.nat(1000), (e, n) => {
        const got = decodeLine(encodeEvent(e), n + 1);
        const shown = (n: number) => Math.min(n, 10_000);
        expect(got).toEqual(
          'data' in e
            ? { ...e, data: new Uint8Array(e.data) }
            : e.type === 'resize'
              ? { ...e, cols: shown(e.cols), rows: shown(e.rows) }
              : e,
        );
      }),
      { runs: 2000 },
    );
  });

  it('decodeRecording throws only an Error naming the bad line', () => {
    fuzz(
      fc.property(
        fc.array(
          fc.oneof(
            event.map(encodeEvent),
            hostileBytes(event.map((e) => Buffer.from(encodeEvent(e)))).map((b) => b.toString('utf8')),
            fc
              .tuple(
                event,
                fc.constantFrom('t', 'type', 'data', 'cols', 'rows', 'text'),
                fc.jsonValue({ maxDepth: 1 }),
              )
              .map(([e, k, v]) => JSON.stringify({ ...JSON.parse(encodeEvent(e)), [k]: v })),
            fc.jsonValue().map((v) => JSON.stringify(v)),
          ),
          { maxLength: 5 },
        ),
        (lines) => {
          try {
            decodeRecording(lines.join('\n'));
          } catch (e) {
            if (!lineOk(e)) throw e;
          }
        },
      ),
      { runs: 3000 },
    );
  });

  it('the timeline never runs backwards, never runs ahead of the recording, and shortens only idle gaps', () => {
    fuzz(
      fc.property(
        fc.array(fc.nat(1_000_000), { maxLength: 20 }),
        fc.integer({ min: 1, max: 100_000 }),
        (ts, idle) => {
          const events = [...ts]
            .sort((a, b) => a - b)
            .map((x): RecordingEvent => ({ t: x, type: 'marker', text: '' }));
          const tl = new Timeline(events, idle);
          for (let i = 0; i < events.length; i++) {
            expect(tl.play[i]!).toBeLessThanOrEqual(tl.real[i]!);
            if (i > 0) {
              expect(tl.play[i]! - tl.play[i - 1]!).toBe(Math.min(tl.real[i]! - tl.real[i - 1]!, idle));
            }
            expect(tl.countAtReal(tl.real[i]!)).toBeGreaterThan(i);
            expect(tl.countAtPlay(tl.play[i]!)).toBeGreaterThan(i);
          }
          expect(tl.duration).toBeLessThanOrEqual(tl.realDuration);
        },
      ),
      { runs: 1000 },
    );
  });

  it('searchOutput finds what stripAnsi leaves of the output, at the event that completes it, and never throws', () => {
    fuzz(
      fc.property(
        fc.array(output, { maxLength: 8 }),
        fc.string({ unit: 'grapheme', minLength: 1, maxLength: 4 }),
        (outs, q) => {
          const enc = new TextEncoder();
          const events = outs.map(
            (s, i): RecordingEvent => ({ t: i * 10, type: 'output', data: enc.encode(s) }),
          );
          const hits = searchOutput(events, q, 50);
          expect(hits.length).toBeLessThanOrEqual(50);
          for (const h of hits) expect(events[h.index]?.type).toBe('output');
          const plain = stripAnsi(outs.join('')).toLowerCase();
          if (hits.length === 0) expect(plain.includes(q.toLowerCase())).toBe(false);
        },
      ),
      { runs: 1000 },
    );
  });

  it('parseT takes any text; formatClock shows any time a Date can hold', () => {
    fuzz(
      fc.property(
        fc.oneof(fc.string({ maxLength: 16 }), fc.constant(null), fc.nat().map(String)),
        fc.double({ min: -8.64e15, max: 8.64e15, noNaN: true }),
        (s, ms) => {
          const v = parseT(s);
          if (v !== undefined) expect(Number.isInteger(v) && v >= 0).toBe(true);
          expect(formatClock(ms)).toMatch(/^(\d+:)?\d+:\d{2}$/);
        },
      ),
      { runs: 1000 },
    );
  });
});
