import { execFile } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { AuditEvent } from '@gatehouse/audit';
import type { AccessRequestView } from '@gatehouse/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Postgres, startPostgres } from '../../adapter-postgres/test/peers.js';
import { waitFor } from '../../core/test/helpers.js';
import { auditEvents, type Daemon, PASSWORD, run, startDaemon } from './harness.js';

/**
 * Access requests end to end (the BUILT binary; run `npx tsc -b` first): a
 * real `gatehouse start`, a real PostgreSQL trusting its db CA, the real
 * psql through the gateway, and every step a person takes done with the CLI.
 */
const sh = promisify(execFile);

const ROLES = {
  // alice and dan ask for prod-db; dan's role wants two approvals and a reason.
  requester: 'kind: role\nname: requester\nallow:\n  request: { roles: [prod-db], max_duration: 4h }\n',
  strict:
    'kind: role\nname: strict\nallow:\n  request:\n    roles: [prod-db]\n    thresholds: [{ approve: 2, deny: 1 }]\n    reason: { mode: required }\n',
  'prod-db':
    'kind: role\nname: prod-db\nallow:\n  db_labels: { env: prod }\n  db_users: [alice, dan]\n  db_names: [app]\n',
  reviewer: 'kind: role\nname: reviewer\nallow:\n  review_requests: { roles: [prod-db] }\n',
};

