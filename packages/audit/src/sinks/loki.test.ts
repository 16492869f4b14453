import { describe, expect, it } from 'vitest';
import { decodePushRequest, snappyUncompress } from '../../test/receivers.js';
import { encodePushRequest } from './loki.js';
import { snappyCompress } from './snappy.js';

describe('Loki encoding: snappy and the PushRequest protobuf, checked by the reference libsnappy', () => {
  it('round-trips through libsnappy: text with repeats, incompressible bytes, long runs, empty input, more than one 64 KiB block', () => {
    const text = Buffer.from(
      Array.from({ length: 3000 }, (_, i) => `{"id":"${i}","type":"user.login","user":"u${i % 17}"}`).join(
        '\n',
      ),
    );
    let x = 1;
    const noise = Buffer.from(
      Array.from({ length: 150_000 }, () => {
        x = (x * 1103515245 + 12345) >>> 0;
        return x >>> 24;
      }),
    );
    const run = Buffer.alloc(70_000, 0x61);
    for (const input of [text, noise, run, Buffer.alloc(0), Buffer.concat([run, noise, text])]) {
      const c = snappyCompress(input);
      expect(snappyUncompress(c).equals(input)).toBe(true);
    }
    // It compresses what repeats (the point of the format on the wire).
    expect(snappyCompress(text).length).toBeLessThan(text.length / 2);
  });

  it('encodes a PushRequest that decodes to the same streams, labels and nanosecond timestamps', () => {
    const streams = [
      {
        labels: '{type="a"}',
        entries: [
          { ms: 1_700_000_000_123, line: '{"x":"é"}' },
          { ms: 0, line: '' },
        ],
      },
      { labels: '{type="b"}', entries: [{ ms: 1_000, line: 'y'.repeat(300) }] },
    ];
    expect(decodePushRequest(encodePushRequest(streams))).toEqual(
      streams.map((s) => ({
        labels: s.labels,
        entries: s.entries.map((e) => ({ ns: BigInt(e.ms) * 1_000_000n, line: e.line })),
      })),
    );
  });
});
