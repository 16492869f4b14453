/**
 * OIDC single sign-on end to end: `gatehouse start`, a REAL OpenID Provider
 * (oidc-provider) started here, `gatehouse sso add/ls/test`, and
 * `gatehouse login --auth corp --browser none` whose printed URL headless
 * Chromium opens, filling the provider's login and consent pages. The
 * certificates then work with `gatehouse ssh` against a real sshd, with the
 * login the role takes from a claim. Every bad input is refused with a
 * clear error, an audit event, and no login.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import { join } from 'node:path';
import type { AuditEvent } from '@gatehouse/audit';
import type { Sshd } from '@gatehouse/core/testing';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runClient, waitFor } from '../../core/test/helpers.js';
import { keepLocal, providerSignIn, startTestIdp, type TestIdp } from '../../core/test/oidc-idp.js';
import { launchChromium, serverSpkiPin } from '../../web/test/harness.js';
import {
  admin,
  auditEvents,
  BIN,
  type Daemon,
  run,
  spawnCli,
  startDaemon,
  startNodeSshd,
} from './harness.js';

let d: Daemon;
let idp: TestIdp;
let sshd: Sshd;
let browser: Browser;
let gwPort: number;
let caPem: string;
const login = `ghs${randomBytes(3).toString('hex')}`;

const home = (name: string) => join(d.root, `home-${name}`);
const gh = (name: string, args: string[]) =>
  runClient(process.execPath, [BIN, ...args], {
    env: { ...process.env, GATEHOUSE_HOME: home(name) },
    timeoutMs: 30_000,
  });

/**
 * The user at the provider: a fresh browser profile opens the URL, signs in
 * as `account` on the provider's page and consents. Returns the callback
 * URL the provider sent the browser to (the gateway's, with code and state).
 */
async function signIn(url: string, account: string): Promise<{ callback: string; page: Page }> {
  const context = await browser.newContext();
  context.setDefaultTimeout(20_000);
  await keepLocal(context);
  const page = await context.newPage();
  let callback = '';
  page.on('request', (r) => {
    if (r.url().includes('/v1/sso/oidc/callback')) callback = r.url();
  });
  await page.goto(url, { waitUntil: 'domcontentloaded' });
  await providerSignIn(page, account);
  await page.waitForURL(/127\.0\.0\.1:\d+\/callback|\/web\/login/, { waitUntil: 'domcontentloaded' });
  return { callback, page };
}

/** A login with `gatehouse login --auth` driven through the browser; resolves with the CLI's exit. */
async function cliLogin(name: string, account: string, connector = 'corp') {
  const cli = spawnCli(
    ['login', '--proxy', d.proxy, '--ca-pin', d.pin, '--auth', connector, '--browser', 'none'],
    {
      GATEHOUSE_HOME: home(name),
    },
  );
  try {
    const { callback, page } = await signIn(await cli.url, account);
    const text = await page.textContent('body');
    await page.context().close();
    return { ...(await cli.done), callback, page: text ?? '' };
  } catch (e) {
    cli.kill();
    throw e;
  }
}

function ssoLoginEvents(since: number): AuditEvent[] {
  return auditEvents(d)
    .slice(since)
    .filter((e) => e.type === 'user.login' && 'method' in e && e.method === 'sso');
}

/** A request to the gateway (trusting its CA), as a browser replaying a URL or an attacker would. */
function gatewayRequest(url: string, body?: unknown): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      url,
      {
        method: body === undefined ? 'GET' : 'POST',
        ca: caPem,
        servername: 'localhost',
        headers: body === undefined ? {} : { 'content-type': 'application/json' },
      },
      (res) => {
        let text = '';
        res.on('data', (c) => {
          text += c;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
      },
    );
    req.once('error', reject);
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}
const gatewayGet = (url: string) => gatewayRequest(url);

