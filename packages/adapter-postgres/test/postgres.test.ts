import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import type { AuditEvent } from '@gatehouse/audit';
import pg from 'pg';
import { serialize } from 'pg-protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { foreignCert, startGateway, type TestGateway, waitFor } from '../../core/test/helpers.js';
import { BackendDecoder, type PostgresAdapter, postgres } from '../src/index.js';
import { type CertFiles, conninfo, psql, userCert } from './helpers.js';
import { freePort, type Postgres, startPostgres } from './peers.js';

const ROLE = `kind: role
name: pg-dev
allow:
  db_labels: { engine: postgres }
  db_users: [alice, ghost]
  db_names: [app, postgres]
`;

describe('PostgreSQL through Gatehouse (real psql, pg and PostgreSQL 15)', () => {
  let t: TestGateway;
  let db: Postgres;
  let adapter: PostgresAdapter;
  let dir: string;
  let hostCa: string;
  let alice: CertFiles;
  const conn = (o: Record<string, string | number | undefined> = {}, cert: CertFiles | null = alice) =>
    conninfo({
      host: 'localhost',
      port: t.port,
      user: 'alice',
      dbname: 'app',
      sslmode: 'verify-full',
      sslrootcert: hostCa,
      sslcert: cert?.cert ?? join(dir, 'none.crt'),
      sslkey: cert?.key ?? join(dir, 'none.key'),
      ...o,
    });
  const pgClient = (o: Partial<pg.ClientConfig> = {}, cert: CertFiles = alice) =>
    new pg.Client({
      host: 'localhost',
      port: t.port,
      user: 'alice',
      database: 'app',
      ssl: {
        ca: readFileSync(hostCa, 'utf8'),
        cert: cert.certPem,
        key: cert.keyPem,
        servername: 'localhost',
      },
      ...o,
    });
  const events = async (type: string): Promise<AuditEvent[]> =>
    (await t.gw.audit.search({ types: [type], limit: 500 })).events;
  /** Audit of a closing connection may land just after the client exits: wait for it. */
  const eventually = (type: string, pred: (e: AuditEvent) => boolean) =>
    waitFor(async () => (await events(type)).some(pred) || undefined, `a ${type} event`);

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'gh-pgt-'));
    t = await startGateway();
    adapter = postgres({ startupTimeoutMs: 1_500, upstreamTimeoutMs: 10_000 });
    t.gw.use(adapter);
    hostCa = join(dir, 'host-ca.pem');
    writeFileSync(hostCa, t.caPem.join('\n'));
    db = await startPostgres({
      dbCaPem: t.gw.exportCa('postgres'),
      roles: ['alice', 'reader'],
      databases: ['app'],
    });
    await db.sql('GRANT ALL ON SCHEMA public TO alice', 'app');
    await t.gw.admin.addDatabase({
      name: 'orders',
      protocol: 'postgres',
      uri: `localhost:${db.port}`,
      ca_pem: db.serverCaPem,
      labels: { engine: 'postgres', env: 'dev' },
    });
    await t.gw.admin.addDatabase({
      name: 'down',
      protocol: 'postgres',
      uri: `localhost:${await freePort()}`,
      ca_pem: db.serverCaPem,
      labels: { engine: 'postgres' },
    });
    await t.gw.admin.putRole(ROLE, { create: true });
    await t.gw.admin.createUser({ name: 'alice', roles: ['pg-dev'], traits: {} });
    alice = await userCert(t.gw, dir, 'alice', {
      user: 'alice',
      roles: ['pg-dev'],
      route: { kind: 'db', name: 'orders' },
    });
  });

  afterAll(async () => {
    await t?.close();
    await db?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('runs queries and transactions from psql with a route-scoped certificate', async () => {
    const r = await psql(['-At', '-d', conn(), '-c', 'select current_user, current_database()']);
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe('alice|app');
    const tx = await psql(['-At', '-d', conn()], {
      input: [
        'CREATE TABLE items (id int primary key, name text);',
        'BEGIN; INSERT INTO items VALUES (1, $$kept$$); COMMIT;',
        'BEGIN; INSERT INTO items VALUES (2, $$rolled back$$); ROLLBACK;',
        'SELECT string_agg(name, $$,$$ ORDER BY id) FROM items;',
      ].join('\n'),
    });
    expect(tx.stderr).toBe('');
    expect(tx.stdout.trim().split('\n').at(-1)).toBe('kept');
  });

  it('content guards: a result holding the canary ends the session with an ErrorResponse, before psql prints it', async () => {
    const canary = `gh-canary-${Date.now().toString(36)}`;
    await t.gw.admin.putRole(
      [
        'kind: role',
        'name: pg-guarded',
        'allow:',
        '  db_labels: { engine: postgres }',
        '  db_users: [alice]',
        '  db_names: [app]',
        'options:',
        '  guards:',
        `    - { name: canary, literal: ${canary}, on: [result] }`,
        // YAML single quotes: the backslash reaches the pattern as written.
        "    - { name: no drops, match: '(?i)drop\\s+table', on: [query] }",
        '',
      ].join('\n'),
      { create: true },
    );
    await t.gw.admin.createUser({ name: 'gina', roles: ['pg-guarded'], traits: {} });
    const gina = await userCert(t.gw, dir, 'gina', {
      user: 'gina',
      roles: ['pg-guarded'],
      route: { kind: 'db', name: 'orders' },
    });
    const ok = await psql(['-At', '-d', conn({}, gina), '-c', 'select 41 + 1']);
    expect(ok.stdout.trim()).toBe('42');
    // The canary is split by || so that only the result holds it whole, not the query.
    const half = Math.floor(canary.length / 2);
    const r = await psql([
      '-At',
      '-d',
      conn({}, gina),
      '-c',
      `select 'before', '${canary.slice(0, half)}' || '${canary.slice(half)}'`,
    ]);
    expect(r.stdout).not.toContain(canary);
    expect(r.stderr).toContain('terminating connection: Gatehouse: ended by the content guard "canary"');
    const hit = await waitFor(
      async () =>
        (await events('session.guard')).find((e) => e.type === 'session.guard' && e.user === 'gina'),
      'session.guard',
    );
    expect(hit).toMatchObject({ rule: 'canary', on: 'result', protocol: 'postgres' });
    await eventually(
      'db.session.end',
      (e) => e.user === 'gina' && /content guard "canary"/.test((e as { reason?: string }).reason ?? ''),
    );
    // A statement guard stops the statement before the database sees it.
    const made = await psql(['-At', '-d', conn(), '-c', 'create table guard_probe (id int)']);
    expect(made.stderr).toBe('');
    const drop = await psql(['-At', '-d', conn({}, gina), '-c', 'DROP   TABLE guard_probe']);
    expect(drop.stderr).toContain('ended by the content guard "no drops"');
    const still = await psql(['-At', '-d', conn(), '-c', 'select count(*) from guard_probe']);
    expect(still.stderr).toBe('');
    expect(still.stdout.trim()).toBe('0');
  });

  it('copies in and out with \\copy', async () => {
    const csv = join(dir, 'in.csv');
    const out = join(dir, 'out.csv');
    writeFileSync(csv, Array.from({ length: 2000 }, (_, i) => `${i + 100},row ${i}`).join('\n') + '\n');
    const r = await psql(['-At', '-d', conn()], {
      input: `\\copy items from '${csv}' csv\n\\copy (select * from items where id >= 100 order by id) to '${out}' csv\nselect count(*) from items where id >= 100;\n`,
    });
    expect(r.stderr).toBe('');
    expect(r.stdout).toContain('2000');
    expect(readFileSync(out, 'utf8')).toBe(readFileSync(csv, 'utf8'));
  });

  it('runs prepared statements and LISTEN/NOTIFY through the pg client', async () => {
    const a = pgClient();
    const b = pgClient();
    await a.connect();
    await b.connect();
    try {
      const q = { name: 'by-id', text: 'SELECT name FROM items WHERE id = $1', values: [1] };
      expect((await a.query(q)).rows).toEqual([{ name: 'kept' }]);
      expect((await a.query({ ...q, values: [100] })).rows).toEqual([{ name: 'row 0' }]);
      const got = new Promise<pg.Notification>((resolve) => a.once('notification', resolve));
      await a.query('LISTEN gh_channel');
      await b.query("NOTIFY gh_channel, 'hello'");
      const n = await got;
      expect(n.channel).toBe('gh_channel');
      expect(n.payload).toBe('hello');
    } finally {
      await a.end();
      await b.end();
    }
    const queries = await events('db.session.query');
    const prepared = queries.filter((e) => 'statement' in e && e.statement === 'by-id');
    expect(prepared.map((e) => (e as { parameters?: string[] }).parameters)).toEqual(
      expect.arrayContaining([['1'], ['100']]),
    );
    expect(prepared[0]).toMatchObject({
      query: 'SELECT name FROM items WHERE id = $1',
      db_user: 'alice',
      db_name: 'app',
      db_service: 'orders',
      user: 'alice',
    });
  });

  it('cancels a running query when psql gets SIGINT', async () => {
    const started = Date.now();
    const r = await psql(
      ['-At', '-d', conn({ application_name: 'gh-cancel' }), '-c', 'select pg_sleep(30)'],
      {
        onSpawn: (child) => {
          void waitFor(
            async () =>
              (await db.sql(
                "select count(*) from pg_stat_activity where query = 'select pg_sleep(30)' and state = 'active'",
              )) === '1',
            'the query to run',
            20_000,
          ).then(() => child.kill('SIGINT'));
        },
      },
    );
    expect(r.stderr).toContain('canceling statement due to user request');
    // Loose bound: far below the 30 s the query would take uncancelled.
    expect(Date.now() - started).toBeLessThan(25_000);
    await eventually('db.cancel', (e) => (e as { success: boolean }).success && e.user === 'alice');
  });

  it('ignores a cancel with the right pid and a wrong secret', async () => {
    const c = pgClient();
    await c.connect();
    try {
      const { processID, secretKey } = c as unknown as { processID: number; secretKey: number };
      const running = c.query('select pg_sleep(1.5) as slept');
      await waitFor(
        async () =>
          (await db.sql(
            "select count(*) from pg_stat_activity where query like 'select pg_sleep(1.5)%' and state = 'active'",
          )) === '1',
        'the query to run',
        20_000,
      );
      await new Promise<void>((resolve, reject) => {
        const s = net.connect(t.port, '127.0.0.1', () =>
          s.end(serialize.cancel(processID, (secretKey ^ 1) | 0)),
        );
        s.on('close', () => resolve());
        s.on('error', reject);
      });
      const res = await running;
      expect(res.rows).toHaveLength(1);
    } finally {
      await c.end();
    }
    await eventually(
      'db.cancel',
      (e) =>
        !(e as { success: boolean }).success && /no live session/.test((e as { error?: string }).error ?? ''),
    );
  });

  it('shows denials in psql with the role rule that refused', async () => {
    const user = await psql(['-d', conn({ user: 'reader' }), '-c', 'select 1']);
    expect(user.code).not.toBe(0);
    expect(user.stderr).toContain('FATAL:  access denied: no role allows database user "reader"');
    expect(user.stderr).toContain('HINT:  ask an admin for a role that allows this');
    const name = await psql(['-d', conn({ dbname: 'secret' }), '-c', 'select 1']);
    expect(name.stderr).toContain('no role allows database name "secret"');
    const elsewhere = await userCert(t.gw, dir, 'alice-nope', {
      user: 'alice',
      roles: ['pg-dev'],
      route: { kind: 'db', name: 'nope' },
    });
    const unknown = await psql(['-d', conn({}, elsewhere), '-c', 'select 1']);
    expect(unknown.stderr).toContain('database "nope" is not registered');
    const nocert = await psql(['-d', conn({}, null), '-c', 'select 1']);
    expect(nocert.stderr).toContain('no Gatehouse client certificate');
    const plain = await psql(['-d', conn({ sslmode: 'disable' }), '-c', 'select 1']);
    expect(plain.stderr).toContain('TLS only');
    expect(plain.stderr).toContain('sslmode=verify-full');
    const denied = await events('access.denied');
    expect(denied.some((e) => (e as { reason: string }).reason.includes('database user "reader"'))).toBe(
      true,
    );
    await eventually('db.reject', (e) => (e as { reason: string }).reason === 'plaintext');
  });

  it("tells psql its certificate expired, or is not Gatehouse's, instead of just closing", async () => {
    // Signed by the user CA, but its notAfter has passed: core refuses it right after the TLS handshake.
    const expired = await userCert(
      t.gw,
      dir,
      'alice-expired',
      { user: 'alice', roles: ['pg-dev'], route: { kind: 'db', name: 'orders' } },
      -30_000,
    );
    const r = await psql(['-d', conn({}, expired), '-c', 'select 1']);
    expect(r.code).not.toBe(0);
    // What libpq said when the gateway just closed: "SSL SYSCALL error: EOF detected" or "server closed the connection unexpectedly".
    expect(r.stderr).not.toMatch(/SSL SYSCALL|closed the connection/);
    expect(r.stderr).toMatch(
      /FATAL: {2}Gatehouse: client certificate expired at \S+: run `gatehouse db login NAME` for a new one/,
    );
    expect(r.stderr).toContain('HINT:  if your Gatehouse login has expired too, run `gatehouse login` first');
    const c = pgClient({}, expired);
    const err = await c.connect().then(
      () => undefined,
      (e: { code?: string }) => e,
    );
    await c.end().catch(() => undefined);
    expect(err?.code).toBe('28000');
    const { cert, key } = foreignCert(dir, 'alice');
    const foreign = await psql(['-d', conn({ sslcert: cert, sslkey: key })], { input: 'select 1;' });
    expect(foreign.stderr).toMatch(/FATAL: {2}Gatehouse: client certificate "CN=alice" refused: .*user CA/);
    expect(foreign.stderr).toContain('HINT:  run `gatehouse login`, then `gatehouse db login NAME`');
    await eventually('listener.reject', (e) => /expired/.test((e as { error?: string }).error ?? ''));
  });

  it('gives each denial its SQLSTATE', async () => {
    const code = async (o: Partial<pg.ClientConfig>) => {
      const c = pgClient(o);
      const err = await c.connect().then(
        () => undefined,
        (e: { code?: string }) => e,
      );
      await c.end().catch(() => undefined);
      return err?.code;
    };
    expect(await code({ user: 'reader' })).toBe('28000');
    expect(await code({ database: 'secret' })).toBe('3D000');
  });

  it('reports an upstream that is down or refuses the certificate, and audits it', async () => {
    const downCert = await userCert(t.gw, dir, 'alice-down', {
      user: 'alice',
      roles: ['pg-dev'],
      route: { kind: 'db', name: 'down' },
    });
    const down = await psql(['-d', conn({}, downCert), '-c', 'select 1']);
    expect(down.stderr).toContain('Gatehouse cannot reach database "down"');
    // ghost is allowed by the role but has no role in PostgreSQL: the server refuses the cert login.
    const ghost = await psql(['-d', conn({ user: 'ghost' }), '-c', 'select 1']);
    expect(ghost.stderr).toMatch(/refused the connection: .*ghost/);
    for (const name of ['down', 'orders']) {
      await eventually('db.session.start', (e) => {
        const start = e as { success: boolean; db_service?: string };
        return !start.success && start.db_service === name;
      });
    }
  });

  it('records every query with user and database fields', async () => {
    const marker = `select 'audit-${Date.now()}' as marker`;
    const r = await psql(['-At', '-d', conn(), '-c', marker]);
    expect(r.code).toBe(0);
    const queries = await events('db.session.query');
    const hit = queries.find((e) => (e as { query: string }).query === marker);
    expect(hit).toMatchObject({
      user: 'alice',
      db_user: 'alice',
      db_name: 'app',
      db_service: 'orders',
      db_protocol: 'postgres',
    });
    // The end is audited once the gateway sees the close, which may be just after psql exits.
    await waitFor(
      async () => (await events('db.session.end')).find((e) => e.session_id === hit?.session_id),
      'the audited session end',
    );
    for (const q of ['CREATE TABLE items (id int primary key, name text);', 'select pg_sleep(30)']) {
      expect(queries.some((e) => (e as { query: string }).query.includes(q))).toBe(true);
    }
  });

  it('db_audit: sessions records the session (saying so) and its end with a count, but no statement; a statements role wins', async () => {
    await t.gw.admin.putRole(
      [
        'kind: role',
        'name: pg-sessions',
        'allow:',
        '  db_labels: { engine: postgres }',
        '  db_users: [alice]',
        '  db_names: [app]',
        'options:',
        '  db_audit: sessions',
        '',
      ].join('\n'),
      { create: true },
    );
    await t.gw.admin.createUser({ name: 'sam', roles: ['pg-sessions'], traits: {} });
    await t.gw.admin.createUser({ name: 'mia', roles: ['pg-sessions', 'pg-dev'], traits: {} });
    const sam = await userCert(t.gw, dir, 'sam', {
      user: 'sam',
      roles: ['pg-sessions'],
      route: { kind: 'db', name: 'orders' },
    });
    const mia = await userCert(t.gw, dir, 'mia', {
      user: 'mia',
      roles: ['pg-sessions', 'pg-dev'],
      route: { kind: 'db', name: 'orders' },
    });
    const marker = `sessions-only-${Date.now().toString(36)}`;
    // Simple protocol (psql) and extended protocol (pg: Parse/Bind/Execute), two statements run.
    const r = await psql(['-At', '-d', conn({}, sam), '-c', `select '${marker}'`]);
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe(marker);
    const c = pgClient({}, sam);
    await c.connect();
    try {
      const res = await c.query('select $1::text as v', [marker]);
      expect(res.rows).toEqual([{ v: marker }]);
    } finally {
      await c.end();
    }
    const starts = (await events('db.session.start')).filter((e) => e.user === 'sam');
    expect(starts).toHaveLength(2);
    for (const s of starts) expect(s).toMatchObject({ success: true, db_audit: 'sessions' });
    const ends = await waitFor(async () => {
      const es = (await events('db.session.end')).filter((e) => e.user === 'sam');
      return es.length === 2 ? es : undefined;
    }, "sam's two session ends");
    expect(ends.map((e) => (e as { queries?: number }).queries).sort()).toEqual([1, 1]);
    expect((await events('db.session.query')).filter((e) => e.user === 'sam')).toEqual([]);
    // Any role asking for statements (a role without db_audit does): every statement is recorded.
    const m = await psql(['-At', '-d', conn({}, mia), '-c', `select '${marker}-mia'`]);
    expect(m.stderr).toBe('');
    const hit = (await events('db.session.query')).find((e) => e.user === 'mia');
    expect(hit).toMatchObject({ query: `select '${marker}-mia'` });
    const miaStart = (await events('db.session.start')).find((e) => e.session_id === hit?.session_id);
    expect(miaStart).toMatchObject({ success: true });
    expect(miaStart).not.toHaveProperty('db_audit');
  });

  describe('bad input', () => {
    /** SSLRequest, 'S', TLS (with a client cert when given): what psql does before its startup packet. */
    const pgTls = (cert?: CertFiles) =>
      new Promise<tls.TLSSocket>((resolve, reject) => {
        const raw = net.connect(t.port, '127.0.0.1', () => raw.write(serialize.requestSsl()));
        raw.once('error', reject);
        raw.once('data', (b) => {
          expect(b.toString()).toBe('S');
          const s = tls.connect({
            socket: raw,
            servername: 'localhost',
            ca: readFileSync(hostCa, 'utf8'),
            ...(cert ? { cert: cert.certPem, key: cert.keyPem } : {}),
          });
          s.once('secureConnect', () => resolve(s));
          s.once('error', reject);
        });
      });
    /** Everything the server sends until it closes, decoded. */
    const untilClose = (s: net.Socket | tls.TLSSocket) =>
      new Promise<Buffer>((resolve) => {
        const chunks: Buffer[] = [];
        s.on('data', (c: Buffer) => chunks.push(c));
        s.on('error', () => undefined);
        s.on('close', () => resolve(Buffer.concat(chunks)));
      });
    const messages = (b: Buffer) => {
      const d = new BackendDecoder();
      const out: Array<{ name: string; code?: string; message?: string }> = [];
      let i = 0;
      while (i + 5 <= b.length) {
        const len = b.readInt32BE(i + 1);
        out.push(d.decode(b.subarray(i, i + 1 + len)) as never);
        i += 1 + len;
      }
      return out;
    };
    const stillWorks = async () => {
      const r = await psql(['-At', '-d', conn(), '-c', 'select 41 + 1']);
      expect(r.stdout.trim()).toBe('42');
    };

    it('refuses a startup packet whose length lies, and one over the size limit', async () => {
      const s1 = await pgTls(alice);
      const got1 = untilClose(s1);
      s1.write(Buffer.from('00000005ff', 'hex'));
      expect(messages(await got1)).toEqual([
        expect.objectContaining({
          name: 'error',
          code: '08P01',
          message: expect.stringMatching(/too small/),
        }),
      ]);
      const s2 = await pgTls(alice);
      const got2 = untilClose(s2);
      s2.write(Buffer.from('0010000000030000', 'hex'));
      expect(messages(await got2)).toEqual([
        expect.objectContaining({
          code: '54000',
          message: expect.stringMatching(/over the 10000-byte limit/),
        }),
      ]);
      for (const reason of ['malformed', 'oversized']) {
        await eventually(
          'db.reject',
          (e) => e.user === 'alice' && (e as { reason: string }).reason === reason,
        );
      }
      await stillWorks();
    });

    it('ends a session whose client sends an oversized message, with an ErrorResponse and an audited end', async () => {
      const s = await pgTls(alice);
      const got = untilClose(s);
      s.write(serialize.startup({ user: 'alice', database: 'app' }));
      await new Promise<void>((resolve) => {
        let seen = Buffer.alloc(0);
        const onData = (c: Buffer) => {
          seen = Buffer.concat([seen, c]);
          if (seen.includes(Buffer.from('5a00000005', 'hex'))) {
            s.off('data', onData);
            resolve();
          }
        };
        s.on('data', onData);
      });
      s.write(Buffer.from('517fffffff', 'hex'));
      const msgs = messages(await got);
      expect(msgs.at(-1)).toMatchObject({
        name: 'error',
        code: '54000',
        message: expect.stringMatching(/over the .*-byte limit/),
      });
      await waitFor(
        async () =>
          (await events('db.session.end')).find((e) =>
            /over the .*-byte limit/.test((e as { error?: string }).error ?? ''),
          ),
        'the audited session end',
      );
      await stillWorks();
    });

    it('closes a connection that sends garbage after SSLRequest', async () => {
      const s = net.connect(t.port, '127.0.0.1', () =>
        s.write(Buffer.concat([serialize.requestSsl(), Buffer.from('GET / HTTP/1.0\r\n\r\n')])),
      );
      const data = await untilClose(s);
      expect(data.subarray(0, 1).toString()).toBe('S');
      await waitFor(
        async () =>
          (await events('listener.reject')).find(
            (e) => (e as { reason: string }).reason === 'tls_handshake_failed',
          ),
        'the audited handshake failure',
      );
      await stillWorks();
    });

    it('times out a client that stalls before its startup packet while other sessions keep working', async () => {
      const s = await pgTls(alice);
      const got = untilClose(s);
      await stillWorks();
      expect(messages(await got)).toEqual([
        expect.objectContaining({
          code: '08P01',
          message: expect.stringMatching(/no startup packet within/),
        }),
      ]);
      await eventually('db.reject', (e) => (e as { reason: string }).reason === 'timeout');
    });

    it('a session core ends stops the statement it was running on the database (closing the connection does not)', async () => {
      const c = pgClient({ application_name: 'killed-mid-query' });
      c.on('error', () => undefined);
      await c.connect();
      const running = c.query('select pg_sleep(60)').catch((e: { code?: string; message: string }) => e);
      const sleeping = () =>
        db.sql(
          "select count(*) from pg_stat_activity where application_name = 'killed-mid-query' and state = 'active'",
        );
      await waitFor(async () => (await sleeping()) === '1' || undefined, 'pg_sleep on the database');
      const s = t.gw.liveSessions.list().find((x) => x.protocol === 'postgres' && x.user === 'alice');
      expect(t.gw.liveSessions.kill(s!.id, 'root')).toBe(true);
      expect(await running).toMatchObject({
        code: '57P01',
        message: 'terminating connection: Gatehouse: ended by root',
      });
      await waitFor(
        async () => (await sleeping()) === '0' || undefined,
        'pg_sleep cancelled on the database',
        20_000,
      );
      await c.end().catch(() => undefined);
    });

    it('ends a live session when its certificate expires', async () => {
      const short = await userCert(
        t.gw,
        dir,
        'alice-short',
        { user: 'alice', roles: ['pg-dev'], route: { kind: 'db', name: 'orders' } },
        4_000,
      );
      const c = pgClient({}, short);
      const ended = new Promise<{ code?: string; message: string }>((resolve) =>
        c.on('error', resolve as never),
      );
      await c.connect();
      expect((await c.query('select 1 as one')).rows).toEqual([{ one: 1 }]);
      const err = await ended;
      expect(err.code).toBe('57P01');
      expect(err.message).toMatch(/^terminating connection: Gatehouse: your access expired at /);
      await c.end().catch(() => undefined);
      await eventually('db.session.end', (e) =>
        /access expired/.test((e as { reason?: string }).reason ?? ''),
      );
    });
  });
});
