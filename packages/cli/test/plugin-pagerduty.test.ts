import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { AccessRequestView } from '@gatehouse/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../../core/test/helpers.js';
import { type Daemon, run, startPlugin, startRequestCluster } from './harness.js';

/**
 * `gatehouse plugin run pagerduty` (the BUILT binary) against a fixture of
 * the three PagerDuty REST API v2 endpoints it calls, with the shapes of
 * PagerDuty's API reference ("List services", "List users", "List all of the
 * on-calls"):
 *
 *   every call: Authorization: Token token=<REST API key>,
 *               Accept: application/vnd.pagerduty+json;version=2
 *   GET /services?query=NAME
 *     -> 200 {"services": [{"id": "PSVC001", "type": "service", "name": ..., "summary": ...,
 *             "status": "active", "escalation_policy": {"id": "PEP0001",
 *             "type": "escalation_policy_reference", "summary": ...}}],
 *             "limit": 25, "offset": 0, "more": false, "total": null}
 *   GET /users?query=EMAIL
 *     -> 200 {"users": [{"id": "PUSR001", "type": "user", "name": ..., "email": ...,
 *             "summary": ...}], "limit": 25, "offset": 0, "more": false, "total": null}
 *   GET /oncalls?escalation_policy_ids[]=ID&user_ids[]=ID
 *     -> 200 {"oncalls": [{"escalation_policy": {"id", "type": "escalation_policy_reference"},
 *             "escalation_level": 1, "schedule": {"id", "type": "schedule_reference"} | null,
 *             "user": {"id", "type": "user_reference", "summary"}, "start": ISO, "end": ISO}],
 *             "limit": 25, "offset": 0, "more": false, "total": null}
 *   a wrong token: 401 {"error": {"message": "Unauthorized", "code": 2006}}
 *
 * The fixture filters by query exactly as documented (query: substring of the
 * name / email; the on-call filters: any of the listed ids).
 */
const TOKEN = 'pd-rest-api-key-0123456789';

const SERVICES = [
  { id: 'PSVC001', name: 'Checkout API', ep: 'PEP0001' },
  { id: 'PSVC002', name: 'Checkout API (staging)', ep: 'PEP0002' },
  { id: 'PSVC003', name: 'Billing', ep: 'PEP0003' },
];
const USERS = [
  { id: 'PUSR001', name: 'Alice', email: 'alice@example.com' },
  { id: 'PUSR002', name: 'Carol', email: 'carol@example.com' },
];
/** Alice is on call for Checkout API; Carol only for a service not named in the config. */
const ONCALLS = [
  { user: 'PUSR001', ep: 'PEP0001', schedule: 'PSCH001' },
  { user: 'PUSR002', ep: 'PEP0003', schedule: 'PSCH003' },
  { user: 'PUSR002', ep: 'PEP0002', schedule: null },
];

