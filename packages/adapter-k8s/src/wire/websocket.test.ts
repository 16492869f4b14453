import { describe, expect, it, vi } from 'vitest';
import { decodeChannelMessage, exitCodeOf, parseResize } from './channel.js';
import { encodeWsFrame, WsFrameParser, WsProtocolError } from './websocket.js';

describe('WsFrameParser', () => {
  it('parses masked and unmasked frames split at every byte', () => {
    const mask = Buffer.from([1, 2, 3, 4]);
    const bytes = Buffer.concat([
      encodeWsFrame(2, Buffer.from([1, 104, 105]), { mask }),
      encodeWsFrame(2, Buffer.alloc(300, 7)),
      encodeWsFrame(2, Buffer.alloc(70_000, 9), { mask }),
      encodeWsFrame(9, Buffer.from('p')),
    ]);
    const p = new WsFrameParser();
    const frames = [];
    for (let i = 0; i < bytes.length; i++) frames.push(...p.push(bytes.subarray(i, i + 1)));
    expect(frames.map((f) => [f.opcode, f.payload.length])).toEqual([
      [2, 3],
      [2, 300],
      [2, 70_000],
      [9, 1],
    ]);
    expect([...frames[0]!.payload]).toEqual([1, 104, 105]);
    expect(frames[2]!.payload.every((b) => b === 9)).toBe(true);
  });

  it('stops after a close frame', () => {
    const p = new WsFrameParser();
    const out = p.push(
      Buffer.concat([encodeWsFrame(8, Buffer.from([3, 232])), encodeWsFrame(2, Buffer.from([1]))]),
    );
    expect(out.map((f) => f.opcode)).toEqual([8]);
  });

  it.each([
    ['reserved bits', Buffer.from([0xc2, 0x00])],
    ['unknown opcode', Buffer.from([0x83, 0x00])],
    ['fragmented control frame', Buffer.from([0x09, 0x00])],
    ['long control frame', Buffer.from([0x89, 126, 0, 200])],
  ])('rejects %s', (_n, bytes) => {
    expect(() => new WsFrameParser().push(bytes)).toThrow(WsProtocolError);
  });

  it('rejects a frame over the limit before buffering it', () => {
    const p = new WsFrameParser({ maxPayload: 1000 });
    expect(() => p.push(Buffer.from([0x82, 126, 0x10, 0x00]))).toThrow(/exceeds the limit/);
  });
});

describe('WsFrameParser work', () => {
  it('copies a large frame a bounded number of times however finely it arrives (re-copied its whole buffer on every chunk)', () => {
    // An 8 MiB frame in 16 KiB chunks took seconds of CPU: each chunk re-joined everything buffered.
    const frame = encodeWsFrame(2, Buffer.alloc(4 << 20, 7));
    const concat = vi.spyOn(Buffer, 'concat');
    try {
      const p = new WsFrameParser();
      const frames = [];
      for (let i = 0; i < frame.length; i += 4096) frames.push(...p.push(frame.subarray(i, i + 4096)));
      expect(frames).toHaveLength(1);
      expect(frames[0]!.payload.length).toBe(4 << 20);
      const copied = concat.mock.results.reduce((n, r) => n + (r.value as Buffer).length, 0);
      expect(copied).toBeLessThanOrEqual(2 * frame.length);
    } finally {
      concat.mockRestore();
    }
  });
});

describe('channel protocol', () => {
  it('binary and base64 channel messages', () => {
    expect(decodeChannelMessage('v5.channel.k8s.io', Buffer.from([1, 104, 105]))).toEqual({
      channel: 1,
      data: Buffer.from('hi'),
    });
    expect(decodeChannelMessage('v4.base64.channel.k8s.io', Buffer.from('2aGk='))).toEqual({
      channel: 2,
      data: Buffer.from('hi'),
    });
    expect(() => decodeChannelMessage('v5.channel.k8s.io', Buffer.alloc(0))).toThrow(/empty/);
  });
  it('resize and exit status', () => {
    expect(parseResize(Buffer.from('{"Width":120,"Height":40}'))).toEqual({ cols: 120, rows: 40 });
    expect(parseResize(Buffer.from('nope'))).toBeUndefined();
    expect(exitCodeOf(Buffer.from('{"status":"Success"}'))).toBe(0);
    expect(
      exitCodeOf(
        Buffer.from(
          '{"status":"Failure","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"3"}]}}',
        ),
      ),
    ).toBe(3);
    expect(exitCodeOf(Buffer.from('{'))).toBeUndefined();
  });

  it('exitCodeOf reads no exit code from status JSON of another shape (threw a TypeError, failing the session tap)', () => {
    // fuzz counterexample: {"details":{"causes":{}}}; likewise null and a cause that is null.
    for (const text of [
      '{"status":"Failure","details":{"causes":{}}}',
      'null',
      '[1]',
      '{"details":{"causes":[null]}}',
    ]) {
      expect(exitCodeOf(Buffer.from(text))).toBeUndefined();
    }
    const failed = { status: 'Failure', details: { causes: [{ reason: 'ExitCode', message: '3' }] } };
    expect(exitCodeOf(Buffer.from(JSON.stringify(failed)))).toBe(3);
  });
});
