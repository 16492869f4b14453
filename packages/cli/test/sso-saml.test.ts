/**
 * SAML 2.0 single sign-on end to end: `gatehouse start`, a REAL SAML IdP
 * (samlify's IdP side, with an HTML login form) started here, `gatehouse sso
 * add/ls/test`, and `gatehouse login --auth corp-saml --browser none` whose
 * printed URL headless Chromium opens, filling the IdP's login form; the IdP
 * POSTs its signed response to the gateway's ACS. The certificates then work
 * with `gatehouse ssh` against a real sshd, with the login the role takes
 * from an attribute. Every bad input is refused with a clear error, an audit
 * event, and no login.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import { join } from 'node:path';
import type { AuditEvent } from '@gatehouse/audit';
import type { Sshd } from '@gatehouse/core/testing';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runClient } from '../../core/test/helpers.js';
import { keepLocal } from '../../core/test/oidc-idp.js';
import { type SamlTamper, samlIdpSignIn, startSamlIdp, type TestSamlIdp } from '../../core/test/saml-idp.js';
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
let idp: TestSamlIdp;
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

/** A request to the gateway (trusting its CA), as a browser replaying a form or an attacker would. */
function gatewayRequest(
  path: string,
  form?: Record<string, string>,
): Promise<{ status: number; body: string; location?: string }> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      `https://localhost:${gwPort}${path}`,
      {
        method: form ? 'POST' : 'GET',
        ca: caPem,
        servername: 'localhost',
        headers: form ? { 'content-type': 'application/x-www-form-urlencoded' } : {},
      },
      (res) => {
        let text = '';
        res.on('data', (c) => {
          text += c;
        });
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            body: text,
            ...(res.headers.location ? { location: res.headers.location } : {}),
          }),
        );
      },
    );
    req.once('error', reject);
    req.end(form ? new URLSearchParams(form).toString() : undefined);
  });
}

/**
 * The user at the IdP: a fresh browser profile opens the URL and signs in as
 * `account`; the IdP's page POSTs the response to the ACS. Returns the form
 * the browser posted (SAMLResponse, RelayState) and the final page's text.
 */
async function signIn(url: string, account: string): Promise<{ posted: URLSearchParams; text: string }> {
  const context = await browser.newContext();
  context.setDefaultTimeout(20_000);
  await keepLocal(context);
  try {
    const page = await context.newPage();
    let posted = new URLSearchParams();
    page.on('request', (r) => {
      if (r.url().endsWith('/v1/sso/saml/acs')) posted = new URLSearchParams(r.postData() ?? '');
    });
    await page.goto(url, { waitUntil: 'domcontentloaded' });
    await samlIdpSignIn(page, account);
    await page
      .waitForURL(/127\.0\.0\.1:\d+\/callback/, { waitUntil: 'domcontentloaded' })
      .catch(async (e) => {
        // Where the browser got stuck says more than the timeout.
        throw new Error(
          `${(e as Error).message}\nat ${page.url()}: ${(await page.textContent('body')) ?? ''}`,
        );
      });
    return { posted, text: (await page.textContent('body')) ?? '' };
  } finally {
    await context.close();
  }
}

