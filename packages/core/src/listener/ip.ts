import { SocketAddress } from 'node:net';
import { tryIpBytes } from '../util/ip.js';

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
  let b = tryIpBytes(addr);
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
