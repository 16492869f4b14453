import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import {
  decodeIdentity,
  GatehouseClient,
  GatehouseError,
  type GatewayView,
  type LoginResponse,
  parseHostPort,
  parseSshCertificate,
  type WebAuthnResponseJson,
} from '@gatehouse/core';
import type { Command } from 'commander';
import QRCode from 'qrcode';
import { durationFlag, relativeTime } from '../args.js';
import { chooseMfaMethod, keyInBrowser, parseMfaMode } from '../browser-mfa.js';
import { type Ctx, trustProxy } from '../context.js';
import { generateLoginKeys } from '../keys.js';
import { json } from '../output.js';
import type { KeyPaths } from '../profile.js';
import { ask, readSecretFromStdin } from '../prompt.js';
import { MFA_MODE_HELP } from '../session-mfa.js';
import { listenForSsoCallback, openBrowser } from '../sso-callback.js';
import { loginWithRequests } from './requests.js';
import { flag, usage } from './usage.js';

interface TrustFlags {
  proxy?: string;
  caPin?: string;
  insecure?: boolean;
}

function trustOpts(o: TrustFlags) {
  if (o.caPin && o.insecure) throw usage('--ca-pin and --insecure exclude each other', 'drop --insecure');
  return { ...(o.caPin ? { caPin: o.caPin } : {}), ...(o.insecure ? { insecure: true } : {}) };
}

async function readOtp(o: { otp?: string }): Promise<string> {
  if (o.otp) return o.otp;
  return (
    await ask('Authenticator code: ', { hidden: false, what: 'one-time code', flag: '--otp CODE' })
  ).trim();
}

/**
 * The login's second factor: a code (`--otp`, `--mfa-mode totp`), or a
 * security key through the gateway's page in the browser (browser-mfa.ts);
 * with `auto` the one the user has, asking when they have both. The gateway
 * checks the password before it names the user's devices.
 */
async function secondFactor(
  ctx: Ctx,
  client: GatehouseClient,
  who: { user: string; password: string },
  o: { otp?: string | undefined; mfaMode?: string | undefined; browser?: string | undefined },
): Promise<{ otp: string } | { webauthn: WebAuthnResponseJson }> {
  const mode =
    o.otp && o.mfaMode === undefined ? 'totp' : parseMfaMode(o.mfaMode ?? ctx.env.GATEHOUSE_MFA_MODE);
  if (mode === 'totp') return { otp: await readOtp(o) };
  const credential = await keyInBrowser(
    async (cb) => {
      const r = await client.browserMfaLogin({ ...who, ...cb });
      const m = await chooseMfaMethod(
        mode,
        { totp: r.totp, webauthn: r.webauthn !== undefined },
        'this login',
      );
      return m === 'webauthn' ? r.webauthn : undefined;
    },
    { browser: o.browser ?? ctx.env.GATEHOUSE_BROWSER, err: ctx.err, describe: `the login of ${who.user}` },
  );
  return credential ? { webauthn: credential as unknown as WebAuthnResponseJson } : { otp: await readOtp(o) };
}

