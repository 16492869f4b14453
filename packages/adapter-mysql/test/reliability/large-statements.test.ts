import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AuditEvent } from '@gatehouse/audit';
import mysql2 from 'mysql2/promise';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fileSha256, newTlsKey, peakRss, waitFor, writeRepeated } from '../../../core/test/helpers.js';
import { type CertFiles, type MysqlGateway, mariadb, startMysqlGateway, userCert } from '../helpers.js';
import { type Mariadb, opensslSubject, startMariadb } from '../peers.js';

const ROLE = `kind: role
name: my-big
allow:
  db_labels: { engine: mariadb }
  db_users: [alice]
  db_names: [shop]
`;
const MAX_QUERY_BYTES = 16 * 1024;
const MAX_PARAMETER_BYTES = 1024;

type QueryEvent = Extract<AuditEvent, { type: 'db.session.query' }>;

describe('one huge statement costs the gateway and the audit a bounded amount (real mariadb client, mysql2, MariaDB 10.11)', () => {
  let t: MysqlGateway;
  let db: Mariadb;
  let dir: string;
  let alice: CertFiles;
  const direct = () => [
    '-h127.0.0.1',
    `-P${t.mysqlPort}`,
    '-ualice',
    '-Dshop',
    `--ssl-ca=${t.hostCaFile}`,
    `--ssl-cert=${alice.cert}`,
    `--ssl-key=${alice.key}`,
    '--ssl-verify-server-cert',
    '--max-allowed-packet=512M',
    '-N',
    '-B',
  ];
  const queries = async () =>
    (await t.gw.audit.search({ types: ['db.session.query'], limit: 1000 })).events as QueryEvent[];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'gh-mybig-'));
    t = await startMysqlGateway(
      // As large as the server's max_allowed_packet (the default is 1 GiB: MySQL's own ceiling).
      { handshakeTimeoutMs: 5_000, maxPacketBytes: 512 * 1024 * 1024 },
      { audit: { max_query_bytes: MAX_QUERY_BYTES, max_parameter_bytes: MAX_PARAMETER_BYTES } },
    );
    db = await startMariadb({
      clientCaPem: t.gw.exportCa('mariadb'),
      extraArgs: ['--max-allowed-packet=512M'],
    });
    await t.gw.admin.addDatabase({
      name: 'shop',
      protocol: 'mysql',
      uri: `localhost:${db.port}`,
      ca_pem: db.serverCaPem,
      labels: { engine: 'mariadb' },
    });
    await t.gw.admin.putRole(ROLE, { create: true });
    await t.gw.admin.createUser({ name: 'alice', roles: ['my-big'], traits: {} });
    alice = await userCert(t.gw, dir, 'alice', {
      user: 'alice',
      roles: ['my-big'],
      route: { kind: 'db', name: 'shop' },
    });
    const probe = await t.gw.authorities.issueDbClientCert({
      publicKeyPem: newTlsKey().publicPem,
      dbUser: 'alice',
      notBefore: new Date(Date.now() - 60_000),
      notAfter: new Date(Date.now() + 60_000),
    });
    await db.sql(
      [
        'CREATE DATABASE shop',
        'CREATE DATABASE secret',
        `CREATE USER alice@'%' REQUIRE SUBJECT '${opensslSubject(probe.cert)}'`,
        "GRANT ALL ON shop.* TO alice@'%'",
        "GRANT ALL ON secret.* TO alice@'%'",
      ].join(';'),
    );
  }, 120_000);

  afterAll(async () => {
    await t?.close();
    await db?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('runs a 200 MB query from the mariadb client (13 frames of 16 MiB), audits its prefix, length and SHA-256, and keeps the gateway memory bounded', async () => {
    const n = 200 * 1024 * 1024;
    const file = join(dir, 'huge.sql');
    await writeRepeated(file, "SELECT LENGTH('", 'x', n, "') AS n;\n");
    // The client sends the statement without its delimiter and newline.
    const sent = statSync(file).size - 2;
    const {
      result: r,
      baseline,
      peak,
    } = await peakRss(() => mariadb(direct(), { inputFile: file, timeoutMs: 180_000 }));
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe(String(n));
    // The message was 200 MB; the gateway held pieces of it (and garbage not yet collected) and a 16 KiB prefix.
    expect(peak - baseline).toBeLessThan(n / 3);
    const e = (await queries()).find((q) => q.query.startsWith("SELECT LENGTH('xxx"));
    expect(e).toMatchObject({
      query_truncated: true,
      query_length: sent,
      query_sha256: await fileSha256(file, 0, sent),
      db_user: 'alice',
    });
    expect(Buffer.byteLength(e?.query ?? '')).toBe(MAX_QUERY_BYTES);
  }, 240_000);

  it('checks a USE at the end of a huge query before its last bytes go, and ends the session when it is denied', async () => {
    const file = join(dir, 'huge-use.sql');
    // Another delimiter, so the client sends both statements as one COM_QUERY (multi-statements).
    await writeRepeated(file, "DELIMITER //\nSELECT LENGTH('", 'y', 20 * 1024 * 1024, "'); USE secret //\n");
    const r = await mariadb(direct(), { inputFile: file, timeoutMs: 120_000 });
    expect(r.stderr).toMatch(/ERROR 1044 \(42000\).*"secret"/);
    // The database never ran the statement: the session ended with the packet incomplete.
    expect(r.stdout).not.toContain(String(20 * 1024 * 1024));
    await waitFor(async () => {
      const ends = (await t.gw.audit.search({ types: ['db.session.end'], limit: 100 })).events;
      return ends.some((e) => /"secret"/.test((e as { error?: string }).error ?? '')) || undefined;
    }, 'the audited end of the refused session');
  }, 180_000);

  it('streams a 20 MB bound parameter (mysql2 COM_STMT_EXECUTE over two frames) and audits its prefix, length and hash', async () => {
    const value = `${'é'.repeat(1000)}${'p'.repeat(20 * 1024 * 1024)}`;
    const c = await mysql2.createConnection({
      host: '127.0.0.1',
      port: t.mysqlPort,
      user: 'alice',
      database: 'shop',
      ssl: { ca: t.hostCaPem, cert: alice.certPem, key: alice.keyPem },
      maxPreparedStatements: 4,
    });
    try {
      const [rows] = await c.execute('SELECT CHAR_LENGTH(?) AS chars, ? + 1 AS small', [value, 41]);
      expect(rows).toEqual([{ chars: value.length, small: 42 }]);
    } finally {
      await c.end();
    }
    const e = (await queries()).find(
      (q) => q.query === 'SELECT CHAR_LENGTH(?) AS chars, ? + 1 AS small' && q.statement !== 'prepare',
    );
    const bytes = Buffer.from(value);
    expect(e).toMatchObject({
      parameters: ['é'.repeat(MAX_PARAMETER_BYTES / 2), '41'],
      parameters_truncated: [
        { index: 0, length: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex') },
      ],
    });
  }, 120_000);
});