/** A login with `gatehouse login --auth` driven through the browser; resolves with the CLI's exit. */
async function cliLogin(name: string, account: string, connector = 'corp-saml') {
  const cli = spawnCli(
    ['login', '--proxy', d.proxy, '--ca-pin', d.pin, '--auth', connector, '--browser', 'none'],
    { GATEHOUSE_HOME: home(name) },
  );
  try {
    const { posted, text } = await signIn(await cli.url, account);
    return { ...(await cli.done), posted, page: text };
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

beforeAll(async () => {
  execFileSync('useradd', ['-m', '-s', '/bin/bash', login]);
  execFileSync('usermod', ['-p', '*', login]);
  d = await startDaemon({ cluster: 'acme' });
  gwPort = Number(d.proxy.split(':').pop());
  caPem = (
    await run(['ca', 'export', '--format', 'x509', '--type', 'host', '--proxy', d.proxy, '--ca-pin', d.pin])
  ).stdout;
  idp = await startSamlIdp({
    accounts: {
      alice: { nameId: 'alice@example.com', attributes: { groups: ['ops', 'staff'], unix_login: [login] } },
      eve: { nameId: 'eve@example.com', attributes: { groups: ['interns'] } },
    },
    // What an admin gives the IdP: the gateway's own SP metadata.
    spMetadata: async () => (await gatewayRequest('/v1/sso/saml/corp-saml/metadata')).body,
  });
  writeFileSync(
    join(d.root, 'ops-role.yaml'),
    'kind: role\nname: ops\nallow:\n  logins: ["{{external.unix_login}}"]\n  node_labels: {"*": "*"}\n',
  );
  await admin(d, ['roles', 'create', '-f', join(d.root, 'ops-role.yaml')]);
  writeFileSync(
    join(d.root, 'corp-saml.yaml'),
    [
      'kind: saml',
      'name: corp-saml',
      'display: Corp SAML',
      `idp_metadata_url: ${idp.metadataUrl}`,
      `acs_url: https://localhost:${gwPort}/v1/sso/saml/acs`,
      'max_session_ttl: 2h',
      'attributes_to_roles:',
      '  - {name: groups, value: ops, roles: [ops]}',
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

describe('gatehouse sso add / ls (kind saml)', () => {
  it('refuses a SAML connector without IdP metadata, naming the file and key', async () => {
    const bad = join(d.root, 'bad-saml.yaml');
    writeFileSync(
      bad,
      `kind: saml\nname: bad\nacs_url: https://localhost:${gwPort}/v1/sso/saml/acs\nattributes_to_roles: [{name: groups, value: ops, roles: [ops]}]\n`,
    );
    const r = await run(['--config', d.configFile, 'sso', 'add', '-f', bad]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(`${bad}:1:1: idp_metadata_url: the IdP's metadata is missing`);
  });

  it('adds the connector and prints the SP metadata URL; the gateway serves it with the ACS URL', async () => {
    const r = await admin(d, ['sso', 'add', '-f', join(d.root, 'corp-saml.yaml')]);
    expect(r.stdout).toContain('SSO connector corp-saml created.');
    const metadataUrl = `https://localhost:${gwPort}/v1/sso/saml/corp-saml/metadata`;
    expect(r.stdout).toContain(`Give the identity provider this SP metadata URL: ${metadataUrl}`);
    const ls = JSON.parse((await admin(d, ['sso', 'ls', '--json'])).stdout);
    expect(ls).toEqual([
      expect.objectContaining({
        name: 'corp-saml',
        kind: 'saml',
        issuer_url: idp.metadataUrl,
        client_id: metadataUrl,
        sp_metadata_url: metadataUrl,
        claims_to_roles: [{ claim: 'groups', value: 'ops', roles: ['ops'] }],
      }),
    ]);
    const md = await gatewayRequest('/v1/sso/saml/corp-saml/metadata');
    expect(md.status).toBe(200);
    expect(md.body).toContain(`entityID="${metadataUrl}"`);
    expect(md.body).toContain(`Location="https://localhost:${gwPort}/v1/sso/saml/acs"`);
    expect(md.body).toContain('WantAssertionsSigned="true"');
    expect(auditEvents(d).filter((e) => e.type === 'sso.connector.create')).toEqual([
      expect.objectContaining({ name: 'corp-saml', kind: 'saml' }),
    ]);
  });
});

describe('gatehouse sso test (kind saml)', () => {
  it('prints the attributes and the roles they map to, and logs in nobody', async () => {
    const since = auditEvents(d).length;
    const cli = spawnCli(
      ['--config', d.configFile, 'sso', 'test', 'corp-saml', '--browser', 'none', '--json'],
      {},
    );
    await signIn(await cli.url, 'alice');
    const r = await cli.done;
    expect(r.code, r.stderr + d.err()).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({
      connector: 'corp-saml',
      user: 'alice@example.com',
      roles: ['ops'],
      claims: { sub: 'alice@example.com', groups: ['ops', 'staff'], unix_login: login },
    });
    expect(ssoLoginEvents(since)).toEqual([]);
    expect((await admin(d, ['users', 'ls', '--json'])).stdout).not.toContain('alice@example.com');
  });
});

describe('gatehouse login --auth corp-saml', () => {
  let posted = new URLSearchParams();

  it('logs in through the IdP form; gatehouse ssh works with the login taken from an attribute', async () => {
    const since = auditEvents(d).length;
    const r = await cliLogin('alice', 'alice');
    expect(r.code, r.stderr).toBe(0);
    expect(r.page).toContain('Login successful');
    expect(r.stdout).toContain('Logged in as alice@example.com to cluster acme');
    posted = r.posted;
    expect(ssoLoginEvents(since)).toEqual([
      expect.objectContaining({ success: true, connector: 'corp-saml', user: 'alice@example.com' }),
    ]);
    const ssh = await gh('alice', ['ssh', `${login}@node1`, 'whoami']);
    expect(ssh.stderr).toBe('');
    expect(ssh.stdout).toBe(`${login}\n`);
    const user = JSON.parse((await admin(d, ['users', 'ls', '--json'])).stdout).find(
      (u: { name: string }) => u.name === 'alice@example.com',
    );
    expect(user).toMatchObject({
      roles: ['ops'],
      hasPassword: false,
      sso: { connector: 'corp-saml' },
      traits: { groups: ['ops', 'staff'], unix_login: [login] },
    });
  });

  it('refuses the same response posted again (its InResponseTo and RelayState were used)', async () => {
    expect(posted.get('SAMLResponse')).toBeTruthy();
    const since = auditEvents(d).length;
    const r = await gatewayRequest('/v1/sso/saml/acs', Object.fromEntries(posted));
    expect(r.status).toBe(401);
    expect(JSON.parse(r.body)).toMatchObject({ code: 'GH_ERR_SSO_STATE_INVALID' });
    expect(ssoLoginEvents(since)).toEqual([
      expect.objectContaining({ success: false, reason: 'sso_state_invalid' }),
    ]);
  });

  it('refuses the same response under a new login (InResponseTo is not that login request)', async () => {
    const cli = spawnCli(
      ['login', '--proxy', d.proxy, '--ca-pin', d.pin, '--auth', 'corp-saml', '--browser', 'none'],
      { GATEHOUSE_HOME: home('replay') },
    );
    const relayState = new URL(await cli.url).searchParams.get('RelayState') ?? '';
    expect(relayState).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const since = auditEvents(d).length;
    const r = await gatewayRequest('/v1/sso/saml/acs', {
      SAMLResponse: posted.get('SAMLResponse') ?? '',
      RelayState: relayState,
    });
    // The failure goes where the login started: the CLI's listener.
    expect(r.status).toBe(302);
    expect(r.location).toContain('error=GH_ERR_SSO_ASSERTION_INVALID');
    const back = await fetch(r.location!);
    expect(await back.text()).toContain('Login failed');
    const done = await cli.done;
    expect(done.code).not.toBe(0);
    expect(done.stderr).toContain("not this login's request");
    expect(existsSync(join(home('replay'), 'profiles.json'))).toBe(false);
    expect(ssoLoginEvents(since)).toEqual([
      expect.objectContaining({ success: false, reason: 'sso_assertion_invalid', connector: 'corp-saml' }),
    ]);
  });

  it('refuses attributes that map to no role, naming the connector and the attributes', async () => {
    const since = auditEvents(d).length;
    const r = await cliLogin('eve', 'eve');
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('connector corp-saml: the attributes groups=["interns"] map to no role');
    expect(existsSync(join(home('eve'), 'profiles.json'))).toBe(false);
    expect(ssoLoginEvents(since)).toEqual([
      expect.objectContaining({ success: false, reason: 'sso_no_roles', connector: 'corp-saml' }),
    ]);
  });

  const bad: [string, SamlTamper, RegExp][] = [
    ['an unsigned assertion', 'unsigned', /no valid signature by the IdP's metadata key/],
    [
      'a signed assertion plus an injected unsigned one (signature wrapping)',
      'wrap-inject',
      /carries 2 assertions \(signature wrapping\)/,
    ],
    [
      'the signed assertion moved inside a forged one (signature wrapping)',
      'wrap-move',
      /carries 2 assertions \(signature wrapping\)/,
    ],
    ['a wrong audience', 'audience', /the audience is "https:\/\/someone-else\.example\.com\/saml"/],
    ['an expired assertion', 'expired', /expired|not valid yet/],
    ['a response signed by another key', 'other-key', /not the IdP's \(not in its metadata\)/],
  ];
  for (const [what, tamper, why] of bad) {
    it(`refuses ${what}: a clear error, an audit event, no login`, async () => {
      const name = `bad${randomBytes(3).toString('hex')}`;
      const since = auditEvents(d).length;
      idp.tamper = tamper;
      let r: Awaited<ReturnType<typeof cliLogin>>;
      try {
        r = await cliLogin(name, 'alice');
      } finally {
        idp.tamper = undefined;
      }
      expect(r.code).not.toBe(0);
      expect(r.stderr).toContain('the SAML response from connector corp-saml is not valid');
      expect(r.stderr).toMatch(why);
      expect(r.page).toContain('Login failed');
      expect(existsSync(join(home(name), 'profiles.json'))).toBe(false);
      expect(ssoLoginEvents(since)).toEqual([
        expect.objectContaining({ success: false, reason: 'sso_assertion_invalid', connector: 'corp-saml' }),
      ]);
    });
  }

  it('says so when the IdP metadata URL is down', async () => {
    const down = join(d.root, 'down.yaml');
    writeFileSync(
      down,
      [
        'kind: saml',
        'name: down',
        'idp_metadata_url: http://127.0.0.1:9/metadata',
        `acs_url: https://localhost:${gwPort}/v1/sso/saml/acs`,
        'attributes_to_roles: [{name: groups, value: ops, roles: [ops]}]',
        '',
      ].join('\n'),
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
      'the SAML metadata of connector down (http://127.0.0.1:9/metadata) cannot be read',
    );
    expect(ssoLoginEvents(since)).toEqual([
      expect.objectContaining({ success: false, reason: 'sso_idp_unavailable', connector: 'down' }),
    ]);
    await admin(d, ['sso', 'rm', 'down']);
  });
});
