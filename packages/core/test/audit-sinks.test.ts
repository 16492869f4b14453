import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Receiver, startReceiver } from '../../audit/test/receivers.js';
import { createGateway, type Gateway, type Identity, isGatehouseError, loadConfig } from '../src/index.js';

async function until(what: string, cond: () => boolean | Promise<boolean>, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('gateway: audit export sinks from the config file', () => {
  let dir: string;
  let hook: Receiver;
  let gw: Gateway;
  let up = false;
  const received: { type: string; id: string }[] = [];
  const alice: Identity = {
    user: 'alice',
    roles: ['access'],
    traits: { logins: ['root'] },
    expires: new Date(Date.now() + 3600_000),
  };
  const target = { kind: 'node' as const, name: 'web1', labels: {}, login: 'root' };

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'gh-gw-sinks-'));
    hook = await startReceiver((r) => {
      if (!up) return { status: 503, body: 'down for maintenance' };
      received.push(...(JSON.parse(r.body.toString()) as { events: { type: string; id: string }[] }).events);
      return { status: 200 };
    });
    await writeFile(path.join(dir, 'hook.key'), 'webhook-secret\n', { mode: 0o600 });
    const config = await loadConfig({
      env: {},
      overrides: { dataDir: path.join(dir, 'data') },
      text: [
        'auth: { second_factor: off }',
        'audit:',
        '  sinks:',
        '    - type: webhook',
        '      name: siem',
        `      url: ${hook.url}/events`,
        `      secret_file: ${path.join(dir, 'hook.key')}`,
        '      max_spool_bytes: 16384',
        '',
      ].join('\n'),
    });
    gw = await createGateway({ config, env: {} });
    await gw.ready();
    await gw.admin.createUser({
      name: 'alice',
      roles: ['access'],
      traits: { logins: ['root'] },
      password: 'x'.repeat(16),
    });
  });

  afterAll(async () => {
    await gw?.close();
    await hook?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('a full sink (on_full: block) refuses new sessions saying so, and they resume once the receiver drains it', async () => {
    // Access works while the sink has room, even though its receiver is down.
    await expect(gw.authorizer.authorize(alice, target)).resolves.toMatchObject({
      identity: { user: 'alice' },
    });
    while (gw.audit.available()) await gw.audit.emit({ type: 'user.logout', user: 'filler' });
    const status = gw.audit.sinkStatus().find((s) => s.name === 'siem');
    expect(status).toMatchObject({ type: 'webhook', state: 'full', on_full: 'block' });
    expect(status?.error).toMatch(/503/);
    const err = await gw.authorizer.authorize(alice, target).catch((e: unknown) => e);
    expect(isGatehouseError(err) && err.code).toBe('GH_ERR_AUDIT_UNAVAILABLE');
    expect((err as Error).message).toBe("the audit sink 'siem' is full, so new sessions are refused");
    expect((err as { hint?: string }).hint).toMatch(/receiver of audit sink 'siem'/);
    up = true;
    await until('the sink to drain', () => gw.audit.available());
    await expect(gw.authorizer.authorize(alice, target)).resolves.toMatchObject({
      identity: { user: 'alice' },
    });
    // The receiver got the refusal and the alarms too, and the local record has them.
    await until('the refusal at the receiver', () => received.some((e) => e.type === 'access.denied'));
    const page = await gw.audit.search({
      types: ['audit.sink.full', 'audit.sink.recovered', 'access.denied'],
    });
    expect(page.events.map((e) => e.type).sort()).toEqual([
      'access.denied',
      'audit.sink.full',
      'audit.sink.recovered',
    ]);
  });
});
