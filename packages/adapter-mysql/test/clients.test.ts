import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { AuditEvent } from '@gatehouse/audit';
import mariadbConnector from 'mariadb';
import mysql2 from 'mysql2/promise';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newTlsKey, waitFor } from '../../core/test/helpers.js';
import {
  type CertFiles,
  localTunnel,
  type MysqlGateway,
  mariadb,
  startMysqlGateway,
  userCert,
} from './helpers.js';
import { type Mariadb, opensslSubject, startMariadb } from './peers.js';

const run = promisify(execFile);
/** MariaDB Connector/J from Debian's libmariadb-java (scripts/peers.mjs). */
const CONNECTOR_J = '/usr/share/java/mariadb-java-client.jar';

/** Two database users for one person: the one they log in as, and a read-only one. */
const ROLE = `kind: role
name: my-two
allow:
  db_labels: { engine: mariadb }
  db_users: [alice, reader]
  db_names: [shop]
`;

/**
 * What a user of a pool or a driver does with a session besides queries,
 * with real clients (libmariadb through mysqlclient, the mariadb npm
 * connector, the mariadb CLI) through the gateway to a real MariaDB.
 */
describe('MySQL client session features through Gatehouse (change_user, sql_mode)', () => {
  let t: MysqlGateway;
  let db: Mariadb;
  let dir: string;
  let dave: CertFiles;

  const events = async (type: string): Promise<AuditEvent[]> =>
    (await t.gw.audit.search({ types: [type], limit: 1000 })).events;
  const ssl = () => ({ ca: t.hostCaPem, cert: dave.certPem, key: dave.keyPem });

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'gh-myclients-'));
    // Greeting as MariaDB, as a MariaDB fleet configures it (decision 0007): the mariadb connector
    // offers changeUser and COM_RESET_CONNECTION in pools only to servers that say they are MariaDB.
    t = await startMysqlGateway(
      { handshakeTimeoutMs: 5_000 },
      { mysql_server_version: '5.5.5-10.11.0-MariaDB-Gatehouse' },
    );
    db = await startMariadb({ clientCaPem: t.gw.exportCa('mariadb') });
    await t.gw.admin.addDatabase({
      name: 'shop',
      protocol: 'mysql',
      uri: `localhost:${db.port}`,
      ca_pem: db.serverCaPem,
      labels: { engine: 'mariadb' },
    });
    await t.gw.admin.putRole(ROLE, { create: true });
    await t.gw.admin.createUser({ name: 'dave', roles: ['my-two'], traits: {} });
    dave = await userCert(t.gw, dir, 'dave', {
      user: 'dave',
      roles: ['my-two'],
      route: { kind: 'db', name: 'shop' },
    });
    const subject = async (dbUser: string) =>
      opensslSubject(
        (
          await t.gw.authorities.issueDbClientCert({
            publicKeyPem: newTlsKey().publicPem,
            dbUser,
            notBefore: new Date(Date.now() - 60_000),
            notAfter: new Date(Date.now() + 60_000),
          })
        ).cert,
      );
    await db.sql(
      [
        'CREATE DATABASE shop',
        'CREATE DATABASE secret',
        `CREATE USER alice@'%' REQUIRE SUBJECT '${await subject('alice')}'`,
        `CREATE USER reader@'%' REQUIRE SUBJECT '${await subject('reader')}'`,
        // The database would take bob: only the roles keep dave from him.
        `CREATE USER bob@'%' REQUIRE SUBJECT '${await subject('bob')}'`,
        "GRANT ALL ON shop.* TO alice@'%'",
        "GRANT ALL ON secret.* TO alice@'%'",
        "GRANT SELECT ON shop.* TO reader@'%'",
        "GRANT ALL ON shop.* TO bob@'%'",
        'CREATE TABLE shop.items (id INT PRIMARY KEY, name VARCHAR(100))',
        "INSERT INTO shop.items VALUES (1, 'one')",
      ].join(';'),
    );
  }, 120_000);

  afterAll(async () => {
    await t?.close();
    await db?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  /** A Python program using mysqlclient (MySQLdb, on libmariadb) against the dedicated port as dave. */
  const python = async (body: string): Promise<Record<string, unknown>> => {
    const program = [
      'import json, sys, MySQLdb',
      'cfg = json.loads(sys.argv[1])',
      "c = MySQLdb.connect(host='127.0.0.1', port=cfg['port'], user='alice', db='shop',",
      "                    ssl={'ca': cfg['ca'], 'cert': cfg['cert'], 'key': cfg['key']})",
      'cur = c.cursor()',
      'def q(sql):',
      '    cur.execute(sql)',
      '    return [list(r) for r in cur.fetchall()]',
      'def err(f):',
      '    try:',
      '        f()',
      '        return None',
      '    except MySQLdb.Error as e:',
      '        return [e.args[0], str(e.args[1])]',
      'out = {}',
      body,
      'print(json.dumps(out, default=str))',
    ].join('\n');
    const cfg = JSON.stringify({ port: t.mysqlPort, ca: t.hostCaFile, cert: dave.cert, key: dave.key });
    // Debian's python3, where python3-mysqldb installs (scripts/peers.mjs).
    const r = await run('/usr/bin/python3', ['-c', program, cfg], { timeout: 60_000 });
    return JSON.parse(r.stdout) as Record<string, unknown>;
  };

  it('mysqlclient change_user: the same user resets the session, an allowed user switches, a refused one ends it', async () => {
    const out = await python(
      [
        "q('SET @marker = 42')",
        "out['before'] = q('SELECT CURRENT_USER(), @marker')",
        // A pool's reset: the same database user.
        "c.change_user('alice', '', 'shop')",
        "out['same'] = q('SELECT CURRENT_USER(), DATABASE(), @marker')",
        "c.change_user('reader', '', 'shop')",
        "out['other'] = q('SELECT CURRENT_USER(), DATABASE(), COUNT(*) FROM items')",
        "out['readonly'] = err(lambda: q(\"INSERT INTO items VALUES (2, 'two')\"))",
        "out['refused'] = err(lambda: c.change_user('bob', '', 'shop'))",
        "out['after'] = err(lambda: q('SELECT CURRENT_USER()'))",
      ].join('\n'),
    );
    expect(out.before).toEqual([['alice@%', 42]]);
    // The server reset the session: the variable is gone.
    expect(out.same).toEqual([['alice@%', 'shop', null]]);
    // Logged in upstream as reader by the gateway (the client sent no credential for it).
    expect(out.other).toEqual([['reader@%', 'shop', 1]]);
    expect((out.readonly as [number, string])[0]).toBe(1142);
    const [code, message] = out.refused as [number, string];
    expect(code).toBe(1045);
    expect(message).toMatch(/Gatehouse: access denied: .*"bob"/);
    expect(message).toMatch(/this connection is closed/);
    // Not left connected as anyone: the connection is gone (2006/2013: server gone away / lost).
    expect([2006, 2013]).toContain((out.after as [number, string])[0]);
    const changes = (await events('db.session.change_user')) as unknown as {
      success: boolean;
      db_user: string;
      previous_db_user: string;
      user: string;
      code: string;
      error?: string;
    }[];
    expect(changes).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ success: true, db_user: 'alice', previous_db_user: 'alice', user: 'dave' }),
        expect.objectContaining({
          success: true,
          db_user: 'reader',
          previous_db_user: 'alice',
          code: 'GH2003I',
        }),
        expect.objectContaining({
          success: false,
          db_user: 'bob',
          previous_db_user: 'reader',
          code: 'GH2003W',
        }),
      ]),
    );
    const denied = (await events('access.denied')) as unknown as { reason: string; user: string }[];
    expect(denied.some((e) => e.user === 'dave' && e.reason.includes('"bob"'))).toBe(true);
    // What ran as reader is audited as reader's.
    const q = (await events('db.session.query')) as unknown as { query: string; db_user: string }[];
    expect(q.find((e) => e.query.startsWith("INSERT INTO items VALUES (2, 'two')"))?.db_user).toBe('reader');
    expect((await db.sql('SELECT COUNT(*) FROM shop.items')).trim()).toBe('1');
  });

  it('mariadb npm connector changeUser: same user, another allowed user, a refused user', async () => {
    const c = await mariadbConnector.createConnection({
      host: '127.0.0.1',
      port: t.mysqlPort,
      user: 'alice',
      database: 'shop',
      ssl: ssl(),
    });
    try {
      await c.query('SET @marker = 7');
      await c.changeUser({ user: 'alice', database: 'shop' });
      expect(await c.query('SELECT CURRENT_USER() AS u, @marker AS m')).toEqual([{ u: 'alice@%', m: null }]);
      await c.changeUser({ user: 'reader', database: 'shop' });
      expect(await c.query('SELECT CURRENT_USER() AS u, COUNT(*) AS n FROM items')).toEqual([
        { u: 'reader@%', n: 1n },
      ]);
      await expect(c.changeUser({ user: 'bob', database: 'shop' })).rejects.toMatchObject({
        errno: 1045,
        sqlMessage: expect.stringMatching(/"bob".*this connection is closed/),
      });
      await expect(c.query('SELECT 1')).rejects.toBeDefined();
    } finally {
      await c.destroy();
    }
  });

  it('mariadb npm pool that resets connections (COM_RESET_CONNECTION) hands out clean sessions', async () => {
    const pool = mariadbConnector.createPool({
      host: '127.0.0.1',
      port: t.mysqlPort,
      user: 'alice',
      database: 'shop',
      ssl: ssl(),
      connectionLimit: 1,
      resetAfterUse: true,
    });
    try {
      const a = await pool.getConnection();
      await a.query('SET @left = 1');
      await a.release();
      const b = await pool.getConnection();
      expect(await b.query('SELECT @left AS l, CURRENT_USER() AS u')).toEqual([{ l: null, u: 'alice@%' }]);
      await b.release();
    } finally {
      await pool.end();
    }
  });

  it('mysql2 changeUser to another allowed user, and a pool that resets connections on release', async () => {
    const c = await mysql2.createConnection({
      host: '127.0.0.1',
      port: t.mysqlPort,
      user: 'alice',
      database: 'shop',
      ssl: ssl(),
    });
    try {
      await c.changeUser({ user: 'reader', database: 'shop' });
      const [rows] = await c.query('SELECT CURRENT_USER() AS u');
      expect(rows).toEqual([{ u: 'reader@%' }]);
      // A statement prepared as reader runs as reader.
      const [n] = await c.execute('SELECT COUNT(*) AS n FROM items WHERE id = ?', [1]);
      expect(n).toEqual([{ n: 1 }]);
    } finally {
      await c.end();
    }
    const pool = mysql2.createPool({
      host: '127.0.0.1',
      port: t.mysqlPort,
      user: 'alice',
      database: 'shop',
      ssl: ssl(),
      connectionLimit: 1,
      resetOnRelease: true,
    });
    try {
      const a = await pool.getConnection();
      await a.query('SET @left = 1');
      a.release();
      const b = await pool.getConnection();
      const [rows] = await b.query('SELECT @left AS l');
      expect(rows).toEqual([{ l: null }]);
      b.release();
    } finally {
      await pool.end();
    }
  });

  it('refuses a USE that only NO_BACKSLASH_ESCAPES lexing shows (the mariadb client, one multi-statement query)', async () => {
    // Under NO_BACKSLASH_ESCAPES the server reads "\" as a whole string, then runs USE secret.
    const r = await mariadb(
      [
        '-h127.0.0.1',
        `-P${t.mysqlPort}`,
        '-ualice',
        '-Dshop',
        `--ssl-ca=${t.hostCaFile}`,
        `--ssl-cert=${dave.cert}`,
        `--ssl-key=${dave.key}`,
        '--force',
        '-N',
        '-B',
      ],
      {
        input: [
          "SET sql_mode = 'NO_BACKSLASH_ESCAPES';",
          'DELIMITER //',
          'SELECT "\\";USE secret;SELECT "x"//',
          'DELIMITER ;',
          'SELECT DATABASE();',
        ].join('\n'),
      },
    );
    expect(r.stderr).toMatch(/ERROR 1044 \(42000\).*"secret"/);
    expect(r.stdout.trim().split('\n').at(-1)).toBe('shop');
  });

  /** Waits until the database runs a statement containing `marker` (what a cancel then stops). */
  const running = (marker: string) =>
    waitFor(
      async () =>
        Number(
          (
            await db.sql(
              `SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE '%${marker}%' AND ID <> CONNECTION_ID()`,
            )
          ).trim(),
        ) > 0 || undefined,
      `the database to run ${marker}`,
      20_000,
    );
  const cliArgs = (cert: CertFiles = dave, user = 'alice') => [
    '-h127.0.0.1',
    `-P${t.mysqlPort}`,
    `-u${user}`,
    '-Dshop',
    `--ssl-ca=${t.hostCaFile}`,
    `--ssl-cert=${cert.cert}`,
    `--ssl-key=${cert.key}`,
    '-N',
    '-B',
  ];
  const my2 = (user = 'alice') =>
    mysql2.createConnection({ host: '127.0.0.1', port: t.mysqlPort, user, database: 'shop', ssl: ssl() });
  /** The connection id a mysql2 connection got in its greeting. */
  const greetingId = (c: mysql2.Connection) =>
    (c as unknown as { connection: { threadId: number } }).connection.threadId;

  it('KILL QUERY <id from the greeting> on a second connection stops the statement on the first', async () => {
    const a = await my2();
    try {
      const id = greetingId(a);
      const [[{ cid }]] = (await a.query('SELECT CONNECTION_ID() AS cid')) as unknown as [[{ cid: number }]];
      // The greeting went out before the login, so its id is the gateway's, not the database's.
      expect(id).not.toBe(cid);
      expect(id).toBeGreaterThanOrEqual(2 ** 30);
      const slow = a.query('SELECT SLEEP(30) /* kill-1 */ FROM items').then(
        () => 'finished',
        (e: { errno?: number }) => e.errno,
      );
      await running('kill-1');
      const r = await mariadb([...cliArgs(), '-e', `KILL QUERY ${id}`]);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      // ER_QUERY_INTERRUPTED: the statement stopped; the connection lives on.
      expect(await slow).toBe(1317);
      const [rows] = await a.query('SELECT 1 AS ok');
      expect(rows).toEqual([{ ok: 1 }]);
      const cancels = (await events('db.cancel')) as unknown as {
        success: boolean;
        message: string;
        user: string;
      }[];
      expect(cancels).toContainEqual(
        expect.objectContaining({
          success: true,
          user: 'dave',
          message: expect.stringContaining(`KILL QUERY ${id} sent to shop as KILL QUERY ${cid}`),
        }),
      );
    } finally {
      a.destroy();
    }
  });

  it('a KILL through the gateway kills no more than the database allows the killing database user', async () => {
    const a = await my2('alice');
    const b = await my2('reader');
    try {
      const id = greetingId(a);
      const slow = a.query('SELECT SLEEP(3) /* kill-2 */ FROM items').then(
        () => 'finished',
        (e: { errno?: number }) => e.errno,
      );
      await running('kill-2');
      // reader is not alice and has no CONNECTION ADMIN: MariaDB refuses, as it would the database's own id.
      await expect(b.query(`KILL QUERY ${id}`)).rejects.toMatchObject({ errno: 1095 });
      expect(await slow).toBe('finished');
    } finally {
      a.destroy();
      b.destroy();
    }
  });

  it("the mariadb client's reconnect (\\r, connect) logs in again as a new session", async () => {
    const r = await mariadb(cliArgs(), {
      input:
        'SET @x = 1;\nSELECT CONNECTION_ID(), @x;\nconnect\nSELECT CONNECTION_ID(), @x, CURRENT_USER();\n',
    });
    expect(r.stderr).toBe('');
    const [before, after] = r.stdout
      .trim()
      .split('\n')
      .map((l) => l.split('\t'));
    expect(before?.[1]).toBe('1');
    expect(after?.[0]).not.toBe(before?.[0]);
    expect(after?.slice(1)).toEqual(['NULL', 'alice@%']);
  });

  it("the mariadb client's Ctrl-C stops the running query (dedicated port and local tunnel)", async () => {
    // The client's kill connection names no database: the certificate's does (gatehouse db login shop
    // --db-name shop), as a role that restricts db_names allows no connection without one.
    const withDb = await userCert(t.gw, dir, 'dave-shop', {
      user: 'dave',
      roles: ['my-two'],
      route: { kind: 'db', name: 'shop', database: 'shop' },
    });
    const tunnel = await localTunnel(t.port, t.hostCaPem, withDb);
    try {
      const sigint = async (args: string[], marker: string) => {
        let child: ChildProcess | undefined;
        const done = mariadb([...args, '-e', `SELECT SLEEP(30) AS ${marker} FROM items`], {
          onSpawn: (c) => {
            child = c;
          },
          timeoutMs: 60_000,
        });
        await running(marker);
        child?.kill('SIGINT');
        return done;
      };
      const direct = await sigint(cliArgs(withDb), 'kill3');
      expect(direct.stdout).toMatch(/Ctrl-C -- query killed/);
      expect(direct.stderr).toMatch(/ERROR 1317/);
      const tunnelled = await sigint(
        ['-h127.0.0.1', `-P${tunnel.port}`, '-ualice', '-Dshop', '--skip-ssl', '-N', '-B'],
        'kill4',
      );
      expect(tunnelled.stdout).toMatch(/Ctrl-C -- query killed/);
      expect(tunnelled.stderr).toMatch(/ERROR 1317/);
    } finally {
      await tunnel.close();
    }
  });

  it("Connector/J's Statement.cancel() stops the running statement", async () => {
    // Connector/J takes a PKCS#12 key store for its client certificate.
    const p12 = join(dir, 'dave.p12');
    await run('openssl', [
      'pkcs12',
      '-export',
      '-in',
      dave.cert,
      '-inkey',
      dave.key,
      '-out',
      p12,
      '-passout',
      'pass:changeit',
    ]);
    const url =
      `jdbc:mariadb://127.0.0.1:${t.mysqlPort}/shop?user=alice&useSsl=true` +
      `&serverSslCert=${t.hostCaFile}&disableSslHostnameVerification=true` +
      `&keyStore=file://${p12}&keyStorePassword=changeit&keyStoreType=PKCS12`;
    const java = spawn(
      '/usr/bin/java',
      [
        '-cp',
        CONNECTOR_J,
        join(import.meta.dirname, 'java', 'Cancel.java'),
        url,
        'SELECT SLEEP(30) AS kill5 FROM items',
      ],
      { stdio: ['pipe', 'pipe', 'pipe'] },
    );
    let out = '';
    java.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    java.stderr.on('data', (d: Buffer) => {
      out += d.toString();
    });
    const exited = new Promise<number | null>((resolve) => java.on('close', resolve));
    try {
      await running('kill5');
      java.stdin.end('cancel\n');
      expect(await exited).toBe(0);
      expect(out).toMatch(/interrupted 1317 /);
      expect(out).toMatch(/connection still usable/);
    } finally {
      java.kill('SIGKILL');
    }
  }, 60_000);
});
