import { X509Certificate } from 'node:crypto';
import type { AuditEvent } from '@gatehouse/audit';
import { MemorySink } from '@gatehouse/audit/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ADMIN_ROUTES,
  type AdminApi,
  GatehouseClient,
  type Identity,
  isGatehouseError,
  toGatehouseError,
} from '../src/index.js';
import { newTlsKey, startGateway, type TestGateway } from './helpers.js';

/**
 * The HTTP API and the embedding API (`gw.authorizedAdmin`) answer every
 * admin call the same for the same user: allowed or denied (with the same
 * audited access.denied), and the same filtered lists. Each call runs three
 * ways: over HTTPS with the user's client certificate, in process with the
 * identity from that very certificate, and in process by user name.
 */

const PASSWORD = 'correct horse battery staple';

const DEV_ONLY = `kind: role
name: dev-only
allow:
  logins: [ubuntu]
  node_labels: { env: dev }
  db_labels: { env: dev }
  db_users: [reader]
  db_names: ['*']
  kube_labels: { env: dev }
  desktop_labels: { env: dev }
  desktop_logins: [Administrator]
  kube_groups: [developers]
  request: { roles: [prod-ro] }
`;

const PROD_RO = `kind: role
name: prod-ro
allow:
  db_labels: { env: prod }
  db_users: [reader]
  db_names: ['*']
`;

const roleText = (name: string) => `kind: role\nname: ${name}\nallow:\n  logins: [ubuntu]\n`;

/** Who calls: the cluster admin, a plain access user, an auditor, a user whose role reaches only env=dev. */
const PRINCIPALS = {
  root: ['admin'],
  alice: ['access'],
  audrey: ['auditor'],
  dave: ['dev-only'],
} as const;
type Who = keyof typeof PRINCIPALS;
const SIDES = ['http', 'identity', 'name'] as const;
type Side = (typeof SIDES)[number];

/** Fields that differ between two otherwise equal answers (ids, times, one-time secrets). */
const VOLATILE = new Set([
  'id',
  'createdAt',
  'updatedAt',
  'expires',
  'token',
  'command',
  'started',
  'time',
  'lockedBy',
  'start',
  'end',
  'last_event',
  'ended',
  'size',
  'cert',
  'created',
]);

/** A node's host key for signNodeHostCert (any valid OpenSSH line). */
const HOST_PUBLIC_KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICDbQ1T6ztI1Kkfvjq+kUDqL54U0KHhPzlcC6NrD8/LX';

interface Case {
  method: keyof AdminApi;
  label: string;
  /** Made by the local operator before each side's call, under that side's tag. */
  prepare?: (tag: string) => Promise<void>;
  call: (api: AdminApi, tag: string) => Promise<unknown>;
}

type Outcome = { ok: unknown } | { code: string; denied?: { kind: string; name: string } };

let t: TestGateway;
let audit: MemorySink;
const clients = new Map<Who, GatehouseClient>();
const identities = new Map<Who, Identity>();
const lockIds = new Map<string, string>();
const sessionIds = new Map<string, string>();
const requestIds = new Map<string, string>();

/** A pending request of dave's for prod-ro (the operator makes it for him). */
async function daveRequest(tag: string): Promise<void> {
  const r = await t.gw.admin.createAccessRequest({ user: 'dave', roles: ['prod-ro'], reason: `for ${tag}` });
  requestIds.set(tag, r.id);
}
let auditUntil = '';

async function text(body: AsyncIterable<Uint8Array>): Promise<string> {
  let out = '';
  for await (const chunk of body) out += Buffer.from(chunk).toString('utf8');
  return out;
}

/** A live SSH session of alice's on n-dev, as the SSH adapter binds one. */
async function liveSession(): Promise<string> {
  const grant = await t.gw.authorizer.authorize(identities.get('alice'), {
    kind: 'node',
    name: 'n-dev',
    labels: { env: 'dev' },
    login: 'alice',
  });
  const live = t.gw.liveSessions.bind(
    grant,
    { kind: 'ssh', protocol: 'ssh', server: 'n-dev', login: 'alice', interactive: true },
    { terminate: () => live.end() },
  );
  return live.id;
}