export function registerUser(program: Command, ctx: Ctx): void {
  program
    .command('login')
    .description('log in to a proxy and get short-lived SSH and X.509 certificates')
    .option('--proxy <host:port>', 'the proxy (default: the current profile)')
    .option('--user <name>', 'user name (default: the profile user for this proxy)')
    .option('--ca-pin <pin>', "pin of the proxy's CA, as printed by `gatehouse start`")
    .option('--insecure', "trust the proxy's CA on first use without a pin (prints a warning)")
    .option('--password-stdin', 'read the password from the first line of stdin (the rest is ignored)')
    .option('--otp <code>', 'one-time code from the authenticator app')
    .option('--auth <connector>', 'log in through an SSO connector (gatehouse sso ls) in the browser')
    .option(
      '--browser <command>',
      'with --auth or a security key: the command that opens the login page, or "none" to only print its URL (default: $GATEHOUSE_BROWSER, else xdg-open/open)',
    )
    .option('--mfa-mode <mode>', MFA_MODE_HELP)
    .option(
      '--ttl <duration>',
      'requested certificate lifetime, e.g. 8h (capped by your roles)',
      flag(durationFlag('--ttl')),
    )
    .option(
      '--request-id <id>',
      'add the roles of an approved access request to the current login (no password; repeatable)',
      (v: string, prev: string[] = []) => [...prev, v],
    )
    .option('--json', 'print JSON')
    .addHelpText(
      'after',
      `
Examples:
  $ gatehouse login --proxy gh.example.com:3080 --user alice --ca-pin sha256:3f2a...
  $ gatehouse login --request-id 5f0c...   # certificates with the approved request's roles (gatehouse request ls)
  $ gatehouse login --proxy gh.example.com:3080 --auth corp            # single sign-on in the browser
  $ gatehouse login --proxy gh.example.com:3080 --auth corp --browser none
  $ gatehouse login --proxy gh.example.com:443 --user alice --mfa-mode webauthn   # security key, in the browser
  $ printf '%s' "$PW" | gatehouse login --proxy 127.0.0.1:3080 --user ci --password-stdin --otp 123456
  $ gatehouse login              # again, with the proxy and user of the current profile`,
    )
    .action(
      async (
        o: TrustFlags & {
          user?: string;
          passwordStdin?: boolean;
          otp?: string;
          ttl?: string;
          json?: boolean;
          auth?: string;
          browser?: string;
          mfaMode?: string;
          requestId?: string[];
        },
      ) => {
        if (o.requestId?.length) {
          if (o.auth !== undefined || o.user || o.passwordStdin || o.otp || o.mfaMode || o.proxy || o.ttl) {
            throw usage(
              '--request-id re-issues the current login with the approved roles',
              'drop --proxy, --user, --password-stdin, --otp, --mfa-mode, --auth and --ttl (log in first without --request-id)',
            );
          }
          await loginWithRequests(ctx, undefined, o.requestId, o);
          return;
        }
        const profiles = ctx.home.readProfiles();
        const proxy = o.proxy ?? profiles.current;
        if (!proxy) throw usage('no proxy given', 'pass --proxy HOST:PORT (printed by `gatehouse start`)');
        parseHostPort(proxy);
        if (o.auth !== undefined) {
          if (o.user || o.passwordStdin || o.otp || o.mfaMode) {
            throw usage(
              '--auth logs in at the identity provider',
              'drop --user, --password-stdin, --otp and --mfa-mode',
            );
          }
          await ssoLogin(ctx, proxy, { ...o, auth: o.auth });
          return;
        }
        const user = o.user ?? profiles.profiles[proxy]?.user;
        if (!user) throw usage('no user given', `pass --user NAME`);
        ctx.home.keyPaths(proxy, user); // rejects a user name unfit for a path before any network I/O

        const trust = await trustProxy(ctx, proxy, trustOpts(o));
        const client = new GatehouseClient({ proxy, caPem: trust.caPem });
        try {
          const ping = await client.ping();
          const password = o.passwordStdin
            ? await readSecretFromStdin('password')
            : await ask(`Password for ${user}@${ping.cluster_name}: `, {
                hidden: true,
                what: 'password',
                flag: '--password-stdin',
              });
          const second =
            ping.second_factor === 'otp' ? await secondFactor(ctx, client, { user, password }, o) : {};
          const keys = generateLoginKeys(`${user}@${ping.cluster_name}`);
          const res = await client.login({
            user,
            password,
            ...second,
            ssh_public_key: keys.sshPublicKey,
            tls_public_key: keys.tlsPublicKey,
            ...(o.ttl ? { ttl: o.ttl } : {}),
          });
          saveLogin(ctx, proxy, trust, keys, res, o);
        } finally {
          client.close();
        }
      },
    );

  program
    .command('accept-invite')
    .description('set your password (and authenticator) from an invite or reset token')
    .argument('<token>', 'the token from the invite command')
    .requiredOption('--proxy <host:port>', 'the proxy')
    .option('--ca-pin <pin>', "pin of the proxy's CA, as printed by `gatehouse start`")
    .option('--insecure', "trust the proxy's CA on first use without a pin (prints a warning)")
    .option(
      '--password-stdin',
      'read the new password from the first line of stdin (no confirmation is read; the rest is ignored)',
    )
    .option('--otp <code>', 'current code from the authenticator app (when enrolling one)')
    .addHelpText(
      'after',
      `
Examples:
  $ gatehouse accept-invite --proxy gh.example.com:3080 --ca-pin sha256:3f2a... 6b1f0c...
  $ printf '%s' "$PW" | gatehouse accept-invite --proxy 127.0.0.1:3080 --ca-pin sha256:... TOKEN --password-stdin`,
    )
    .action(
      async (token: string, o: TrustFlags & { proxy: string; passwordStdin?: boolean; otp?: string }) => {
        const trust = await trustProxy(ctx, o.proxy, trustOpts(o));
        const client = new GatehouseClient({ proxy: o.proxy, caPem: trust.caPem });
        try {
          const info = await client.inspectInvite(token);
          ctx.out(
            `${info.kind === 'invite' ? 'Invite' : 'Password reset'} for ${info.user} ` +
              `(expires ${info.expires}, ${relativeTime(new Date(info.expires), ctx.now())}).\n`,
          );
          if (info.totp) {
            const qr = await QRCode.toString(info.totp.uri, { type: 'terminal', small: true });
            ctx.out(
              `\nScan this code with your authenticator app:\n\n${qr}\n` +
                `or enter the secret by hand: ${info.totp.secret}\n` +
                `URI: ${info.totp.uri}\n\n`,
            );
          }
          let password: string;
          if (o.passwordStdin) {
            password = await readSecretFromStdin('password');
          } else {
            const p = { hidden: true, what: 'new password', flag: '--password-stdin' };
            password = await ask('New password: ', p);
            if ((await ask('Repeat the new password: ', p)) !== password) {
              throw new GatehouseError('GH_ERR_VALIDATION', 'the passwords do not match', {
                hint: 'run the command again',
              });
            }
          }
          const otp = info.totp || info.second_factor === 'otp' ? await readOtp(o) : undefined;
          await client.acceptInvite(token, { password, ...(otp ? { otp } : {}) });
          const pinFlag = trust.pin ? ` --ca-pin ${trust.pin}` : '';
          ctx.out(
            `Password set for ${info.user}. Now log in:\n\n  gatehouse login --proxy ${o.proxy}${pinFlag} --user ${info.user}\n`,
          );
        } finally {
          client.close();
        }
      },
    );

  program
    .command('status')
    .description('show the current login: identity, roles, logins, expiry and key paths')
    .option('--json', 'print JSON')
    .addHelpText(
      'after',
      "\nReads the local certificates, then asks the proxy (GET /v1/ping, 3 s at most) which gateway answered\nand which other gateways share its backend; an unreachable proxy is reported, not an error.\n\nExamples:\n  $ gatehouse status\n  $ gatehouse status --json | jq .expires\n  $ gatehouse status --json | jq '.peers[].name'",
    )
    .action(async (o: { json?: boolean }) => {
      const profile = ctx.home.current();
      if (!profile) {
        throw new GatehouseError('GH_ERR_UNAUTHENTICATED', 'not logged in', {
          hint: 'gatehouse login --proxy HOST:PORT --user NAME --ca-pin sha256:...',
        });
      }
      const paths = ctx.home.keyPaths(profile.proxy, profile.user);
      const relogin = `log in again: gatehouse login --proxy ${profile.proxy} --user ${profile.user}`;
      let tlsCert: X509Certificate;
      let sshCertText: string;
      try {
        tlsCert = new X509Certificate(readFileSync(paths.tlsCert));
        sshCertText = readFileSync(paths.sshCert, 'utf8');
      } catch (cause) {
        throw new GatehouseError(
          'GH_ERR_UNAUTHENTICATED',
          `the certificates of ${profile.user}@${profile.proxy} are missing or unreadable`,
          {
            hint: relogin,
            cause,
          },
        );
      }
      const identity = decodeIdentity(tlsCert);
      const ssh = parseSshCertificate(sshCertText);
      const expires = new Date(Math.min(identity.expires.getTime(), ssh.validBefore.getTime()));
      const now = ctx.now();
      const expired = expires <= now;
      const where = await gatewayOf(ctx, profile);
      if (o.json) {
        ctx.out(
          json({
            user: identity.user,
            cluster: profile.cluster,
            proxy: profile.proxy,
            roles: identity.roles,
            logins: ssh.principals,
            traits: identity.traits,
            expires: expires.toISOString(),
            expired,
            ca_pin: profile.caPin,
            files: fileView(paths),
            known_hosts: ctx.home.knownHostsPath,
            gateway: where.gateway ?? null,
            peers: where.peers ?? [],
            ...(where.error ? { gateway_error: where.error } : {}),
          }),
        );
        return;
      }
      printIdentity(ctx, {
        heading: `Logged in as ${identity.user} to cluster ${profile.cluster} (proxy ${profile.proxy}).`,
        roles: identity.roles,
        logins: ssh.principals,
        expires,
        paths,
      });
      if (where.error) ctx.out(`  Gateway:   unknown (${where.error})\n`);
      else if (where.gateway) {
        ctx.out(
          `  Gateway:   ${where.gateway.name} (version ${where.gateway.version}, up since ${where.gateway.started})\n`,
        );
        const peers = where.peers ?? [];
        ctx.out(`  Peers:     ${peers.length ? peers.map((g) => g.name).join(', ') : 'none'}\n`);
      }
      if (expired) ctx.err(`warning: the certificates have expired; ${relogin}\n`);
    });

  program
    .command('logout')
    .description('delete the keys and certificates of the current login (or of all with --all)')
    .option('--all', 'every profile')
    .addHelpText('after', '\nExamples:\n  $ gatehouse logout\n  $ gatehouse logout --all')
    .action((o: { all?: boolean }) => {
      if (o.all) {
        const removed = ctx.home.removeAll();
        ctx.out(`Logged out of ${removed.length} profile${removed.length === 1 ? '' : 's'}.\n`);
        return;
      }
      const current = ctx.home.current();
      if (!current) {
        throw new GatehouseError('GH_ERR_UNAUTHENTICATED', 'not logged in', {
          hint: 'nothing to do; `gatehouse logout --all` removes every stored profile',
        });
      }
      ctx.home.removeProfile(current.proxy);
      ctx.out(`Logged out ${current.user} from ${current.proxy}; keys deleted.\n`);
    });
}

