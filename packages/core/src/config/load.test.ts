import { describe, expect, it } from 'vitest';
import { loadConfig } from './load.js';

describe('loadConfig: listener admission', () => {
  it('fills the defaults: 512 slots, 32 per source (/32, /64), a quarter kept for known sources, 1 min windows', async () => {
    const c = await loadConfig({ env: {}, overrides: { dataDir: '/tmp/x' } });
    expect(c.listener).toMatchObject({
      firstByteTimeoutMs: 10_000,
      sshBannerAfterMs: 2_000,
      handshakeTimeoutMs: 10_000,
      maxConcurrentHandshakes: 512,
      perSourceMaxHandshakes: 32,
      perSourceNetblock: { ipv4: 32, ipv6: 64 },
      knownSources: { reservedHandshakes: 128, ttlMs: 12 * 3600_000, max: 10_000 },
      rejectAudit: { windowMs: 60_000, maxSources: 1024 },
    });
  });

  it('computes the reserve from the percentage, rounding down (a tiny table keeps none)', async () => {
    const small = await loadConfig({
      env: {},
      overrides: { dataDir: '/tmp/x' },
      text: 'listener:\n  max_concurrent_handshakes: 2\n',
    });
    expect(small.listener.knownSources.reservedHandshakes).toBe(0);
    const c = await loadConfig({
      env: {},
      overrides: { dataDir: '/tmp/x' },
      text:
        'listener:\n  max_concurrent_handshakes: 100\n  per_source_netblock: { ipv6: 48 }\n' +
        '  known_sources: { reserved_percent: 40, ttl: 1h }\n  reject_audit: { window: 10s }\n',
    });
    expect(c.listener.knownSources).toMatchObject({ reservedHandshakes: 40, ttlMs: 3600_000 });
    expect(c.listener.perSourceNetblock).toEqual({ ipv4: 32, ipv6: 48 });
    expect(c.listener.rejectAudit.windowMs).toBe(10_000);
  });

  it('names the key of a bad value', async () => {
    const load = (text: string) => loadConfig({ env: {}, overrides: { dataDir: '/tmp/x' }, text });
    await expect(load('listener:\n  reject_audit: { window: 10ms }\n')).rejects.toThrow(
      /window[\s\S]*at least 1s/,
    );
    await expect(load('listener:\n  per_source_netblock: { ipv4: 33 }\n')).rejects.toThrow(/ipv4/);
    await expect(load('listener:\n  known_sources: { reserved_percent: 100 }\n')).rejects.toThrow(
      /reserved_percent/,
    );
    await expect(load('listener:\n  per_source_max: 3\n')).rejects.toThrow(/per_source_max/);
  });
});
