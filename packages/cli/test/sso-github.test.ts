/**
 * The GitHub connector end to end: `gatehouse login --auth gh` with
 * Chromium on a GitHub-shaped OAuth server and API (the one fixture issue 17
 * allows; it enforces client credentials, the callback, PKCE and the access
 * token), team membership -> roles, and `gatehouse ssh` with the login the
 * role takes from the GitHub login.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { AuditEvent } from '@gatehouse/audit';
import type { Sshd } from '@gatehouse/core/testing';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type GithubFixture, startGithubFixture } from '../../core/test/github-fixture.js';
import { runClient } from '../../core/test/helpers.js';
import { launchChromium, serverSpkiPin } from '../../web/test/harness.js';
import { admin, auditEvents, BIN, type Daemon, run, startDaemon, startNodeSshd } from './harness.js';

let d: Daemon;
let gh: GithubFixture;
let sshd: Sshd;
let browser: Browser;
/** The GitHub login, which is also the Unix account the role's {{external.login}} names. */
const octo = `oc${randomBytes(3).toString('hex')}`;

const home = (name: string) => join(d.root, `home-${name}`);

async function cliLogin(name: string, account: string, connector = 'gh') {
  const child: ChildProcess = spawn(
    process.execPath,
    [BIN, 'login', '--proxy', d.proxy, '--ca-pin', d.pin, '--auth', connector, '--browser', 'none'],
    { env: { ...process.env, GATEHOUSE_HOME: home(name) }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (b) => {
    stdout += b;
  });
  const done = new Promise<number | null>((r) => child.once('exit', r));
  const url = await new Promise<string>((resolve, reject) => {
    child.stderr!.on('data', (b) => {
      stderr += b;
      const m = /\n {2}(http\S+)\n/.exec(stderr);
      if (m) resolve(m[1]!);
    });
    child.once('exit', () => reject(new Error(`no URL: ${stdout}${stderr}`)));
  });
  const context = await browser.newContext();
  try {
    const page = await context.newPage();
    await page.goto(url);
    await page.getByLabel('Username or email address').fill(account);
    await page.getByRole('button', { name: 'Authorize' }).click();
    await page.waitForURL(/127\.0\.0\.1:\d+\/callback/);
  } finally {
    await context.close();
  }
  const code = await done;
  return { code, stdout, stderr };
}

const ssoEvents = (since: number): AuditEvent[] =>
  auditEvents(d)
    .slice(since)
    .filter((e) => e.type === 'user.login' && 'method' in e && e.method === 'sso');

beforeAll(async () => {
  execFileSync('useradd', ['-m', '-s', '/bin/bash', octo]);
  execFileSync('usermod', ['-p', '*', octo]);
  d = await startDaemon({ cluster: 'acme' });
  const port = Number(d.proxy.split(':').pop());
  const callbackUrl = `https://localhost:${port}/v1/sso/github/callback`;
  gh = await startGithubFixture({
    callbackUrl,
    users: [
      { id: 101, login: octo, teams: ['acme/ops', 'acme/web'] },
      { id: 102, login: 'visitor', teams: ['other/ops'] },
    ],
  });
  writeFileSync(
    join(d.root, 'ops.yaml'),
    'kind: role\nname: ops\nallow:\n  logins: ["{{external.login}}"]\n  node_labels: {"*": "*"}\n',
  );
  await admin(d, ['roles', 'create', '-f', join(d.root, 'ops.yaml')]);
  writeFileSync(join(d.root, 'gh.secret'), `${gh.clientSecret}\n`);
  writeFileSync(
    join(d.root, 'gh.yaml'),
    [
      'kind: github',
      'name: gh',
      'display: GitHub',
      `client_id: ${gh.clientId}`,
      'client_secret_file: gh.secret',
      `redirect_url: ${callbackUrl}`,
      `endpoint_url: ${gh.url}`,
      `api_url: ${gh.apiUrl}`,
      'teams_to_roles:',
      '  - {organization: acme, team: ops, roles: [ops]}',
      '',
    ].join('\n'),
  );
  await admin(d, ['sso', 'add', '-f', join(d.root, 'gh.yaml')]);
  sshd = await startNodeSshd(d, ['PrintMotd no']);
  await admin(d, ['nodes', 'add', 'node1', '--addr', `127.0.0.1:${sshd.port}`]);
  const caPem = (
    await run(['ca', 'export', '--format', 'x509', '--type', 'host', '--proxy', d.proxy, '--ca-pin', d.pin])
  ).stdout;
  browser = await launchChromium([await serverSpkiPin(port, caPem)]);
}, 120_000);

afterAll(async () => {
  execFileSync('userdel', ['-r', '-f', octo], { stdio: 'ignore' });
  await browser?.close();
  await sshd?.stop();
  await gh?.stop();
  if (d) {
    await d.stop();
    rmSync(d.root, { recursive: true, force: true });
  }
});

describe('gatehouse login --auth gh (GitHub OAuth app)', () => {
  it('maps team acme/ops to the ops role; gatehouse ssh logs in as the GitHub login', async () => {
    const since = auditEvents(d).length;
    const r = await cliLogin('octo', octo);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(`Logged in as ${octo} to cluster acme`);
    // Every API call carried the token the OAuth exchange gave.
    expect(gh.apiCalls.map((c) => [c.path, c.authorized])).toEqual([
      ['/api/v3/user', true],
      ['/api/v3/user/teams', true],
    ]);
    expect(ssoEvents(since)).toEqual([
      expect.objectContaining({ success: true, connector: 'gh', user: octo }),
    ]);
    const ssh = await runClient(process.execPath, [BIN, 'ssh', `${octo}@node1`, 'whoami'], {
      env: { ...process.env, GATEHOUSE_HOME: home('octo') },
      timeoutMs: 30_000,
    });
    expect(ssh.stdout).toBe(`${octo}\n`);
    expect(ssh.code).toBe(0);
  });

  it('refuses a user in no mapped team, naming the connector and the teams', async () => {
    const since = auditEvents(d).length;
    const r = await cliLogin('visitor', 'visitor');
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('connector gh: the claims teams=["other/ops"] map to no role');
    expect(existsSync(join(home('visitor'), 'profiles.json'))).toBe(false);
    expect(ssoEvents(since)).toEqual([
      expect.objectContaining({ success: false, reason: 'sso_no_roles', connector: 'gh' }),
    ]);
  });

  it('refuses the login when the API does not accept the token', async () => {
    gh.revokeTokens = true;
    gh.apiCalls.length = 0;
    const since = auditEvents(d).length;
    try {
      const r = await cliLogin('revoked', octo);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toContain('the GitHub API of connector gh refused /user: HTTP 401: Bad credentials');
    } finally {
      gh.revokeTokens = false;
    }
    expect(gh.apiCalls).toEqual([{ path: '/api/v3/user', authorized: false }]);
    expect(ssoEvents(since)).toEqual([
      expect.objectContaining({ success: false, reason: 'sso_idp_error', connector: 'gh' }),
    ]);
  });

  it('says what GitHub said when it refuses the code exchange (a wrong client secret)', async () => {
    writeFileSync(join(d.root, 'wrong.secret'), 'not-the-secret\n');
    const doc = join(d.root, 'gh-wrong.yaml');
    writeFileSync(
      doc,
      readFileSync(join(d.root, 'gh.yaml'), 'utf8')
        .replace('name: gh', 'name: gh-wrong')
        .replace('gh.secret', 'wrong.secret'),
    );
    await admin(d, ['sso', 'add', '-f', doc]);
    const since = auditEvents(d).length;
    const r = await cliLogin('wrong', octo, 'gh-wrong');
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(
      'GitHub refused the login code of connector gh-wrong (incorrect_client_credentials)',
    );
    expect(ssoEvents(since)).toEqual([
      expect.objectContaining({ success: false, reason: 'sso_idp_error', connector: 'gh-wrong' }),
    ]);
  });
});