beforeAll(async () => {
  execFileSync('useradd', ['-m', '-s', '/bin/bash', login]);
  execFileSync('usermod', ['-p', '*', login]);
  d = await startDaemon({ cluster: 'acme' });
  gwPort = Number(d.proxy.split(':').pop());
  caPem = (
    await run(['ca', 'export', '--format', 'x509', '--type', 'host', '--proxy', d.proxy, '--ca-pin', d.pin])
  ).stdout;
  idp = await startTestIdp({
    redirectUris: [`https://localhost:${gwPort}/v1/sso/oidc/callback`],
    accounts: {
      alice: { sub: 'alice', email: 'alice@example.com', groups: ['ops', 'staff'], unix_login: [login] },
      eve: { sub: 'eve', email: 'eve@example.com', groups: ['interns'] },
    },
  });
  writeFileSync(
    join(d.root, 'ops-role.yaml'),
    'kind: role\nname: ops\nallow:\n  logins: ["{{external.unix_login}}"]\n  node_labels: {"*": "*"}\n',
  );
  await admin(d, ['roles', 'create', '-f', join(d.root, 'ops-role.yaml')]);
  writeFileSync(join(d.root, 'corp.secret'), `${idp.clientSecret}\n`);
  writeFileSync(
    join(d.root, 'corp.yaml'),
    [
      'kind: oidc',
      'name: corp',
      'display: Corp',
      `issuer_url: ${idp.issuer}`,
      `client_id: ${idp.clientId}`,
      'client_secret_file: corp.secret',
      `redirect_url: https://localhost:${gwPort}/v1/sso/oidc/callback`,
      'scopes: [openid, email, groups, unix]',
      'username_claim: email',
      'max_session_ttl: 2h',
      'claims_to_roles:',
      '  - {claim: groups, value: ops, roles: [ops]}',
      '',
    ].join('\n'),
  );
  sshd = await startNodeSshd(d, ['PrintMotd no']);
  await admin(d, ['nodes', 'add', 'node1', '--addr', `127.0.0.1:${sshd.port}`]);
  browser = await launchChromium([await serverSpkiPin(gwPort, caPem)]);
}, 120_000);

afterAll(async () => {
  execFileSync('userdel', ['-r', '-f', login], { stdio: 'ignore' });
  await browser?.close();
  await sshd?.stop();
  await idp?.stop();
  if (d) {
    await d.stop();
    rmSync(d.root, { recursive: true, force: true });
  }
});

describe('gatehouse sso add / ls', () => {
  it('refuses a document with a misspelled key, naming the file, line and key', async () => {
    const bad = join(d.root, 'bad.yaml');
    writeFileSync(bad, 'kind: oidc\nname: bad\nissuer_url: https://idp.example.com\nclient_idd: x\n');
    const r = await run(['--config', d.configFile, 'sso', 'add', '-f', bad]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(
      `${bad}:4:1: client_idd: unknown key "client_idd" (did you mean "client_id"?)`,
    );
  });

  it('adds the connector with its secret sealed: listed without it, absent in clear from the data dir', async () => {
    const r = await admin(d, ['sso', 'add', '-f', join(d.root, 'corp.yaml')]);
    expect(r.stdout).toContain('SSO connector corp created.');
    expect(r.stdout).toContain(`https://localhost:${gwPort}/v1/sso/oidc/callback`);
    const ls = await admin(d, ['sso', 'ls', '--json']);
    expect(ls.stdout).not.toContain(idp.clientSecret);
    expect(JSON.parse(ls.stdout)).toEqual([
      expect.objectContaining({
        name: 'corp',
        issuer_url: idp.issuer,
        has_client_secret: true,
        claims_to_roles: [{ claim: 'groups', value: 'ops', roles: ['ops'] }],
      }),
    ]);
    for (const f of readdirSync(d.dataDir).filter((n) => n.endsWith('.db') || n.endsWith('-wal'))) {
      expect(readFileSync(join(d.dataDir, f)).includes(idp.clientSecret)).toBe(false);
    }
    const events = auditEvents(d).filter((e) => e.type === 'sso.connector.create');
    expect(events).toEqual([expect.objectContaining({ name: 'corp', kind: 'oidc', code: 'GH1090I' })]);
  });
});

describe('gatehouse sso test', () => {
  it('prints the claims and the roles they map to, and logs in nobody', async () => {
    const since = auditEvents(d).length;
    const cli = spawnCli(
      ['--config', d.configFile, 'sso', 'test', 'corp', '--browser', 'none', '--json'],
      {},
    );
    const { page } = await signIn(await cli.url, 'alice');
    await page.context().close();
    const r = await cli.done;
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout);
    expect(report).toMatchObject({
      connector: 'corp',
      user: 'alice@example.com',
      roles: ['ops'],
      claims: { sub: 'alice', groups: ['ops', 'staff'], unix_login: [login] },
    });
    expect(ssoLoginEvents(since)).toEqual([]);
    const users = await admin(d, ['users', 'ls', '--json']);
    expect(users.stdout).not.toContain('alice@example.com');
  });
});

