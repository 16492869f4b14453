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
});
