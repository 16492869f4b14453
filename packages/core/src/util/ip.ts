import { isIP } from 'node:net';
import { GatehouseError } from '../errors.js';

/**
 * The network-order bytes of an IP address: 4 for IPv4, 16 for IPv6 (any
 * textual form: `::` compression, a dotted IPv4 tail such as
 * `::ffff:192.0.2.1`, a `%zone` suffix, which is dropped).
 * Throws GH_ERR_VALIDATION for anything that is not an IP address.
 */
export function ipBytes(ip: string): Buffer {
  const fam = isIP(ip);
  if (fam === 4) return Buffer.from(ip.split('.').map(Number));
  if (fam !== 6) throw new GatehouseError('GH_ERR_VALIDATION', `"${ip}" is not an IP address`);
  let text = ip.split('%')[0] as string;
  let tail: number[] = [];
  const m = /^(.*:)(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (m) {
    const [a, b, c, d] = m.slice(2).map(Number) as [number, number, number, number];
    tail = [(a << 8) | b, (c << 8) | d];
    text = m[1] as string;
    if (!text.endsWith('::')) text = text.slice(0, -1);
  }
  const hex = (part: string) => (part === '' ? [] : part.split(':').map((g) => Number.parseInt(g, 16)));
  const [head = '', rest] = text.split('::');
  const h = hex(head);
  const words =
    rest === undefined
      ? [...h, ...tail]
      : [
          ...h,
          ...new Array<number>(8 - h.length - hex(rest).length - tail.length).fill(0),
          ...hex(rest),
          ...tail,
        ];
  const out = Buffer.alloc(16);
  for (const [i, w] of words.entries()) out.writeUInt16BE(w, i * 2);
  return out;
}

/** `ipBytes` for text that may not be an address at all: undefined then. */
export function tryIpBytes(ip: string): Buffer | undefined {
  return isIP(ip.split('%')[0] ?? '') === 0 ? undefined : ipBytes(ip);
}
