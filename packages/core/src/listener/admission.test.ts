import { describe, expect, it } from 'vitest';
import { Admission, type AdmissionLimits, type HandshakeSlot, KnownSources } from './admission.js';

const BLOCKS = { ipv4: 32, ipv6: 64 };

function setup(limits: Partial<AdmissionLimits> = {}, knownOpts: { ttlMs?: number; max?: number } = {}) {
  let now = 1_000_000;
  const known = new KnownSources(
    { ttlMs: knownOpts.ttlMs ?? 60_000, max: knownOpts.max ?? 100, netblock: BLOCKS },
    () => now,
  );
  const a = new Admission(
    { maxHandshakes: 10, perSourceMaxHandshakes: 3, reservedForKnown: 0, ...limits },
    known,
  );
  const take = (addr: string, attributed = true): HandshakeSlot => {
    const r = a.admit(addr, { attributed });
    if (!r.ok) throw new Error(`refused ${addr}: ${r.refusal.error}`);
    return r.slot;
  };
  const refusal = (addr: string, attributed = true) => {
    const r = a.admit(addr, { attributed });
    if (r.ok) throw new Error(`admitted ${addr}`);
    return r.refusal;
  };
  return {
    a,
    known,
    take,
    refusal,
    advance: (ms: number) => {
      now += ms;
    },
  };
}

describe('Admission: per-source limits', () => {
  it('refuses a source over per_source_max_handshakes and admits others, and again once a slot is back', () => {
    const { a, take, refusal } = setup();
    const held = [take('203.0.113.7'), take('203.0.113.7'), take('203.0.113.7')];
    expect(refusal('203.0.113.7')).toEqual({
      reason: 'too_many_handshakes_from_source',
      error: '3 connections from 203.0.113.7/32 are already handshaking (listener.per_source_max_handshakes)',
    });
    take('203.0.113.8');
    held[0]!.release();
    take('203.0.113.7');
    expect(a.pending).toBe(4);
    expect(a.sources).toBe(2);
  });

  it('counts IPv6 addresses of one /64 as one source, another /64 apart', () => {
    const { take, refusal } = setup();
    take('2001:db8:1:2::1');
    take('2001:db8:1:2:aaaa::2');
    take('2001:db8:1:2:ffff:ffff:ffff:ffff');
    expect(refusal('2001:db8:1:2::99').error).toContain('2001:db8:1:2::/64');
    take('2001:db8:1:3::1');
  });

  it('counts an IPv4-mapped IPv6 address as its IPv4 address (a dual-stack proxy), not as one /64 for all', () => {
    const { take, refusal } = setup();
    take('::ffff:198.51.100.1');
    take('198.51.100.1');
    take('0:0:0:0:0:ffff:c633:6401'); // 198.51.100.1 as a PROXY v2 header spells it
    expect(refusal('198.51.100.1').error).toContain('198.51.100.1/32');
    take('::ffff:198.51.100.2');
  });

  it('honours wider blocks: with ipv4 /24 a whole /24 is one source', () => {
    let now = 0;
    const known = new KnownSources({ ttlMs: 1, max: 1, netblock: { ipv4: 24, ipv6: 48 } }, () => now++);
    const a = new Admission({ maxHandshakes: 10, perSourceMaxHandshakes: 2, reservedForKnown: 0 }, known);
    expect(a.admit('192.0.2.1', { attributed: true }).ok).toBe(true);
    expect(a.admit('192.0.2.200', { attributed: true }).ok).toBe(true);
    const r = a.admit('192.0.2.9', { attributed: true });
    expect(r.ok ? '' : r.refusal.error).toContain('192.0.2.0/24');
    expect(a.admit('192.0.3.1', { attributed: true }).ok).toBe(true);
  });

  it('gives every slot back: release is idempotent and the tables empty out', () => {
    const { a, take } = setup();
    const s = [take('192.0.2.1'), take('192.0.2.1'), take('192.0.2.2')];
    for (const x of s) {
      x.release();
      x.release();
    }
    expect([a.pending, a.unknown, a.unattributed, a.sources]).toEqual([0, 0, 0, 0]);
  });
});

