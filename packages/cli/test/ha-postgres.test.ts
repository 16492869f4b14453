import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AuditEvent } from '@gatehouse/audit';
import { fetchPinnedCa, GatehouseClient, parseHostPort } from '@gatehouse/core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type Postgres, startPostgres } from '../../adapter-postgres/test/peers.js';
import { newTlsKey, runClient, waitFor } from '../../core/test/helpers.js';
import {
  addAccessUser,
  addNode,
  auditEvents,
  BIN,
  type Daemon,
  PASSWORD,
  run,
  startDaemon,
  startNodeSshd,
} from './harness.js';

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

describe('three gateways on one PostgreSQL: one audit log, recordings playable anywhere', () => {
  it('audit search on C finds what A and B wrote, and what B spooled while PostgreSQL was down; a recording made on B plays on C', async () => {
    const db = await database();
    const a = await startDaemon({ cluster: 'ha3', extraConfig: backendYaml(db) });
    daemons.push(a);
    // The admin takes the invite on A and works from C (before B and C start: each start of a cluster whose admin has no password yet issues a new invite).
    const home = join(a.root, 'home-admin');
    const as = { env: { GATEHOUSE_HOME: home } };
    const inv = await run(
      ['accept-invite', '--proxy', a.proxy, '--ca-pin', a.pin, a.adminToken, '--password-stdin'],
      {
        ...as,
        input: `${PASSWORD}\n`,
      },
    );
    expect(inv.code, inv.stderr).toBe(0);
    const b = await startDaemon({ cluster: 'ha3', extraConfig: backendYaml(db), ready: 'listening' });
    daemons.push(b);
    const c = await startDaemon({ cluster: 'ha3', extraConfig: backendYaml(db), ready: 'listening' });
    daemons.push(c);
    const li = await run(
      ['login', '--proxy', c.proxy, '--ca-pin', c.pin, '--user', 'admin', '--password-stdin'],
      {
        ...as,
        input: `${PASSWORD}\n`,
      },
    );
    expect(li.code, li.stderr).toBe(0);

    const login = `gha${randomBytes(3).toString('hex')}`;
    execFileSync('useradd', ['-m', '-s', '/bin/bash', login]);
    execFileSync('usermod', ['-p', '*', login]);
    const sshd = await startNodeSshd(b, ['PrintMotd no'], {
      [SECRETS_KEY_ENV]: process.env[SECRETS_KEY_ENV],
    });
    try {
      await addAccessUser(a, 'quinn', login);
      await addNode(a, 'node1', sshd.port);
      await loginOn(a, 'quinn');
      await loginOn(b, 'quinn');
      const loginIds = (d: Daemon) =>
        auditEvents(d)
          .filter((e) => e.type === 'user.login' && e.user === 'quinn')
          .map((e) => e.id);
      const search = async (args: string[]): Promise<AuditEvent[]> => {
        const r = await run(['audit', 'search', '--json', '--all', ...args], as);
        expect(r.code, r.stderr).toBe(0);
        return (JSON.parse(r.stdout) as { events: AuditEvent[] }).events;
      };
      const [fromA, fromB] = [loginIds(a), loginIds(b)];
      expect(fromA).toHaveLength(1);
      expect(fromB).toHaveLength(1);
      // Read-your-writes holds on the gateway that wrote; A's and B's events reach the shared index
      // when their index writers get to them (a moment later), so C's search is polled.
      await expect
        .poll(async () => (await search(['--type', 'user.login', '--user', 'quinn'])).map((e) => e.id), {
          timeout: 15_000,
        })
        .toEqual(expect.arrayContaining([...fromA, ...fromB]));
      // Full text across gateways too.
      expect((await search(['--query', 'quinn'])).map((e) => e.id)).toEqual(
        expect.arrayContaining([...fromA, ...fromB]),
      );

      // PostgreSQL goes away: B refuses a login (fail closed) and audits it in its files; the index write is spooled.
      await server.pause();
      try {
        await expect(loginOn(b, 'quinn')).rejects.toMatchObject({ code: 'GH_ERR_BACKEND_UNAVAILABLE' });
      } finally {
        await server.start();
      }
      const refused = auditEvents(b).find(
        (e) =>
          e.type === 'user.login' &&
          e.user === 'quinn' &&
          (e as { reason?: string }).reason === 'backend_unavailable',
      );
      expect(refused).toBeDefined();
      // B replays its spool into the shared index by itself once PostgreSQL is back.
      await waitFor(
        async () => (await search(['--user', 'quinn'])).some((e) => e.id === refused!.id) || undefined,
        'the event B spooled during the outage in the search on C',
        30_000,
      );

      // An SSH session with a terminal on B is recorded there, uploaded when it ends, and plays on C.
      const qhome = join(b.root, 'home-quinn');
      const ql = await run(
        ['login', '--proxy', b.proxy, '--ca-pin', b.pin, '--user', 'quinn', '--password-stdin'],
        {
          env: { GATEHOUSE_HOME: qhome },
          input: `${PASSWORD}\n`,
        },
      );
      expect(ql.code, ql.stderr).toBe(0);
      // While it runs on B, C lists it and refuses to play it, naming B (not "not found", not a cut-off playback).
      const live = spawn(process.execPath, [BIN, 'ssh', '-tt', `${login}@node1`, 'exec sleep 120'], {
        env: { ...process.env, GATEHOUSE_HOME: qhome },
        stdio: ['pipe', 'ignore', 'ignore'],
      });
      let liveId: string;
      try {
        liveId = await waitFor(
          async () => {
            const r = await run(['recordings', 'ls', '--json', '--user', 'quinn'], as);
            expect(r.code, r.stderr).toBe(0);
            return (JSON.parse(r.stdout) as { session_id: string; ended?: string }[]).find((m) => !m.ended)
              ?.session_id;
          },
          'the live recording on B listed on C',
          30_000,
        );
        const early = await run(['play', liveId, '--format', 'text'], as);
        expect(early.code).not.toBe(0);
        expect(early.stderr).toMatch(
          new RegExp(`recording ${liveId} was made on gateway \\S+:${b.dataDir} and is not uploaded yet`),
        );
      } finally {
        live.kill('SIGTERM');
      }
      const ssh = await runClient(
        process.execPath,
        [BIN, 'ssh', '-tt', `${login}@node1`, 'echo recorded-$((40+2))'],
        {
          env: { ...process.env, GATEHOUSE_HOME: qhome },
          input: '',
          timeoutMs: 30_000,
        },
      );
      expect(ssh.code, ssh.stderr).toBe(0);
      const id = await waitFor(
        async () => {
          const r = await run(['recordings', 'ls', '--json', '--user', 'quinn'], as);
          expect(r.code, r.stderr).toBe(0);
          return (JSON.parse(r.stdout) as { session_id: string; ended?: string }[]).find(
            (m) => m.ended && m.session_id !== liveId,
          )?.session_id;
        },
        'the recording made on B listed on C',
        30_000,
      );
      // Not on C's disk: C plays the copy B uploaded.
      expect(existsSync(join(c.dataDir, 'recordings', id))).toBe(false);
      expect(existsSync(join(b.dataDir, 'recordings', id))).toBe(true);
      // Listed with its end from PostgreSQL means uploaded (the end and the upload commit together).
      const play = await run(['play', id, '--format', 'text'], as);
      expect(play.code, play.stderr).toBe(0);
      expect(play.stdout).toContain('recorded-42');
    } finally {
      await sshd.stop();
      execFileSync('userdel', ['-r', '-f', login], { stdio: 'ignore' });
    }
  }, 300_000);
});

describe('gatehouse backup with a shared backend', () => {
  it('refuses and names the native tool (pg_dump, etcdctl snapshot save) and the secrets key, writing nothing', async () => {
    const dir = mkdtempSync(join(root, 'bk-'));
    const out = join(dir, 'gh.backup');
    const cases: [string, RegExp][] = [
      [
        backendYaml('nosuchdb'),
        /in PostgreSQL \(localhost:\d+\/nosuchdb\)[\s\S]*hint: .*pg_dump -Fc[\s\S]*secrets key/,
      ],
      [
        'backend: { type: etcd, endpoints: ["http://127.0.0.1:2379"] }\n',
        /in etcd \(http:\/\/127\.0\.0\.1:2379, prefix gatehouse\/\)[\s\S]*hint: .*etcdctl snapshot save[\s\S]*secrets key/,
      ],
    ];
    for (const [yaml, said] of cases) {
      const config = join(dir, 'gatehouse.yaml');
      writeFileSync(config, `data_dir: ${join(dir, 'data')}\n${yaml}`);
      // No passphrase given: the refusal comes first, not a question about the passphrase.
      const r = await run(['backup', '--config', config, '--out', out]);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(said);
      expect(existsSync(out)).toBe(false);
    }
  });
});