const CASES: Case[] = [
  { method: 'listUsers', label: 'listUsers', call: (a) => a.listUsers() },
  { method: 'getUser', label: 'getUser alice', call: (a) => a.getUser('alice') },
  { method: 'getUser', label: 'getUser missing', call: (a) => a.getUser('ghost') },
  {
    method: 'createUser',
    label: 'createUser',
    call: (a, tag) => a.createUser({ name: `new-${tag}`, roles: ['access'] }),
  },
  {
    method: 'updateUser',
    label: 'updateUser',
    prepare: (tag) => user(`upd-${tag}`),
    call: (a, tag) => a.updateUser(`upd-${tag}`, { traits: { logins: ['x'] } }),
  },
  {
    method: 'deleteUser',
    label: 'deleteUser',
    prepare: (tag) => user(`del-${tag}`),
    call: (a, tag) => a.deleteUser(`del-${tag}`),
  },
  {
    method: 'resetUser',
    label: 'resetUser',
    prepare: (tag) => user(`rst-${tag}`),
    call: (a, tag) => a.resetUser(`rst-${tag}`),
  },
  {
    method: 'lockUser',
    label: 'lockUser',
    prepare: (tag) => user(`lk-${tag}`),
    call: (a, tag) => a.lockUser(`lk-${tag}`, { message: 'parity' }),
  },
  {
    method: 'unlockUser',
    label: 'unlockUser',
    prepare: async (tag) => {
      await user(`ulk-${tag}`);
      await t.gw.admin.lockUser(`ulk-${tag}`, {});
    },
    call: (a, tag) => a.unlockUser(`ulk-${tag}`),
  },
  { method: 'listRoles', label: 'listRoles', call: (a) => a.listRoles() },
  { method: 'getRole', label: 'getRole', call: (a) => a.getRole('dev-only') },
  { method: 'putRole', label: 'putRole', call: (a, tag) => a.putRole(roleText(`r-${tag}`)) },
  {
    method: 'putRole',
    label: 'putRole create',
    call: (a, tag) => a.putRole(roleText(`rc-${tag}`), { create: true }),
  },
  {
    method: 'putRole',
    label: 'putRole create existing',
    call: (a) => a.putRole(DEV_ONLY, { create: true }),
  },
  {
    method: 'deleteRole',
    label: 'deleteRole',
    prepare: async (tag) => void (await t.gw.admin.putRole(roleText(`dr-${tag}`))),
    call: (a, tag) => a.deleteRole(`dr-${tag}`),
  },
  {
    method: 'lintRole',
    label: 'lintRole',
    call: (a) => a.lintRole('kind: role\nname: x\nallow: { bogus: 1 }\n'),
  },
  { method: 'listLocks', label: 'listLocks', call: (a) => a.listLocks() },
  {
    method: 'createLock',
    label: 'createLock',
    prepare: (tag) => user(`cl-${tag}`),
    call: (a, tag) => a.createLock({ target: { user: `cl-${tag}` }, message: 'parity' }),
  },
  {
    method: 'deleteLock',
    label: 'deleteLock',
    prepare: async (tag) => {
      await user(`dl-${tag}`);
      lockIds.set(tag, (await t.gw.admin.lockUser(`dl-${tag}`, {})).id);
    },
    call: (a, tag) => a.deleteLock(lockIds.get(tag)!),
  },
  {
    method: 'searchAudit',
    label: 'searchAudit',
    call: (a) => a.searchAudit({ types: ['user.create', 'role.create'], to: auditUntil, limit: 50 }),
  },
  // The report's counts grow as the cases write events; whether the chain holds is the answer.
  { method: 'verifyAudit', label: 'verifyAudit', call: async (a) => (await a.verifyAudit()).problems },
  { method: 'listDatabases', label: 'listDatabases', call: (a) => a.listDatabases() },
  {
    method: 'addDatabase',
    label: 'addDatabase',
    call: (a, tag) =>
      a.addDatabase({ name: `db-${tag}`, protocol: 'postgres', uri: 'postgres://127.0.0.1:5432' }),
  },
  {
    method: 'removeDatabase',
    label: 'removeDatabase',
    prepare: async (tag) =>
      void (await t.gw.admin.addDatabase({
        name: `rdb-${tag}`,
        protocol: 'postgres',
        uri: 'postgres://127.0.0.1:5432',
      })),
    call: (a, tag) => a.removeDatabase(`rdb-${tag}`),
  },
  { method: 'createJoinToken', label: 'createJoinToken', call: (a) => a.createJoinToken({ kind: 'node' }) },
  { method: 'listRecordings', label: 'listRecordings', call: (a) => a.listRecordings() },
  {
    method: 'listRecordings',
    label: "listRecordings of bob's",
    call: (a) => a.listRecordings({ user: 'bob' }),
  },
  { method: 'getRecording', label: 'getRecording own', call: (a) => a.getRecording('rec-alice') },
  { method: 'getRecording', label: "getRecording bob's", call: (a) => a.getRecording('rec-bob') },
  { method: 'getRecording', label: 'getRecording missing', call: (a) => a.getRecording('rec-none') },
  {
    method: 'readRecording',
    label: 'readRecording own',
    call: async (a) => text(await a.readRecording('rec-alice', { format: 'text' })),
  },
  {
    method: 'readRecording',
    label: "readRecording bob's",
    call: async (a) => text(await a.readRecording('rec-bob', { format: 'text' })),
  },
  {
    method: 'deleteRecording',
    label: 'deleteRecording',
    prepare: async (tag) => {
      const rec = await t.gw.recordings.create({
        session_id: `rec-del-${tag}`,
        kind: 'ssh',
        user: 'bob',
        server: 'n-dev',
        cols: 80,
        rows: 24,
      });
      await rec.close();
    },
    call: (a, tag) => a.deleteRecording(`rec-del-${tag}`, { reason: 'test data' }),
  },
  { method: 'listKubeClusters', label: 'listKubeClusters', call: (a) => a.listKubeClusters() },
  {
    method: 'addKubeCluster',
    label: 'addKubeCluster',
    call: (a, tag) => a.addKubeCluster({ name: `k-${tag}`, in_cluster: true }),
  },
  {
    method: 'removeKubeCluster',
    label: 'removeKubeCluster',
    prepare: async (tag) => void (await t.gw.admin.addKubeCluster({ name: `rk-${tag}`, in_cluster: true })),
    call: (a, tag) => a.removeKubeCluster(`rk-${tag}`),
  },
  { method: 'listNodes', label: 'listNodes', call: (a) => a.listNodes() },
  {
    method: 'addNode',
    label: 'addNode',
    call: (a, tag) => a.addNode({ name: `n-${tag}`, addr: '127.0.0.1:22' }),
  },
  {
    method: 'removeNode',
    label: 'removeNode',
    prepare: async (tag) => void (await t.gw.admin.addNode({ name: `rn-${tag}`, addr: '127.0.0.1:22' })),
    call: (a, tag) => a.removeNode(`rn-${tag}`),
  },
  {
    method: 'signNodeHostCert',
    label: 'signNodeHostCert',
    prepare: async (tag) => void (await t.gw.admin.addNode({ name: `hc-${tag}`, addr: '127.0.0.1:22' })),
    call: (a, tag) => a.signNodeHostCert({ node: `hc-${tag}`, public_key: HOST_PUBLIC_KEY }),
  },
  { method: 'listDesktops', label: 'listDesktops', call: (a) => a.listDesktops() },
  {
    method: 'addDesktop',
    label: 'addDesktop',
    call: (a, tag) => a.addDesktop({ name: `d-${tag}`, addr: '127.0.0.1:3389', insecure_skip_verify: true }),
  },
  {
    method: 'removeDesktop',
    label: 'removeDesktop',
    prepare: async (tag) =>
      void (await t.gw.admin.addDesktop({
        name: `rd-${tag}`,
        addr: '127.0.0.1:3389',
        insecure_skip_verify: true,
      })),
    call: (a, tag) => a.removeDesktop(`rd-${tag}`),
  },
  { method: 'listSsoConnectors', label: 'listSsoConnectors', call: (a) => a.listSsoConnectors() },
  {
    method: 'putSsoConnector',
    label: 'putSsoConnector',
    call: (a, tag) => a.putSsoConnector({ text: ssoDoc(`s-${tag}`), client_secret: 'pw' }),
  },
  {
    method: 'removeSsoConnector',
    label: 'removeSsoConnector',
    prepare: async (tag) => void (await t.gw.admin.putSsoConnector({ text: ssoDoc(`rs-${tag}`) })),
    call: (a, tag) => a.removeSsoConnector(`rs-${tag}`),
  },
  {
    // Refused for its redirect URL (only a loopback listener may get the code) before any provider is asked.
    method: 'testSsoConnector',
    label: 'testSsoConnector bad redirect',
    prepare: async (tag) => void (await t.gw.admin.putSsoConnector({ text: ssoDoc(`ts-${tag}`) })),
    call: (a, tag) =>
      a.testSsoConnector(`ts-${tag}`, {
        redirect_url: 'https://evil.example/cb',
        client_challenge: 'A'.repeat(43),
      }),
  },
  {
    method: 'caStatus',
    label: 'caStatus',
    call: async (a) => (await a.caStatus()).map((c) => [c.type, c.phase, c.keys.length]),
  },
  {
    method: 'rotateCa',
    label: 'rotateCa db init',
    // Each side starts from standby: a rotation left running by the side before is rolled back.
    prepare: async () => {
      const phase = t.gw.authorities.rotation('db')?.phase ?? 'standby';
      if (phase === 'standby') return;
      if (phase !== 'rollback') await t.gw.authorities.rotate('db', { phase: 'rollback' });
      await t.gw.authorities.rotate('db', { phase: 'standby' });
    },
    call: async (a) => {
      const s = await a.rotateCa({ type: 'db', phase: 'init' });
      return [s.type, s.phase, s.mode, s.keys.map((k) => k.role)];
    },
  },
  {
    method: 'rotateCa',
    label: 'rotateCa unknown type',
    call: (a) => a.rotateCa({ type: 'audit', phase: 'init' }),
  },
  { method: 'listSessions', label: 'listSessions', call: (a) => a.listSessions() },
  {
    method: 'killSession',
    label: 'killSession',
    prepare: async (tag) => void sessionIds.set(tag, await liveSession()),
    call: (a, tag) => a.killSession(sessionIds.get(tag)!),
  },
  { method: 'listAccessRequests', label: 'listAccessRequests', call: (a) => a.listAccessRequests() },
  {
    method: 'getAccessRequest',
    label: "getAccessRequest of dave's",
    prepare: daveRequest,
    call: (a, tag) => a.getAccessRequest(requestIds.get(tag)!),
  },
  {
    method: 'createAccessRequest',
    label: 'createAccessRequest prod-ro',
    call: (a) => a.createAccessRequest({ roles: ['prod-ro'], reason: 'parity' }),
  },
  {
    method: 'reviewAccessRequest',
    label: "reviewAccessRequest of dave's",
    prepare: daveRequest,
    call: (a, tag) => a.reviewAccessRequest(requestIds.get(tag)!, { verdict: 'approve', reason: 'parity' }),
  },
  {
    method: 'dropAccessRequest',
    label: "dropAccessRequest of dave's",
    prepare: daveRequest,
    call: (a, tag) => a.dropAccessRequest(requestIds.get(tag)!, { reason: 'parity' }),
  },
];

