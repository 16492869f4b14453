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
 * the PagerDuty REST API v2 endpoints it calls, with the shapes of
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
 *   POST /incidents  (From: EMAIL of a PagerDuty user)
 *     {"incident": {"type": "incident", "title": ..., "service": {"id", "type": "service_reference"},
 *      "urgency": "high"|"low", "incident_key": ..., "body": {"type": "incident_body", "details": ...}}}
 *     -> 201 {"incident": {"id", "type": "incident", "summary", "self", "html_url",
 *             "incident_number", "title", "status": "triggered", "incident_key", "urgency",
 *             "service": {"id", "type": "service_reference", ...}, "created_at"}}
 *     an open incident with the same incident_key on the service, no or an unknown From:
 *     400 {"error": {"message": "Invalid Input Provided", "code": 2001, "errors": [...]}}
 *   POST /incidents/{id}/notes  (From: EMAIL)  {"note": {"content": ...}}
 *     -> 201 {"note": {"id", "user": {"id", "type": "user_reference", ...},
 *             "channel": {"summary"}, "content", "created_at"}}
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
/** The PagerDuty user the plugin posts as (the From header), and what it posted. */
const BOT_EMAIL = 'gatehouse-bot@example.com';
const INCIDENTS: {
  id: string;
  key: string;
  service: string;
  title: unknown;
  urgency: string;
  details: string;
  from: string;
}[] = [
  {
    id: 'POPEN01',
    key: 'outage-7',
    service: 'PSVC003',
    title: 'Billing outage',
    urgency: 'high',
    details: '',
    from: 'x',
  },
];
const notes: { id: string; incident: string; content: string; from: string }[] = [];

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
    const handle = (req: http.IncomingMessage, res: http.ServerResponse, body: string) => {
      const u = new URL(req.url ?? '/', 'http://pd');
      const send = (status: number, o: object) => {
        calls.push({ path: u.pathname, query: u.searchParams, auth: req.headers.authorization, status });
        res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(o));
      };
      if (down) return send(503, { error: { message: 'Service Unavailable' } });
      if (req.headers.authorization !== `Token token=${TOKEN}`)
        return send(401, { error: { message: 'Unauthorized', code: 2006 } });
      if (req.method === 'POST') {
        const from = String(req.headers.from ?? '');
        const invalid = (why: string) =>
          send(400, { error: { message: 'Invalid Input Provided', code: 2001, errors: [why] } });
        if (!USERS.some((x) => x.email === from) && from !== BOT_EMAIL)
          return invalid('Requester User Not Found');
        const parsed = JSON.parse(body) as Record<string, Record<string, unknown> | undefined>;
        const note = /^\/incidents\/([^/]+)\/notes$/.exec(u.pathname);
        if (note) {
          const incident = INCIDENTS.find((i) => i.id === note[1]);
          if (!incident) return send(404, { error: { message: 'Not Found', code: 2100 } });
          const content = parsed.note?.content;
          if (typeof content !== 'string' || !content) return invalid('Note content is required');
          const n = {
            id: `PNOTE${String(notes.length + 1).padStart(3, '0')}`,
            incident: incident.id,
            content,
            from,
          };
          notes.push(n);
          return send(201, {
            note: {
              id: n.id,
              user: ref(from === BOT_EMAIL ? 'PUSRBOT' : 'PUSR001', 'user_reference'),
              channel: { summary: 'The PagerDuty website or APIs' },
              content,
              created_at: '2026-12-07T10:00:00Z',
            },
          });
        }
        if (u.pathname === '/incidents') {
          const i = parsed.incident ?? {};
          const svc = SERVICES.find((x) => x.id === (i.service as { id?: string } | undefined)?.id);
          if (i.type !== 'incident' || typeof i.title !== 'string' || !svc)
            return invalid('Incident type, title and service are required');
          if ((i.service as { type?: string }).type !== 'service_reference')
            return invalid('Service type must be service_reference');
          if (INCIDENTS.some((x) => x.key === i.incident_key && x.service === svc.id))
            return invalid('Open incident with matching dedup key already exists on this service');
          const n = INCIDENTS.length + 1;
          const created = {
            id: `PINC${String(n).padStart(3, '0')}`,
            key: String(i.incident_key ?? ''),
            service: svc.id,
            title: i.title,
            urgency: String(i.urgency ?? 'high'),
            details: String((i.body as { details?: string } | undefined)?.details ?? ''),
            from,
          };
          INCIDENTS.push(created);
          return send(201, {
            incident: {
              id: created.id,
              type: 'incident',
              summary: `[#${n}] ${created.title}`,
              self: `https://api.pagerduty.com/incidents/${created.id}`,
              html_url: `https://example.pagerduty.com/incidents/${created.id}`,
              incident_number: n,
              title: created.title,
              status: 'triggered',
              incident_key: created.key,
              urgency: created.urgency,
              service: ref(svc.id, 'service_reference'),
              created_at: '2026-12-07T10:00:00Z',
            },
          });
        }
        return send(404, { error: { message: 'Not Found', code: 2100 } });
      }
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
    };
    pd = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => handle(req, res, Buffer.concat(chunks).toString('utf8')));
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
        '  post:',
        `    from: ${BOT_EMAIL}`,
        '    incident_service: Billing',
        '    urgency: low',
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
    expect(told(r.id)).toBe('approved:Checkout API incident:PINC002');
    // One incident on the configured service, as the bot's PagerDuty user, saying what was decided.
    expect(INCIDENTS.filter((i) => i.key === `gatehouse-access-request-${r.id}`)).toEqual([
      {
        id: 'PINC002',
        key: `gatehouse-access-request-${r.id}`,
        service: 'PSVC003',
        title: 'Gatehouse access request from alice: prod-db',
        urgency: 'low',
        details: expect.stringContaining(
          'alice is on call for "Checkout API": approved by the PagerDuty plugin',
        ),
        from: BOT_EMAIL,
      },
    ]);
    // Every call carried the token, and the on-call query named only Checkout API's policy and alice.
    expect(calls.every((c) => c.auth === `Token token=${TOKEN}` && c.status < 300)).toBe(true);
    const oncall = calls.find((c) => c.path === '/oncalls')!;
    expect(oncall.query.getAll('escalation_policy_ids[]')).toEqual(['PEP0001']);
    expect(oncall.query.getAll('user_ids[]')).toEqual(['PUSR001']);
  }, 120_000);

  it('leaves the request of a requester not on call for a named service pending', async () => {
    // Carol is on call, but for Billing and for "Checkout API (staging)" (which `query` also
    // matches): neither is the named service.
    const r = await create('carol', 'INC-22');
    await waitFor(() => told(r.id), 'the plugin to check the request', 30_000);
    expect(told(r.id)).toMatch(/^not-on-call incident:PINC\d+$/);
    const incident = INCIDENTS.find((i) => i.key === `gatehouse-access-request-${r.id}`)!;
    expect(incident.details).toContain(
      `Access request ${r.id} from carol for prod-db: pending (reason: INC-22)`,
    );
    expect(incident.details).toContain('carol is not on call for Checkout API; left to reviewers');
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
    // Posted once, although the first tries failed.
    expect(INCIDENTS.filter((i) => i.key === `gatehouse-access-request-${r.id}`)).toHaveLength(1);
  }, 120_000);

  it('with note_on, a note per request on one existing incident, not posted again after a restart', async () => {
    await plugin!.stop();
    writeFileSync(
      join(root, 'pd-note.yaml'),
      readFileSync(join(root, 'pd.yaml'), 'utf8').replace(
        /incident_service: Billing\n\s*urgency: low/,
        'note_on: POPEN01',
      ),
    );
    plugin = await startPlugin('pagerduty', join(root, 'pd-note.yaml'));
    const before = INCIDENTS.length;
    const r = await create('carol', 'INC-24');
    await waitFor(() => told(r.id), 'the note posted', 30_000);
    expect(told(r.id)).toBe('not-on-call note:PNOTE001');
    expect(notes).toEqual([
      {
        id: 'PNOTE001',
        incident: 'POPEN01',
        content: expect.stringContaining(`Access request ${r.id} from carol for prod-db: pending`),
        from: BOT_EMAIL,
      },
    ]);
    await plugin.stop();
    plugin = await startPlugin('pagerduty', join(root, 'pd-note.yaml'));
    const next = await create('alice', 'INC-25');
    await waitFor(() => told(next.id), 'the next note posted', 30_000);
    expect(notes.map((n) => n.content.includes(r.id))).toEqual([true, false]);
    expect(INCIDENTS.length).toBe(before);
  }, 120_000);
});
