import { describe, expect, it } from 'vitest';
import { decodeChunk, decodeEvent, encodeEvent, RecordingFormatError } from './codec.js';
import type { RecordingEvent } from './types.js';

describe('recording codec', () => {
  it('round-trips every event type, binary-safe', () => {
    const events: RecordingEvent[] = [
      { t: 0, type: 'output', data: Uint8Array.of(0, 0x1b, 0xff, 0xe2, 0x82) },
      { t: 7, type: 'input', data: new Uint8Array(0) },
      { t: 8, type: 'resize', cols: 200, rows: 50 },
      { t: 9, type: 'marker', text: 'line\n"quoted" é' },
    ];
    const text = events.map((e) => `${encodeEvent(e)}\n`).join('');
    expect(decodeChunk(text)).toEqual(events);
    expect(JSON.parse(encodeEvent(events[0] as RecordingEvent))).toEqual({
      t: 0,
      type: 'output',
      data: 'ABv/4oI=',
    });
  });

  it('rejects malformed lines with its own error type', () => {
    for (const bad of [
      '',
      'nope',
      '[]',
      'null',
      '{"type":"output","data":""}',
      '{"t":-1,"type":"output","data":""}',
      '{"t":1,"type":"output"}',
      '{"t":1,"type":"resize","cols":1.5,"rows":2}',
      '{"t":1,"type":"resize","cols":1,"rows":70000}',
      '{"t":1,"type":"marker"}',
      '{"t":1,"type":"bell"}',
    ]) {
      expect(() => decodeEvent(bad), bad).toThrow(RecordingFormatError);
    }
  });

  it('writes client-sent sizes the format cannot hold as sizes it can (a 70000-column window-change made the chunk unreadable)', () => {
    // fuzz finding: encodeEvent wrote any number, decodeEvent refuses sizes over 65535, so one
    // SSH window-change ended the playback of the whole session at that chunk.
    const lines = [
      encodeEvent({ t: 1, type: 'resize', cols: 70_000, rows: 2 ** 32 - 1 }),
      encodeEvent({ t: 2, type: 'resize', cols: -3, rows: 1.5 }),
      encodeEvent({ t: 3, type: 'resize', cols: Number.NaN, rows: 40 }),
    ];
    expect(decodeChunk(lines.join('\n'))).toEqual([
      { t: 1, type: 'resize', cols: 65535, rows: 65535 },
      { t: 2, type: 'resize', cols: 0, rows: 1 },
      { t: 3, type: 'resize', cols: 0, rows: 40 },
    ]);
  });
});
