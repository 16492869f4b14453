/**
 * Session policy as the helper takes it. No I/O: parsing and encoding only.
 * The policy itself comes from core (the session's grant); this module only
 * turns it into rules the kernel programs can match.
 */

/** What a session records and which networks it may reach (core's EffectiveOptions, per session). */
export interface SessionPolicy {
  /** Enhanced recording: `command` (execve, exit), `disk` (openat), `network` (connect/sendmsg). */
  record: readonly ('command' | 'disk' | 'network')[];
  /** CIDRs (IPv4 or IPv6) the session may not reach. Deny wins over allow. */
  deny: readonly string[];
  /** When non-empty, the only CIDRs the session may reach (both families: an IPv4-only list refuses all IPv6). */
  allow: readonly string[];
}

export interface Cidr {
  family: 4 | 6;
  /** Network address bytes, host bits cleared. */
  bytes: Buffer;
  prefix: number;
  /** Canonical text, e.g. 10.0.0.0/8. */
  text: string;
}

export class CidrError extends Error {
  readonly code = 'GH_ERR_BPF_POLICY';
}

function parseV4(s: string): Buffer | undefined {
  const parts = s.split('.');
  if (parts.length !== 4) return undefined;
  const out = Buffer.alloc(4);
  for (let i = 0; i < 4; i++) {
    const p = parts[i] as string;
    if (!/^\d{1,3}$/.test(p) || Number(p) > 255) return undefined;
    out[i] = Number(p);
  }
  return out;
}

function parseV6(s: string): Buffer | undefined {
  if (!/^[0-9a-fA-F:.]+$/.test(s)) return undefined;
  let head = s;
  let tail4: Buffer | undefined;
  const lastColon = s.lastIndexOf(':');
  if (s.includes('.')) {
    tail4 = parseV4(s.slice(lastColon + 1));
    if (!tail4) return undefined;
    head = `${s.slice(0, lastColon + 1)}0:0`;
  }
  const halves = head.split('::');
  if (halves.length > 2) return undefined;
  const groups = (h: string) => (h === '' ? [] : h.split(':'));
  const left = groups(halves[0] as string);
  const right = halves.length === 2 ? groups(halves[1] as string) : [];
  const fill = 8 - left.length - right.length;
  if (halves.length === 1 ? left.length !== 8 : fill < 1) return undefined;
  const all = [...left, ...Array<string>(halves.length === 2 ? fill : 0).fill('0'), ...right];
  const out = Buffer.alloc(16);
  for (let i = 0; i < 8; i++) {
    const g = all[i] as string;
    if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return undefined;
    out.writeUInt16BE(Number.parseInt(g, 16), i * 2);
  }
  if (tail4) tail4.copy(out, 12);
  return out;
}

function mask(bytes: Buffer, prefix: number): Buffer {
  const out = Buffer.from(bytes);
  for (let bit = prefix; bit < out.length * 8; bit++) {
    const i = bit >> 3;
    out[i] = (out[i] as number) & ~(0x80 >> (bit & 7));
  }
  return out;
}

export function formatAddress(family: 4 | 6, bytes: Buffer): string {
  if (family === 4) return [...bytes].join('.');
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(bytes.readUInt16BE(i).toString(16));
  // Compress the longest run of zero groups (RFC 5952).
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== '0') {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === '0') j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  if (best < 0) return groups.join(':');
  return `${groups.slice(0, best).join(':')}::${groups.slice(best + bestLen).join(':')}`;
}

/** Parses "10.0.0.0/8", "2001:db8::/32" or a bare address (a /32 or /128). */
export function parseCidr(input: string): Cidr {
  const [addr = '', len, extra] = input.trim().split('/');
  if (extra !== undefined) throw new CidrError(`"${input}" is not a CIDR (one "/" at most)`);
  const v4 = parseV4(addr);
  const bytes = v4 ?? parseV6(addr);
  if (!bytes) throw new CidrError(`"${input}" is not an IPv4 or IPv6 address or CIDR`);
  const family = v4 ? 4 : 6;
  const max = family === 4 ? 32 : 128;
  if (len !== undefined && !/^\d{1,3}$/.test(len)) throw new CidrError(`"${input}": bad prefix length`);
  const prefix = len === undefined ? max : Number(len);
  if (prefix > max) throw new CidrError(`"${input}": an IPv${family} prefix is at most /${max}`);
  const net = mask(bytes, prefix);
  return { family, bytes: net, prefix, text: `${formatAddress(family, net)}/${prefix}` };
}

/** The CIDR a kernel verdict names: the destination masked to the rule's prefix. */
export function ruleText(family: 4 | 6, addr: string, prefix: number): string {
  const c = parseCidr(addr);
  if (c.family !== family) return `${addr}/${prefix}`;
  return `${formatAddress(family, mask(c.bytes, prefix))}/${prefix}`;
}

export const RECORD_FLAGS = { command: 1, disk: 2, network: 4 } as const;
export const ALLOW_ONLY_FLAG = 8;

/** The helper's session flags and rule lines for a policy; throws CidrError on a bad CIDR. */
export function encodePolicy(p: SessionPolicy): {
  flags: number;
  rules: { kind: 'd' | 'a'; family: 4 | 6; hex: string; prefix: number }[];
} {
  let flags = 0;
  for (const r of p.record) flags |= RECORD_FLAGS[r];
  if (p.allow.length > 0) flags |= ALLOW_ONLY_FLAG;
  const rules = [
    ...p.deny.map((c) => ({ kind: 'd' as const, c: parseCidr(c) })),
    ...p.allow.map((c) => ({ kind: 'a' as const, c: parseCidr(c) })),
  ].map(({ kind, c }) => ({ kind, family: c.family, hex: c.bytes.toString('hex'), prefix: c.prefix }));
  return { flags, rules };
}

/** Whether a policy needs the kernel at all. */
export function policyNeedsBpf(p: SessionPolicy): boolean {
  return p.record.length > 0 || p.deny.length > 0 || p.allow.length > 0;
}
