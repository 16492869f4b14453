import { afterEach, describe, expect, it, vi } from 'vitest';
import { MemoryBackend } from '../backend/memory.js';
import { ManualClock } from '../clock.js';
import { GATEWAY_TTL_MS, GatewayRegistry } from './registry.js';

const backends: MemoryBackend[] = [];
const registries: GatewayRegistry[] = [];
afterEach(async () => {
  // Stopped first: each watches its backend until it deregisters.
  for (const r of registries.splice(0)) await r.deregister();
  for (const b of backends.splice(0)) await b.close();
});

function setup() {
  const clock = new ManualClock();
  const backend = new MemoryBackend({ clock, sweepIntervalMs: 0 });
  backends.push(backend);
  const make = (heartbeatMs = 60_000) => {
    const r = new GatewayRegistry({ backend, clock, log: () => {}, heartbeatMs });
    registries.push(r);
    return r;
  };
  const rec = (name: string) => ({
    name,
    peer_addr: `127.0.0.1:${name.length}`,
    public_addr: 'lb:3080',
    version: '1.0.0',
    started: clock.now().toISOString(),
  });
  return { clock, backend, make, rec };
}

describe('GatewayRegistry', () => {
  it('each gateway sees the others as peers, and a clean stop removes it at once', async () => {
    const { make, rec } = setup();
    const a = make();
    const b = make();
    await a.register(rec('gw-a'));
    await b.register(rec('gw-b'));
    expect((await a.list()).map((g) => g.name)).toEqual(['gw-a', 'gw-b']);
    expect(b.peers.map((g) => g.name)).toEqual(['gw-a']);
    expect((await a.peer('gw-b'))?.peer_addr).toBe('127.0.0.1:4');
    expect(await a.peer('gw-a')).toBeUndefined();
    await b.deregister();
    expect((await a.list()).map((g) => g.name)).toEqual(['gw-a']);
  });

  it('a gateway that stops renewing (killed) drops out after the TTL', async () => {
    const { clock, make, rec } = setup();
    const a = make();
    const dead = make();
    await a.register(rec('gw-a'));
    await dead.register(rec('gw-dead'));
    clock.advance(GATEWAY_TTL_MS - 1);
    expect((await a.list()).map((g) => g.name)).toContain('gw-dead');
    clock.advance(2);
    expect((await a.list()).map((g) => g.name)).not.toContain('gw-dead');
    expect(await a.peer('gw-dead')).toBeUndefined();
  });

  it('deregister leaves a newer gateway of the same name alone', async () => {
    const { make, rec } = setup();
    const old = make();
    const again = make();
    await old.register(rec('gw-a'));
    await again.register(rec('gw-a'));
    await old.deregister();
    expect((await again.list()).map((g) => g.instance)).toEqual([again.self?.instance]);
  });
});

describe('the cached peer list (what /v1/ping answers from)', () => {
  it('follows a gateway that starts, stops, and expires at once, not at the next heartbeat (up to 5 s late)', async () => {
    const { clock, backend, make, rec } = setup();
    // Heartbeats a minute apart (setup): any change seen within this test came through the watch.
    const [a, b, dead] = [make(), make(), make()];
    await a.register(rec('gw-a'));
    await b.register(rec('gw-b'));
    await vi.waitFor(() => expect(a.peers.map((g) => g.name)).toEqual(['gw-b']));
    await b.deregister();
    await vi.waitFor(() => expect(a.peers.map((g) => g.name)).toEqual([]));
    await dead.register(rec('gw-dead'));
    await vi.waitFor(() => expect(a.peers.map((g) => g.name)).toEqual(['gw-dead']));
    // gw-dead stops renewing (killed); a's own record is renewed meanwhile, as its heartbeat would.
    clock.advance(GATEWAY_TTL_MS + 1);
    await backend.put('gateways/gw-a', JSON.stringify(a.self), { ttlMs: GATEWAY_TTL_MS });
    await backend.sweepExpired();
    await vi.waitFor(() => expect(a.peers.map((g) => g.name)).toEqual([]));
  });
});

describe('GatewayRegistry stopping during a heartbeat', () => {
  it('a clean stop while a heartbeat write is in flight leaves no record behind (it was re-created, listed as an unreachable peer for a TTL)', async () => {
    const { backend, make, rec } = setup();
    const a = make();
    const stopping = make(1);
    await a.register(rec('gw-a'));
    await stopping.register(rec('gw-b'));
    // Hold the next heartbeat's write (on etcd a lease grant then a put: two round trips) until the stop has begun.
    const put = backend.put.bind(backend);
    let release: () => void = () => {};
    let written: Promise<unknown> = Promise.resolve();
    const inFlight = new Promise<void>((entered) => {
      backend.put = (...args) => {
        backend.put = put;
        entered();
        const p = new Promise<void>((r) => {
          release = r;
        }).then(() => put(...args));
        written = p;
        return p;
      };
    });
    await inFlight;
    const stopped = stopping.deregister();
    setTimeout(() => release(), 20);
    await Promise.all([stopped, written]);
    expect((await a.list()).map((g) => g.name)).toEqual(['gw-a']);
  });
});
