/**
 * A security key from the CLI (issue 17, decision 0037 "CLI"): `gatehouse
 * start` with public_addr localhost (a DNS name, the WebAuthn RP id), a user
 * whose ONLY second factor is a key (registered in headless Chromium with a
 * CDP virtual authenticator, then the authenticator app removed), and the
 * built CLI run with `--browser none`: the test opens the printed gateway
 * page in the browser that holds the key and presses "Use security key".
 * `gatehouse login` gets certificates; `gatehouse ssh` to a real OpenSSH
 * sshd, `gatehouse db connect` (psql) to a real PostgreSQL and `gatehouse
 * kubectl` (the `kube login` exec plugin, which prints the page itself) to the
 * Kubernetes fixture, all with require_session_mfa, pass the per-session
 * check with the key; left unanswered, the page gives the command nothing.
 * A used link is refused (audited as the user's); an assertion made on one
 * user's page is refused for another user's login; an assertion for the
 * CLI's challenge made on another origin, and one from a cloned key (sign
 * counter below the stored one), are refused at login: each audited.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { GatehouseClient } from '@gatehouse/core';
import type { Sshd } from '@gatehouse/core/testing';
import { type TOTP, URI } from 'otpauth';
import type { Browser, BrowserContext, CDPSession, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FixtureApiServer } from '../../adapter-k8s/test/fixture-apiserver.js';
import type { Postgres } from '../../adapter-postgres/test/peers.js';
import { waitFor } from '../../core/test/helpers.js';
import { launchChromium, serverSpkiPin } from '../../web/test/harness.js';
import { addKey, addVirtualAuthenticator, assertOnPage, postFrom } from '../../web/test/webauthn-helpers.js';
import {
  addKubeFixture,
  addPostgres,
  admin,
  auditEvents,
  type Daemon,
  PASSWORD,
  run,
  spawnCli,
  spawnTool,
  startDaemon,
  startNodeSshd,
} from './harness.js';

let d: Daemon;
let sshd: Sshd;
let pg: Postgres;
let fixture: FixtureApiServer;
let browser: Browser;
let api: GatehouseClient;
let caPem: string;
/** Alice's browser: the virtual authenticator (her key) belongs to this page. */
let alice: { context: BrowserContext; page: Page; cdp: CDPSession; authenticatorId: string };
const login = `ghk${randomBytes(3).toString('hex')}`;
const STEP_MS = 30_000;
const home = (name: string) => join(d.root, `home-${name}`);
/** The environment of `name`'s commands: psql and kubectl find their files under HOME. */
const userEnv = (name: string) => ({
  GATEHOUSE_HOME: home(name),
  HOME: home(name),
  PGSERVICEFILE: join(home(name), 'pg_service.conf'),
});

/** Adds `name` with the invite's authenticator app enrolled; returns a code of the step after enrollment's. */
async function enroll(name: string): Promise<string> {
  const out = await admin(d, ['users', 'add', name, '--roles', 'keys-ops', '--logins', login]);
  const token = /accept-invite .* (\S+)\s*$/m.exec(out.stdout)?.[1];
  if (!token) throw new Error(`no invite in: ${out.stdout}`);
  const totp = URI.parse((await api.inspectInvite(token)).totp!.uri) as TOTP;
  // Two steps (enroll, then sign in), each good once; keep clear of a step boundary.
  if (STEP_MS - (Date.now() % STEP_MS) < 8_000)
    await new Promise((r) => setTimeout(r, STEP_MS - (Date.now() % STEP_MS) + 100));
  const t0 = Date.now();
  await api.acceptInvite(token, { password: PASSWORD, otp: totp.generate({ timestamp: t0 - STEP_MS }) });
  return totp.generate({ timestamp: t0 });
}

type Spawned = ReturnType<typeof spawnCli>;