describe('access requests with the CLI, psql and PostgreSQL through the gateway', () => {
  let daemon: Daemon;
  let db: Postgres;
  let root: string;
  const homes: Record<string, NodeJS.ProcessEnv> = {};
  const as = (who: string, args: string[]) => run(args, { env: homes[who] });
  const admin = (args: string[], input?: string) =>
    run(['--config', daemon.configFile, ...args], {
      env: { GATEHOUSE_HOME: join(root, 'home-admin') },
      ...(input === undefined ? {} : { input }),
    });
  const ok = async (p: Promise<{ code: number | null; stdout: string; stderr: string }>) => {
    const r = await p;
    expect(r.code, r.stderr).toBe(0);
    return r.stdout;
  };
  const create = async (who: string, args: string[]): Promise<AccessRequestView> =>
    JSON.parse(await ok(as(who, ['request', 'create', ...args, '--json']))) as AccessRequestView;
  const psql = (who: string, sql: string) =>
    sh('psql', ['-X', '-At', '-v', 'VERBOSITY=verbose', 'service=orders', '-c', sql], {
      env: { PATH: process.env.PATH, PGSERVICEFILE: join(root, `pg_service-${who}.conf`), HOME: root },
    }).then(
      (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
      (e: { code?: number; stdout?: string; stderr?: string }) => ({
        code: e.code ?? -1,
        stdout: e.stdout ?? '',
        stderr: e.stderr ?? '',
      }),
    );
  const events = (type: string, id?: string) =>
    auditEvents(daemon).filter(
      (e): e is AuditEvent & { request_id: string; reason: string } =>
        e.type === type && (id === undefined || (e as { request_id?: string }).request_id === id),
    );
  /** A password login (standing roles only), as after the end of a request's access. */
  const relogin = async (who: string) => {
    const login = await run(
      ['login', '--proxy', daemon.proxy, '--ca-pin', daemon.pin, '--user', who, '--password-stdin'],
      { env: homes[who], input: `${PASSWORD}\n` },
    );
    expect(login.code, login.stderr).toBe(0);
  };
  /** psql busy in pg_sleep on the server, through the gateway, once the server runs it; `done` when psql exits. */
  const longPsql = async (who: string) => {
    const done = psql(who, `select pg_sleep(120) /* ${who} */`);
    await waitFor(
      async () =>
        (
          await db.sql(
            `select count(*) from pg_stat_activity where query like 'select pg_sleep(120) /* ${who}%'`,
          )
        ).trim() === '1' || undefined,
      `${who}'s psql running pg_sleep through the gateway`,
      15_000,
    );
    return { done };
  };

  beforeAll(async () => {
    daemon = await startDaemon({ cluster: 'requests' });
    root = daemon.root;
    const dbCa = await ok(admin(['ca', 'export', '--format', 'postgres']));
    db = await startPostgres({ dbCaPem: dbCa, roles: ['alice', 'dan'], databases: ['app'] });
    const caFile = join(root, 'pg-server-ca.pem');
    writeFileSync(caFile, db.serverCaPem);
    for (const [name, text] of Object.entries(ROLES)) {
      const f = join(root, `${name}.yaml`);
      writeFileSync(f, text);
      await ok(admin(['roles', 'create', '-f', f]));
    }
    await ok(
      admin([
        'db',
        'add',
        'orders',
        '--protocol',
        'postgres',
        '--uri',
        `localhost:${db.port}`,
        '--ca-file',
        caFile,
        '--label',
        'env=prod',
      ]),
    );
    const users: Record<string, string> = {
      alice: 'requester',
      dan: 'requester,strict',
      bob: 'reviewer',
      carol: 'reviewer',
      eve: 'requester',
    };
    for (const [name, roles] of Object.entries(users)) {
      await ok(admin(['users', 'add', name, '--roles', roles, '--password-stdin'], `${PASSWORD}\n`));
      homes[name] = {
        GATEHOUSE_HOME: join(root, `home-${name}`),
        PGSERVICEFILE: join(root, `pg_service-${name}.conf`),
        HOME: root,
      };
      await relogin(name);
    }
  }, 120_000);

  afterAll(async () => {
    if (daemon) expect(await daemon.stop(), daemon.err()).toBe(0);
    await db?.stop();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  it('alice asks for prod-db, bob approves from the CLI, her psql works, and her live session ends when the request expires', async () => {
    // No standing access: the database is not hers to reach.
    const before = await as('alice', ['db', 'login', 'orders', '--db-user', 'alice', '--db-name', 'app']);
    expect(before.code).toBe(1);
    expect(before.stderr).toContain('database "orders" is not registered or not visible to you');

    const r = await create('alice', [
      '--roles',
      'prod-db',
      '--reason',
      'INC-4211: fix stuck orders',
      '--ttl',
      '45s', // leaves a loaded machine time for the steps before the live session
    ]);
    expect(r).toMatchObject({
      user: 'alice',
      roles: ['prod-db'],
      state: 'pending',
      thresholds: { approve: 1, deny: 1 },
    });
    expect(await ok(as('bob', ['request', 'ls']))).toMatch(
      new RegExp(`${r.id}\\s+alice\\s+prod-db\\s+pending`),
    );
    expect(await ok(as('bob', ['request', 'review', r.id, '--approve', '--reason', 'on call']))).toBe(
      `Reviewed access request ${r.id}: approved by you; it is now approved.\n`,
    );

    const login = JSON.parse(await ok(as('alice', ['login', '--request-id', r.id, '--json']))) as {
      roles: string[];
      expires: string;
      access_requests: string[];
    };
    expect(login.roles).toEqual(['requester', 'prod-db']);
    expect(login.access_requests).toEqual([r.id]);
    // The certificates end with the access (45 s leaves a loaded machine time for the steps before it).
    expect(Date.parse(login.expires)).toBeLessThanOrEqual(Date.parse(r.expires));
    await ok(as('alice', ['db', 'login', 'orders', '--db-user', 'alice', '--db-name', 'app']));
    const q = await psql('alice', 'select current_user, current_database()');
    expect(q.stderr).toBe('');
    expect(q.stdout.trim()).toBe('alice|app');

    const live = await longPsql('alice');
    const ended = await live.done;
    // Ended by the gateway (FATAL with the reason), long before pg_sleep(120) would have returned.
    expect(ended.code).not.toBe(0);
    expect(ended.stderr).toMatch(/FATAL: .*expired at/);
    await waitFor(
      async () =>
        (
          await db.sql(
            "select count(*) from pg_stat_activity where query like 'select pg_sleep(120) /* alice%'",
          )
        ).trim() === '0' || undefined,
      'the server-side query ending with the session',
    );
    // Her certificate ended with the access: the listener refuses it.
    const refused = await as('alice', ['request', 'show', r.id]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('run `gatehouse login` again');
    await relogin('alice');
    // Expired in the CLI and in the audit log.
    const shown = JSON.parse(await ok(as('alice', ['request', 'show', r.id, '--json']))) as AccessRequestView;
    expect(shown.state).toBe('expired');
    await waitFor(
      () => events('access_request.expire', r.id).length === 1 || undefined,
      'access_request.expire',
    );
    expect(events('access_request.create', r.id)[0]).toMatchObject({
      user: 'alice',
      requester: 'alice',
      roles: ['prod-db'],
      reason: 'INC-4211: fix stuck orders',
    });
    expect(events('access_request.review', r.id)[0]).toMatchObject({
      user: 'bob',
      verdict: 'approve',
      reason: 'on call',
      state: 'approved',
    });
    // No approval after expiry.
    const late = await as('carol', ['request', 'review', r.id, '--approve']);
    expect(late.code).toBe(1);
    expect(late.stderr).toContain(`error: access request ${r.id} expired at ${r.expires}`);
    // A new connection with the expired certificate is refused too.
    const after = await psql('alice', 'select 1');
    expect(after.code).not.toBe(0);
  }, 150_000);

  it('a 2-approval threshold needs two distinct reviewers; requester and repeat reviews are refused', async () => {
    const r = await create('dan', ['--roles', 'prod-db', '--reason', 'migration 42']);
    expect(r.thresholds).toEqual({ approve: 2, deny: 1 });
    const self = await as('dan', ['request', 'review', r.id, '--approve']);
    expect(self.code).toBe(1);
    expect(self.stderr).toContain('error: you cannot review your own access request');
    expect(await ok(as('bob', ['request', 'review', r.id, '--approve']))).toContain(
      'it is now pending (needs 1 more approval from distinct reviewers)',
    );
    const again = await as('bob', ['request', 'review', r.id, '--approve']);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain(`error: you already reviewed access request ${r.id}`);
    const early = await as('dan', ['login', '--request-id', r.id]);
    expect(early.code).toBe(1);
    expect(early.stderr).toContain(`access request ${r.id} was pending`);
    expect(await ok(as('carol', ['request', 'review', r.id, '--approve']))).toContain('it is now approved');
    const shown = JSON.parse(await ok(as('dan', ['request', 'show', r.id, '--json']))) as AccessRequestView;
    expect(shown.reviews.map((v) => [v.author, v.verdict])).toEqual([
      ['bob', 'approve'],
      ['carol', 'approve'],
    ]);
    await ok(as('dan', ['login', '--request-id', r.id]));
    await ok(as('dan', ['db', 'login', 'orders', '--db-user', 'dan', '--db-name', 'app']));
    expect((await psql('dan', 'select current_user')).stdout.trim()).toBe('dan');
  }, 60_000);

  it('a later denial ends the live session that depends on the request, and shows in the CLI and audit log', async () => {
    const r = await create('eve', ['--roles', 'prod-db', '--reason', 'check a report']);
    await ok(as('bob', ['request', 'review', r.id, '--approve']));
    await ok(as('eve', ['login', '--request-id', r.id]));
    // eve is no database user: the session runs as dan, whom prod-db allows.
    await ok(as('eve', ['db', 'login', 'orders', '--db-user', 'dan', '--db-name', 'app']));
    const live = await longPsql('eve');
    expect(
      await ok(as('carol', ['request', 'review', r.id, '--deny', '--reason', 'use the replica'])),
    ).toContain('it is now denied');
    const ended = await live.done;
    expect(ended.code).not.toBe(0);
    expect(ended.stderr).toMatch(new RegExp(`FATAL: .*access request ${r.id} was denied by carol`));
    expect(
      events('access_request.review', r.id).map((e) => [
        e.user,
        (e as { verdict?: string }).verdict,
        e.reason,
      ]),
    ).toEqual([
      ['bob', 'approve', ''],
      ['carol', 'deny', 'use the replica'],
    ]);
    // The certificate naming the denied request is refused from now on.
    const status = await as('eve', ['request', 'ls']);
    expect(status.code).toBe(1);
    expect(status.stderr).toContain(`access request ${r.id} was denied by carol`);
    await relogin('eve');
    expect(await ok(as('eve', ['request', 'ls', '--state', 'denied']))).toMatch(
      new RegExp(`${r.id}\\s+eve\\s+prod-db\\s+denied`),
    );
  }, 60_000);

  it('drop withdraws a request: audited with its reason, and no review is taken afterwards', async () => {
    const r = await create('alice', ['--roles', 'prod-db', '--reason', 'not needed after all']);
    expect(await ok(as('alice', ['request', 'drop', r.id, '--reason', 'fixed without it']))).toBe(
      `Access request ${r.id} dropped.\n`,
    );
    const review = await as('bob', ['request', 'review', r.id, '--approve']);
    expect(review.code).toBe(1);
    expect(review.stderr).toContain(`access request ${r.id} was dropped by alice`);
    expect(events('access_request.drop', r.id)[0]).toMatchObject({
      user: 'alice',
      reason: 'fixed without it',
    });
  });

  it('request create --wait waits for the review, then logs in with the approved roles (and fails on a denial)', async () => {
    const pendingOf = async (reason: string) =>
      (
        JSON.parse(
          await ok(as('bob', ['request', 'ls', '--state', 'pending', '--json'])),
        ) as AccessRequestView[]
      ).find((r) => r.user === 'alice' && r.reason === reason);
    const waiting = as('alice', [
      'request',
      'create',
      '--roles',
      'prod-db',
      '--reason',
      'wait-1',
      '--wait',
      '--json',
    ]);
    const r = await waitFor(() => pendingOf('wait-1'), "alice's waiting request", 20_000);
    await ok(as('bob', ['request', 'review', r.id, '--approve']));
    const done = await waiting;
    expect(done.code, done.stderr).toBe(0);
    expect(done.stderr).toContain(`Access request ${r.id} created; waiting for its review`);
    expect(JSON.parse(done.stdout)).toMatchObject({
      roles: ['requester', 'prod-db'],
      access_requests: [r.id],
    });

    await relogin('alice');
    const denied = as('alice', ['request', 'create', '--roles', 'prod-db', '--reason', 'wait-2', '--wait']);
    const d = await waitFor(() => pendingOf('wait-2'), "alice's second waiting request", 20_000);
    await ok(as('bob', ['request', 'review', d.id, '--deny', '--reason', 'not today']));
    const out = await denied;
    expect(out.code).toBe(1);
    expect(out.stderr).toContain(`error: access request ${d.id} was denied by bob: not today`);
  }, 90_000);

  it('bad inputs: a role one may not request, an empty reason where required, a review without review rights', async () => {
    const notAllowed = await as('alice', ['request', 'create', '--roles', 'reviewer', '--reason', 'x']);
    expect(notAllowed.code).toBe(1);
    expect(notAllowed.stderr).toContain(
      'error: access request refused: none of your roles allows requesting role "reviewer"',
    );
    const noReason = await as('dan', ['request', 'create', '--roles', 'prod-db', '--reason', '  ']);
    expect(noReason.code).toBe(1);
    expect(noReason.stderr).toContain('error: a reason is required for this access request');
    const tooLong = await as('alice', ['request', 'create', '--roles', 'prod-db', '--ttl', '5h']);
    expect(tooLong.code).toBe(1);
    expect(tooLong.stderr).toContain('longer than your roles allow for this request (4h)');
    const r = await create('dan', ['--roles', 'prod-db', '--reason', 'x']);
    const byRequester = await as('alice', ['request', 'review', r.id, '--approve']);
    expect(byRequester.code).toBe(1);
    expect(byRequester.stderr).toContain('none of your roles allows reviewing requests for role "prod-db"');
    const usage = await as('bob', ['request', 'review', r.id]);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toContain('give exactly one of --approve or --deny');
    const denials = auditEvents(daemon).filter(
      (e) =>
        e.type === 'access.denied' && (e as { resource_kind?: string }).resource_kind === 'access_request',
    );
    expect(denials.map((e) => e.user)).toEqual(expect.arrayContaining(['alice', 'dan']));
  });
});
