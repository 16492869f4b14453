import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { register } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { createGateway, denialReason, type Gateway } from '../src/index.js';
import { waitFor } from './helpers.js';

const gateways: Gateway[] = [];
const dirs: string[] = [];
afterEach(async () => {
  for (const g of gateways.splice(0)) await g.close();
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

async function gateway(values: Record<string, unknown>): Promise<Gateway> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'gh-metrics-'));
  dirs.push(dir);
  const gw = await createGateway({ dataDir: dir, secondFactor: 'off', env: {}, values });
  gateways.push(gw);
  return gw;
}

describe('gateway metrics', () => {
  it('two gateways in one process keep separate registries, and nothing lands in the global one', async () => {
    const a = await gateway({ metrics: {} });
    const b = await gateway({ metrics: {} });
    for (let i = 0; i < 3; i++) {
      await a.audit.emit({
        type: 'user.login',
        success: false,
        method: 'password',
        reason: 'bad_password',
        error: 'wrong password',
        user: 'alice',
      });
    }
    await a.audit.emit({
      type: 'access.denied',
      user: 'alice',
      resource_kind: 'node',
      resource: 'web1',
      reason: 'user alice is locked: incident 42',
    });
    const text = (gw: Gateway) => gw.metrics?.registry.metrics() ?? Promise.resolve('');
    await waitFor(
      async () =>
        /gatehouse_logins_total\{result="failure",method="password"\} 3/.test(await text(a)) || undefined,
      'three failed logins counted on a',
    );
    expect(await text(a)).toMatch(/^gatehouse_denials_total\{kind="node",reason="locked"\} 1$/m);
    expect(await text(b)).not.toMatch(/gatehouse_logins_total\{/);
    expect(await text(b)).toMatch(/^# TYPE gatehouse_logins_total counter$/m);
    expect((await register.getMetricsAsJSON()).filter((m) => m.name.startsWith('gatehouse_'))).toEqual([]);
  });

  it('is off unless configured', async () => {
    const gw = await gateway({});
    expect(gw.metrics).toBeUndefined();
  });

  it('buckets denial sentences into a few reasons', () => {
    expect(denialReason('the audit log cannot write events')).toBe('audit_unavailable');
    expect(denialReason('certificate expired at 2026-01-01')).toBe('expired');
    expect(denialReason('no role allows login root on node web1')).toBe('rbac');
  });
});