/**
 * Which gateway the profile's proxy reaches and its live peers (GET
 * /v1/ping). Bounded and never fatal: status still shows the local login
 * when the proxy is down.
 */
async function gatewayOf(
  ctx: Ctx,
  profile: { proxy: string },
): Promise<{ gateway?: GatewayView | undefined; peers?: GatewayView[] | undefined; error?: string }> {
  const cas = ctx.home.storedCas(profile.proxy);
  if (!cas?.length) return { error: 'no stored CA for this proxy; log in again' };
  const client = new GatehouseClient({ proxy: profile.proxy, caPem: cas, timeoutMs: 3000 });
  try {
    const ping = await client.ping();
    return { gateway: ping.gateway, peers: ping.peers };
  } catch (err) {
    return { error: `the proxy did not answer: ${err instanceof Error ? err.message : String(err)}` };
  } finally {
    client.close();
  }
}

/** Stores what a login returned (keys, certificates, CAs, the profile) and prints who is logged in. */
export function saveLogin(
  ctx: Ctx,
  proxy: string,
  trust: { caPem: string[]; pin?: string | undefined },
  keys: ReturnType<typeof generateLoginKeys>,
  res: LoginResponse,
  o: { json?: boolean | undefined },
): void {
  if (!res.ssh_cert || !res.tls_cert) {
    throw new GatehouseError('GH_ERR_INTERNAL', 'the proxy accepted the login but returned no certificates', {
      hint: 'the proxy may be a different version; ask the cluster admin',
    });
  }
  // The pinned CA stays trusted next to what the proxy reports, so a
  // host_x509 list that omits it cannot lock this client out.
  const cas = [...new Set([...trust.caPem, ...res.cas.host_x509].map((p) => p.trim()))].join('\n');
  const paths = ctx.home.saveKeys(proxy, res.user, {
    sshKey: keys.sshPrivateKey,
    sshPub: keys.sshPublicKey,
    sshCert: res.ssh_cert,
    tlsKey: keys.tlsPrivateKey,
    tlsCert: res.tls_cert,
    cas,
  });
  ctx.home.updateKnownHosts(res.cluster_name, res.cas.host_ssh);
  ctx.home.setCurrent({
    proxy,
    user: res.user,
    cluster: res.cluster_name,
    ...(trust.pin ? { caPin: trust.pin } : {}),
  });
  if (o.json) {
    const { ssh_cert: _s, tls_cert: _t, csrf_token: _c, ...rest } = res;
    ctx.out(json({ ...rest, proxy, files: fileView(paths), known_hosts: ctx.home.knownHostsPath }));
    return;
  }
  printIdentity(ctx, {
    heading: `Logged in as ${res.user} to cluster ${res.cluster_name} (proxy ${proxy}).`,
    roles: res.roles,
    logins: res.logins,
    expires: new Date(res.expires),
    paths,
  });
}

