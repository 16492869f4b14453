import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AuditEvent } from '@gatehouse/audit';
import { VERSION } from '@gatehouse/core';
import { freePort } from '@gatehouse/core/testing';
import mysql2 from 'mysql2/promise';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { foreignCert, waitFor } from '../../core/test/helpers.js';
import { encodePacket, encodeSslRequest, parseHandshakeV10 } from '../src/index.js';
import {
  type CertFiles,
  localTunnel,
  type MysqlGateway,
  mariadb,
  startMysqlGateway,
  userCert,
} from './helpers.js';
import { type Mariadb, opensslSubject, startMariadb } from './peers.js';

const ROLE = `kind: role
name: my-dev
allow:
  db_labels: { engine: mariadb }
  db_users: [alice]
  db_names: [shop, other]
`;
const REDACT = `kind: role
name: my-redact
allow:
  db_labels: { engine: mariadb }
  db_users: [alice]
  db_names: [shop]
options:
  redact_db_params: true
`;

describe('MySQL/MariaDB through Gatehouse (real mariadb client, mysql2 and MariaDB 10.11)', () => {
  let t: MysqlGateway;
  let db: Mariadb;
  let dir: string;
  let alice: CertFiles;
  let carol: CertFiles;
  let stranger: CertFiles;
  let toDown: CertFiles;
  let tunnel: { port: number; close(): Promise<void> };

  /** mariadb client args for the dedicated port with a certificate. */
  const direct = (cert: CertFiles | null = alice, user = 'alice', database = 'shop') => [
    '-h127.0.0.1',
    `-P${t.mysqlPort}`,
    `-u${user}`,
    ...(database ? [`-D${database}`] : []),
    `--ssl-ca=${t.hostCaFile}`,
    ...(cert ? [`--ssl-cert=${cert.cert}`, `--ssl-key=${cert.key}`] : []),
    '--ssl-verify-server-cert',
    '-N',
    '-B',
  ];
  const my2 = (cert: CertFiles = alice, o: Partial<mysql2.ConnectionOptions> = {}) =>
    mysql2.createConnection({
      host: '127.0.0.1',
      port: t.mysqlPort,
      user: 'alice',
      database: 'shop',
      // mysql2 sends the host as the TLS server name and checks the name only with verifyIdentity.
      ssl: { ca: t.hostCaPem, cert: cert.certPem, key: cert.keyPem },
      ...o,
    });
  const events = async (type: string): Promise<AuditEvent[]> =>
    (await t.gw.audit.search({ types: [type], limit: 1000 })).events;
  const queries = async (): Promise<AuditEvent[]> => events('db.session.query');

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'gh-myt-'));
    t = await startMysqlGateway({
      handshakeTimeoutMs: 1_500,
      maxPacketBytes: 4 * 1024 * 1024,
    });
    db = await startMariadb({ clientCaPem: t.gw.exportCa('mariadb') });
    await t.gw.admin.addDatabase({
      name: 'shop',
      protocol: 'mysql',
      uri: `localhost:${db.port}`,
      ca_pem: db.serverCaPem,
      labels: { engine: 'mariadb' },
    });
    await t.gw.admin.addDatabase({
      name: 'down',
      protocol: 'mysql',
      uri: `localhost:${await freePort()}`,
      ca_pem: db.serverCaPem,
      labels: { engine: 'mariadb' },
    });
    await t.gw.admin.putRole(ROLE, { create: true });
    await t.gw.admin.putRole(REDACT, { create: true });
    await t.gw.admin.createUser({ name: 'alice', roles: ['my-dev'], traits: {} });
    await t.gw.admin.createUser({ name: 'carol', roles: ['my-redact'], traits: {} });
    alice = await userCert(t.gw, dir, 'alice', {
      user: 'alice',
      roles: ['my-dev'],
      route: { kind: 'db', name: 'shop' },
    });
    carol = await userCert(t.gw, dir, 'carol', {
      user: 'carol',
      roles: ['my-redact'],
      route: { kind: 'db', name: 'shop' },
    });
    stranger = await userCert(t.gw, dir, 'stranger', {
      user: 'alice',
      roles: ['my-dev'],
      route: { kind: 'db', name: 'nope' },
    });
    toDown = await userCert(t.gw, dir, 'to-down', {
      user: 'alice',
      roles: ['my-dev'],
      route: { kind: 'db', name: 'down' },
    });
    // The subject MariaDB compares, in its own format: what the db CA issues for "alice".
    const probe = await t.gw.authorities.issueDbClientCert({
      publicKeyPem: (await import('../../core/test/helpers.js')).newTlsKey().publicPem,
      dbUser: 'alice',
      notBefore: new Date(Date.now() - 60_000),
      notAfter: new Date(Date.now() + 60_000),
    });
    const subject = opensslSubject(probe.cert);
    expect(subject).toBe(`/CN=alice/O=${t.gw.config.clusterName}`);
    await db.sql(
      [
        'CREATE DATABASE shop',
        'CREATE DATABASE other',
        'CREATE DATABASE secret',
        `CREATE USER alice@'%' REQUIRE SUBJECT '${subject}'`,
        `CREATE USER bob@'%' REQUIRE SUBJECT '/CN=bob/O=${t.gw.config.clusterName}'`,
        "GRANT ALL ON shop.* TO alice@'%'",
        "GRANT ALL ON other.* TO alice@'%'",
        "GRANT ALL ON secret.* TO alice@'%'",
        "GRANT FILE ON *.* TO alice@'%'",
        'CREATE TABLE shop.items (id INT PRIMARY KEY, name VARCHAR(100), price DECIMAL(10,2), at DATETIME)',
        'CREATE TABLE shop.big (id INT PRIMARY KEY, pad VARCHAR(40))',
        'INSERT INTO shop.big SELECT seq, REPEAT(CHAR(65 + seq % 26), 30) FROM shop.seq_1_to_200000',
      ].join(';'),
    );
    tunnel = await localTunnel(t.port, t.hostCaPem, alice);
  }, 120_000);

  afterAll(async () => {
    await tunnel?.close();
    await t?.close();
    await db?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('runs queries and transactions from the mariadb client on the dedicated port', async () => {
    const r = await mariadb(direct(), {
      input: [
        'SELECT CURRENT_USER(), DATABASE();',
        "BEGIN; INSERT INTO items VALUES (1, 'kept', 1.50, NULL); COMMIT;",
        "BEGIN; INSERT INTO items VALUES (2, 'rolled back', 2.00, NULL); ROLLBACK;",
        'SELECT GROUP_CONCAT(name ORDER BY id) FROM items;',
      ].join('\n'),
    });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines[0]).toBe('alice@%\tshop');
    expect(lines.at(-1)).toBe('kept');
    const q = (await queries()).map((e) => (e as { query: string }).query);
    expect(q).toContain("INSERT INTO items VALUES (2, 'rolled back', 2.00, NULL)");
    expect(q).toContain('ROLLBACK');
    const start = (await events('db.session.start')).find(
      (e) => (e as { db_user?: string }).db_user === 'alice',
    );
    expect(start).toMatchObject({
      success: true,
      db_service: 'shop',
      db_protocol: 'mysql',
      db_name: 'shop',
      user: 'alice',
    });
  });

  it('runs prepared statements through mysql2 and audits statement text with decoded parameters', async () => {
    const c = await my2();
    try {
      await c.execute('INSERT INTO items VALUES (?, ?, ?, ?)', [
        10,
        'prepared',
        '9.99',
        new Date('2024-05-06T07:08:09Z'),
      ]);
      await c.execute('INSERT INTO items VALUES (?, ?, ?, ?)', [11, null, '1.25', null]);
      const [rows] = await c.execute('SELECT name, price FROM items WHERE id = ?', [10]);
      expect(rows).toEqual([{ name: 'prepared', price: '9.99' }]);
    } finally {
      await c.end();
    }
    const q = (await queries()) as unknown as { query: string; parameters?: string[]; statement?: string }[];
    const exec = q.filter(
      (e) => e.query === 'INSERT INTO items VALUES (?, ?, ?, ?)' && e.statement !== 'prepare',
    );
    expect(exec.map((e) => e.parameters?.slice(0, 3))).toEqual(
      expect.arrayContaining([
        ['10', 'prepared', '9.99'],
        ['11', 'NULL', '1.25'],
      ]),
    );
    expect(
      q.some((e) => e.query === 'SELECT name, price FROM items WHERE id = ?' && e.parameters?.[0] === '10'),
    ).toBe(true);
    expect(
      q.some((e) => e.query === 'SELECT name, price FROM items WHERE id = ?' && e.statement === 'prepare'),
    ).toBe(true);
  });

  it('redacts parameters when the role says so', async () => {
    const c = await my2(carol);
    try {
      const [rows] = await c.execute('SELECT ? AS secret_value', ['hunter2']);
      expect(rows).toEqual([{ secret_value: 'hunter2' }]);
    } finally {
      await c.end();
    }
    const e = (await queries()).find((x) => (x as { query: string }).query === 'SELECT ? AS secret_value') as
      | { parameters?: string[]; user: string }
      | undefined;
    expect(e?.user).toBe('carol');
    expect(e?.parameters).toEqual(['<redacted>']);
  });

  it('db_audit: sessions records the session (saying so) and its end with a count, but no statement; a statements role wins', async () => {
    await t.gw.admin.putRole(
      [
        'kind: role',
        'name: my-sessions',
        'allow:',
        '  db_labels: { engine: mariadb }',
        '  db_users: [alice]',
        '  db_names: [shop]',
        'options:',
        '  db_audit: sessions',
        '',
      ].join('\n'),
      { create: true },
    );
    await t.gw.admin.createUser({ name: 'sam', roles: ['my-sessions'], traits: {} });
    await t.gw.admin.createUser({ name: 'mia', roles: ['my-sessions', 'my-dev'], traits: {} });
    const sam = await userCert(t.gw, dir, 'sam', {
      user: 'sam',
      roles: ['my-sessions'],
      route: { kind: 'db', name: 'shop' },
    });
    const mia = await userCert(t.gw, dir, 'mia', {
      user: 'mia',
      roles: ['my-sessions', 'my-dev'],
      route: { kind: 'db', name: 'shop' },
    });
    const marker = `sessions-only-${Date.now().toString(36)}`;
    const r = await mariadb(direct(sam), { input: `SELECT '${marker}';\nSELECT 2;\n` });
    expect(r.stderr).toBe('');
    expect(r.stdout.trim().split('\n')).toEqual([marker, '2']);
    // Prepared statements (mysql2): a prepare and an execute, neither recorded.
    const c = await my2(sam);
    try {
      const [rows] = await c.execute('SELECT ? AS v', [marker]);
      expect(rows).toEqual([{ v: marker }]);
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
    for (const e of ends) expect((e as { queries?: number }).queries).toBeGreaterThanOrEqual(2);
    expect((await queries()).filter((e) => e.user === 'sam')).toEqual([]);
    // Any role asking for statements (a role without db_audit does): every statement is recorded.
    const m = await mariadb(direct(mia), { input: `SELECT '${marker}-mia';\n` });
    expect(m.stderr).toBe('');
    const hit = (await queries()).find(
      (e) => e.user === 'mia' && (e as { query: string }).query.includes(marker),
    );
    expect(hit).toMatchObject({ query: `SELECT '${marker}-mia'` });
    const miaStart = (await events('db.session.start')).find((e) => e.session_id === hit?.session_id);
    expect(miaStart).toMatchObject({ success: true });
    expect(miaStart).not.toHaveProperty('db_audit');
  });

  it('refuses LOAD DATA LOCAL INFILE and audits the attempt', async () => {
    const csv = join(dir, 'in.csv');
    writeFileSync(csv, '100,loaded,1.00,\\N\n');
    const sql = `LOAD DATA LOCAL INFILE '${csv}' INTO TABLE items FIELDS TERMINATED BY ','`;
    const r = await mariadb([...direct(), '--local-infile=1', '-e', sql]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/ERROR 1148 \(42000\).*LOAD DATA LOCAL is not allowed/);
    expect((await db.sql('SELECT COUNT(*) FROM shop.items WHERE id = 100')).trim()).toBe('0');
    expect((await queries()).some((e) => (e as { query: string }).query === sql)).toBe(true);
  });

  it('streams a 200k-row result set fully (mariadb client through the local tunnel, mysql2 on the dedicated port)', async () => {
    const r = await mariadb(
      [
        '-h127.0.0.1',
        `-P${tunnel.port}`,
        '-ualice',
        '-Dshop',
        '--skip-ssl',
        '-N',
        '-B',
        '-e',
        'SELECT id, pad FROM big ORDER BY id',
      ],
      {
        timeoutMs: 120_000,
      },
    );
    expect(r.stderr).toBe('');
    const lines = r.stdout.trimEnd().split('\n');
    expect(lines.length).toBe(200_000);
    expect(lines[199_999]).toBe(`200000\t${String.fromCharCode(65 + (200000 % 26)).repeat(30)}`);
    const c = await my2();
    try {
      const [rows] = await c.query('SELECT id, pad FROM big');
      expect((rows as unknown[]).length).toBe(200_000);
    } finally {
      await c.end();
    }
  });

  it('runs queries and prepared statements through the local tunnel (ALPN gatehouse-mysql)', async () => {
    const r = await mariadb([
      '-h127.0.0.1',
      `-P${tunnel.port}`,
      '-ualice',
      '-Dshop',
      '--skip-ssl',
      '-N',
      '-B',
      '-e',
      'SELECT CURRENT_USER(), @@hostname IS NOT NULL',
    ]);
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe('alice@%\t1');
    const c = await mysql2.createConnection({
      host: '127.0.0.1',
      port: tunnel.port,
      user: 'alice',
      database: 'shop',
    });
    try {
      const [rows] = await c.execute('SELECT ? + 1 AS n', [41]);
      expect(rows).toEqual([{ n: 42 }]);
    } finally {
      await c.end();
    }
  });

  it('refuses a client certificate from another CA on its own port, before any MySQL byte, audited', async () => {
    // The TLS upgrade and the certificate check are core's (ctx.tls.accept), as on the main port.
    const { cert, key } = foreignCert(dir, 'alice');
    const r = await mariadb([...direct({ cert, key, certPem: '', keyPem: '' }), '-e', 'SELECT 1']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/ERROR 1045 \(28000\).*client certificate "CN=alice" refused/);
    const refused = (await events('listener.reject')) as unknown as { reason: string }[];
    expect(refused.some((e) => e.reason === 'client_cert_untrusted')).toBe(true);
  });

  it('shows denials in the client with 1045/1044 and the rule', async () => {
    const bob = await mariadb([...direct(alice, 'bob'), '-e', 'SELECT 1']);
    expect(bob.stderr).toMatch(/ERROR 1045 \(28000\).*Gatehouse: access denied: .*"bob"/);
    const secret = await mariadb([...direct(alice, 'alice', 'secret'), '-e', 'SELECT 1']);
    expect(secret.stderr).toMatch(/ERROR 1044 \(42000\).*Gatehouse: access denied: .*"secret"/);
    const noCert = await mariadb([...direct(null), '-e', 'SELECT 1']);
    expect(noCert.stderr).toMatch(/ERROR 1045 \(28000\).*no Gatehouse client certificate/);
    const wrongRoute = await mariadb([...direct(stranger), '-e', 'SELECT 1']);
    expect(wrongRoute.stderr).toMatch(/ERROR 1044 \(42000\).*"nope" is not registered/);
    const plain = await mariadb([
      '-h127.0.0.1',
      `-P${t.mysqlPort}`,
      '-ualice',
      '-Dshop',
      '--skip-ssl',
      '-e',
      'SELECT 1',
    ]);
    expect(plain.stderr).toMatch(/ERROR 3159 \(HY000\).*insecure transport/);
    const down = await mariadb([...direct(toDown), '-e', 'SELECT 1']);
    expect(down.stderr).toMatch(/ERROR 1429 \(HY000\).*cannot reach/);
    const denied = (await events('access.denied')) as unknown as { reason: string }[];
    expect(denied.some((e) => e.reason.includes('"bob"'))).toBe(true);
    expect(denied.some((e) => e.reason.includes('"secret"'))).toBe(true);
    const failed = (await events('db.session.start')).filter(
      (e) => (e as { success: boolean }).success === false,
    );
    expect(failed.some((e) => (e as { db_service: string }).db_service === 'down')).toBe(true);
    expect(await rejects('plaintext')).toBe(true);
  });

  it('refuses COM_INIT_DB, USE and COM_CHANGE_USER to what the role does not allow', async () => {
    // The mariadb client's own `use` command sends COM_INIT_DB.
    const r = await mariadb(direct(), {
      input: 'use other\nSELECT DATABASE();\nuse secret\nSELECT DATABASE();\n',
    });
    expect(r.stderr).toMatch(/ERROR 1044 \(42000\).*"secret"/);
    expect(r.stdout.trim().split('\n')[0]).toBe('other');
    const c = await my2();
    try {
      await expect(c.query('SELECT 1; USE secret')).rejects.toMatchObject({ errno: 1044 });
      await expect(c.query('USE `secret`')).rejects.toMatchObject({ errno: 1044 });
      await c.query('USE other');
      const [rows] = await c.query('SELECT DATABASE() AS d');
      expect(rows).toEqual([{ d: 'other' }]);
      await expect(c.changeUser({ user: 'bob' })).rejects.toMatchObject({ errno: 1045 });
    } finally {
      c.destroy();
    }
    const c2 = await my2();
    try {
      await expect(c2.changeUser({ database: 'secret' })).rejects.toMatchObject({ errno: 1044 });
    } finally {
      c2.destroy();
    }
    expect((await queries()).some((e) => (e as { query: string }).query === 'USE `other`')).toBe(true);
  });

  /** The first packet the dedicated port sends, read from a raw socket. */
  const greetingOf = (port: number) =>
    new Promise<Buffer>((resolve, reject) => {
      const s = net.connect({ host: '127.0.0.1', port });
      s.once('data', (d) => {
        s.destroy();
        resolve(d);
      });
      s.once('error', reject);
    });

  const rejects = async (reason: string) =>
    ((await events('db.reject')) as unknown as { reason: string }[]).some((e) => e.reason === reason);

  /** Connects to the dedicated port, reads the greeting, sends `bytes`, returns what came back until close. */
  const raw = (bytes: Buffer | undefined): Promise<Buffer> =>
    new Promise((resolve, reject) => {
      const s = net.connect({ host: '127.0.0.1', port: t.mysqlPort });
      const chunks: Buffer[] = [];
      let greeted = false;
      s.on('data', (d) => {
        if (!greeted) {
          greeted = true;
          if (bytes) s.write(bytes);
          return;
        }
        chunks.push(d);
      });
      s.on('close', () => resolve(Buffer.concat(chunks)));
      s.on('error', (e: NodeJS.ErrnoException) => (e.code === 'ECONNRESET' ? undefined : reject(e)));
      setTimeout(() => s.destroy(), 20_000).unref();
    });
  const errCode = (b: Buffer) => (b[4] === 0xff ? b.readUInt16LE(5) : undefined);

  it("greets with Gatehouse's own version before any login, never the upstream server's", async () => {
    // A raw read of the greeting on the dedicated port: the first thing anyone connecting sees.
    const version = parseHandshakeV10((await greetingOf(t.mysqlPort)).subarray(4)).serverVersion;
    expect(version).toBe(`8.0.0-Gatehouse-${VERSION}`);
    const upstream = (await db.sql('SELECT VERSION()')).trim();
    expect(upstream).toMatch(/MariaDB/);
    expect(version).not.toContain(upstream.split('-')[0]);
    // The real client takes it as MySQL 8.0.0 and works; the server's own version is one query away, after login.
    const r = await mariadb([...direct(), '-e', 'status; SELECT VERSION()']);
    expect(r.stderr).toBe('');
    expect(r.stdout).toMatch(
      new RegExp(`Server version:\\s+8\\.0\\.0-Gatehouse-${VERSION.replace(/\./g, '\\.')}`),
    );
    expect(r.stdout).toContain(upstream);
    // mysql2 chooses its protocol details from the version too (MariaDB or not): prepared statements with
    // every parameter type still work against MariaDB.
    const c = await my2();
    try {
      const [rows] = await c.execute('SELECT ? AS s, ? AS n, ? AS d, ? AS b', [
        'x',
        1.5,
        new Date(0),
        Buffer.from('hi'),
      ]);
      expect(rows).toEqual([{ s: 'x', n: 1.5, d: new Date(0), b: Buffer.from('hi') }]);
    } finally {
      await c.end();
    }
    // An admin may choose the string (config mysql_server_version), e.g. to tell drivers the fleet is MariaDB.
    const other = await startMysqlGateway({}, { mysql_server_version: '5.5.5-10.11.0-MariaDB-Gatehouse' });
    try {
      const g = parseHandshakeV10((await greetingOf(other.mysqlPort)).subarray(4));
      expect(g.serverVersion).toBe('5.5.5-10.11.0-MariaDB-Gatehouse');
    } finally {
      await other.close();
    }
  });

  it('answers bad input with ERR + audit and leaves other sessions alone', async () => {
    const bystander = await my2();
    try {
      // Text where a packet should be reads as a 5 MB length: refused at the header.
      expect(errCode(await raw(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n')))).toBe(1153);
      // A packet out of sequence.
      expect(errCode(await raw(Buffer.from([3, 0, 0, 7, 0xde, 0xad, 0xbe])))).toBe(1043);
      const lying = Buffer.alloc(8);
      lying.writeUIntLE(0xfffff0, 0, 3);
      lying[3] = 1;
      expect(errCode(await raw(lying))).toBe(1153);
      expect(errCode(await raw(undefined))).toBe(1159);
      // A full (plaintext) handshake response instead of SSLRequest.
      const plain = encodePacket(
        1,
        Buffer.concat([encodeSslRequest(0x0200, 45).fill(0, 0, 4), Buffer.from('alice\0')]),
      );
      plain.writeUInt32LE(0x0200 | 0x8000, 4);
      expect(errCode(await raw(plain))).toBe(3159);
      expect(await rejects('malformed')).toBe(true);
      expect(await rejects('oversized')).toBe(true);
      expect(await rejects('timeout')).toBe(true);
      // An oversized packet after authentication ends only that session.
      const big = await my2();
      await expect(big.query(`SELECT '${'x'.repeat(5 * 1024 * 1024)}'`)).rejects.toBeDefined();
      big.destroy();
      await waitFor(
        async () =>
          (await events('db.session.end')).some((e) =>
            String((e as { error?: string }).error).includes('exceeds the limit'),
          ),
        'the oversized session end in the audit log',
      );
      const [rows] = await bystander.query('SELECT 1 AS ok');
      expect(rows).toEqual([{ ok: 1 }]);
    } finally {
      await bystander.end();
    }
  });

  it('ends a live session when the user is locked', async () => {
    const c = await my2();
    // mysql2 reports a server error that arrives while no command runs as the connection's fatal error.
    const raw = (c as unknown as { connection: import('node:events').EventEmitter }).connection;
    const fatal = new Promise<{ code?: unknown; fatal?: boolean; message?: string }>((resolve) =>
      raw.once('error', resolve),
    );
    await t.gw.admin.createLock({ target: { user: 'alice' }, message: 'test lock' });
    try {
      await waitFor(
        async () =>
          (await events('db.session.end')).some((e) =>
            String((e as { reason?: string }).reason).includes('locked'),
          ),
        'the locked session to end',
        5_000,
      );
      // The client hears why, as a server error (ER_CONNECTION_KILLED), not a bare disconnect.
      const err = await fatal;
      // mysql2 names errors it knows; 1927 (MariaDB's) comes through as the number.
      expect(err).toMatchObject({ code: 1927, fatal: true });
      expect(err.message).toContain('Gatehouse: access locked (user alice): test lock');
      await expect(c.query('SELECT 1')).rejects.toBeDefined();
    } finally {
      c.destroy();
      for (const l of await t.gw.admin.listLocks()) await t.gw.admin.deleteLock(l.id);
    }
  });
});
