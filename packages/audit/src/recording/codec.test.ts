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
      { t: 10, type: 'desktop_input', input: { kind: 'key' } },
      { t: 10, type: 'desktop_input', input: { kind: 'key', special: 'ctrl+alt+del' } },
      { t: 11, type: 'desktop_input', input: { kind: 'move', x: 10, y: 20 } },
      { t: 12, type: 'desktop_input', input: { kind: 'button', button: 'x2', down: false, x: 1, y: 2 } },
      { t: 13, type: 'desktop_input', input: { kind: 'wheel', delta: -120, horizontal: false, x: 0, y: 0 } },
      { t: 14, type: 'desktop_input', input: { kind: 'dropped', n: 3 } },
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
      '{"t":1,"type":"desktop_input"}',
      '{"t":1,"type":"desktop_input","input":{"kind":"key","special":"a"}}',
      '{"t":1,"type":"desktop_input","input":{"kind":"move","x":-1,"y":0}}',
      '{"t":1,"type":"desktop_input","input":{"kind":"button","button":"left","x":1,"y":1}}',
      '{"t":1,"type":"desktop_input","input":{"kind":"wheel","delta":1.5,"horizontal":true,"x":1,"y":1}}',
      '{"t":1,"type":"desktop_input","input":{"kind":"dropped","n":0}}',
      '{"t":1,"type":"desktop_input","input":{"kind":"scancode","code":30}}',
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
