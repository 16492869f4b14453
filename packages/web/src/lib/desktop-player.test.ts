import { describe, expect, it } from 'vitest';
import { desktopFromSearch, desktopPlaybackUrl } from './desktop';
import { desktopMarks, feedPlan, ReplaySocket, replayChunks, ServerFramer } from './desktop-player';
import { decodeRecording, type PlayerEvent } from './player';

const out = (t: number, ...bytes: number[]): PlayerEvent => ({
  t,
  type: 'output',
  data: Uint8Array.from(bytes),
});
const key = (t: number): PlayerEvent => ({ t, type: 'desktop_input', input: { kind: 'key' } });

describe('desktop player model', () => {
  it('feeds what lies up to the position, always the RDCleanPath answer, and starts over to go back', () => {
    const chunks = replayChunks([out(0, 1), key(5), out(10, 2), out(10, 3), out(500, 4)]);
    expect(chunks.map((c) => c.t)).toEqual([0, 10, 10, 500]);
    expect(feedPlan(chunks, 0, 0)).toEqual({ restart: false, from: 0, until: 1 });
    expect(feedPlan(chunks, 1, 10)).toEqual({ restart: false, from: 1, until: 3 });
    expect(feedPlan(chunks, 3, 499)).toEqual({ restart: false, from: 3, until: 3 });
    expect(feedPlan(chunks, 3, 9)).toEqual({ restart: true, from: 0, until: 1 });
    expect(feedPlan([], 0, 100)).toEqual({ restart: false, from: 0, until: 0 });
  });

  it('hands over whole PDUs and leaves out virtual channels (an unknown channel ended the playback client)', () => {
    // xrdp's recording: clipboard PDUs on channel 1004, which a playback client without the
    // clipboard channel refused ("unexpected channel received: ID 1004").
    const sdin = (channel: number, ...payload: number[]) => {
      const body = [
        0x02,
        0xf0,
        0x80,
        0x68,
        0x00,
        0x04,
        channel >> 8,
        channel & 0xff,
        0x70,
        payload.length,
        ...payload,
      ];
      return [3, 0, 0, body.length + 4, ...body];
    };
    const attachUserConfirm = [3, 0, 0, 11, 0x02, 0xf0, 0x80, 0x2e, 0x00, 0x00, 0x04]; // user channel 1005
    const fastPath = [0x00, 0x05, 9, 9, 9];
    const stream = [...attachUserConfirm, ...sdin(1003, 1), ...sdin(1004, 2), ...sdin(1005, 3), ...fastPath];
    const f = new ServerFramer();
    const got: number[][] = [];
    for (let i = 0; i < stream.length; i += 5)
      for (const x of f.push(Uint8Array.from(stream.slice(i, i + 5)))) got.push(Array.from(x));
    expect(got).toEqual([attachUserConfirm, sdin(1003, 1), sdin(1005, 3), fastPath]);
    // Bytes that are no PDU: passed through from there on, never lost.
    expect(Array.from(f.push(Uint8Array.of(0x01, 2, 3))[0]!)).toEqual([1, 2, 3]);
    expect(Array.from(f.push(Uint8Array.of(...sdin(1004, 2)))[0]!)).toEqual(sdin(1004, 2));
  });

  it('marks bursts of typing (counts, never keys), clicks and the named keys', () => {
    const events = decodeRecording(
      [
        '{"t":100,"type":"desktop_input","input":{"kind":"key"}}',
        '{"t":300,"type":"desktop_input","input":{"kind":"key"}}',
        '{"t":400,"type":"desktop_input","input":{"kind":"move","x":5,"y":6}}',
        '{"t":900,"type":"desktop_input","input":{"kind":"button","button":"left","down":true,"x":5,"y":6}}',
        '{"t":950,"type":"desktop_input","input":{"kind":"button","button":"left","down":false,"x":5,"y":6}}',
        '{"t":5000,"type":"desktop_input","input":{"kind":"key"}}',
        '{"t":6000,"type":"desktop_input","input":{"kind":"key","special":"ctrl+alt+del"}}',
        '{"t":7000,"type":"marker","text":"ended by local:root"}',
      ].join('\n'),
    );
    expect(desktopMarks(events)).toEqual([
      { t: 100, kind: 'keys', label: 'typing: 2 keys' },
      { t: 900, kind: 'click', label: 'left click at 5,6' },
      { t: 5000, kind: 'keys', label: 'typing: 1 key' },
      { t: 6000, kind: 'special', label: 'Ctrl+Alt+Del' },
      { t: 7000, kind: 'marker', label: 'ended by local:root' },
    ]);
    expect(() => decodeRecording('{"t":1,"type":"desktop_input","input":{"kind":"video"}}')).toThrow(
      'bad desktop input',
    );
  });

  it('the replay socket opens, holds the recording until the client sent its request, and drops what it sends', async () => {
    const s = new ReplaySocket('wss://gatehouse-replay.invalid/1');
    const seen: unknown[] = [];
    s.addEventListener('open', () => seen.push('open'));
    s.addEventListener('message', (e) => seen.push(Array.from(new Uint8Array((e as MessageEvent).data))));
    s.push(Uint8Array.of(1, 2));
    await Promise.resolve();
    expect(seen).toEqual(['open']);
    s.send(Uint8Array.of(9));
    // Never inside the client's own send: in a task of their own.
    expect(seen).toEqual(['open']);
    s.push(Uint8Array.of(3));
    s.send(Uint8Array.of(9));
    await new Promise((r) => setTimeout(r, 0));
    expect(seen).toEqual(['open', [1, 2], [3]]);
    s.close();
    s.push(Uint8Array.of(4));
    expect(s.readyState).toBe(ReplaySocket.CLOSED);
    expect(seen).toHaveLength(3);
  });

  it('deep links carry the position; a bad t is ignored', () => {
    const url = desktopPlaybackUrl('s-1', { t: 1234.9 });
    expect(url).toBe('/web/desktop?recording=s-1&t=1234');
    expect(desktopFromSearch(new URL(url, 'https://x').searchParams)).toEqual({
      kind: 'playback',
      recording: 's-1',
      speed: 1,
      t: 1234,
    });
    expect(desktopFromSearch(new URLSearchParams('recording=s-1&t=-5&speed=99'))).toEqual({
      kind: 'playback',
      recording: 's-1',
      speed: 1,
    });
  });
});
