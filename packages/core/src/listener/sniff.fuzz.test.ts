import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { bytewise, fuzz, hostileBytes } from '../testing/fuzz.js';
import { encodeProxyV2 } from './proxy-protocol.js';
import { type Sniffed, sniff } from './sniff.js';

const KINDS: readonly Sniffed[] = [
  'ssh',
  'tls',
  'pg-ssl',
  'pg-gssenc',
  'pg-startup',
  'pg-cancel',
  'proxy-v1',
  'proxy-v2',
  'http-plain',
  'unknown',
  'need-more',
];

/** The longest prefix the sniffer may need: the PROXY v2 signature. */
const MAX_SNIFF_BYTES = 12;

const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
};

const tail = fc.uint8Array({ maxLength: 64 });

/** First bytes of every protocol the shared port speaks, with the verdict they must get. */
const firstMessage: fc.Arbitrary<{ bytes: Buffer; kind: Sniffed }> = fc.oneof(
  fc
    .tuple(fc.stringMatching(/^[!-~]{1,40}$/), tail)
    .map(([v, t]) => ({ bytes: Buffer.concat([Buffer.from(`SSH-2.0-${v}\r\n`), t]), kind: 'ssh' as const })),
  fc
    .tuple(fc.integer({ min: 0, max: 4 }), fc.integer({ min: 0, max: 0xffff }), tail)
    .map(([minor, len, t]) => ({
      bytes: Buffer.concat([Buffer.from([0x16, 3, minor, len >> 8, len & 0xff]), t]),
      kind: 'tls' as const,
    })),
  tail.map((t) => ({ bytes: Buffer.concat([u32(8), u32(80877103), t]), kind: 'pg-ssl' as const })),
  tail.map((t) => ({ bytes: Buffer.concat([u32(8), u32(80877104), t]), kind: 'pg-gssenc' as const })),
  fc.tuple(fc.uint8Array({ minLength: 8, maxLength: 8 }), tail).map(([k, t]) => ({
    bytes: Buffer.concat([u32(16), u32(80877102), k, t]),
    kind: 'pg-cancel' as const,
  })),
  fc.tuple(fc.integer({ min: 9, max: 10_000 }), tail).map(([len, t]) => ({
    bytes: Buffer.concat([u32(len), u32(196608), t]),
    kind: 'pg-startup' as const,
  })),
  fc.tuple(fc.ipV4(), fc.ipV4(), fc.nat(65535), fc.nat(65535), tail).map(([s, d, sp, dp, t]) => ({
    bytes: Buffer.concat([Buffer.from(`PROXY TCP4 ${s} ${d} ${sp} ${dp}\r\n`), t]),
    kind: 'proxy-v1' as const,
  })),
  fc.tuple(fc.ipV4(), fc.ipV4(), fc.nat(65535), fc.nat(65535), tail).map(([s, d, sp, dp, t]) => ({
    bytes: Buffer.concat([encodeProxyV2({ address: s, port: sp }, { address: d, port: dp }), t]),
    kind: 'proxy-v2' as const,
  })),
  fc
    .tuple(
      fc.constantFrom('GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'CONNECT'),
      fc.webPath(),
      tail,
    )
    .map(([m, p, t]) => ({
      bytes: Buffer.concat([Buffer.from(`${m} /${p} HTTP/1.1\r\n`), t]),
      kind: 'http-plain' as const,
    })),
);

const anyFirstBytes = hostileBytes(firstMessage.map((m) => m.bytes));

describe('sniff (fuzz)', () => {
  it('answers every input with a verdict and never throws', () => {
    fuzz(
      fc.property(anyFirstBytes, (b) => {
        expect(KINDS).toContain(sniff(b));
      }),
      { runs: 2000 },
    );
  });

  it('never changes a verdict once given, whatever bytes follow', () => {
    fuzz(
      fc.property(anyFirstBytes, fc.uint8Array({ maxLength: 32 }), (b, more) => {
        const v = sniff(b);
        if (v !== 'need-more') expect(sniff(Buffer.concat([b, more]))).toBe(v);
      }),
      { runs: 2000 },
    );
  });

  it(`asks for more only within the first ${MAX_SNIFF_BYTES} bytes`, () => {
    fuzz(
      fc.property(anyFirstBytes, (b) => {
        if (b.length >= MAX_SNIFF_BYTES) expect(sniff(b)).not.toBe('need-more');
      }),
      { runs: 2000 },
    );
  });

  it('classifies each protocol byte by byte: need-more, then its verdict for good', () => {
    fuzz(
      fc.property(firstMessage, ({ bytes, kind }) => {
        const verdicts = bytewise(bytes).map((_, i) => sniff(bytes.subarray(0, i + 1)));
        const first = verdicts.findIndex((v) => v !== 'need-more');
        expect(first).toBeGreaterThanOrEqual(0);
        expect(verdicts.slice(0, first).every((v) => v === 'need-more')).toBe(true);
        expect(verdicts.slice(first).every((v) => v === kind)).toBe(true);
      }),
      { runs: 500 },
    );
  });
});
