import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fetchPinnedCa, GatehouseClient, parseHostPort } from '@gatehouse/core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type Postgres, startPostgres } from '../../adapter-postgres/test/peers.js';
import { newTlsKey } from '../../core/test/helpers.js';
import { addAccessUser, type Daemon, PASSWORD, run, startDaemon } from './harness.js';

/**
 * `gatehouse start --config` with `backend: { type: postgres }` (the BUILT
 * binary: run `npx tsc -b` first): two daemons on one real PostgreSQL, and
 * what start says about a wrong URI or a database that is not up yet.
 */
let server: Postgres;
let root: string;
let dbs = 0;
const daemons: Daemon[] = [];
const SECRETS_KEY_ENV = 'GATEHOUSE_SECRETS_KEY';

beforeAll(async () => {
  server = await startPostgres({ hba: ['hostssl all gatehouse 127.0.0.1/32 scram-sha-256'] });
  await server.sql(`CREATE ROLE gatehouse LOGIN PASSWORD 'pg-pw'`);
  root = mkdtempSync(join(tmpdir(), 'gh-cli-ha-'));
  writeFileSync(join(root, 'pg-password'), 'pg-pw\n', { mode: 0o600 });
  // Every gateway (and admin command) of the cluster shares the key that seals the CAs in the database.
  process.env[SECRETS_KEY_ENV] = randomBytes(32).toString('base64');
}, 60_000);

afterAll(async () => {
  delete process.env[SECRETS_KEY_ENV];
  await server?.stop();
  if (root) rmSync(root, { recursive: true, force: true });
});

afterEach(async () => {
  for (const d of daemons.splice(0)) {
    await d.stop();
    rmSync(d.root, { recursive: true, force: true });
  }
});

async function database(): Promise<string> {
  const name = `cli${++dbs}`;
  await server.sql(`CREATE DATABASE ${name} OWNER gatehouse`);
  return name;
}

function backendYaml(db: string, uri = `postgres://gatehouse@localhost:${server.port}/${db}`): string {
  return [
    'backend:',
    '  type: postgres',
    `  uri: "${uri}"`,
    `  password_file: ${join(root, 'pg-password')}`,
    `  tls: { ca_file: ${server.serverCaFile} }`,
    '',
  ].join('\n');
}

async function loginOn(d: Daemon, user: string) {
  const { host, port } = parseHostPort(d.proxy);
  const ca = await fetchPinnedCa({ host, port, pin: d.pin });
  const client = new GatehouseClient({ proxy: d.proxy, caPem: ca.caPem });
  try {
    return await client.login({ user, password: PASSWORD, tls_public_key: newTlsKey().publicPem });
  } finally {
    client.close();
  }
}

describe('gatehouse start with a PostgreSQL backend', () => {
  it('two daemons share one database: one CA, a user added through A logs in on B', async () => {
    const db = await database();
    const a = await startDaemon({ cluster: 'ha', extraConfig: backendYaml(db) });
    daemons.push(a);
    // B finds the cluster set up (its admin exists): no invite, just the listening lines.
    const b = await startDaemon({ cluster: 'ha', extraConfig: backendYaml(db), ready: 'listening' });
    daemons.push(b);
    expect(b.pin).toBe(a.pin);
    await addAccessUser(a, 'quinn', 'root');
    const res = await loginOn(b, 'quinn');
    expect(res.user).toBe('quinn');
    expect(res.tls_cert).toContain('BEGIN CERTIFICATE');
  });

  it('a wrong backend.uri stops start with an error naming it', async () => {
    const dir = mkdtempSync(join(root, 'bad-'));
    const config = join(dir, 'gatehouse.yaml');
    writeFileSync(
      config,
      `data_dir: ${join(dir, 'data')}\nlisten: 127.0.0.1:0\nbackend: { type: postgres, uri: "mysql://db1/gh" }\n`,
    );
    const r = await run(['start', '--config', config]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/backend\.uri.*scheme must be postgres/);
  });

  it('a database that is down at start: start says so, retries, and serves once it is up', async () => {
    const db = await database();
    const said = new RegExp(`PostgreSQL at localhost:${server.port}/${db} is unreachable .*retrying in`);
    await server.pause();
    let started: Promise<Daemon>;
    try {
      let saw: () => void = () => {};
      const waiting = new Promise<void>((resolve) => {
        saw = resolve;
      });
      started = startDaemon({
        cluster: 'hadown',
        extraConfig: backendYaml(db),
        onStderr: (text) => {
          if (said.test(text)) saw();
        },
      });
      started.catch(() => saw());
      await waiting;
    } finally {
      await server.start();
    }
    const d = await started;
    daemons.push(d);
    expect(d.err()).toMatch(said);
    expect(d.alive()).toBe(true);
  });
});
