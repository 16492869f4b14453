import { isIP } from 'node:net';
import { tryIpBytes } from '../util/ip.js';
import { PROXY_V2_SIGNATURE } from './sniff.js';

/** The client address a trusted load balancer reports in a PROXY header. */
export interface ProxyHeader {
  version: 1 | 2;
  /** false for PROXY UNKNOWN / v2 LOCAL: keep the socket's own addresses. */
  proxied: boolean;
  source?: { address: string; port: number };
  destination?: { address: string; port: number };
  /** Bytes the header used; what follows belongs to the client's protocol. */
  length: number;
}

export type ProxyParse =
  | { ok: true; header: ProxyHeader }
  | { ok: false; needMore: true }
  | { ok: false; needMore: false; error: string };

const V1_MAX = 107;

/** Parses a PROXY protocol v1 or v2 header at the start of `buf`. Pure. */
export function parseProxyHeader(buf: Buffer): ProxyParse {
  if (buf.length >= 6 && buf.subarray(0, 6).toString('latin1') === 'PROXY ') return parseV1(buf);
  if (buf.length >= 12 && buf.subarray(0, 12).equals(PROXY_V2_SIGNATURE)) return parseV2(buf);
  return fail('not a PROXY protocol header');
}

function fail(error: string): ProxyParse {
  return { ok: false, needMore: false, error };
}

function parseV1(buf: Buffer): ProxyParse {
  const end = buf.indexOf('\r\n');
  if (end < 0)
    return buf.length >= V1_MAX
      ? fail('PROXY v1 header longer than 107 bytes')
      : { ok: false, needMore: true };
  if (end + 2 > V1_MAX) return fail('PROXY v1 header longer than 107 bytes');
  const parts = buf.subarray(0, end).toString('latin1').split(' ');
  if (parts[1] === 'UNKNOWN') return { ok: true, header: { version: 1, proxied: false, length: end + 2 } };
  if (parts.length !== 6 || (parts[1] !== 'TCP4' && parts[1] !== 'TCP6'))
    return fail('malformed PROXY v1 header');
  const [, fam, src, dst, sport, dport] = parts as [string, string, string, string, string, string];
  const want = fam === 'TCP4' ? 4 : 6;
  if (isIP(src) !== want || isIP(dst) !== want) return fail('bad address in PROXY v1 header');
  const sp = port(sport);
  const dp = port(dport);
  if (sp === undefined || dp === undefined) return fail('bad port in PROXY v1 header');
  return {
    ok: true,
    header: {
      version: 1,
      proxied: true,
      source: { address: src, port: sp },
      destination: { address: dst, port: dp },
      length: end + 2,
    },
  };
}

function port(s: string): number | undefined {
  if (!/^\d{1,5}$/.test(s)) return undefined;
  const n = Number(s);
  return n <= 65535 ? n : undefined;
}

function parseV2(buf: Buffer): ProxyParse {
  if (buf.length < 16) return { ok: false, needMore: true };
  const verCmd = buf[12]!;
  const famProto = buf[13]!;
  const len = buf.readUInt16BE(14);
  if (verCmd >> 4 !== 2) return fail('unsupported PROXY protocol version');
  const cmd = verCmd & 0x0f;
  if (cmd > 1) return fail('unknown PROXY v2 command');
  if (buf.length < 16 + len) return { ok: false, needMore: true };
  const total = 16 + len;
  if (cmd === 0) return { ok: true, header: { version: 2, proxied: false, length: total } };
  const family = famProto >> 4;
  const body = buf.subarray(16, total);
  if (family === 1) {
    if (len < 12) return fail('short PROXY v2 IPv4 address block');
    return {
      ok: true,
      header: {
        version: 2,
        proxied: true,
        source: { address: [...body.subarray(0, 4)].join('.'), port: body.readUInt16BE(8) },
        destination: { address: [...body.subarray(4, 8)].join('.'), port: body.readUInt16BE(10) },
        length: total,
      },
    };
  }
  if (family === 2) {
    if (len < 36) return fail('short PROXY v2 IPv6 address block');
    return {
      ok: true,
      header: {
        version: 2,
        proxied: true,
        source: { address: ipv6(body.subarray(0, 16)), port: body.readUInt16BE(32) },
        destination: { address: ipv6(body.subarray(16, 32)), port: body.readUInt16BE(34) },
        length: total,
      },
    };
  }
  // AF_UNSPEC or AF_UNIX: nothing usable about the client; keep socket addresses.
  return { ok: true, header: { version: 2, proxied: false, length: total } };
}

function ipv6(b: Buffer): string {
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(b.readUInt16BE(i).toString(16));
  return groups.join(':');
}

/** Encodes a v2 header (used by tests and by agents that dial through a load balancer). */
export function encodeProxyV2(
  src: { address: string; port: number },
  dst: { address: string; port: number },
): Buffer {
  const v4 = isIP(src.address) === 4;
  const addrLen = v4 ? 12 : 36;
  const out = Buffer.alloc(16 + addrLen);
  PROXY_V2_SIGNATURE.copy(out, 0);
  out[12] = 0x21;
  out[13] = v4 ? 0x11 : 0x21;
  out.writeUInt16BE(addrLen, 14);
  const bytes = (a: string) => {
    const b = tryIpBytes(a);
    if (!b || b.length !== (v4 ? 4 : 16))
      throw new Error(`PROXY v2: ${a} is not an IPv${v4 ? 4 : 6} address`);
    return b;
  };
  bytes(src.address).copy(out, 16);
  bytes(dst.address).copy(out, v4 ? 20 : 32);
  out.writeUInt16BE(src.port, v4 ? 24 : 48);
  out.writeUInt16BE(dst.port, v4 ? 26 : 50);
  return out;
}