describe('gatehouse login --auth corp', () => {
  let callback = '';

  it('logs in through the browser; gatehouse ssh works with the login taken from a claim', async () => {
    const since = auditEvents(d).length;
    const r = await cliLogin('alice', 'alice');
    expect(r.code, r.stderr).toBe(0);
    expect(r.page).toContain('Login successful');
    expect(r.stdout).toContain('Logged in as alice@example.com to cluster acme');
    expect(r.stdout).toMatch(new RegExp(`logins:\\s+${login}\\n`));
    callback = r.callback;
    const ok = ssoLoginEvents(since);
    expect(ok).toEqual([
      expect.objectContaining({
        success: true,
        connector: 'corp',
        user: 'alice@example.com',
        code: 'GH1000I',
      }),
    ]);
    const ssh = await gh('alice', ['ssh', `${login}@node1`, 'whoami']);
    expect(ssh.stderr).toBe('');
    expect(ssh.stdout).toBe(`${login}\n`);
    expect(ssh.code).toBe(0);
    // The certificate is capped by the connector's max_session_ttl (2h).
    const status = JSON.parse((await gh('alice', ['status', '--json'])).stdout) as { expires: string };
    expect(Date.parse(status.expires) - Date.now()).toBeLessThanOrEqual(2 * 3600e3);
    const user = JSON.parse((await admin(d, ['users', 'ls', '--json'])).stdout).find(
      (u: { name: string }) => u.name === 'alice@example.com',
    );
    expect(user).toMatchObject({
      roles: ['ops'],
      hasPassword: false,
      sso: { connector: 'corp' },
      traits: { groups: ['ops', 'staff'], unix_login: [login] },
    });
  });

  it('refuses a replayed callback (the state works once)', async () => {
    expect(callback).toMatch(/state=/);
    const since = auditEvents(d).length;
    const r = await gatewayGet(callback);
    expect(r.status).toBe(401);
    expect(JSON.parse(r.body)).toMatchObject({ code: 'GH_ERR_SSO_STATE_INVALID' });
    expect(ssoLoginEvents(since)).toEqual([
      expect.objectContaining({ success: false, reason: 'sso_state_invalid' }),
    ]);
  });

  it('refuses a forged state', async () => {
    const since = auditEvents(d).length;
    const r = await gatewayGet(
      `https://localhost:${gwPort}/v1/sso/oidc/callback?code=abc&state=${randomBytes(32).toString('base64url')}`,
    );
    expect(r.status).toBe(401);
    expect(JSON.parse(r.body).title).toContain('unknown, expired or already used state');
    expect(ssoLoginEvents(since)).toEqual([
      expect.objectContaining({ success: false, reason: 'sso_state_invalid' }),
    ]);
  });

  it('a one-time code intercepted on its way to the CLI is useless without the verifier (and then burnt)', async () => {
    const cli = spawnCli(
      ['login', '--proxy', d.proxy, '--ca-pin', d.pin, '--auth', 'corp', '--browser', 'none'],
      { GATEHOUSE_HOME: home('mallory') },
    );
    const url = await cli.url;
    // The attacker gets the browser's redirect to the CLI's listener; the CLI (gone) never sees the code.
    cli.kill();
    await cli.done;
    const context = await browser.newContext();
    await keepLocal(context);
    let stolen = '';
    const page = await context.newPage();
    page.on('request', (r) => {
      if (/^http:\/\/127\.0\.0\.1:\d+\/callback\?/.test(r.url())) stolen = r.url();
    });
    try {
      await page.goto(url, { waitUntil: 'domcontentloaded' });
      await providerSignIn(page, 'alice');
      await waitFor(() => stolen || undefined, 'the redirect to the CLI', 20_000);
    } finally {
      await context.close();
    }
    const code = new URL(stolen).searchParams.get('code');
    expect(code).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const since = auditEvents(d).length;
    const redeem = (verifier: string) =>
      gatewayRequest(`https://localhost:${gwPort}/v1/sso/redeem`, { code, verifier });
    const guess = await redeem(randomBytes(32).toString('base64url'));
    expect(guess.status).toBe(401);
    expect(JSON.parse(guess.body)).toMatchObject({
      code: 'GH_ERR_SSO_CODE_INVALID',
      title: 'the login code is not valid: the verifier does not match',
    });
    // One wrong guess burns it: the next attempt finds no code at all.
    const again = await redeem(randomBytes(32).toString('base64url'));
    expect(JSON.parse(again.body).title).toBe(
      'the login code is not valid: unknown, expired or already used',
    );
    expect(ssoLoginEvents(since)).toEqual([
      expect.objectContaining({ success: false, reason: 'sso_code_invalid' }),
      expect.objectContaining({ success: false, reason: 'sso_code_invalid' }),
    ]);
    expect(guess.body).not.toContain('BEGIN CERTIFICATE');
  });

  it('refuses claims that map to no role, naming the connector and the claims', async () => {
    const since = auditEvents(d).length;
    const r = await cliLogin('eve', 'eve');
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('connector corp: the claims groups=["interns"] map to no role');
    expect(existsSync(join(home('eve'), 'profiles.json'))).toBe(false);
    expect(ssoLoginEvents(since)).toEqual([
      expect.objectContaining({ success: false, reason: 'sso_no_roles', connector: 'corp' }),
    ]);
  });

  const now = () => Math.floor(Date.now() / 1000);
  const bad: [string, TestIdp['tamper'], RegExp][] = [
    ['an ID token signed by the wrong key', { kind: 'wrong-key' }, /signature/i],
    ['alg: none', { kind: 'alg-none' }, /alg/i],
    ['a wrong audience', { kind: 'claims', claims: { aud: 'someone-else' } }, /aud/],
    ['a wrong issuer', { kind: 'claims', claims: { iss: 'https://evil.example' } }, /iss/],
    [
      'an expired token',
      { kind: 'claims', claims: { exp: now() - 3600, iat: now() - 7200 } },
      /exp|timestamp/i,
    ],
  ];
  for (const [what, tamper, why] of bad) {
    it(`refuses ${what}: a clear error, an audit event, no login`, async () => {
      const since = auditEvents(d).length;
      idp.tamper = tamper;
      try {
        const r = await cliLogin(`bad${randomBytes(3).toString('hex')}`, 'alice');
        expect(r.code).not.toBe(0);
        expect(r.stderr).toContain('the ID token from connector corp is not valid');
        expect(r.stderr).toMatch(why);
        expect(r.page).toContain('Login failed');
      } finally {
        idp.tamper = undefined;
      }
      const events = ssoLoginEvents(since);
      expect(events).toEqual([
        expect.objectContaining({ success: false, reason: 'sso_token_invalid', connector: 'corp' }),
      ]);
    });
  }

  it('says so when the identity provider is down', async () => {
    const down = join(d.root, 'down.yaml');
    writeFileSync(
      down,
      readFileSync(join(d.root, 'corp.yaml'), 'utf8')
        .replace('name: corp', 'name: down')
        .replace(idp.issuer, 'http://127.0.0.1:9'),
    );
    await admin(d, ['sso', 'add', '-f', down]);
    const since = auditEvents(d).length;
    const r = await gh('down', [
      'login',
      '--proxy',
      d.proxy,
      '--ca-pin',
      d.pin,
      '--auth',
      'down',
      '--browser',
      'none',
    ]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(
      'the identity provider of connector down (http://127.0.0.1:9) cannot be reached',
    );
    expect(ssoLoginEvents(since)).toEqual([
      expect.objectContaining({ success: false, reason: 'sso_idp_unavailable', connector: 'down' }),
    ]);
    await admin(d, ['sso', 'rm', 'down']);
  });

  it('an SSO user is lockable like a local one: the lock ends its certificate and refuses its next SSO login', async () => {
    await admin(d, ['users', 'lock', 'alice@example.com', '--message', 'laptop stolen']);
    try {
      const ssh = await gh('alice', ['ssh', `${login}@node1`, 'whoami']);
      expect(ssh.code).not.toBe(0);
      expect(ssh.stdout).toBe('');
      const since = auditEvents(d).length;
      const r = await cliLogin('alice-again', 'alice');
      expect(r.code).not.toBe(0);
      expect(r.stderr).toContain('your access is locked: laptop stolen');
      expect(ssoLoginEvents(since)).toEqual([
        expect.objectContaining({
          success: false,
          reason: 'user_locked',
          connector: 'corp',
          user: 'alice@example.com',
        }),
      ]);
    } finally {
      await admin(d, ['users', 'unlock', 'alice@example.com']);
    }
  });
});
