import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import diagnostics_channel from 'node:diagnostics_channel';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { makeServerCa, type Postgres, startPostgres } from '../../adapter-postgres/test/peers.js';
import {
  CA_NAMES,
  type ConfigFile,
  createGateway,
  GatehouseClient,
  GatehouseError,
  type Gateway,
  type Identity,
  LOG_CHANNEL,
  type LogRecord,
  type Revocation,
} from '../src/index.js';
import { newTlsKey, waitFor } from './helpers.js';

/**
 * Several gateways on one real PostgreSQL (issue 18, first stage): the
 * `backend: { type: postgres }` config, what a wrong setting or an outage
 * does, and state shared between gateways (users, locks, the CAs).
 */
const PASSWORD = 'correct horse battery staple';
const DB_PASSWORD = 'db-secret-Ü';

let server: Postgres;
let dir: string;
let passwordFile: string;
let dbs = 0;
const gateways: Gateway[] = [];

beforeAll(async () => {
  server = await startPostgres({
    // Password auth for the gateway's role over TLS; the harness's cert auth stays for everyone else.
    hba: ['hostssl all gatehouse 127.0.0.1/32 scram-sha-256'],
  });
  await server.sql(`CREATE ROLE gatehouse LOGIN PASSWORD '${DB_PASSWORD}'`);
  dir = await mkdtemp(path.join(os.tmpdir(), 'gh-ha-'));
  passwordFile = path.join(dir, 'pg-password');
  await writeFile(passwordFile, `${DB_PASSWORD}\n`, { mode: 0o600 });
}, 60_000);

