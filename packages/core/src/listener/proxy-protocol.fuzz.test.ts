import { isIP } from 'node:net';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { fuzz, hostileBytes } from '../testing/fuzz.js';
import { encodeProxyV2, type ProxyParse, parseProxyHeader } from './proxy-protocol.js';
import { PROXY_V2_SIGNATURE } from './sniff.js';

type Addr = { address: string; port: number };

/** The canonical text of an IP, so "0:0:0:0:0:0:0:1" and "::1" compare equal. */
const canon = (a: string) => (isIP(a) === 6 ? new URL(`http://[${a}]/`).hostname : a);

const port = fc.nat(65535);
const v4 = fc.record({ address: fc.ipV4(), port });
const v6 = fc.record({ address: fc.ipV6(), port });
const rest = fc.uint8Array({ maxLength: 48 });

interface Valid {
  bytes: Buffer;
  /** Bytes of the header itself (the rest belongs to the client's protocol). */
  length: number;
  version: 1 | 2;
  source?: Addr;
  destination?: Addr;
}

const v1: fc.Arbitrary<Valid> = fc.oneof(
  fc.tuple(fc.constantFrom('TCP4', 'TCP6'), rest).chain(([fam, r]) =>
    fc.tuple(fam === 'TCP4' ? v4 : v6, fam === 'TCP4' ? v4 : v6).map(([s, d]) => {
      const line = Buffer.from(`PROXY ${fam} ${s.address} ${d.address} ${s.port} ${d.port}\r\n`);
      return {
        bytes: Buffer.concat([line, r]),
        length: line.length,
        version: 1 as const,
        source: s,
        destination: d,
      };
    }),
  ),
  fc.tuple(fc.stringMatching(/^[ -~]{0,80}$/), rest).map(([junk, r]) => {
    const line = Buffer.from(`PROXY UNKNOWN${junk ? ` ${junk}` : ''}\r\n`);
    return { bytes: Buffer.concat([line, r]), length: line.length, version: 1 as const };
  }),
);

const v2Header = (verCmd: number, famProto: number, body: Uint8Array) => {
  const head = Buffer.alloc(4);
  head[0] = verCmd;
  head[1] = famProto;
  head.writeUInt16BE(body.length, 2);
  return Buffer.concat([PROXY_V2_SIGNATURE, head, body]);
};

const v2: fc.Arbitrary<Valid> = fc.oneof(
  // What load balancers send: addresses, then optional TLVs (which the parser skips).
  fc
    .tuple(fc.oneof(fc.tuple(v4, v4), fc.tuple(v6, v6)), fc.uint8Array({ maxLength: 40 }), rest)
    .map(([[s, d], tlvs, r]) => {
      const plain = encodeProxyV2(s, d);
      const h = v2Header(plain[12]!, plain[13]!, Buffer.concat([plain.subarray(16), tlvs]));
      return {
        bytes: Buffer.concat([h, r]),
        length: h.length,
        version: 2 as const,
        source: s,
        destination: d,
      };
    }),
  // LOCAL (health checks) and the families that carry no usable client address.
  fc
    .tuple(
      fc.constantFrom(0x20, 0x21),
      fc.constantFrom(0x00, 0x31, 0x32),
      fc.uint8Array({ maxLength: 216 }),
      rest,
    )
    .map(([cmd, fam, body, r]) => {
      const h = v2Header(cmd, fam, body);
      return { bytes: Buffer.concat([h, r]), length: h.length, version: 2 as const };
    }),
);

const valid = fc.oneof(v1, v2);

function checkInvariants(buf: Buffer, r: ProxyParse): void {
  if (!r.ok) {
    if (!r.needMore) expect(r.error).toMatch(/PROXY/);
    return;
  }
  const h = r.header;
  expect(h.length).toBeGreaterThan(0);
  expect(h.length).toBeLessThanOrEqual(buf.length);
  if (h.version === 1) expect(h.length).toBeLessThanOrEqual(107);
  expect(h.proxied).toBe(h.source !== undefined);
  for (const a of [h.source, h.destination]) {
    if (!a) continue;
    expect(isIP(a.address)).not.toBe(0);
    expect(Number.isInteger(a.port) && a.port >= 0 && a.port <= 65535).toBe(true);
  }
}

describe('PROXY protocol (fuzz)', () => {
  it('answers every input with a parse result (never throws) that stays within the bytes given', () => {
    fuzz(
      fc.property(hostileBytes(valid.map((v) => v.bytes)), (b) => {
        checkInvariants(b, parseProxyHeader(b));
      }),
      { runs: 3000 },
    );
  });

  it('reads back every valid v1 and v2 header, leaving the bytes after it alone', () => {
    fuzz(
      fc.property(valid, (v) => {
        const r = parseProxyHeader(v.bytes);
        if (!r.ok) throw new Error(`refused: ${r.needMore ? 'need more' : r.error}`);
        expect(r.header.version).toBe(v.version);
        expect(r.header.length).toBe(v.length);
        expect(r.header.proxied).toBe(v.source !== undefined);
        const show = (a: Addr | undefined) => a && { address: canon(a.address), port: a.port };
        expect(show(r.header.source)).toEqual(show(v.source));
        expect(show(r.header.destination)).toEqual(show(v.destination));
      }),
      { runs: 1000 },
    );
  });

  it('asks for more bytes on every truncated header (once the signature is there)', () => {
    fuzz(
      fc.property(valid, fc.double({ min: 0, max: 1, noNaN: true }), (v, f) => {
        const sig = v.version === 1 ? 6 : 12;
        const cut = sig + Math.floor(f * (v.length - sig));
        if (cut >= v.length) return;
        expect(parseProxyHeader(v.bytes.subarray(0, cut))).toEqual({ ok: false, needMore: true });
      }),
      { runs: 1000 },
    );
  });

  it('refuses a v1 header with no CRLF in its first 107 bytes instead of waiting', () => {
    fuzz(
      fc.property(fc.stringMatching(/^[ -~]{101,300}$/), (s) => {
        const r = parseProxyHeader(Buffer.from(`PROXY ${s}`, 'latin1'));
        expect(r).toMatchObject({ ok: false, needMore: false });
      }),
      { runs: 300 },
    );
  });

  it('encodeProxyV2 round-trips every IPv4 and IPv6 address pair', () => {
    fuzz(
      fc.property(fc.oneof(fc.tuple(v4, v4), fc.tuple(v6, v6)), ([s, d]) => {
        const r = parseProxyHeader(encodeProxyV2(s, d));
        if (!r.ok) throw new Error('refused its own encoding');
        expect(canon(r.header.source!.address)).toBe(canon(s.address));
        expect(r.header.source!.port).toBe(s.port);
        expect(canon(r.header.destination!.address)).toBe(canon(d.address));
        expect(r.header.destination!.port).toBe(d.port);
      }),
      { runs: 1000 },
    );
  });
});