/**
 * `gatehouse login --auth NAME`: the browser signs in at the identity
 * provider, the gateway sends it back to a loopback listener here with a
 * one-time code, and this process redeems the code with its verifier for
 * certificates on keys it made (see sso-callback.ts).
 */
async function ssoLogin(
  ctx: Ctx,
  proxy: string,
  o: TrustFlags & { auth: string; browser?: string; ttl?: string; json?: boolean },
): Promise<void> {
  const trust = await trustProxy(ctx, proxy, trustOpts(o));
  const client = new GatehouseClient({ proxy, caPem: trust.caPem });
  const cb = await listenForSsoCallback();
  try {
    const ping = await client.ping();
    const keys = generateLoginKeys(`${o.auth}@${ping.cluster_name}`);
    const start = await client.ssoStart({
      connector: o.auth,
      redirect_url: cb.redirectUrl,
      client_challenge: cb.challenge,
      ssh_public_key: keys.sshPublicKey,
      tls_public_key: keys.tlsPublicKey,
      ...(o.ttl ? { ttl: o.ttl } : {}),
    });
    openBrowser(start.auth_url, o.browser, ctx.err);
    const code = await cb.code;
    const out = await client.ssoRedeem({ code, verifier: cb.verifier });
    if (out.kind !== 'login') {
      throw new GatehouseError('GH_ERR_INTERNAL', 'the proxy answered a login with a test report', {
        hint: 'run the login again',
      });
    }
    saveLogin(ctx, proxy, trust, keys, out.login, o);
  } finally {
    cb.close();
    client.close();
  }
}

function fileView(p: KeyPaths) {
  return {
    ssh_key: p.sshKey,
    ssh_public_key: p.sshPub,
    ssh_cert: p.sshCert,
    tls_key: p.tlsKey,
    tls_cert: p.tlsCert,
    cas: p.cas,
  };
}

function printIdentity(
  ctx: Ctx,
  v: { heading: string; roles: string[]; logins: string[]; expires: Date; paths: KeyPaths },
): void {
  const now = ctx.now();
  const exp =
    v.expires <= now
      ? `${v.expires.toISOString()} EXPIRED (${relativeTime(v.expires, now)})`
      : `${v.expires.toISOString()} (${relativeTime(v.expires, now)})`;
  ctx.out(
    `${v.heading}\n` +
      `  roles:     ${v.roles.join(', ') || '-'}\n` +
      `  logins:    ${v.logins.join(', ') || '-'}\n` +
      `  expires:   ${exp}\n` +
      `  ssh key:   ${v.paths.sshKey}\n` +
      `  ssh cert:  ${v.paths.sshCert}\n` +
      `  tls cert:  ${v.paths.tlsCert}\n`,
  );
}
