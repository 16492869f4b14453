/**
 * What the CLI SSO tests share: a cluster set up for SSO logins (`gatehouse
 * start`, a Unix account and an `ops` role whose login comes from a trait,
 * a real sshd as node1, headless Chromium trusting the gateway), the
 * browser side of `gatehouse login --auth NAME --browser none`, and one
 * suite of cases run per connector kind (OIDC, SAML): each test file keeps
 * only its provider and what is specific to its protocol.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import { join } from 'node:path';
import type { AuditEvent } from '@gatehouse/audit';
import type { Sshd } from '@gatehouse/core/testing';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runClient, waitFor } from '../../core/test/helpers.js';
import { keepLocal } from '../../core/test/oidc-idp.js';
import { launchChromium, serverSpkiPin } from '../../web/test/harness.js';
import {
  admin,
  auditEvents,
  BIN,
  type Daemon,
  type Run,
  run,
  spawnCli,
  startDaemon,
  startNodeSshd,
} from './harness.js';

/** The user at the provider's own pages (a page already on them): signs in as `account`. */
export type ProviderSignIn = (page: Page, account: string) => Promise<void>;

/** A request the browser sent to the gateway's callback route (to replay it as an attacker would). */
export interface CallbackRequest {
  url: string;
  method: string;
  postData: string | null;
}

export interface GatewayAnswer {
  status: number;
  body: string;
  location?: string;
}

export interface CliLogin {
  code: number | null;
  stdout: string;
  stderr: string;
  /** What the browser sent to the gateway's `callbackPath`, if it watched one. */
  callback: CallbackRequest | undefined;
  /** The text of the page the browser ended on (the CLI's loopback listener). */
  page: string;
}

export interface SsoCluster {
  d: Daemon;
  gwPort: number;
  /** The host CA the gateway's TLS certificate chains to. */
  caPem: string;
  /** A Unix account on node1, the login the `ops` role takes from the trait. */
  login: string;
  browser: Browser;
  sshd: Sshd;
  /** GATEHOUSE_HOME of the CLI user `name`. */
  home(name: string): string;
  /** `gatehouse ARGS` as the CLI user `name`. */
  cli(name: string, args: string[]): Promise<Run>;
  /** The `user.login` events with method sso after the first `since` audit events. */
  ssoLogins(since: number): AuditEvent[];
  /** How many audit events there are so far (the `since` of a case). */
  auditCount(): number;
  /** A request to the gateway (trusting its CA), as a browser replaying a URL or a form, or an attacker. */
  request(
    pathOrUrl: string,
    opts?: { method?: string; json?: unknown; form?: string | Record<string, string> },
  ): Promise<GatewayAnswer>;
  /**
   * The user at the provider: a fresh browser profile opens `url`, signs in as
   * `account` and ends on the CLI's loopback listener. Records the request
   * the browser sent to the gateway's `callbackPath`.
   */
  signIn(
    url: string,
    account: string,
    how: { signIn: ProviderSignIn; callbackPath?: string },
  ): Promise<{ callback: CallbackRequest | undefined; text: string }>;
  /** `gatehouse login --auth CONNECTOR --browser none` as `name`, driven through the browser; resolves with its exit. */
  cliLogin(
    name: string,
    account: string,
    how: { connector: string; signIn: ProviderSignIn; callbackPath?: string },
  ): Promise<CliLogin>;
  stop(): Promise<void>;
}

/**
 * A cluster `acme` for SSO logins: the daemon, a fresh Unix account (the
 * role `ops` allows the login named by the trait `loginTrait`), node1 (a real
 * sshd) and Chromium pinned to the gateway's certificate.
 */