function ssoDoc(name: string): string {
  return [
    'kind: oidc',
    `name: ${name}`,
    'issuer_url: https://idp.example.com',
    'client_id: gh',
    'redirect_url: https://gh.example.com/v1/sso/oidc/callback',
    'claims_to_roles: [{claim: groups, value: ops, roles: [access]}]',
  ].join('\n');
}

async function user(name: string): Promise<void> {
  await t.gw.admin.createUser({ name, roles: ['access'], password: PASSWORD });
}

/** What each side names its own users, roles and resources: `<principal>-<side>`. */
const TAGGED = new RegExp(`\\b(${Object.keys(PRINCIPALS).join('|')})-(${SIDES.join('|')})\\b`, 'g');

/** The answer without what differs between equal answers; every side's tag reads `<principal>-SIDE`. */
function normalize(v: unknown): unknown {
  if (v === undefined) return null;
  return JSON.parse(JSON.stringify(v), (key, value: unknown) => {
    if (VOLATILE.has(key)) return undefined;
    return typeof value === 'string' ? value.replace(TAGGED, '$1-SIDE') : value;
  });
}

function api(who: Who, side: Side): AdminApi {
  if (side === 'http') return clients.get(who)!;
  if (side === 'identity') return t.gw.authorizedAdmin(identities.get(who)!);
  return t.gw.authorizedAdmin(who);
}