describe('Admission: the global table and the share kept for known sources', () => {
  it('refuses anyone once every slot is taken', () => {
    const { take, refusal } = setup({ maxHandshakes: 4, perSourceMaxHandshakes: 4 });
    for (let i = 1; i <= 4; i++) take(`192.0.2.${i}`);
    expect(refusal('192.0.2.99')).toEqual({
      reason: 'too_many_handshakes',
      error: 'all 4 handshake slots are taken (listener.max_concurrent_handshakes)',
    });
  });

  it('keeps reservedForKnown slots that a flood from new sources cannot take', () => {
    const { a, known, take, refusal } = setup({
      maxHandshakes: 10,
      perSourceMaxHandshakes: 10,
      reservedForKnown: 4,
    });
    for (let i = 0; i < 6; i++) take(`198.51.100.${i}`);
    // Six unknown sources hold the open share: a seventh new source waits.
    expect(refusal('198.51.100.200').reason).toBe('too_many_handshakes');
    expect(refusal('198.51.100.200').error).toMatch(
      /6 handshake slots open to any address are taken; 4 are kept/,
    );
    known.vouch('192.0.2.10');
    for (let i = 0; i < 4; i++) expect(take('192.0.2.10').known).toBe(true);
    expect(a.unknown).toBe(6);
    // The reserve is used up: now the table is full for everyone.
    expect(refusal('192.0.2.10').error).toContain('all 10 handshake slots are taken');
  });

  it('lets known sources use the open share too, and holds them to the per-source limit', () => {
    const { known, take, refusal } = setup({
      maxHandshakes: 10,
      perSourceMaxHandshakes: 3,
      reservedForKnown: 4,
    });
    known.vouch('192.0.2.10');
    for (let i = 0; i < 3; i++) take('192.0.2.10');
    expect(refusal('192.0.2.10').reason).toBe('too_many_handshakes_from_source');
  });

  it('forgets a known source after its ttl (injected clock) and the least recently seen past max', () => {
    const { known, advance } = setup({}, { ttlMs: 1_000, max: 2 });
    known.vouch('192.0.2.1');
    advance(999);
    expect(known.has('192.0.2.1/32')).toBe(true);
    advance(1);
    expect(known.has('192.0.2.1/32')).toBe(false);
    known.vouch('192.0.2.1');
    known.vouch('192.0.2.2');
    known.vouch('192.0.2.1'); // seen again: now the most recent
    known.vouch('192.0.2.3');
    expect(known.size).toBe(2);
    expect(known.has('192.0.2.2/32')).toBe(false);
    expect(known.has('192.0.2.1/32')).toBe(true);
    expect(known.has('192.0.2.3/32')).toBe(true);
  });

  it('rejects a reserve as large as the table (nothing would be open to new sources)', () => {
    const known = new KnownSources({ ttlMs: 1, max: 1, netblock: BLOCKS }, () => 0);
    expect(
      () => new Admission({ maxHandshakes: 4, perSourceMaxHandshakes: 1, reservedForKnown: 4 }, known),
    ).toThrow(RangeError);
  });
});

describe('Admission: trusted proxies', () => {
  it('never counts the proxy as a source: its connections count for the client the header names', () => {
    const { a, take } = setup({ maxHandshakes: 20, perSourceMaxHandshakes: 2 });
    // Ten connections from the load balancer before their PROXY headers: not refused as one source.
    const slots = Array.from({ length: 10 }, () => take('10.0.0.5', false));
    expect(a.unattributed).toBe(10);
    expect(slots[0]!.attribute('203.0.113.1')).toBeUndefined();
    expect(slots[1]!.attribute('203.0.113.1')).toBeUndefined();
    const over = slots[2]!.attribute('203.0.113.1');
    expect(over?.reason).toBe('too_many_handshakes_from_source');
    // The refused slot is given back; the others now count for their clients.
    expect(a.pending).toBe(9);
    expect(slots[3]!.attribute('203.0.113.2')).toBeUndefined();
    expect(slots[3]!.source).toBe('203.0.113.2/32');
    expect(a.unattributed).toBe(6);
    // Attributing twice, or after release, changes nothing.
    expect(slots[0]!.attribute('203.0.113.9')).toBeUndefined();
    expect(slots[0]!.source).toBe('203.0.113.1/32');
    slots[4]!.release();
    expect(slots[4]!.attribute('203.0.113.9')).toBeUndefined();
    for (const s of slots) s.release();
    expect([a.pending, a.unknown, a.unattributed, a.sources]).toEqual([0, 0, 0, 0]);
  });

  it('holds unattributed connections to the open share, so they cannot take the known reserve', () => {
    const { known, take, refusal } = setup({
      maxHandshakes: 6,
      perSourceMaxHandshakes: 6,
      reservedForKnown: 2,
    });
    for (let i = 0; i < 4; i++) take('10.0.0.5', false);
    expect(refusal('10.0.0.5', false).error).toMatch(/4 connections from trusted proxies are waiting/);
    known.vouch('192.0.2.10');
    take('192.0.2.10');
    take('192.0.2.10');
  });

  it('a known client behind the proxy keeps the reserve while new sources fill the open share', () => {
    const { known, take } = setup({ maxHandshakes: 6, perSourceMaxHandshakes: 6, reservedForKnown: 2 });
    for (let i = 0; i < 4; i++) take(`198.51.100.${i}`);
    known.vouch('192.0.2.10');
    const viaProxy = take('10.0.0.5', false);
    expect(viaProxy.attribute('192.0.2.10')).toBeUndefined();
    expect(viaProxy.known).toBe(true);
    const stranger = take('10.0.0.5', false);
    expect(stranger.attribute('198.51.100.77')?.reason).toBe('too_many_handshakes');
  });

  it('holds a connection without an IP address (a Unix socket handed to handle()) to the unattributed share', () => {
    const { a, take } = setup({ maxHandshakes: 20, perSourceMaxHandshakes: 2 });
    const slots = Array.from({ length: 5 }, () => take(''));
    expect(a.unattributed).toBe(5);
    expect(slots[0]!.attribute('')).toBeUndefined();
    expect(slots[0]!.source).toBeUndefined();
  });
});