describe('the PagerDuty plugin against a PagerDuty REST API fixture', () => {
  let daemon: Daemon;
  let root: string;
  let pd: http.Server;
  let down = false;
  const calls: { path: string; query: URLSearchParams; auth: string | undefined; status: number }[] = [];
  let plugin: { port: number; stop(): Promise<void> } | undefined;
  const home = (who: string) => ({ GATEHOUSE_HOME: join(root, `home-${who}`) });
  const ok = async (p: ReturnType<typeof run>) => {
    const r = await p;
    expect(r.code, r.stderr).toBe(0);
    return r.stdout;
  };
  const admin = (args: string[]) => run(['--config', daemon.configFile, ...args], { env: home('admin') });
  const show = async (id: string) =>
    JSON.parse(await ok(admin(['request', 'show', id, '--json']))) as AccessRequestView;
  const create = async (who: string, reason: string) =>
    JSON.parse(
      await ok(
        run(['request', 'create', '--roles', 'prod-db', '--reason', reason, '--json'], { env: home(who) }),
      ),
    ) as AccessRequestView;
  const stateFile = () => join(root, 'pd-state.json');
  const told = (id: string) => {
    try {
      return (JSON.parse(readFileSync(stateFile(), 'utf8')) as { requests: Record<string, { ref?: string }> })
        .requests[id]?.ref;
    } catch {
      return undefined; // not written yet
    }
  };

  beforeAll(async () => {
    const ref = (id: string, type: string) => ({
      id,
      type,
      summary: id,
      self: `https://api.pagerduty.com/x/${id}`,
    });
    const page = { limit: 25, offset: 0, more: false, total: null };
    pd = http.createServer((req, res) => {
      const u = new URL(req.url ?? '/', 'http://pd');
      const send = (status: number, o: object) => {
        calls.push({ path: u.pathname, query: u.searchParams, auth: req.headers.authorization, status });
        res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(o));
      };
      if (down) return send(503, { error: { message: 'Service Unavailable' } });
      if (req.headers.authorization !== `Token token=${TOKEN}`)
        return send(401, { error: { message: 'Unauthorized', code: 2006 } });
      if (req.method !== 'GET') return send(405, { error: { message: 'Method Not Allowed' } });
      const q = u.searchParams.get('query') ?? '';
      if (u.pathname === '/services') {
        return send(200, {
          services: SERVICES.filter((s) => s.name.toLowerCase().includes(q.toLowerCase())).map((s) => ({
            id: s.id,
            type: 'service',
            name: s.name,
            summary: s.name,
            status: 'active',
            escalation_policy: ref(s.ep, 'escalation_policy_reference'),
          })),
          ...page,
        });
      }
      if (u.pathname === '/users') {
        return send(200, {
          users: USERS.filter((x) => x.email.includes(q) || x.name.includes(q)).map((x) => ({
            ...x,
            type: 'user',
            summary: x.name,
          })),
          ...page,
        });
      }
      if (u.pathname === '/oncalls') {
        const eps = u.searchParams.getAll('escalation_policy_ids[]');
        const users = u.searchParams.getAll('user_ids[]');
        return send(200, {
          oncalls: ONCALLS.filter(
            (o) => (eps.length === 0 || eps.includes(o.ep)) && (users.length === 0 || users.includes(o.user)),
          ).map((o) => ({
            escalation_policy: ref(o.ep, 'escalation_policy_reference'),
            escalation_level: 1,
            schedule: o.schedule ? ref(o.schedule, 'schedule_reference') : null,
            user: ref(o.user, 'user_reference'),
            start: '2026-12-07T00:00:00Z',
            end: '2026-12-08T00:00:00Z',
          })),
          ...page,
        });
      }
      send(404, { error: { message: 'Not Found', code: 2100 } });
    });
    await new Promise<void>((r) => pd.listen(0, '127.0.0.1', r));

    daemon = await startRequestCluster('pagerduty', [
      ['alice', 'requester'],
      ['carol', 'requester'],
      ['pdbot', 'plugin-bot'],
    ]);
    root = daemon.root;
    writeFileSync(join(root, 'pd.token'), `${TOKEN}\n`);
    writeFileSync(
      join(root, 'pd.yaml'),
      [
        'home: ./home-pdbot',
        'state_file: ./pd-state.json',
        'retry_interval: 200ms',
        'pagerduty:',
        `  api_url: http://127.0.0.1:${(pd.address() as AddressInfo).port}`,
        '  token_file: ./pd.token',
        '  services: [Checkout API]',
        '  emails: { alice: alice@example.com, carol: carol@example.com }',
      ].join('\n'),
    );
  }, 120_000);

  afterAll(async () => {
    await plugin?.stop();
    if (daemon) expect(await daemon.stop(), daemon.err()).toBe(0);
    pd?.closeAllConnections();
    await new Promise((r) => pd?.close(r));
    if (root) rmSync(root, { recursive: true, force: true });
  });

  it('approves the request of a requester on call for a named service, as the bot with the service in the reason', async () => {
    plugin = await startPlugin('pagerduty', join(root, 'pd.yaml'));
    const r = await create('alice', 'INC-21');
    const approved = await waitFor(
      async () => {
        const s = await show(r.id);
        return s.state === 'approved' ? s : undefined;
      },
      'the on-call request approved',
      30_000,
    );
    expect(approved.reviews).toMatchObject([
      {
        author: 'pdbot',
        verdict: 'approve',
        reason: 'alice is on call for PagerDuty service "Checkout API"',
      },
    ]);
    expect(told(r.id)).toBe('approved:Checkout API');
    // Every call carried the token, and the on-call query named only Checkout API's policy and alice.
    expect(calls.every((c) => c.auth === `Token token=${TOKEN}` && c.status === 200)).toBe(true);
    const oncall = calls.find((c) => c.path === '/oncalls')!;
    expect(oncall.query.getAll('escalation_policy_ids[]')).toEqual(['PEP0001']);
    expect(oncall.query.getAll('user_ids[]')).toEqual(['PUSR001']);
  }, 120_000);

  it('leaves the request of a requester not on call for a named service pending', async () => {
    // Carol is on call, but for Billing and for "Checkout API (staging)" (which `query` also
    // matches): neither is the named service.
    const r = await create('carol', 'INC-22');
    await waitFor(() => told(r.id), 'the plugin to check the request', 30_000);
    expect(told(r.id)).toBe('not-on-call');
    const s = await show(r.id);
    expect(s.state).toBe('pending');
    expect(s.reviews).toEqual([]);
  }, 120_000);

  it('while PagerDuty (and the plugin) are down requests still work; it approves once PagerDuty is back', async () => {
    await plugin!.stop();
    down = true;
    const r = await create('alice', 'INC-23');
    expect((await show(r.id)).state).toBe('pending');
    plugin = await startPlugin('pagerduty', join(root, 'pd.yaml'));
    const failedBefore = calls.filter((c) => c.status === 503).length;
    await waitFor(
      () => calls.filter((c) => c.status === 503).length > failedBefore + 1,
      'failed tries',
      30_000,
    );
    expect((await show(r.id)).state).toBe('pending');
    expect(told(r.id)).toBeUndefined();
    down = false;
    const approved = await waitFor(
      async () => {
        const s = await show(r.id);
        return s.state === 'approved' ? s : undefined;
      },
      'the request approved after PagerDuty came back',
      30_000,
    );
    expect(approved.reviews).toHaveLength(1);
    expect(approved.reviews[0]).toMatchObject({ author: 'pdbot', verdict: 'approve' });
  }, 120_000);
});
