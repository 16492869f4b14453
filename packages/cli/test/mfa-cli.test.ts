/**
 * `gatehouse mfa ls|add|rm` (the built binary) against a gateway that
 * requires a second factor: an authenticator app is added from the CLI
 * (the secret it prints, the code typed back), listed, used to log in,
 * removed; the last device is refused; security keys point to the web UI.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ManualClock, type MfaDeviceInfo, totpCode } from '@gatehouse/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type TestGateway } from '../../core/test/helpers.js';
import { BIN, PASSWORD, run } from './harness.js';

const clock = new ManualClock(Date.now());
let tg: TestGateway;
let home: string;
let proxy: string;
let enrolled: string;

const env = () => ({ GATEHOUSE_HOME: home });
const gh = (args: string[], input?: string) => run(args, { env: env(), ...(input ? { input } : {}) });

beforeAll(async () => {
  tg = await startGateway({
    clusterName: 'mfa.example',
    secondFactor: 'otp',
    clock,
    values: { auth: { login_rate_per_minute: 1000 } },
  });
  proxy = `127.0.0.1:${tg.port}`;
  home = await mkdtemp(path.join(os.tmpdir(), 'gh-mfa-home-'));
  const { token } = await tg.gw.users.create(
    { name: 'alice', roles: ['access'], password: PASSWORD },
    'admin',
  );
  enrolled = (await tg.gw.users.inspectToken(token!.token)).totp!.secret;
  await tg.gw.users.acceptToken(token!.token, { password: PASSWORD, otp: totpCode(enrolled, clock.now()) });
  clock.advance(30_000);
  const login = await gh(
    [
      'login',
      '--proxy',
      proxy,
      '--user',
      'alice',
      '--ca-pin',
      tg.gw.caPin(),
      '--password-stdin',
      '--otp',
      totpCode(enrolled, clock.now()),
    ],
    `${PASSWORD}\n`,
  );
  expect(login.stderr).toBe('');
  expect(login.code).toBe(0);
}, 60_000);

afterAll(async () => {
  await tg?.close();
  if (home) await rm(home, { recursive: true, force: true });
});

/** `gatehouse mfa add --type totp`, answering with a code from the secret it prints (as a user with an app would). */
function addTotp(
  name: string,
): Promise<{ code: number | null; stdout: string; stderr: string; secret: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, 'mfa', 'add', '--name', name, '--code-stdin', '--json'], {
      env: { PATH: process.env.PATH, HOME: home, ...env() },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    let secret = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.stdout.on('data', (d) => {
      stdout += d;
    });
    child.stderr.on('data', (d) => {
      stderr += d;
      const m = /secret by hand: ([A-Z2-7]+)\n/.exec(stderr);
      if (m && !secret) {
        secret = m[1]!;
        child.stdin.end(`${totpCode(secret, clock.now())}\n`);
      }
    });
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, secret });
    });
  });
}

describe('gatehouse mfa', () => {
  it('adds a named authenticator app, lists it, and logs in with its codes', async () => {
    const added = await addTotp('work phone');
    expect(added.code).toBe(0);
    const device = JSON.parse(added.stdout) as MfaDeviceInfo;
    expect(device).toMatchObject({ name: 'work phone', kind: 'totp' });
    const ls = await gh(['mfa', 'ls', '--json']);
    expect(ls.code).toBe(0);
    expect((JSON.parse(ls.stdout) as MfaDeviceInfo[]).map((d) => d.name)).toEqual([
      'authenticator app',
      'work phone',
    ]);
    const table = await gh(['mfa', 'ls']);
    expect(table.stdout).toMatch(/^NAME\s+TYPE\s+ADDED\s+LAST USED\s+ID\n/);
    expect(table.stdout).toContain('work phone');
    const events = await tg.gw.admin.searchAudit({ types: ['mfa.add'] });
    expect(events.events.map((e) => ('mfa_device' in e ? e.mfa_device?.name : ''))).toContain('work phone');

    clock.advance(30_000);
    const login = await gh(
      [
        'login',
        '--proxy',
        proxy,
        '--user',
        'alice',
        '--password-stdin',
        '--otp',
        totpCode(added.secret, clock.now()),
      ],
      `${PASSWORD}\n`,
    );
    expect(login.code).toBe(0);
    const logins = await tg.gw.admin.searchAudit({ types: ['user.login'] });
    expect(logins.events[0]).toMatchObject({
      success: true,
      mfa_device: { method: 'totp', name: 'work phone', id: device.id },
    });
  });

  it('refuses a wrong code from the app', async () => {
    const child = await gh(['mfa', 'add', '--name', 'tablet', '--code-stdin'], '000000\n');
    expect(child.code).toBe(1);
    expect(child.stderr).toMatch(/the authenticator code is not valid/);
  });

  it('points security keys to the web UI', async () => {
    const r = await gh(['mfa', 'add', '--name', 'yubikey', '--type', 'webauthn']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`https://${proxy}/web/account`);
  });

  it('removes devices by name, but not the last one while a second factor is required', async () => {
    const first = await gh(['mfa', 'rm', 'authenticator app']);
    expect(first.code).toBe(0);
    expect(first.stdout).toBe('Removed totp device "authenticator app".\n');
    const last = await gh(['mfa', 'rm', 'work phone', '--json']);
    expect(last.code).toBe(1);
    expect(last.stderr).toMatch(/"work phone" is your last second-factor device/);
    expect(last.stderr).toMatch(/add another device first/);
    const ls = JSON.parse((await gh(['mfa', 'ls', '--json'])).stdout) as MfaDeviceInfo[];
    expect(ls.map((d) => d.name)).toEqual(['work phone']);
    const refused = await tg.gw.admin.searchAudit({ types: ['mfa.remove'] });
    expect(refused.events.some((e) => 'reason' in e && e.reason === 'last_factor')).toBe(true);
  });
});
