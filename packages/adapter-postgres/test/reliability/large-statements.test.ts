import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AuditEvent } from '@gatehouse/audit';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  fileSha256,
  peakRss,
  startGateway,
  type TestGateway,
  writeRepeated,
} from '../../../core/test/helpers.js';
import { postgres } from '../../src/index.js';
import { type CertFiles, conninfo, psql, userCert } from '../helpers.js';
import { type Postgres, startPostgres } from '../peers.js';

const ROLE = `kind: role
name: pg-big
allow:
  db_labels: { engine: postgres }
  db_users: [alice]
  db_names: [app]
`;
const MAX_QUERY_BYTES = 16 * 1024;
const MAX_PARAMETER_BYTES = 1024;

type QueryEvent = Extract<AuditEvent, { type: 'db.session.query' }>;

describe('one huge statement costs the gateway and the audit a bounded amount (real psql, pg, PostgreSQL 15)', () => {
  let t: TestGateway;
  let db: Postgres;
  let dir: string;
  let hostCa: string;
  let alice: CertFiles;
  const conn = () =>
    conninfo({
      host: 'localhost',
      port: t.port,
      user: 'alice',
      dbname: 'app',
      sslmode: 'verify-full',
      sslrootcert: hostCa,
      sslcert: alice.cert,
      sslkey: alice.key,
    });
  const queries = async () =>
    (await t.gw.audit.search({ types: ['db.session.query'], limit: 1000 })).events as QueryEvent[];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'gh-pgbig-'));
    t = await startGateway({
      values: { audit: { max_query_bytes: MAX_QUERY_BYTES, max_parameter_bytes: MAX_PARAMETER_BYTES } },
    });
    t.gw.use(postgres());
    hostCa = join(dir, 'host-ca.pem');
    writeFileSync(hostCa, t.caPem.join('\n'));
    db = await startPostgres({ dbCaPem: t.gw.exportCa('postgres'), roles: ['alice'], databases: ['app'] });
    await t.gw.admin.addDatabase({
      name: 'orders',
      protocol: 'postgres',
      uri: `localhost:${db.port}`,
      ca_pem: db.serverCaPem,
      labels: { engine: 'postgres' },
    });
    await t.gw.admin.putRole(ROLE, { create: true });
    await t.gw.admin.createUser({ name: 'alice', roles: ['pg-big'], traits: {} });
    alice = await userCert(t.gw, dir, 'alice', {
      user: 'alice',
      roles: ['pg-big'],
      route: { kind: 'db', name: 'orders' },
    });
  }, 60_000);

  afterAll(async () => {
    await t?.close();
    await db?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('runs a 200 MB query from psql, audits its prefix, length and SHA-256, and keeps the gateway memory bounded', async () => {
    const n = 200 * 1024 * 1024;
    const file = join(dir, 'huge.sql');
    await writeRepeated(file, "select length('", 'x', n, "') as n;\n");
    // psql sends the statement with its semicolon, without the newline.
    const sent = statSync(file).size - 1;
    const {
      result: r,
      baseline,
      peak,
    } = await peakRss(() => psql(['-At', '-d', conn()], { inputFile: file, timeoutMs: 180_000 }));
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe(String(n));
    // The message was 200 MB; the gateway held pieces of it (and garbage not yet collected) and a 16 KiB prefix.
    expect(peak - baseline).toBeLessThan(n / 3);
    const e = (await queries()).find((q) => q.query.startsWith("select length('xxx"));
    expect(e).toMatchObject({
      query_truncated: true,
      query_length: sent,
      query_sha256: await fileSha256(file, 0, sent),
      db_user: 'alice',
    });
    expect(Buffer.byteLength(e?.query ?? '')).toBe(MAX_QUERY_BYTES);
    // Search works on what was kept.
    const found = await t.gw.audit.search({ q: 'length', types: ['db.session.query'], limit: 10 });
    expect(found.events.some((x) => x.id === e?.id)).toBe(true);
  }, 240_000);

  it('streams a bound parameter of 5 MB (extended protocol) and audits its prefix, length and hash', async () => {
    const value = `${'é'.repeat(1000)}${'p'.repeat(5 * 1024 * 1024)}`;
    const blob = Buffer.alloc(3 * 1024 * 1024, 7);
    const c = new pg.Client({
      host: 'localhost',
      port: t.port,
      user: 'alice',
      database: 'app',
      ssl: {
        ca: readFileSync(hostCa, 'utf8'),
        cert: alice.certPem,
        key: alice.keyPem,
        servername: 'localhost',
      },
    });
    await c.connect();
    try {
      const res = await c.query({
        name: 'sizes',
        text: 'select length($1::text) as chars, length($2::bytea) as bytes, $3::int as small',
        values: [value, blob, 42],
      });
      expect(res.rows).toEqual([{ chars: value.length, bytes: blob.length, small: 42 }]);
    } finally {
      await c.end();
    }
    const e = (await queries()).find((q) => q.statement === 'sizes');
    const bytes = Buffer.from(value);
    expect(e).toMatchObject({
      query: 'select length($1::text) as chars, length($2::bytea) as bytes, $3::int as small',
      parameters_truncated: [
        { index: 0, length: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex') },
        { index: 1, length: blob.length, sha256: createHash('sha256').update(blob).digest('hex') },
      ],
    });
    expect(e?.parameters?.[0]).toBe('é'.repeat(MAX_PARAMETER_BYTES / 2));
    // pg sends Buffers as binary parameters: shown as hex of the bytes kept.
    expect(e?.parameters?.[1]).toBe(`\\x${'07'.repeat(MAX_PARAMETER_BYTES)}`);
    expect(e?.parameters?.[2]).toBe('42');
  }, 60_000);
});
