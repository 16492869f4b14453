import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createGateway, type Gateway } from '@gatehouse/core';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SmallDisk } from '../../../audit/test/reliability/small-disk.js';
import { postgres } from '../../src/index.js';
import { type CertFiles, userCert } from '../helpers.js';
import { type Postgres, startPostgres } from '../peers.js';

const ROLE = `kind: role
name: pg-dev
allow:
  db_labels: { engine: postgres }
  db_users: [alice]
  db_names: [app]
`;

// No audit, no statement: when the record of a statement cannot be written
// (the gateway's disk is full, so neither the JSON-lines file nor the spool
// takes it), the statement does not reach the database and the session ends
// with the reason. Kept green through the audit group-commit work (issue 22).
describe('a statement whose audit record cannot be written does not run (real pg client, PostgreSQL 15, full tmpfs)', () => {
  let disk: SmallDisk;
  let gw: Gateway;
  let port: number;
  let db: Postgres;
  let dir: string;
  let alice: CertFiles;
  let hostCa: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'gh-pgfull-'));
    disk = new SmallDisk(64 * 1024 * 1024);
    gw = await createGateway({ dataDir: join(disk.dir, 'gw'), secondFactor: 'off', env: {} });
    gw.use(postgres());
    ({ port } = await gw.listen({ host: '127.0.0.1', port: 0 }));
    hostCa = gw.authorities
      .get('host')
      .map((k) => k.x509CertPem)
      .join('\n');
    writeFileSync(join(dir, 'host-ca.pem'), hostCa);
    db = await startPostgres({ dbCaPem: gw.exportCa('postgres'), roles: ['alice'], databases: ['app'] });
    await db.sql('GRANT ALL ON SCHEMA public TO alice', 'app');
    await db.sql('CREATE TABLE probe (id int); ALTER TABLE probe OWNER TO alice', 'app');
    await gw.admin.addDatabase({
      name: 'orders',
      protocol: 'postgres',
      uri: `localhost:${db.port}`,
      ca_pem: db.serverCaPem,
      labels: { engine: 'postgres' },
    });
    await gw.admin.putRole(ROLE, { create: true });
    await gw.admin.createUser({ name: 'alice', roles: ['pg-dev'], traits: {} });
    alice = await userCert(gw, dir, 'alice', {
      user: 'alice',
      roles: ['pg-dev'],
      route: { kind: 'db', name: 'orders' },
    });
  }, 60_000);

  afterAll(async () => {
    disk?.free();
    await gw?.close();
    await db?.stop();
    disk?.unmount();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const client = () =>
    new pg.Client({
      host: 'localhost',
      port,
      user: 'alice',
      database: 'app',
      ssl: { ca: readFileSync(join(dir, 'host-ca.pem'), 'utf8'), cert: alice.certPem, key: alice.keyPem },
    });

  it('refuses the statement with the reason and ends the session; every row that is there has its record', async () => {
    const c = client();
    const errors: Error[] = [];
    c.on('error', (err) => errors.push(err));
    await c.connect();
    let refusedId = 0;
    let refused: Error | undefined;
    try {
      // A statement first, while the disk has room: the session works and is audited.
      await c.query('INSERT INTO probe VALUES (1)');
      disk.fill();
      // The last page of the JSON-lines file may still take a few lines: insert until refused.
      for (let id = 2; id < 1000 && !refused; id++) {
        refused = await c.query(`INSERT INTO probe VALUES (${id})`).then(
          () => undefined,
          (err: Error) => err,
        );
        refusedId = id;
      }
    } finally {
      disk.free();
      await c.end().catch(() => undefined);
    }
    expect(refused?.message).toMatch(/audit log is unavailable/);
    const rows = (await db.sql('SELECT id FROM probe ORDER BY id', 'app')).match(/^\s*\d+\s*$/gm) ?? [];
    const ids = rows.map((r) => Number(r.trim()));
    expect(ids).toContain(1);
    expect(ids).not.toContain(refusedId);
    // Every statement that ran has its record in the JSON-lines file (the durable record it waited for).
    const auditDir = join(disk.dir, 'gw', 'audit');
    const recorded = new Set(
      readdirSync(auditDir)
        .filter((f) => f.endsWith('.jsonl'))
        .flatMap((f) => readFileSync(join(auditDir, f), 'utf8').split('\n'))
        .filter((l) => l.includes('"type":"db.session.query"'))
        .map((l) => (JSON.parse(l) as { query: string }).query),
    );
    for (const id of ids) expect(recorded).toContain(`INSERT INTO probe VALUES (${id})`);
    expect(recorded).not.toContain(`INSERT INTO probe VALUES (${refusedId})`);
  });
});
