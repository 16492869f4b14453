import { fuzz, hostileBytes, onlyThrows } from '@gatehouse/core/testing';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  CHANNEL_PROTOCOLS,
  ChannelProtocolError,
  decodeChannelMessage,
  exitCodeOf,
  parseResize,
} from './channel.js';

const binaryProtocols = CHANNEL_PROTOCOLS.filter((p) => !p.includes('base64'));
const base64Protocols = CHANNEL_PROTOCOLS.filter((p) => p.includes('base64'));

/** JSON-ish payloads: valid status and resize messages, with any member replaced by any JSON value. */
const statusJson = fc.oneof(
  fc.constant({ status: 'Success' }),
  fc.integer({ min: -1000, max: 1000 }).map((n) => ({
    status: 'Failure',
    reason: 'NonZeroExitCode',
    details: { causes: [{ reason: 'ExitCode', message: String(n) }] },
  })),
);
const jsonish = fc.oneof(
  statusJson.map((v) => JSON.stringify(v)),
  fc.record({ Width: fc.jsonValue(), Height: fc.jsonValue() }).map((v) => JSON.stringify(v)),
  fc
    .tuple(
      statusJson,
      fc.constantFrom('status', 'details', 'causes', 'reason', 'message'),
      fc.jsonValue({ maxDepth: 2 }),
    )
    .map(([v, k, x]) => {
      const o = JSON.parse(JSON.stringify(v));
      if (k === 'causes' || k === 'reason' || k === 'message') {
        if (o.details) o.details.causes = k === 'causes' ? x : [{ ...o.details.causes[0], [k]: x }];
      } else o[k] = x;
      return JSON.stringify(o);
    }),
  fc.jsonValue().map((v) => JSON.stringify(v)),
  fc.string({ unit: 'binary', maxLength: 40 }),
);

describe('Kubernetes channel messages (fuzz)', () => {
  it('decodeChannelMessage reads back the channel and data, binary and base64', () => {
    fuzz(
      fc.property(
        fc.integer({ min: 0, max: 255 }),
        fc.integer({ min: 0, max: 9 }),
        fc.uint8Array({ maxLength: 100 }),
        fc.constantFrom(...binaryProtocols),
        fc.constantFrom(...base64Protocols),
        (ch, digit, data, bin, b64) => {
          expect(decodeChannelMessage(bin, Buffer.concat([Buffer.from([ch]), data]))).toEqual({
            channel: ch,
            data: Buffer.from(data),
          });
          const text = Buffer.from(`${digit}${Buffer.from(data).toString('base64')}`, 'latin1');
          expect(decodeChannelMessage(b64, text)).toEqual({ channel: digit, data: Buffer.from(data) });
        },
      ),
      { runs: 1000 },
    );
  });

  it('decodeChannelMessage throws only ChannelProtocolError', () => {
    fuzz(
      fc.property(
        hostileBytes(fc.uint8Array({ maxLength: 40 })),
        fc.constantFrom(...CHANNEL_PROTOCOLS, 'x'),
        (b, p) => {
          onlyThrows(() => decodeChannelMessage(p, b), ChannelProtocolError);
        },
      ),
      { runs: 1000 },
    );
  });

  it('exitCodeOf and parseResize never throw, and read the status and size messages the API server sends', () => {
    fuzz(
      fc.property(jsonish, statusJson, fc.nat(20_000), fc.nat(20_000), (text, status, w, h) => {
        const b = Buffer.from(text);
        const code = exitCodeOf(b);
        if (code !== undefined) expect(Number.isInteger(code)).toBe(true);
        const size = parseResize(b);
        if (size) {
          for (const n of [size.cols, size.rows]) expect(n >= 0 && n <= 10_000).toBe(true);
        }
        const want = 'details' in status ? Number(status.details.causes[0]?.message) : 0;
        expect(exitCodeOf(Buffer.from(JSON.stringify(status)))).toBe(want);
        expect(parseResize(Buffer.from(JSON.stringify({ Width: w, Height: h })))).toEqual({
          cols: Math.min(w, 10_000),
          rows: Math.min(h, 10_000),
        });
      }),
      { runs: 2000 },
    );
  });
});