async function outcome(who: Who, side: Side, c: Case, tag: string): Promise<Outcome> {
  const before = audit.events.length;
  try {
    return { ok: normalize(await c.call(api(who, side), tag)) };
  } catch (err) {
    const ge = toGatehouseError(err);
    if (!ge) throw err;
    const denials = audit.events
      .slice(before)
      .filter((e): e is Extract<AuditEvent, { type: 'access.denied' }> => e.type === 'access.denied');
    // A denial is audited once, for the caller, naming what was refused.
    if (ge.code === 'GH_ERR_ACCESS_DENIED') {
      expect(denials, `${who} ${side} ${c.label}`).toHaveLength(1);
      expect(denials[0]?.user).toBe(who);
      return { code: ge.code, denied: { kind: denials[0]!.resource_kind, name: denials[0]!.resource } };
    }
    expect(denials, `${who} ${side} ${c.label}`).toEqual([]);
    return { code: ge.code };
  }
}

/** Every (principal, case): the answer of each side. */
const answers = new Map<string, Record<Side, Outcome>>();

beforeAll(async () => {
  audit = new MemorySink();
  t = await startGateway({ auditSinks: [audit] });
  const gw = t.gw;
  await gw.admin.putRole(PROD_RO);
  await gw.admin.putRole(DEV_ONLY);
  for (const [who, roles] of Object.entries(PRINCIPALS)) {
    await gw.admin.createUser({
      name: who,
      roles: [...roles],
      traits: { logins: [who], db_users: ['reader'], kube_groups: ['developers'] },
      password: PASSWORD,
    });
    const key = newTlsKey();
    const anon = new GatehouseClient({ proxy: `127.0.0.1:${t.port}`, caPem: t.caPem });
    const res = await anon.login({ user: who, password: PASSWORD, tls_public_key: key.publicPem });
    anon.close();
    const cert = { certPem: res.tls_cert!, keyPem: key.privatePem };
    clients.set(who as Who, new GatehouseClient({ proxy: `127.0.0.1:${t.port}`, caPem: t.caPem, ...cert }));
    identities.set(who as Who, gw.authorizer.identityFromCert(new X509Certificate(cert.certPem)));
  }
  for (const env of ['dev', 'prod']) {
    await gw.admin.addDatabase({
      name: `pg-${env}`,
      protocol: 'postgres',
      uri: 'postgres://127.0.0.1:5432',
      labels: { env },
    });
    await gw.admin.addKubeCluster({ name: `k8s-${env}`, in_cluster: true, labels: { env } });
    await gw.admin.addNode({ name: `n-${env}`, addr: '127.0.0.1:22', labels: { env } });
    await gw.admin.addDesktop({
      name: `d-${env}`,
      addr: '127.0.0.1:3389',
      labels: { env },
      insecure_skip_verify: true,
    });
  }
  for (const owner of ['alice', 'bob']) {
    const rec = await gw.recordings.create({
      session_id: `rec-${owner}`,
      kind: 'ssh',
      user: owner,
      login: owner,
      server: 'n-dev',
      cols: 80,
      rows: 24,
    });
    rec.output(Buffer.from(`${owner} was here\r\n`));
    await rec.close();
  }
  // A live session of alice's and one of dave's, for listSessions.
  await liveSession();
  const daveGrant = await gw.authorizer.authorize(identities.get('dave'), {
    kind: 'node',
    name: 'n-dev',
    labels: { env: 'dev' },
    login: 'ubuntu',
  });
  gw.liveSessions.bind(
    daveGrant,
    { kind: 'ssh', protocol: 'ssh', server: 'n-dev', login: 'ubuntu' },
    { terminate: () => {} },
  );
  auditUntil = new Date(Date.now() + 1).toISOString();
  await new Promise((r) => setTimeout(r, 5));

  for (const who of Object.keys(PRINCIPALS) as Who[]) {
    for (const c of CASES) {
      const row = {} as Record<Side, Outcome>;
      for (const side of SIDES) {
        const tag = `${who}-${side}`;
        await c.prepare?.(tag);
        row[side] = await outcome(who, side, c, tag);
      }
      answers.set(`${who}: ${c.label}`, row);
    }
  }
}, 120_000);

