/**
 * The GitHub connector end to end: `gatehouse login --auth gh` with
 * Chromium on a GitHub-shaped OAuth server and API (the one fixture issue 17
 * allows; it enforces client credentials, the callback, PKCE and the access
 * token), team membership -> roles, and `gatehouse ssh` with the login the
 * role takes from the GitHub login.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type GithubFixture, startGithubFixture } from '../../core/test/github-fixture.js';
import { admin } from './harness.js';
import { type SsoCluster, startSsoCluster } from './sso-harness.js';

let c: SsoCluster;
let gh: GithubFixture;
/** The GitHub login, which is also the Unix account the role's {{external.login}} names. */
let octo: string;

/** The user on GitHub's authorize page. */
async function authorize(page: Page, account: string): Promise<void> {
  await page.getByLabel('Username or email address').fill(account);
  await page.getByRole('button', { name: 'Authorize' }).click();
}

const cliLogin = (name: string, account: string, connector = 'gh') =>
  c.cliLogin(name, account, { connector, signIn: authorize });

beforeAll(async () => {
  c = await startSsoCluster({ loginTrait: 'login' });
  octo = c.login;
  const callbackUrl = `https://localhost:${c.gwPort}/v1/sso/github/callback`;
  gh = await startGithubFixture({
    callbackUrl,
    users: [
      { id: 101, login: octo, teams: ['acme/ops', 'acme/web'] },
      { id: 102, login: 'visitor', teams: ['other/ops'] },
    ],
  });
  writeFileSync(join(c.d.root, 'gh.secret'), `${gh.clientSecret}\n`);
  writeFileSync(
    join(c.d.root, 'gh.yaml'),
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
  await admin(c.d, ['sso', 'add', '-f', join(c.d.root, 'gh.yaml')]);
}, 120_000);

afterAll(async () => {
  await gh?.stop();
  await c?.stop();
});

describe('gatehouse login --auth gh (GitHub OAuth app)', () => {
  it('maps team acme/ops to the ops role; gatehouse ssh logs in as the GitHub login', async () => {
    const since = c.auditCount();
    const r = await cliLogin('octo', octo);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(`Logged in as ${octo} to cluster acme`);
    // Every API call carried the token the OAuth exchange gave.
    expect(gh.apiCalls.map((c) => [c.path, c.authorized])).toEqual([
      ['/api/v3/user', true],
      ['/api/v3/user/teams', true],
    ]);
    expect(c.ssoLogins(since)).toEqual([
      expect.objectContaining({ success: true, connector: 'gh', user: octo }),
    ]);
    const ssh = await c.cli('octo', ['ssh', `${octo}@node1`, 'whoami']);
    expect(ssh.stdout).toBe(`${octo}\n`);
    expect(ssh.code).toBe(0);
  });

  it('refuses a user in no mapped team, naming the connector and the teams', async () => {
    const since = c.auditCount();
    const r = await cliLogin('visitor', 'visitor');
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('connector gh: the claims teams=["other/ops"] map to no role');
    expect(existsSync(join(c.home('visitor'), 'profiles.json'))).toBe(false);
    expect(c.ssoLogins(since)).toEqual([
      expect.objectContaining({ success: false, reason: 'sso_no_roles', connector: 'gh' }),
    ]);
  });

  it('refuses the login when the API does not accept the token', async () => {
    gh.revokeTokens = true;
    gh.apiCalls.length = 0;
    const since = c.auditCount();
    try {
      const r = await cliLogin('revoked', octo);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toContain('the GitHub API of connector gh refused /user: HTTP 401: Bad credentials');
    } finally {
      gh.revokeTokens = false;
    }
    expect(gh.apiCalls).toEqual([{ path: '/api/v3/user', authorized: false }]);
    expect(c.ssoLogins(since)).toEqual([
      expect.objectContaining({ success: false, reason: 'sso_idp_error', connector: 'gh' }),
    ]);
  });

  it('says what GitHub said when it refuses the code exchange (a wrong client secret)', async () => {
    writeFileSync(join(c.d.root, 'wrong.secret'), 'not-the-secret\n');
    const doc = join(c.d.root, 'gh-wrong.yaml');
    writeFileSync(
      doc,
      readFileSync(join(c.d.root, 'gh.yaml'), 'utf8')
        .replace('name: gh', 'name: gh-wrong')
        .replace('gh.secret', 'wrong.secret'),
    );
    await admin(c.d, ['sso', 'add', '-f', doc]);
    const since = c.auditCount();
    const r = await cliLogin('wrong', octo, 'gh-wrong');
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(
      'GitHub refused the login code of connector gh-wrong (incorrect_client_credentials)',
    );
    expect(c.ssoLogins(since)).toEqual([
      expect.objectContaining({ success: false, reason: 'sso_idp_error', connector: 'gh-wrong' }),
    ]);
  });
});