export async function startSsoCluster(opts: { loginTrait: string }): Promise<SsoCluster> {
  const login = `ghs${randomBytes(3).toString('hex')}`;
  execFileSync('useradd', ['-m', '-s', '/bin/bash', login]);
  execFileSync('usermod', ['-p', '*', login]);
  let d: Daemon | undefined;
  let sshd: Sshd | undefined;
  let browser: Browser | undefined;
  const stop = async () => {
    execFileSync('userdel', ['-r', '-f', login], { stdio: 'ignore' });
    await browser?.close();
    await sshd?.stop();
    if (d) {
      await d.stop();
      rmSync(d.root, { recursive: true, force: true });
    }
  };
  try {
    d = await startDaemon({ cluster: 'acme' });
    const daemon = d;
    const gwPort = Number(d.proxy.split(':').pop());
    const caPem = (
      await run(['ca', 'export', '--format', 'x509', '--type', 'host', '--proxy', d.proxy, '--ca-pin', d.pin])
    ).stdout;
    const role = join(d.root, 'ops-role.yaml');
    writeFileSync(
      role,
      `kind: role\nname: ops\nallow:\n  logins: ["{{external.${opts.loginTrait}}}"]\n  node_labels: {"*": "*"}\n`,
    );
    await admin(d, ['roles', 'create', '-f', role]);
    sshd = await startNodeSshd(d, ['PrintMotd no']);
    await admin(d, ['nodes', 'add', 'node1', '--addr', `127.0.0.1:${sshd.port}`]);
    browser = await launchChromium([await serverSpkiPin(gwPort, caPem)]);
    const b = browser;
    const home = (name: string) => join(daemon.root, `home-${name}`);

    const request: SsoCluster['request'] = (pathOrUrl, o = {}) => {
      const body =
        o.json !== undefined
          ? { type: 'application/json', text: JSON.stringify(o.json) }
          : o.form !== undefined
            ? {
                type: 'application/x-www-form-urlencoded',
                text: typeof o.form === 'string' ? o.form : new URLSearchParams(o.form).toString(),
              }
            : undefined;
      return new Promise((resolve, reject) => {
        const req = https.request(
          new URL(pathOrUrl, `https://localhost:${gwPort}`),
          {
            method: o.method ?? (body ? 'POST' : 'GET'),
            ca: caPem,
            servername: 'localhost',
            headers: body ? { 'content-type': body.type } : {},
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
        req.end(body?.text);
      });
    };

    const signIn: SsoCluster['signIn'] = async (url, account, how) => {
      const context = await b.newContext();
      context.setDefaultTimeout(20_000);
      await keepLocal(context);
      try {
        const page = await context.newPage();
        let callback: CallbackRequest | undefined;
        const watched = how.callbackPath && `https://localhost:${gwPort}${how.callbackPath}`;
        page.on('request', (r) => {
          if (watched && r.url().startsWith(watched))
            callback = { url: r.url(), method: r.method(), postData: r.postData() };
        });
        await page.goto(url, { waitUntil: 'domcontentloaded' });
        await how.signIn(page, account);
        await page
          .waitForURL(/127\.0\.0\.1:\d+\/callback/, { waitUntil: 'domcontentloaded' })
          .catch(async (e) => {
            // Where the browser got stuck says more than the timeout.
            throw new Error(
              `${(e as Error).message}\nat ${page.url()}: ${(await page.textContent('body')) ?? ''}`,
            );
          });
        return { callback, text: (await page.textContent('body')) ?? '' };
      } finally {
        await context.close();
      }
    };

    return {
      d,
      gwPort,
      caPem,
      login,
      browser,
      sshd,
      home,
      cli: (name, args) =>
        runClient(process.execPath, [BIN, ...args], {
          env: { ...process.env, GATEHOUSE_HOME: home(name) },
          timeoutMs: 30_000,
        }),
      ssoLogins: (since) =>
        auditEvents(daemon)
          .slice(since)
          .filter((e) => e.type === 'user.login' && 'method' in e && e.method === 'sso'),
      auditCount: () => auditEvents(daemon).length,
      request,
      signIn,
      async cliLogin(name, account, how) {
        const cli = spawnCli(
          [
            'login',
            '--proxy',
            daemon.proxy,
            '--ca-pin',
            daemon.pin,
            '--auth',
            how.connector,
            '--browser',
            'none',
          ],
          { GATEHOUSE_HOME: home(name) },
        );
        try {
          const { callback, text } = await signIn(await cli.url, account, how);
          return { ...(await cli.done), callback, page: text };
        } catch (e) {
          cli.kill();
          throw e;
        }
      },
      stop,
    };
  } catch (e) {
    await stop();
    throw e;
  }
}

/**
 * What differs between the connector kinds in the shared suite. The
 * provider's accounts: `alice` (groups ops and staff, unix_login the
 * cluster's login) is user alice@example.com; `eve` (group interns) maps to
 * no role.
 */
export interface SsoKind<Tamper> {
  kind: 'oidc' | 'saml';
  connector: string;
  /** How the gateway's messages name what the provider asserts: "claims" or "attributes"; and one of them. */
  terms: 'claims' | 'attributes';
  term: 'a claim' | 'an attribute';
  /** The gateway route the provider sends the browser back to (the OIDC callback, the SAML ACS). */
  callbackPath: string;
  /** Starts the provider for the cluster and writes the connector's document (not added yet). */
  start(c: SsoCluster): Promise<{ doc: string; stop(): Promise<void> }>;
  signIn: ProviderSignIn;
  /** A document `sso add` refuses, and its error (naming the file, line and key). */
  badDoc: { what: string; text(c: SsoCluster): string; error(file: string): string };
  added: {
    /** The case's title after "adds the connector". */
    title: string;
    /** What `sso add` prints besides "created". */
    prints(c: SsoCluster): string;
    /** Its entry in `sso ls --json`. */
    listed(c: SsoCluster): Record<string, unknown>;
    /** What else holds for this kind once it is added (`ls` is what `sso ls --json` printed). */
    check(c: SsoCluster, ls: string): Promise<void>;
  };
  /** What `sso test` reports as alice's claims. */
  claims(c: SsoCluster): Record<string, unknown>;
  /** The request the browser sent to `callbackPath` carries the login's state. */
  checkCallback(callback: CallbackRequest): void;
  /** Cases specific to the kind, run after the replayed callback is refused (`s` has the first login). */
  cases?(s: SsoSuite): void;
  /** Responses that differ from a good one in one way, each with what the error must say. */
  tampers: [what: string, tamper: Tamper, why: RegExp][];
  setTamper(t: Tamper | undefined): void;
  /** The error and audit reason of a response that fails a check. */
  invalid: { message: string; reason: string };
  /** A connector `down` whose provider cannot be reached, and the error that says so. */
  down: { what: string; doc(c: SsoCluster): string; message: string };
}

export interface SsoSuite {
  cluster(): SsoCluster;
  /** alice's first login through `gatehouse login` (what the later cases replay). */
  firstLogin(): CliLogin;
}

/**
 * `gatehouse sso add/ls/test` and `gatehouse login --auth CONNECTOR` for one
 * connector kind on its own cluster: the login works and `gatehouse ssh`
 * takes the login from the provider's assertion; every bad input is refused
 * with a clear error, an audit event, and no login.
 */
export function describeSsoConnector<Tamper>(k: SsoKind<Tamper>): SsoSuite {
  let c: SsoCluster;
  let provider: { doc: string; stop(): Promise<void> } | undefined;
  let first: CliLogin | undefined;
  const suite: SsoSuite = {
    cluster: () => c,
    firstLogin: () => {
      if (!first) throw new Error("alice's first login did not run");
      return first;
    },
  };
  const cliLogin = (name: string, account: string) =>
    c.cliLogin(name, account, { connector: k.connector, signIn: k.signIn, callbackPath: k.callbackPath });
  const noLoginEvent = (reason: string, connector = k.connector) => [
    expect.objectContaining({ success: false, reason, connector }),
  ];

  beforeAll(async () => {
    c = await startSsoCluster({ loginTrait: 'unix_login' });
    provider = await k.start(c);
  }, 120_000);

  afterAll(async () => {
    await provider?.stop();
    await c?.stop();
  });

  describe(`gatehouse sso add / ls (kind ${k.kind})`, () => {
    it(`refuses ${k.badDoc.what}, naming the file, line and key`, async () => {
      const bad = join(c.d.root, 'bad.yaml');
      writeFileSync(bad, k.badDoc.text(c));
      const r = await run(['--config', c.d.configFile, 'sso', 'add', '-f', bad]);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toContain(k.badDoc.error(bad));
    });

    it(`adds the connector ${k.added.title}`, async () => {
      const r = await admin(c.d, ['sso', 'add', '-f', provider!.doc]);
      expect(r.stdout).toContain(`SSO connector ${k.connector} created.`);
      expect(r.stdout).toContain(k.added.prints(c));
      const ls = await admin(c.d, ['sso', 'ls', '--json']);
      expect(JSON.parse(ls.stdout)).toEqual([
        expect.objectContaining({
          name: k.connector,
          kind: k.kind,
          claims_to_roles: [{ claim: 'groups', value: 'ops', roles: ['ops'] }],
          ...k.added.listed(c),
        }),
      ]);
      await k.added.check(c, ls.stdout);
      expect(auditEvents(c.d).filter((e) => e.type === 'sso.connector.create')).toEqual([
        expect.objectContaining({ name: k.connector, kind: k.kind, code: 'GH1090I' }),
      ]);
    });
  });

  describe(`gatehouse sso test (kind ${k.kind})`, () => {
    it(`prints the ${k.terms} and the roles they map to, and logs in nobody`, async () => {
      const since = c.auditCount();
      const cli = spawnCli(
        ['--config', c.d.configFile, 'sso', 'test', k.connector, '--browser', 'none', '--json'],
        {},
      );
      try {
        await c.signIn(await cli.url, 'alice', k);
      } catch (e) {
        cli.kill();
        throw e;
      }
      const r = await cli.done;
      expect(r.code, r.stderr + c.d.err()).toBe(0);
      expect(JSON.parse(r.stdout)).toMatchObject({
        connector: k.connector,
        user: 'alice@example.com',
        roles: ['ops'],
        claims: k.claims(c),
      });
      expect(c.ssoLogins(since)).toEqual([]);
      expect((await admin(c.d, ['users', 'ls', '--json'])).stdout).not.toContain('alice@example.com');
    });
  });

  describe(`gatehouse login --auth ${k.connector}`, () => {
    it(`logs in through the browser; gatehouse ssh works with the login taken from ${k.term}`, async () => {
      const since = c.auditCount();
      const r = await cliLogin('alice', 'alice');
      expect(r.code, r.stderr).toBe(0);
      expect(r.page).toContain('Login successful');
      expect(r.stdout).toContain('Logged in as alice@example.com to cluster acme');
      expect(r.stdout).toMatch(new RegExp(`logins:\\s+${c.login}\\n`));
      first = r;
      expect(c.ssoLogins(since)).toEqual([
        expect.objectContaining({
          success: true,
          connector: k.connector,
          user: 'alice@example.com',
          code: 'GH1000I',
        }),
      ]);
      const ssh = await c.cli('alice', ['ssh', `${c.login}@node1`, 'whoami']);
      expect(ssh.stderr).toBe('');
      expect(ssh.stdout).toBe(`${c.login}\n`);
      expect(ssh.code).toBe(0);
      // The certificate is capped by the connector's max_session_ttl (2h).
      const status = JSON.parse((await c.cli('alice', ['status', '--json'])).stdout) as { expires: string };
      expect(Date.parse(status.expires) - Date.now()).toBeLessThanOrEqual(2 * 3600e3);
      const user = JSON.parse((await admin(c.d, ['users', 'ls', '--json'])).stdout).find(
        (u: { name: string }) => u.name === 'alice@example.com',
      );
      expect(user).toMatchObject({
        roles: ['ops'],
        hasPassword: false,
        sso: { connector: k.connector },
        traits: { groups: ['ops', 'staff'], unix_login: [c.login] },
      });
    });

    it('refuses the callback replayed (its state works once)', async () => {
      const callback = suite.firstLogin().callback;
      expect(callback).toBeDefined();
      k.checkCallback(callback!);
      const since = c.auditCount();
      const r = await c.request(callback!.url, {
        method: callback!.method,
        ...(callback!.postData === null ? {} : { form: callback!.postData }),
      });
      expect(r.status).toBe(401);
      expect(JSON.parse(r.body)).toMatchObject({ code: 'GH_ERR_SSO_STATE_INVALID' });
      expect(c.ssoLogins(since)).toEqual([
        expect.objectContaining({ success: false, reason: 'sso_state_invalid' }),
      ]);
    });

    k.cases?.(suite);

    it('a one-time code intercepted on its way to the CLI is useless without the verifier (and then burnt)', async () => {
      const cli = spawnCli(
        ['login', '--proxy', c.d.proxy, '--ca-pin', c.d.pin, '--auth', k.connector, '--browser', 'none'],
        { GATEHOUSE_HOME: c.home('mallory') },
      );
      const url = await cli.url;
      // The attacker gets the browser's redirect to the CLI's listener; the CLI (gone) never sees the code.
      cli.kill();
      await cli.done;
      const context = await c.browser.newContext();
      await keepLocal(context);
      let stolen = '';
      const page = await context.newPage();
      page.on('request', (r) => {
        if (/^http:\/\/127\.0\.0\.1:\d+\/callback\?/.test(r.url())) stolen = r.url();
      });
      try {
        await page.goto(url, { waitUntil: 'domcontentloaded' });
        await k.signIn(page, 'alice');
        await waitFor(() => stolen || undefined, 'the redirect to the CLI', 20_000);
      } finally {
        await context.close();
      }
      const code = new URL(stolen).searchParams.get('code');
      expect(code).toMatch(/^[A-Za-z0-9_-]{43}$/);
      const since = c.auditCount();
      const redeem = (verifier: string) => c.request('/v1/sso/redeem', { json: { code, verifier } });
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
      expect(c.ssoLogins(since)).toEqual([
        expect.objectContaining({ success: false, reason: 'sso_code_invalid' }),
        expect.objectContaining({ success: false, reason: 'sso_code_invalid' }),
      ]);
      expect(guess.body).not.toContain('BEGIN CERTIFICATE');
    });

    it(`refuses ${k.terms} that map to no role, naming the connector and the ${k.terms}`, async () => {
      const since = c.auditCount();
      const r = await cliLogin('eve', 'eve');
      expect(r.code).not.toBe(0);
      expect(r.stderr).toContain(
        `connector ${k.connector}: the ${k.terms} groups=["interns"] map to no role`,
      );
      expect(existsSync(join(c.home('eve'), 'profiles.json'))).toBe(false);
      expect(c.ssoLogins(since)).toEqual(noLoginEvent('sso_no_roles'));
    });

    for (const [what, tamper, why] of k.tampers) {
      it(`refuses ${what}: a clear error, an audit event, no login`, async () => {
        const name = `bad${randomBytes(3).toString('hex')}`;
        const since = c.auditCount();
        k.setTamper(tamper);
        let r: CliLogin;
        try {
          r = await cliLogin(name, 'alice');
        } finally {
          k.setTamper(undefined);
        }
        expect(r.code).not.toBe(0);
        expect(r.stderr).toContain(k.invalid.message);
        expect(r.stderr).toMatch(why);
        expect(r.page).toContain('Login failed');
        expect(existsSync(join(c.home(name), 'profiles.json'))).toBe(false);
        expect(c.ssoLogins(since)).toEqual(noLoginEvent(k.invalid.reason));
      });
    }

    it(`says so when ${k.down.what} is down`, async () => {
      const down = join(c.d.root, 'down.yaml');
      writeFileSync(down, k.down.doc(c));
      await admin(c.d, ['sso', 'add', '-f', down]);
      const since = c.auditCount();
      const r = await c.cli('down', [
        'login',
        '--proxy',
        c.d.proxy,
        '--ca-pin',
        c.d.pin,
        '--auth',
        'down',
        '--browser',
        'none',
      ]);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toContain(k.down.message);
      expect(c.ssoLogins(since)).toEqual(noLoginEvent('sso_idp_unavailable', 'down'));
      await admin(c.d, ['sso', 'rm', 'down']);
    });

    it('an SSO user is lockable like a local one: the lock ends its certificate and refuses its next SSO login', async () => {
      await admin(c.d, ['users', 'lock', 'alice@example.com', '--message', 'laptop stolen']);
      try {
        const ssh = await c.cli('alice', ['ssh', `${c.login}@node1`, 'whoami']);
        expect(ssh.code).not.toBe(0);
        expect(ssh.stdout).toBe('');
        const since = c.auditCount();
        const r = await cliLogin('alice-again', 'alice');
        expect(r.code).not.toBe(0);
        expect(r.stderr).toContain('your access is locked: laptop stolen');
        expect(c.ssoLogins(since)).toEqual([
          expect.objectContaining({
            success: false,
            reason: 'user_locked',
            connector: k.connector,
            user: 'alice@example.com',
          }),
        ]);
      } finally {
        await admin(c.d, ['users', 'unlock', 'alice@example.com']);
      }
    });
  });

  return suite;
}