afterAll(async () => {
  for (const c of clients.values()) c.close();
  await t?.close();
});

const get = (who: Who, label: string): Outcome => {
  const row = answers.get(`${who}: ${label}`);
  if (!row) throw new Error(`no case "${label}"`);
  return row.http;
};
const ok = (o: Outcome) => ('ok' in o ? o.ok : undefined);
const names = (o: Outcome) => (ok(o) as { name: string }[] | undefined)?.map((x) => x.name);

describe('admin API: HTTP and embedding give the same answers', () => {
  it('covers every admin call', () => {
    const covered = new Set(CASES.map((c) => c.method));
    expect(Object.keys(ADMIN_ROUTES).filter((m) => !covered.has(m as keyof AdminApi))).toEqual([]);
  });

  it.each(Object.keys(PRINCIPALS) as Who[])(
    '%s: every call, allowed or denied, the same three ways',
    (who) => {
      for (const c of CASES) {
        const row = answers.get(`${who}: ${c.label}`)!;
        expect(row.identity, `${who}: ${c.label} (identity vs http)`).toEqual(row.http);
        expect(row.name, `${who}: ${c.label} (name vs http)`).toEqual(row.http);
      }
    },
  );

  // The answers compared above are the right ones, not merely equal.

  it('the admin may do everything; what fails fails for the request itself', () => {
    const failed = CASES.map((c) => [c.label, get('root', c.label)] as const).filter(([, o]) => !('ok' in o));
    expect(failed).toEqual([
      ['getUser missing', { code: 'GH_ERR_NOT_FOUND' }],
      ['putRole create existing', { code: 'GH_ERR_ALREADY_EXISTS' }],
      ['getRecording missing', { code: 'GH_ERR_NOT_FOUND' }],
      ['testSsoConnector bad redirect', { code: 'GH_ERR_VALIDATION' }],
      ['rotateCa unknown type', { code: 'GH_ERR_VALIDATION' }],
      // Admins review requests; asking for roles takes allow.request, which the admin role has not.
      [
        'createAccessRequest prod-ro',
        { code: 'GH_ERR_ACCESS_DENIED', denied: { kind: 'access_request', name: 'prod-ro' } },
      ],
    ]);
    expect(names(get('root', 'listDatabases'))).toContain('pg-prod');
    expect(get('root', 'rotateCa db init')).toEqual({ ok: ['db', 'init', 'manual', ['new', 'old']] });
    expect(get('alice', 'rotateCa db init')).toEqual({
      code: 'GH_ERR_ACCESS_DENIED',
      denied: { kind: 'cluster', name: 'update' },
    });
  });

  it('a plain access user is refused admin calls, and sees what their roles reach and their own sessions', () => {
    const denied = (label: string) => get('alice', label);
    expect(denied('listUsers')).toEqual({
      code: 'GH_ERR_ACCESS_DENIED',
      denied: { kind: 'user', name: 'list' },
    });
    expect(denied('putRole create')).toEqual({
      code: 'GH_ERR_ACCESS_DENIED',
      denied: { kind: 'role', name: 'create' },
    });
    expect(denied('killSession')).toMatchObject({ denied: { kind: 'session', name: 'delete' } });
    expect(denied('getRecording missing')).toMatchObject({ denied: { kind: 'recording', name: 'read' } });
    expect(denied("getRecording bob's")).toMatchObject({ code: 'GH_ERR_ACCESS_DENIED' });
    expect(ok(get('alice', 'getRecording own'))).toMatchObject({ session_id: 'rec-alice', user: 'alice' });
    expect(ok(get('alice', 'readRecording own'))).toContain('alice was here');
    expect(names(get('alice', 'listDatabases'))).toEqual(expect.arrayContaining(['pg-dev', 'pg-prod']));
    expect((ok(get('alice', 'listDatabases')) as { allowed?: unknown }[])[0]?.allowed).toEqual({
      db_users: ['reader'],
      db_names: [],
    });
    // Their own recordings only, whoever they ask for.
    expect((ok(get('alice', 'listRecordings')) as { user: string }[]).map((r) => r.user)).toEqual(['alice']);
    expect((ok(get('alice', "listRecordings of bob's")) as { user: string }[]).map((r) => r.user)).toEqual([
      'alice',
    ]);
    const { sessions } = ok(get('alice', 'listSessions')) as { sessions: { user: string }[] };
    expect(sessions.length).toBeGreaterThan(0);
    expect(new Set(sessions.map((s) => s.user))).toEqual(new Set(['alice']));
    expect(
      (ok(get('root', 'listSessions')) as { sessions: { user: string }[] }).sessions.map((s) => s.user),
    ).toContain('dave');
  });

  it('an auditor reads the audit log, recordings and sessions, and reaches no resource', () => {
    expect(ok(get('audrey', 'searchAudit'))).toMatchObject({ events: expect.any(Array) });
    expect((ok(get('audrey', 'searchAudit')) as { events: unknown[] }).events.length).toBeGreaterThan(0);
    // (bob's rec-del-* recordings that others were refused to delete are listed too.)
    const seen = (ok(get('audrey', 'listRecordings')) as { user: string }[]).map((r) => r.user);
    expect([...new Set(seen)].sort()).toEqual(['alice', 'bob']);
    expect(seen.filter((u) => u === 'alice')).toHaveLength(1);
    expect(ok(get('audrey', "readRecording bob's"))).toContain('bob was here');
    expect(ok(get('audrey', 'listDatabases'))).toEqual([]);
    expect(ok(get('audrey', 'listNodes'))).toEqual([]);
    expect(ok(get('audrey', 'listDesktops'))).toEqual([]);
    expect(get('audrey', 'listUsers')).toMatchObject({ code: 'GH_ERR_ACCESS_DENIED' });
    expect(get('audrey', 'killSession')).toMatchObject({ denied: { kind: 'session', name: 'delete' } });
    expect(ok(get('audrey', 'verifyAudit'))).toEqual([]);
    // Reading evidence is not removing it.
    expect(get('audrey', 'deleteRecording')).toMatchObject({ denied: { kind: 'recording', name: 'delete' } });
  });

  it('access requests: users ask as their roles allow, see their own, and never review their own', () => {
    expect(ok(get('dave', 'createAccessRequest prod-ro'))).toMatchObject({
      user: 'dave',
      roles: ['prod-ro'],
      state: 'pending',
    });
    expect(get('alice', 'createAccessRequest prod-ro')).toEqual({
      code: 'GH_ERR_ACCESS_DENIED',
      denied: { kind: 'access_request', name: 'prod-ro' },
    });
    expect(ok(get('dave', "getAccessRequest of dave's"))).toMatchObject({
      user: 'dave',
      reason: 'for dave-SIDE',
    });
    expect(get('alice', "getAccessRequest of dave's")).toEqual({
      code: 'GH_ERR_ACCESS_DENIED',
      denied: { kind: 'access_request', name: 'read' },
    });
    expect(ok(get('root', "reviewAccessRequest of dave's"))).toMatchObject({ state: 'approved' });
    expect(get('dave', "reviewAccessRequest of dave's")).toMatchObject({ code: 'GH_ERR_ACCESS_DENIED' });
    expect(get('audrey', "reviewAccessRequest of dave's")).toMatchObject({ code: 'GH_ERR_ACCESS_DENIED' });
    expect(ok(get('dave', "dropAccessRequest of dave's"))).toMatchObject({ state: 'dropped' });
    expect(get('alice', "dropAccessRequest of dave's")).toEqual({
      code: 'GH_ERR_ACCESS_DENIED',
      denied: { kind: 'access_request', name: 'delete' },
    });
    // Nobody but dave and the admin sees dave's requests.
    expect(ok(get('alice', 'listAccessRequests'))).toEqual([]);
    expect(
      (ok(get('dave', 'listAccessRequests')) as { user: string }[]).every((r) => r.user === 'dave'),
    ).toBe(true);
  });

  it('a role that reaches env=dev lists only env=dev, with what it allows there', () => {
    expect(ok(get('dave', 'listDatabases'))).toEqual([
      {
        name: 'pg-dev',
        protocol: 'postgres',
        uri: 'postgres://127.0.0.1:5432',
        labels: { env: 'dev' },
        source: 'dynamic',
        allowed: { db_users: ['reader'], db_names: ['*'] },
      },
    ]);
    expect(names(get('dave', 'listKubeClusters'))).toEqual(['k8s-dev']);
    expect(names(get('dave', 'listNodes'))).toEqual(['n-dev']);
    expect((ok(get('dave', 'listNodes')) as { allowed?: unknown }[])[0]?.allowed).toEqual({
      logins: ['ubuntu'],
    });
    expect(names(get('dave', 'listDesktops'))).toEqual(['d-dev']);
    expect((ok(get('dave', 'listDesktops')) as { allowed?: unknown }[])[0]?.allowed).toEqual({
      logins: ['Administrator'],
    });
  });
});

