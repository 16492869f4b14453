import { describe, expect, it } from 'vitest';
import { encodeProxyV2, parseProxyHeader } from './proxy-protocol.js';
import { sniff } from './sniff.js';

const b = (...x: number[]) => Buffer.from(x);
const pgMsg = (len: number, code: number) => {
  const m = Buffer.alloc(8);
  m.writeUInt32BE(len, 0);
  m.writeUInt32BE(code, 4);
  return m;
};

describe('sniff', () => {
  it('recognises each protocol from its first bytes', () => {
    expect(sniff(Buffer.from('SSH-2.0-OpenSSH_9.2\r\n'))).toBe('ssh');
    expect(sniff(b(0x16, 0x03, 0x01, 0x02, 0x00))).toBe('tls');
    expect(sniff(b(0x00, 0x00, 0x00, 0x08, 0x04, 0xd2, 0x16, 0x2f))).toBe('pg-ssl');
    expect(sniff(pgMsg(8, 80877104))).toBe('pg-gssenc');
    expect(sniff(pgMsg(16, 80877102))).toBe('pg-cancel');
    expect(sniff(pgMsg(84, 196608))).toBe('pg-startup');
    expect(sniff(Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n'))).toBe('proxy-v1');
    expect(sniff(encodeProxyV2({ address: '1.2.3.4', port: 1 }, { address: '5.6.7.8', port: 2 }))).toBe(
      'proxy-v2',
    );
    expect(sniff(Buffer.from('GET / HTTP/1.1\r\n'))).toBe('http-plain');
  });

  it('asks for more bytes only while the prefix is still ambiguous', () => {
    expect(sniff(Buffer.alloc(0))).toBe('need-more');
    expect(sniff(Buffer.from('SS'))).toBe('need-more');
    expect(sniff(b(0x16, 0x03))).toBe('need-more');
    expect(sniff(b(0x00, 0x00, 0x00))).toBe('need-more');
    expect(sniff(b(0x0d, 0x0a, 0x0d))).toBe('need-more');
    expect(sniff(Buffer.from('PRO'))).toBe('need-more');
  });

  it('calls garbage unknown without waiting for more', () => {
    expect(sniff(Buffer.from('hello'))).toBe('unknown');
    expect(sniff(Buffer.from('SSX-'))).toBe('unknown');
    expect(sniff(b(0x16, 0x02, 0x00))).toBe('unknown');
    expect(sniff(b(0xff, 0xfe))).toBe('unknown');
    // A Postgres-looking length that lies (huge startup) is refused, not buffered.
    expect(sniff(pgMsg(0x7fffffff, 196608))).toBe('unknown');
    expect(sniff(pgMsg(12, 12345))).toBe('unknown');
  });
});

describe('PROXY protocol', () => {
  it('parses v1 TCP4 and TCP6 and reports the header length', () => {
    const h = Buffer.from('PROXY TCP4 192.0.2.1 198.51.100.2 51000 3080\r\nSSH-2.0-x');
    const r = parseProxyHeader(h);
    expect(r).toEqual({
      ok: true,
      header: {
        version: 1,
        proxied: true,
        source: { address: '192.0.2.1', port: 51000 },
        destination: { address: '198.51.100.2', port: 3080 },
        length: 46,
      },
    });
    expect(h.subarray(46).toString()).toBe('SSH-2.0-x');
    const r6 = parseProxyHeader(Buffer.from('PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n'));
    expect(r6.ok && r6.header.source).toEqual({ address: '2001:db8::1', port: 1 });
    const unk = parseProxyHeader(Buffer.from('PROXY UNKNOWN\r\n'));
    expect(unk.ok && unk.header.proxied).toBe(false);
  });

  it('refuses malformed v1 headers', () => {
    for (const bad of [
      'PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n',
      'PROXY TCP4 1.2.3.4 5.6.7.8 99999 2\r\n',
      'PROXY TCP4 2001:db8::1 5.6.7.8 1 2\r\n',
      'PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n',
      `PROXY TCP4 ${'1'.repeat(120)}\r\n`,
    ]) {
      const r = parseProxyHeader(Buffer.from(bad));
      expect(r.ok, bad).toBe(false);
      expect(!r.ok && r.needMore, bad).toBe(false);
    }
    expect(parseProxyHeader(Buffer.from('PROXY TCP4 1.2.3.4'))).toEqual({ ok: false, needMore: true });
  });

  it('round-trips v2 for IPv4 and IPv6 byte for byte', () => {
    const v4 = encodeProxyV2({ address: '10.1.2.3', port: 4242 }, { address: '10.9.8.7', port: 3080 });
    expect(v4.subarray(12, 16)).toEqual(b(0x21, 0x11, 0x00, 0x0c));
    expect(v4.subarray(16, 28)).toEqual(b(10, 1, 2, 3, 10, 9, 8, 7, 0x10, 0x92, 0x0c, 0x08));
    const r = parseProxyHeader(Buffer.concat([v4, Buffer.from('rest')]));
    expect(r.ok && r.header).toEqual({
      version: 2,
      proxied: true,
      source: { address: '10.1.2.3', port: 4242 },
      destination: { address: '10.9.8.7', port: 3080 },
      length: 28,
    });
    const v6 = encodeProxyV2({ address: '2001:db8::5', port: 1 }, { address: '::1', port: 2 });
    const r6 = parseProxyHeader(v6);
    expect(r6.ok && r6.header.source).toEqual({ address: '2001:db8:0:0:0:0:0:5', port: 1 });
    expect(r6.ok && r6.header.destination).toEqual({ address: '0:0:0:0:0:0:0:1', port: 2 });
  });

  it('encodes IPv6 addresses with a dotted IPv4 tail (::ffff:a.b.c.d) byte for byte (were written as garbage)', () => {
    // fuzz counterexample: "::0.0.0.0" and "0:0:0:0:0:0:0.0.0.1" parsed the tail as one hex group.
    const h = encodeProxyV2(
      { address: '::ffff:192.0.2.1', port: 1 },
      { address: '0:0:0:0:0:0:0.0.0.1', port: 2 },
    );
    expect(h.subarray(16, 32)).toEqual(b(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 1));
    const r = parseProxyHeader(h);
    expect(r.ok && r.header.source).toEqual({ address: '0:0:0:0:0:ffff:c000:201', port: 1 });
    expect(r.ok && r.header.destination).toEqual({ address: '0:0:0:0:0:0:0:1', port: 2 });
  });

  it('refuses v2 headers with a bad version, command or short address block, and waits for a partial one', () => {
    const good = encodeProxyV2({ address: '1.1.1.1', port: 1 }, { address: '2.2.2.2', port: 2 });
    const badVer = Buffer.from(good);
    badVer[12] = 0x31;
    expect(parseProxyHeader(badVer).ok).toBe(false);
    const badCmd = Buffer.from(good);
    badCmd[12] = 0x25;
    expect(parseProxyHeader(badCmd).ok).toBe(false);
    const short = Buffer.from(good);
    short.writeUInt16BE(4, 14);
    expect(parseProxyHeader(short)).toMatchObject({ ok: false, needMore: false });
    expect(parseProxyHeader(good.subarray(0, 20))).toEqual({ ok: false, needMore: true });
  });
});
