import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { fuzz } from '../testing/fuzz.js';
import {
  parseTerminalClientFrame,
  parseTerminalServerFrame,
  TERMINAL_MAX_SIZE,
  type TerminalServerFrame,
  validTerminalSize,
} from './terminal-protocol.js';

const size = fc.integer({ min: 1, max: TERMINAL_MAX_SIZE });
const str = fc.string({ unit: 'grapheme', maxLength: 30 });

const serverFrame: fc.Arbitrary<TerminalServerFrame> = fc.oneof(
  fc.record({
    type: fc.constant('session' as const),
    session_id: str,
    mode: fc.constantFrom('owner' as const, 'observer' as const, 'peer' as const),
    cols: size,
    rows: size,
  }),
  fc.record({ type: fc.constant('resize' as const), cols: size, rows: size }),
  fc.record(
    { type: fc.constant('end' as const), reason: str, exit_code: fc.integer({ min: 0, max: 255 }) },
    { requiredKeys: ['type'] },
  ),
  fc.record(
    { type: fc.constant('error' as const), code: str, message: str, hint: str },
    { requiredKeys: ['type', 'code', 'message'] },
  ),
);

/** Text frames a client or server might send: JSON of anything, frames with a field swapped, non-JSON. */
const textFrame = fc.oneof(
  fc.jsonValue().map((v) => JSON.stringify(v)),
  fc
    .tuple(fc.constantFrom('resize', 'session', 'end', 'error', 'x'), fc.jsonValue(), fc.jsonValue())
    .map(([type, cols, rows]) => JSON.stringify({ type, cols, rows })),
  fc.string({ unit: 'binary', maxLength: 80 }),
);

describe('terminal WebSocket frames (fuzz)', () => {
  it('parseTerminalClientFrame never throws and only ever returns a resize within the size limits', () => {
    fuzz(
      fc.property(textFrame, (t) => {
        const f = parseTerminalClientFrame(t);
        if (f === undefined) return;
        expect(Object.keys(f).sort()).toEqual(['cols', 'rows', 'type']);
        expect(f.type).toBe('resize');
        expect(validTerminalSize(f.cols) && validTerminalSize(f.rows)).toBe(true);
      }),
      { runs: 2000 },
    );
  });

  it('reads back every resize a client sends', () => {
    fuzz(
      fc.property(size, size, (cols, rows) => {
        expect(parseTerminalClientFrame(JSON.stringify({ type: 'resize', cols, rows }))).toEqual({
          type: 'resize',
          cols,
          rows,
        });
      }),
      { runs: 500 },
    );
  });

  it('parseTerminalServerFrame never throws, and reads back every frame a server sends', () => {
    fuzz(
      fc.property(textFrame, serverFrame, (t, f) => {
        const any = parseTerminalServerFrame(t);
        if (any !== undefined) expect(['session', 'resize', 'end', 'error']).toContain(any.type);
        expect(parseTerminalServerFrame(JSON.stringify(f))).toEqual(f);
      }),
      { runs: 2000 },
    );
  });
});
