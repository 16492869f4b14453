import { isIPv4, isIPv6, SocketAddress } from 'node:net';

/**
 * The 4 (IPv4) or 16 (IPv6) bytes of an address in text form; undefined for
 * anything else. An IPv6 zone (`fe80::1%eth0`) is ignored.
 */
export function ipBytes(addr: string): Buffer | undefined {
  if (isIPv4(addr)) return Buffer.from(addr.split('.').map(Number));
  const bare = addr.split('%')[0] ?? '';
  if (!isIPv6(bare)) return undefined;
  // A dotted IPv4 tail (::ffff:1.2.3.4) is two more groups.
  let text = bare;
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4) {
    const b = Buffer.from(v4[1]!.split('.').map(Number));
    text = `${text.slice(0, -v4[1]!.length)}${b.readUInt16BE(0).toString(16)}:${b.readUInt16BE(2).toString(16)}`;
  }
  const [head = '', tail] = text.split('::');
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  const out = Buffer.alloc(16);
  for (const [i, g] of groups.entries()) out.writeUInt16BE(Number.parseInt(g, 16), i * 2);
  return out;
}

const V4_MAPPED_PREFIX = Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]);

/**
 * The network block an address belongs to, as text (`203.0.113.7/32`,
 * `2001:db8:1:2::/64`): the unit per-source limits count in, like OpenSSH's
 * PerSourceNetBlockSize. IPv4-mapped IPv6 addresses (what a dual-stack load
 * balancer reports for IPv4 clients) count as the IPv4 address, or every
 * IPv4 client behind it would share one /64. Text that is no IP address is
 * its own block.
 */
export function netblock(addr: string, bits: { ipv4: number; ipv6: number }): string {
  let b = ipBytes(addr);
  if (!b) return addr;
  if (b.length === 16 && b.subarray(0, 12).equals(V4_MAPPED_PREFIX)) b = b.subarray(12);
  const prefix = b.length === 4 ? bits.ipv4 : bits.ipv6;
  const masked = Buffer.from(b);
  for (let i = 0; i < masked.length; i++) {
    const keep = Math.max(0, Math.min(8, prefix - i * 8));
    masked[i] = masked[i]! & ((0xff << (8 - keep)) & 0xff);
  }
  if (masked.length === 4) return `${[...masked].join('.')}/${prefix}`;
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(masked.readUInt16BE(i).toString(16));
  // SocketAddress writes the canonical short form (RFC 5952), so one block has one key.
  return `${new SocketAddress({ address: groups.join(':'), family: 'ipv6' }).address}/${prefix}`;
}
