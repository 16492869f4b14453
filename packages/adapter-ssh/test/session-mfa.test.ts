/**
 * Per-session MFA at the SSH proxy with the real OpenSSH client and sshd
 * (`ssh -J` through the gateway): the one-minute certificate a check issues
 * opens its node login only, is refused for a NEW connection once its minute
 * is over, and the session it opened stays up past that minute (also when
 * access is re-checked). The gateway runs on a clock the test moves forward.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { type Clock, GatehouseClient } from '@gatehouse/core';
import { TOTP } from 'otpauth';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../../core/test/helpers.js';
import { loginUser, sshJ, startEnv, type TestEnv, type UserFiles } from './peers.js';

const PASSWORD = 'correct horse battery staple';

let env: TestEnv;
let alice: UserFiles;
let api: GatehouseClient;
let totp: TOTP;
/**
 * The gateway's time, relative to the machine's. It starts four minutes
 * behind and only moves forward (each code takes a new 30 s step, then the
 * minute passes), so the host and upstream certificates it mints stay valid
 * for the real OpenSSH client and sshd, which use the machine's clock.
 */
let offsetMs = -240_000;
const clock: Clock = { now: () => new Date(Date.now() + offsetMs) };
/** A code from a step no code was used in yet (each step is good once). */
const code = () => {
  offsetMs += 30_000;
  return totp.generate({ timestamp: clock.now().getTime() });
};

const role = (description: string) =>
  [
    'kind: role',
    'name: prod-mfa',
    `description: ${description}`,
    'allow:',
    `  logins: [${env.login}]`,
    '  node_labels: { env: [dev, prod] }',
    'options:',
    '  require_session_mfa: true',
    '',
  ].join('\n');

/** Runs a per-session MFA check for LOGIN@node and puts the certificate where alice's ssh_config looks. */
async function checkFor(node: string): Promise<void> {
  const ch = await api.sessionMfaChallenge({ target: { kind: 'node', node, login: env.login } });
  expect(ch.required).toBe(true);
  const res = await api.sessionMfaCerts({
    challenge_id: ch.challenge_id!,
    response: { method: 'totp', code: code() },
    ssh_public_key: (await readFile(`${alice.key}.pub`, 'utf8')).trim(),
  });
  await writeFile(alice.cert, `${res.ssh_cert}\n`);
}

beforeAll(async () => {
  env = await startEnv({ clock, secondFactor: 'otp' });
  const { gw } = env;
  await gw.admin.putRole(role('per-session MFA'));
  const { token } = await gw.users.create({ name: 'alice', roles: ['prod-mfa'] }, 'test');
  const info = await gw.users.inspectToken(token!.token);
  totp = new TOTP({ secret: info.totp!.secret, digits: 6, period: 30, algorithm: 'SHA1' });
  await gw.users.acceptToken(token!.token, { password: PASSWORD, otp: code() });
  await gw.nodes.add({ name: 'node1', addr: `127.0.0.1:${env.sshd.port}`, labels: { env: 'dev' } }, 'test');
  await gw.nodes.add({ name: 'prod1', addr: `127.0.0.1:${env.sshd.port}`, labels: { env: 'prod' } }, 'test');
  alice = await loginUser(env, 'alice', PASSWORD, { otp: code() });
  api = new GatehouseClient({
    proxy: `127.0.0.1:${env.port}`,
    caPem: gw.authorities.get('host').map((k) => k.x509CertPem),
    certPem: alice.tlsCertPem,
    keyPem: alice.tlsKeyPem,
  });
}, 60_000);

afterAll(async () => {
  api?.close();
  await env?.close();
});

describe('per-session MFA at the SSH proxy (OpenSSH both ends)', () => {
  it('the login certificate alone is refused for the node with what to run instead', async () => {
    const r = await sshJ(env, alice, `${env.login}@node1`, ['--', 'echo', 'no']);
    expect(r.code).toBe(255);
    expect(r.stdout.toString()).toBe('');
    expect(r.stderr).toContain('require_session_mfa');
    expect(r.stderr).toContain(`gatehouse ssh ${env.login}@node1`);
  });

  it('the 1-minute certificate opens its node; another node is refused; after the minute a new connection is refused while the live session stays up', async () => {
    await checkFor('node1');
    const other = await sshJ(env, alice, `${env.login}@prod1`, ['--', 'echo', 'no']);
    expect(other.code).toBe(255);
    expect(other.stderr).toContain(`MFA check was for ${env.login}@node1, not ${env.login}@prod1`);

    await checkFor('node1');
    const live = sshJ(env, alice, `${env.login}@node1`, ['--', 'cat'], { keepStdinOpenMs: 120_000 });
    let echoed = '';
    live.child.stdout!.on('data', (d: Buffer) => {
      echoed += d.toString();
    });
    let liveErr = '';
    live.child.stderr!.on('data', (d: Buffer) => {
      liveErr += d.toString();
    });
    live.child.stdin!.write('before\n');
    await waitFor(async () => echoed.includes('before\n') || undefined, 'the session to echo').catch((e) => {
      throw new Error(`${e.message}: ${liveErr}`);
    });

    offsetMs += 61_000;
    const late = await sshJ(env, alice, `${env.login}@node1`, ['--', 'echo', 'no']);
    expect(late.code).toBe(255);
    expect(late.stdout.toString()).toBe('');
    expect(late.stderr).toMatch(/expired/);

    // A role change re-checks every live session: this one was checked when it opened and goes on.
    await env.gw.admin.putRole(role('per-session MFA, edited'));
    live.child.stdin!.write('after\n');
    await waitFor(
      async () => echoed.includes('after\n') || undefined,
      'the session to echo after the minute',
    );
    live.child.stdin!.end();
    const done = await live;
    expect(done.code).toBe(0);
    expect(done.stdout.toString()).toBe('before\nafter\n');
    // It ended because the shell did, not because core cut it off.
    const end = await waitFor(
      async () => (await env.gw.audit.search({ types: ['session.end'], limit: 50 })).events[0],
      'session.end',
    );
    expect(end).toMatchObject({ user: 'alice', server: 'node1' });
    expect(JSON.stringify(end)).not.toMatch(/expired|access_revoked/);
  });
});