afterAll(async () => {
  await server?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

afterEach(async () => {
  for (const g of gateways.splice(0)) await g.close();
});

async function freshDatabase(): Promise<string> {
  const name = `gh${++dbs}`;
  await server.sql(`CREATE DATABASE ${name} OWNER gatehouse`);
  return name;
}

function backendValues(database: string, over: Record<string, unknown> = {}): ConfigFile['backend'] {
  return {
    type: 'postgres',
    uri: `postgres://gatehouse@localhost:${server.port}/${database}`,
    password_file: passwordFile,
    tls: { ca_file: server.serverCaFile },
    ...over,
  } as ConfigFile['backend'];
}

/** A gateway with its own data dir on the shared database; every gateway of a cluster shares the secrets key. */
async function gateway(
  backend: ConfigFile['backend'],
  opts: { secretsKey?: string; listen?: boolean; backendWaitMs?: number } = {},
): Promise<Gateway & { port?: number }> {
  const dataDir = await mkdtemp(path.join(dir, 'gw-'));
  const gw = await createGateway({
    dataDir,
    secondFactor: 'off',
    values: { backend },
    env: { GATEHOUSE_SECRETS_KEY: opts.secretsKey ?? SECRETS_KEY },
    webDir: false,
    ...(opts.backendWaitMs !== undefined ? { backendWaitMs: opts.backendWaitMs } : {}),
  });
  gateways.push(gw);
  if (opts.listen === false) return gw;
  const { port } = await gw.listen({ host: '127.0.0.1', port: 0 });
  return Object.assign(gw, { port });
}
const SECRETS_KEY = randomBytes(32).toString('base64');

function client(gw: Gateway & { port?: number }) {
  return new GatehouseClient({
    proxy: `127.0.0.1:${gw.port}`,
    caPem: gw.authorities.get('host').map((k) => k.x509CertPem),
  });
}

async function failure(p: Promise<unknown>): Promise<GatehouseError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(GatehouseError);
  return e as GatehouseError;
}

describe('backend: { type: postgres } settings', () => {
  it('refused credentials stop the start at once, naming the settings', async () => {
    const wrong = path.join(dir, 'wrong-password');
    await writeFile(wrong, 'not the password\n');
    const e = await failure(gateway(backendValues(await freshDatabase(), { password_file: wrong })));
    expect(e.code).toBe('GH_ERR_CONFIG_INVALID');
    expect(e.message).toMatch(/refused the credentials/);
    expect(e.hint).toContain('backend.password_file');
    expect(e.details).toMatchObject({ setting: 'backend.uri', sqlstate: '28P01' });
  });

  it('logs in with a client certificate (backend.tls cert_file/key_file) where PostgreSQL asks for one', async () => {
    // The harness trusts client certificates from its own CA (hostssl ... cert): the CN is the role.
    await server.sql('CREATE ROLE gh_cert LOGIN');
    const database = await freshDatabase();
    await server.sql(`ALTER DATABASE ${database} OWNER TO gh_cert`);
    const tls = path.join(server.dir, 'tls');
    const key = path.join(dir, 'gh_cert.key');
    const csr = path.join(dir, 'gh_cert.csr');
    const cert = path.join(dir, 'gh_cert.crt');
    const ossl = (args: string[]) => execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    ossl(
      ['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key].concat([
        '-out',
        csr,
        '-subj',
        '/CN=gh_cert',
      ]),
    );
    ossl(
      [
        'x509',
        '-req',
        '-in',
        csr,
        '-CA',
        path.join(tls, 'ca.crt'),
        '-CAkey',
        path.join(tls, 'ca.key'),
      ].concat(['-CAcreateserial', '-out', cert, '-days', '1']),
    );
    const uri = `postgres://gh_cert@localhost:${server.port}/${database}`;
    const gw = await gateway(
      { type: 'postgres', uri, tls: { ca_file: server.serverCaFile, cert_file: cert, key_file: key } },
      { listen: false },
    );
    await gw.backend.put('probe/cert', 'ok');
    expect(await server.sql("SELECT count(*) FROM gatehouse_items WHERE key = 'probe/cert'", database)).toBe(
      '1',
    );

    // Without the certificate the server refuses, and the error says which settings to check.
    const refused = await failure(gateway({ type: 'postgres', uri, tls: { ca_file: server.serverCaFile } }));
    expect(refused.code).toBe('GH_ERR_CONFIG_INVALID');
    expect(refused.hint).toContain('backend.tls');
  });

  it('a database that does not exist, and a server certificate from another CA, name their settings', async () => {
    const missing = await failure(gateway(backendValues('no_such_db')));
    expect(missing).toMatchObject({ code: 'GH_ERR_CONFIG_INVALID', details: { setting: 'backend.uri' } });
    expect(missing.message).toMatch(/no_such_db/);

    const otherCaDir = await mkdtemp(path.join(dir, 'ca-'));
    const other = makeServerCa(otherCaDir);
    const tls = await failure(
      gateway(backendValues(await freshDatabase(), { tls: { ca_file: other.caFile } })),
    );
    expect(tls).toMatchObject({ code: 'GH_ERR_CONFIG_INVALID', details: { setting: 'backend.tls' } });
    expect(tls.hint).toContain('backend.tls');
  });

  it('a wrong URI is a config error naming backend.uri before anything connects', async () => {
    for (const [uri, why] of [
      ['mysql://gatehouse@localhost/gh', /scheme must be postgres/],
      ['postgres://gatehouse@localhost:5432/', /no database name/],
      ['postgres://gatehouse@localhost/gh?sslmode=prefer', /sslmode must be one of/],
      ['localhost:5432', /scheme|not a URI/],
    ] as const) {
      const e = await failure(gateway({ type: 'postgres', uri } as ConfigFile['backend']));
      expect(e.code).toBe('GH_ERR_CONFIG_INVALID');
      expect(e.message).toMatch(/backend\.uri/);
      expect(e.message).toMatch(why);
    }
  });

  it('a server that is down at start: says so, retries, and starts once it is up', async () => {
    const database = await freshDatabase();
    const logs: LogRecord[] = [];
    const onLog = (m: unknown) => logs.push(m as LogRecord);
    diagnostics_channel.subscribe(LOG_CHANNEL, onLog);
    await server.pause();
    try {
      // A one-shot command does not wait.
      const now = await failure(gateway(backendValues(database), { backendWaitMs: 0, listen: false }));
      expect(now.code).toBe('GH_ERR_BACKEND_UNAVAILABLE');
      expect(now.message).toMatch(
        new RegExp(`PostgreSQL at localhost:${server.port}/${database} is unreachable`),
      );
      expect(now.hint).toContain('backend.uri');

      const starting = gateway(backendValues(database), { listen: false });
      await waitFor(
        () => logs.some((l) => /is unreachable .*retrying in/.test(l.msg)) || undefined,
        'a log line saying the backend is unreachable and retried',
        15_000,
      );
      await server.start();
      const gw = await starting;
      expect(gw.backend.kind).toBe('postgres');
    } finally {
      diagnostics_channel.unsubscribe(LOG_CHANNEL, onLog);
      await server.start().catch(() => undefined);
    }
  });

  it('an outage mid-run: logins fail closed with a clear error, and work again by themselves once it is back', async () => {
    const gw = await gateway(backendValues(await freshDatabase()));
    await gw.admin.createUser({
      name: 'olga',
      roles: ['access'],
      traits: { logins: ['root'] },
      password: PASSWORD,
    });
    const login = () =>
      client(gw).login({ user: 'olga', password: PASSWORD, tls_public_key: newTlsKey().publicPem });
    expect((await login()).tls_cert).toContain('BEGIN CERTIFICATE');

    await server.pause();
    try {
      const down = await failure(login());
      expect(down.code).toBe('GH_ERR_BACKEND_UNAVAILABLE');
      expect(down.status).toBe(503);
      expect(down.message).toMatch(/PostgreSQL at .* is unreachable/);
    } finally {
      await server.start();
    }
    const back = await waitFor(
      () => login().catch(() => undefined),
      'a login to succeed once PostgreSQL is back',
      15_000,
    );
    expect(back.tls_cert).toContain('BEGIN CERTIFICATE');
    // The refusal was audited while the shared index was down: spooled, then replayed into it.
    const refused = await waitFor(
      async () =>
        (await gw.audit.search({ types: ['user.login'], user: 'olga' })).events.find(
          (e) => 'reason' in e && e.reason === 'backend_unavailable',
        ),
      'the refused login in the audit index',
      15_000,
    );
    expect(refused).toMatchObject({ success: false, error: expect.stringMatching(/unreachable/) });
  });
});