describe('GET /v1/whoami permissions', () => {
  /** Calls that answer everyone, filtered to what is theirs: false there is "only yours", not "denied". */
  const FILTERED = new Set<keyof AdminApi>([
    'listDatabases',
    'listKubeClusters',
    'listNodes',
    'listDesktops',
    'listRecordings',
    'getRecording',
    'readRecording',
    'listSessions',
  ]);
  /** Decided by the caller's request and review_requests roles; the rules are the admin's view of all requests. */
  const BY_REQUEST_ROLES = new Set<keyof AdminApi>([
    'listAccessRequests',
    'getAccessRequest',
    'createAccessRequest',
    'reviewAccessRequest',
    'dropAccessRequest',
  ]);

  it.each(Object.keys(PRINCIPALS) as Who[])('%s: say exactly which calls the API allows', async (who) => {
    const { permissions } = await clients.get(who)!.whoami();
    for (const c of CASES) {
      const o = get(who, c.label);
      const denied = 'code' in o && o.code === 'GH_ERR_ACCESS_DENIED';
      const granted = c.label.startsWith('putRole create') ? permissions.createRole : permissions[c.method];
      if (FILTERED.has(c.method) && !granted) continue;
      if (BY_REQUEST_ROLES.has(c.method)) continue;
      expect(granted, `${who}: ${c.label}`).toBe(!denied);
    }
  });

  it('an auditor may search the audit log and read recordings, not manage users, roles or sessions', async () => {
    const { permissions } = await clients.get('audrey')!.whoami();
    expect(permissions).toMatchObject({
      searchAudit: true,
      listRecordings: true,
      getRecording: true,
      listSessions: true,
      listUsers: false,
      createUser: false,
      listRoles: false,
      createRole: false,
      killSession: false,
    });
    expect(Object.values((await clients.get('root')!.whoami()).permissions).every(Boolean)).toBe(true);
  });
});

describe('embedding: gw.authorizedAdmin', () => {
  it('checks the user again on every call: a lock applies to a handle made before it', async () => {
    const handle = t.gw.authorizedAdmin('dave');
    expect(names({ ok: await handle.listNodes() })).toEqual(['n-dev']);
    const lock = await t.gw.admin.createLock({ target: { user: 'dave' }, message: 'parity lock' });
    try {
      const err = await handle.listNodes().catch((e: unknown) => e);
      expect(isGatehouseError(err, 'GH_ERR_USER_LOCKED')).toBe(true);
    } finally {
      await t.gw.admin.deleteLock(lock.id);
    }
    expect(names({ ok: await handle.listNodes() })).toEqual(['n-dev']);
  });

  it('acting as a user who does not exist is refused', async () => {
    const err = await t.gw
      .authorizedAdmin('nobody')
      .listNodes()
      .catch((e: unknown) => e);
    expect(isGatehouseError(err, 'GH_ERR_ACCESS_DENIED')).toBe(true);
  });
});