/** `args` with --browser none before a `--` (what follows it is another program's). */
function browserNone(args: string[]): string[] {
  const at = args.includes('--') ? args.indexOf('--') : args.length;
  return [...args.slice(0, at), '--browser', 'none', ...args.slice(at)];
}

/** Runs `gatehouse ARGS` as `name` with --browser none; the test opens the printed page and uses the key. */
function withKey(name: string, args: string[], input?: string, env: NodeJS.ProcessEnv = {}) {
  return answerWithKey(spawnCli(browserNone(args), { GATEHOUSE_HOME: home(name), ...env }, input));
}

/** Opens the page `cli` printed in alice's browser and presses the button: her key answers. */
async function answerWithKey(cli: Spawned) {
  try {
    const url = await cli.url;
    const { page } = alice;
    await page.goto(url);
    await page.getByRole('button', { name: 'Use security key' }).click();
    await page.getByText('You can close this window').waitFor();
    return { ...(await cli.done), url };
  } catch (e) {
    cli.kill();
    throw e;
  }
}

/**
 * The page `cli` printed is never answered: once it is printed, the command is
 * stopped (its process group: kubectl's exec plugin too). Returns how it ended
 * and the audit events written since `since`.
 */
async function unanswered(cli: Spawned, since: number) {
  try {
    const url = await cli.url;
    expect(url).toMatch(/^https:\/\/localhost:\d+\/web\/mfa#/);
  } finally {
    cli.kill();
  }
  const r = await cli.done;
  return { ...r, events: auditEvents(d).slice(since) };
}

/** The newest successful mfa.session event. */
const lastSessionCheck = () =>
  waitFor(
    () =>
      auditEvents(d)
        .filter((e) => e.type === 'mfa.session' && e.success)
        .at(-1),
    'the mfa.session event',
  );

const cliLogin = (name: string) =>
  withKey(
    name,
    ['login', '--proxy', d.proxy, '--user', name, '--ca-pin', d.pin, '--password-stdin'],
    `${PASSWORD}\n`,
  );

beforeAll(async () => {
  execFileSync('useradd', ['-m', '-s', '/bin/bash', login]);
  execFileSync('usermod', ['-p', '*', login]);
  // The RP id is the host of public_addr: a DNS name, as browsers require (port 0: the bound one).
  d = await startDaemon({ cluster: 'keys', secondFactor: 'otp', extraConfig: 'public_addr: localhost:0\n' });
  const port = Number(d.proxy.split(':').pop());
  caPem = (
    await run(['ca', 'export', '--format', 'x509', '--type', 'host', '--proxy', d.proxy, '--ca-pin', d.pin])
  ).stdout;
  api = new GatehouseClient({ proxy: d.proxy, caPem: [caPem] });
  writeFileSync(
    join(d.root, 'keys-ops.yaml'),
    [
      'kind: role',
      'name: keys-ops',
      'allow:',
      '  logins: ["{{internal.logins}}"]',
      '  node_labels: {"*": "*"}',
      '  db_labels: {"*": "*"}',
      '  db_users: [dana]',
      '  db_names: [app]',
      '  kube_labels: {"*": "*"}',
      '  kube_groups: [developers]',
      'options:',
      '  require_session_mfa: true',
      '',
    ].join('\n'),
  );
  await admin(d, ['roles', 'create', '-f', join(d.root, 'keys-ops.yaml')]);
  sshd = await startNodeSshd(d, ['PrintMotd no']);
  await admin(d, ['nodes', 'add', 'node1', '--addr', `127.0.0.1:${sshd.port}`]);
  pg = await addPostgres(d, 'orders', { roles: ['dana'], databases: ['app'] });
  fixture = await addKubeFixture(d, 'prod');

  const code = await enroll('alice');
  browser = await launchChromium([await serverSpkiPin(port, caPem)]);
  const context = await browser.newContext({ baseURL: `https://localhost:${port}` });
  context.setDefaultTimeout(20_000);
  const page = await context.newPage();
  const cdp = await context.newCDPSession(page);
  alice = { context, page, cdp, authenticatorId: await addVirtualAuthenticator(cdp, 'usb') };
  await page.goto('/web/login');
  await page.getByLabel('User').fill('alice');
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByLabel('Authenticator code').fill(code);
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
  await page.getByTestId('current-user').filter({ hasText: 'alice' }).waitFor();
  await page.getByRole('link', { name: 'Account' }).click();
  await page.getByRole('heading', { name: 'Your account' }).waitFor();
  await addKey(page, 'blue key', false);
  // The key becomes her only second factor: the authenticator app from the invite goes.
  const removed = await page.evaluate(async () => {
    const r = await fetch('/v1/mfa/devices/totp', {
      method: 'DELETE',
      headers: { 'x-csrf-token': sessionStorage.getItem('gatehouse.csrf') ?? '' },
    });
    return r.status;
  });
  expect(removed).toBe(200);
}, 180_000);

afterAll(async () => {
  execFileSync('userdel', ['-r', '-f', login], { stdio: 'ignore' });
  await alice?.context.close();
  await browser?.close();
  api?.close();
  await sshd?.stop();
  await pg?.stop();
  await fixture?.close();
  if (d) {
    await d.stop();
    rmSync(d.root, { recursive: true, force: true });
  }
});

describe('gatehouse login and ssh with a security key (browser round trip)', () => {
  let loginUrl = '';

  it('gatehouse login: the password, then the key on the gateway page; certificates saved', async () => {
    const r = await cliLogin('alice');
    expect(r.code, r.stderr).toBe(0);
    loginUrl = r.url;
    // The page is the gateway's web origin (the RP), the link id in the fragment.
    expect(r.url).toMatch(/^https:\/\/localhost:\d+\/web\/mfa#[A-Za-z0-9_-]{43}$/);
    expect(r.stderr).toContain('Your security key is asked to confirm the login of alice');
    expect(r.stdout).toContain('Logged in as alice to cluster keys');
    const ok = auditEvents(d).filter((e) => e.type === 'user.login' && e.success && e.user === 'alice');
    expect(ok.at(-1)).toMatchObject({
      method: 'password',
      mfa_device: { method: 'webauthn', name: 'blue key' },
    });
  });

  it('gatehouse ssh with require_session_mfa: the key answers the check scoped to the node', async () => {
    const r = await withKey('alice', ['ssh', `${login}@node1`, 'echo', 'key-ok']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe('key-ok');
    expect(r.stderr).toContain(`Your security key is asked to confirm ${login}@node1`);
    const ev = await waitFor(
      () =>
        auditEvents(d)
          .filter((e) => e.type === 'mfa.session' && e.success)
          .at(-1),
      'the mfa.session event',
    );
    expect(ev).toMatchObject({
      user: 'alice',
      server: 'node1',
      login,
      method: 'webauthn',
      device: 'blue key',
    });
  });

  it('gatehouse db connect with require_session_mfa: psql runs after the key answers the check scoped to the database; unanswered, no session', async () => {
    const dl = await run(['db', 'login', 'orders', '--db-user', 'dana', '--db-name', 'app'], {
      env: userEnv('alice'),
    });
    expect(dl.code, dl.stderr).toBe(0);
    const connect = ['db', 'connect', 'orders', '--', '-tAc', 'select current_user'];

    const before = auditEvents(d).length;
    const left = await unanswered(spawnCli(browserNone(connect), userEnv('alice')), before);
    expect(left.code).not.toBe(0);
    expect(left.stdout).toBe('');
    expect(left.stderr).toContain('Your security key is asked to confirm');
    expect(
      left.events.filter(
        (e) => 'success' in e && e.success && ['mfa.session', 'db.session.start'].includes(e.type),
      ),
    ).toEqual([]);

    const r = await withKey('alice', connect, undefined, userEnv('alice'));
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe('dana');
    expect(await lastSessionCheck()).toMatchObject({
      user: 'alice',
      target_kind: 'db',
      target: 'orders',
      db_user: 'dana',
      method: 'webauthn',
      device: 'blue key',
    });
    const started = auditEvents(d)
      .slice(before)
      .filter((e) => e.type === 'db.session.start' && e.user === 'alice');
    expect(started).toHaveLength(1);
    expect(started[0]).toMatchObject({ success: true });
  }, 120_000);

  it('kubectl with require_session_mfa: the exec plugin prints the page (kubectl passes it through), unanswered it gets no pods; gatehouse kubectl gets them after the key answers', async () => {
    const kc = join(home('alice'), 'kubeconfig');
    const kl = await run(['kube', 'login', 'prod', '--kubeconfig', kc], { env: userEnv('alice') });
    expect(kl.code, kl.stderr).toBe(0);
    const cache = mkdtempSync(join(d.root, 'kube-cache-'));
    const kubectlArgs = ['--kubeconfig', kc, '--cache-dir', cache, 'get', 'pods'];

    // kubectl itself runs the plugin, which opens (here: prints) the gateway page on its own.
    const before = auditEvents(d).length;
    const left = await unanswered(
      spawnTool('/usr/bin/kubectl', kubectlArgs, { ...userEnv('alice'), GATEHOUSE_BROWSER: 'none' }),
      before,
    );
    expect(left.code).not.toBe(0);
    expect(left.stdout).not.toContain('web-1');
    expect(left.stderr).toContain('Your security key is asked to confirm');
    expect(
      left.events.filter(
        (e) => 'success' in e && e.success && ['mfa.session', 'kube.request'].includes(e.type),
      ),
    ).toEqual([]);

    const r = await withKey(
      'alice',
      ['kubectl', '--cluster', 'prod', '--', ...kubectlArgs],
      undefined,
      userEnv('alice'),
    );
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('web-1');
    expect(await lastSessionCheck()).toMatchObject({
      user: 'alice',
      target_kind: 'kube',
      target: 'prod',
      method: 'webauthn',
      device: 'blue key',
    });
    const checks = auditEvents(d)
      .slice(before)
      .filter((e) => e.type === 'mfa.session' && e.user === 'alice');
    expect(checks.map((e) => 'success' in e && e.success)).toEqual([true]);
  }, 120_000);

  it('a used link is refused on the page and audited as that user', async () => {
    expect(loginUrl).not.toBe('');
    const before = auditEvents(d).length;
    await alice.page.goto(loginUrl);
    await alice.page.getByText('this security key link was already used').waitFor();
    expect(await alice.page.getByRole('button', { name: 'Use security key' }).count()).toBe(0);
    const refused = await waitFor(
      () =>
        auditEvents(d)
          .slice(before)
          .find((e) => e.type === 'user.login' && !e.success),
      'the refused link',
    );
    expect(refused).toMatchObject({ user: 'alice', reason: 'webauthn_challenge_invalid' });
  });

  it("an assertion made on alice's page is refused for bob's login, and is used up for alice's", async () => {
    await enroll('bob');
    // Alice's pending login, answered in her browser; the answer is caught on its way to the callback.
    const start = await api.browserMfaLogin({
      user: 'alice',
      password: PASSWORD,
      redirect_url: 'http://127.0.0.1:9/callback',
      state: randomBytes(16).toString('base64url'),
    });
    expect(start.totp).toBe(false);
    const page = alice.page;
    const sent = page.waitForRequest((r) => r.url().startsWith('http://127.0.0.1:9/callback'));
    await page.goto(start.webauthn!.url);
    await page.getByRole('button', { name: 'Use security key' }).click();
    const credential = JSON.parse(new URL((await sent).url()).searchParams.get('credential')!);
    const before = auditEvents(d).length;
    const asBob = await api
      .login({ user: 'bob', password: PASSWORD, webauthn: credential })
      .catch((e: unknown) => e);
    expect(asBob).toMatchObject({ code: 'GH_ERR_WEBAUTHN_CHALLENGE_INVALID' });
    const refused = await waitFor(
      () =>
        auditEvents(d)
          .slice(before)
          .find((e) => e.type === 'user.login' && !e.success),
      "bob's refused login",
    );
    expect(refused).toMatchObject({ user: 'bob', reason: 'webauthn_challenge_invalid' });
    // Bob's try used the challenge up: the same answer no longer logs alice in either.
    const asAlice = await api
      .login({ user: 'alice', password: PASSWORD, webauthn: credential })
      .catch((e: unknown) => e);
    expect(asAlice).toMatchObject({ code: 'GH_ERR_WEBAUTHN_CHALLENGE_INVALID' });
  });

  /** The newest refused user.login of `user` after `since` events. */
  const refusedLogin = (user: string, since: number) =>
    waitFor(
      () =>
        auditEvents(d)
          .slice(since)
          .find((e) => e.type === 'user.login' && !e.success && e.user === user),
      `the refused login of ${user}`,
    );

  it("an assertion for the CLI's challenge made on another origin is refused at login, audited", async () => {
    const cli = spawnCli(
      [
        'login',
        '--proxy',
        d.proxy,
        '--user',
        'alice',
        '--ca-pin',
        d.pin,
        '--password-stdin',
        '--browser',
        'none',
      ],
      { GATEHOUSE_HOME: home('alice-origin') },
      `${PASSWORD}\n`,
    );
    try {
      const url = await cli.url;
      const { page } = alice;
      // Whoever holds the link (here a page of another origin, same host: the RP id is valid
      // there, so the browser signs) takes the pending check and answers it elsewhere.
      await page.goto('/web/login');
      const taken = await postFrom(page, '/v1/mfa/browser/take', { id: url.slice(url.indexOf('#') + 1) });
      expect(taken.status).toBe(200);
      const pending = taken.json as {
        options: { challenge: string; rpId: string; allowCredentials: { id: string }[] };
        redirect_url: string;
        state: string;
      };
      const other = 'https://localhost:1/';
      await page.route(`${other}**`, (r) =>
        r.fulfill({ contentType: 'text/html', body: '<title>other</title>' }),
      );
      await page.goto(other);
      const credential = await assertOnPage(page, pending.options, 'preferred');
      await page.unroute(`${other}**`);
      const before = auditEvents(d).length;
      const back = new URL(pending.redirect_url);
      back.searchParams.set('state', pending.state);
      back.searchParams.set('credential', JSON.stringify(credential));
      expect((await fetch(back)).status).toBe(200);
      const r = await cli.done;
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(/origin/i);
      expect(await refusedLogin('alice', before)).toMatchObject({
        reason: 'webauthn_invalid',
        mfa_device: { method: 'webauthn', name: 'blue key' },
      });
    } finally {
      cli.kill();
    }
  });

  it('a cloned key (its sign counter below the stored one) is refused at login, audited', async () => {
    // The authenticator starts counting again from 0, as a copy of the key would.
    const { cdp, authenticatorId } = alice;
    const { credentials } = await cdp.send('WebAuthn.getCredentials', { authenticatorId });
    expect(credentials.length).toBe(1);
    expect(credentials[0]!.signCount).toBeGreaterThan(1);
    for (const c of credentials) {
      await cdp.send('WebAuthn.removeCredential', { authenticatorId, credentialId: c.credentialId });
      await cdp.send('WebAuthn.addCredential', { authenticatorId, credential: { ...c, signCount: 0 } });
    }
    const before = auditEvents(d).length;
    const r = await cliLogin('alice');
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('sign counter');
    expect(await refusedLogin('alice', before)).toMatchObject({
      reason: 'webauthn_counter',
      mfa_device: { method: 'webauthn', name: 'blue key' },
    });
  });
});