describe('two gateways on one PostgreSQL', () => {
  it('racing to create the CAs on first start end with exactly one of each', async () => {
    const backend = backendValues(await freshDatabase());
    const [a, b] = await Promise.all([
      gateway(backend, { listen: false }),
      gateway(backend, { listen: false }),
    ]);
    for (const name of ['user', 'host', 'db'] as const) {
      const ka = a.authorities.get(name).map((k) => k.sshPublicKey);
      const kb = b.authorities.get(name).map((k) => k.sshPublicKey);
      expect(ka).toHaveLength(1);
      expect(kb).toEqual(ka);
    }
    const db = (backend as { uri: string }).uri.split('/').pop()!;
    const stored = await server.sql(
      `SELECT string_agg(key, ',' ORDER BY key) FROM gatehouse_items WHERE key IN ('cas/user', 'cas/host', 'cas/db')`,
      db,
    );
    expect(stored).toBe('cas/db,cas/host,cas/user');
    // Each CA (and the audit signing key) was created once, by one of the two; the other used it.
    // The audit index is shared, so one search sees what both gateways wrote.
    const created = await waitFor(async () => {
      const found = (await a.audit.search({ types: ['ca.create'] })).events;
      return found.length >= 4 ? found : undefined;
    }, 'the ca.create events of both gateways');
    await new Promise((r) => setTimeout(r, 200)); // a duplicate written late would show up now
    const again = (await b.audit.search({ types: ['ca.create'] })).events;
    expect(again.map((e) => e.id).sort()).toEqual(created.map((e) => e.id).sort());
    expect(created.map((e) => (e as { ca: string }).ca).sort()).toEqual(['audit', ...CA_NAMES].sort());
  });

  it('a user added on A logs in on B; a lock on A ends a session on B through the watch', async () => {
    const backend = backendValues(await freshDatabase());
    const a = await gateway(backend);
    const b = await gateway(backend);
    await a.admin.createUser({
      name: 'pia',
      roles: ['access'],
      traits: { logins: ['root'] },
      password: PASSWORD,
    });
    const res = await client(b).login({
      user: 'pia',
      password: PASSWORD,
      tls_public_key: newTlsKey().publicPem,
    });
    expect(res.user).toBe('pia');
    expect(res.tls_cert).toContain('BEGIN CERTIFICATE');

    // One audit index: B's search finds A's user.create, A's finds B's login.
    const created = await waitFor(
      async () => (await b.audit.search({ types: ['user.create'], q: 'pia' })).events[0],
      "A's user.create in a search on B",
    );
    expect(created).toMatchObject({ type: 'user.create' });
    const loggedIn = await waitFor(
      async () => (await a.audit.search({ types: ['user.login'], user: 'pia' })).events[0],
      "B's user.login in a search on A",
    );
    expect(loggedIn).toMatchObject({ type: 'user.login', user: 'pia', success: true });
    const onlyB = await b.audit.search({ types: ['user.login'], user: 'pia' });
    expect(onlyB.events.map((e) => e.id)).toEqual([loggedIn.id]);

    // A session bound on B, as an adapter would after authorize.
    const identity: Identity = {
      user: 'pia',
      roles: ['access'],
      traits: { logins: ['root'] },
      expires: new Date(Date.now() + 3600e3),
    };
    const grant = await b.authorizer.authorize(identity, {
      kind: 'node',
      name: 'web1',
      labels: {},
      login: 'root',
    });
    const ended: { at: number; r: Revocation }[] = [];
    const live = b.liveSessions.bind(
      grant,
      { kind: 'ssh', protocol: 'ssh', server: 'web1', login: 'root' },
      { terminate: (r) => ended.push({ at: performance.now(), r }) },
    );
    expect(await live.ready).toBeUndefined();

    const t0 = performance.now();
    await a.admin.lockUser('pia', { message: 'from gateway A' });
    const t1 = performance.now();
    const end = await waitFor(() => ended[0], 'the session on B to end after the lock on A', 5_000);
    expect(end.r).toMatchObject({ cause: 'locked', message: 'access locked (user pia): from gateway A' });
    console.log(
      `lock on A -> session on B ended: ${(end.at - t0).toFixed(1)} ms after the lock call, ` +
        `${(end.at - t1).toFixed(1)} ms after it returned`,
    );
    // And B's own checks refuse the user now.
    await expect(
      b.authorizer.authorize(identity, { kind: 'node', name: 'web1', labels: {}, login: 'root' }),
    ).rejects.toMatchObject({ code: 'GH_ERR_USER_LOCKED' });
  });
});
