import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import type { AuditEvent } from '@gatehouse/audit';
import { freePort } from '@gatehouse/core/testing';
import mysql2 from 'mysql2/promise';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../../core/test/helpers.js';
import { encodePacket, encodeSslRequest } from '../src/index.js';
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
  let tunnel: { port: number; close(): Promise<void> };

  /** mariadb client args for the dedicated port with a certificate. */
  const direct = (cert: CertFiles | undefined = alice, user = 'alice', database = 'shop') => [
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
      ssl: { ca: t.hostCaPem, cert: cert.certPem, key: cert.keyPem, servername: 'localhost' },
      ...o,
    });
  const events = async (type: string): Promise<AuditEvent[]> =>
    (await t.gw.audit.search({ types: [type], limit: 1000 })).events;
  const queries = async (): Promise<AuditEvent[]> => events('db.session.query');

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'gh-myt-'));
    t = await startMysqlGateway({ handshakeTimeoutMs: 1_500 });
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
});
