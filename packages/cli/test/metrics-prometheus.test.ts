/**
 * Prometheus metrics against the real Prometheus from Debian: the daemon
 * serves /metrics on its own port, a throwaway Prometheus scrapes it every
 * second, and the test asks Prometheus's HTTP API for the series an SSH
 * session through the gateway (real ssh, real sshd) and a failed login made.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import type { Sshd } from '@gatehouse/core/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runClient, waitFor } from '../../core/test/helpers.js';
import {
  addAccessUser,
  addNode,
  BIN,
  type Daemon,
  PASSWORD,
  run,
  startDaemon,
  startNodeSshd,
} from './harness.js';

const login = `ghm${randomBytes(3).toString('hex')}`;
let d: Daemon;
let sshd: Sshd;
let prom: ChildProcess | undefined;
let promPort = 0;
let metricsUrl = '';

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

/** One instant-vector query; the value of its single series, or undefined while there is none. */
async function promValue(query: string): Promise<string | undefined> {
  const res = await fetch(`http://127.0.0.1:${promPort}/api/v1/query?query=${encodeURIComponent(query)}`);
  if (!res.ok) return undefined;
  const body = (await res.json()) as { status: string; data: { result: { value: [number, string] }[] } };
  expect(body.status).toBe('success');
  return body.data.result.length === 1 ? body.data.result[0]?.value[1] : undefined;
}

beforeAll(async () => {
  execFileSync('useradd', ['-m', '-s', '/bin/bash', login]);
  execFileSync('usermod', ['-p', '*', login]);
  d = await startDaemon({ cluster: 'metrics', extraConfig: 'metrics:\n  listen: 127.0.0.1:0\n' });
  const m = /metrics:\s+(http:\/\/127\.0\.0\.1:(\d+)\/metrics)/.exec(d.out());
  expect(m, d.out()).not.toBeNull();
  metricsUrl = m?.[1] ?? '';
  await addAccessUser(d, 'alice', login);
  sshd = await startNodeSshd(d, ['PrintMotd no']);
  await addNode(d, 'node1', sshd.port);

  promPort = await freePort();
  const dir = join(d.root, 'prometheus');
  mkdirSync(join(dir, 'data'), { recursive: true });
  writeFileSync(
    join(dir, 'prometheus.yml'),
    `global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: gatehouse\n    static_configs:\n      - targets: ['127.0.0.1:${m?.[2]}']\n`,
  );
  prom = spawn(
    '/usr/bin/prometheus',
    [
      `--config.file=${join(dir, 'prometheus.yml')}`,
      `--storage.tsdb.path=${join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${promPort}`,
      '--log.level=warn',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let promErr = '';
  prom.stderr?.on('data', (c) => {
    promErr += c;
  });
  await waitFor(
    async () => (await fetch(`http://127.0.0.1:${promPort}/-/ready`).catch(() => undefined))?.ok === true,
    'prometheus ready',
    30_000,
  ).catch((e: Error) => {
    throw new Error(`${e.message}: ${promErr}`);
  });
}, 120_000);

afterAll(async () => {
  if (prom && prom.exitCode === null) {
    const exited = new Promise((r) => prom?.once('exit', r));
    prom.kill('SIGTERM');
    await exited;
  }
  await sshd?.stop();
  if (d) {
    await d.stop();
    rmSync(d.root, { recursive: true, force: true });
  }
  execFileSync('userdel', ['-r', '-f', login], { stdio: 'ignore' });
});

describe('metrics scraped by a real Prometheus', () => {
  it('an SSH session and a failed login show up as series with the right values', async () => {
    const home = join(d.root, 'home-alice');
    const bad = await run(
      ['login', '--proxy', d.proxy, '--ca-pin', d.pin, '--user', 'alice', '--password-stdin'],
      {
        env: { GATEHOUSE_HOME: home },
        input: 'not the password\n',
      },
    );
    expect(bad.code).not.toBe(0);
    const ok = await run(
      ['login', '--proxy', d.proxy, '--ca-pin', d.pin, '--user', 'alice', '--password-stdin'],
      {
        env: { GATEHOUSE_HOME: home },
        input: `${PASSWORD}\n`,
      },
    );
    expect(ok.code, ok.stderr).toBe(0);
    const ssh = await runClient(process.execPath, [BIN, 'ssh', `${login}@node1`, 'echo', 'metered'], {
      env: { ...process.env, GATEHOUSE_HOME: home },
      timeoutMs: 30_000,
    });
    expect(ssh.code, ssh.stderr).toBe(0);
    expect(ssh.stdout).toBe('metered\n');

    // What the gateway serves itself (Prometheus text format).
    const text = await (await fetch(metricsUrl)).text();
    expect(text).toMatch(/^gatehouse_sessions_total\{protocol="ssh"\} 1$/m);

    const expectSeries = async (query: string, value: string) => {
      await waitFor(
        async () => (await promValue(query)) === value,
        `${query} == ${value} in Prometheus`,
        30_000,
      );
    };
    await expectSeries('gatehouse_sessions_total{job="gatehouse",protocol="ssh"}', '1');
    await expectSeries('gatehouse_logins_total{result="failure",method="password"}', '1');
    await expectSeries('gatehouse_logins_total{result="success",method="password"}', '1');
    await expectSeries('gatehouse_session_setup_seconds_count{protocol="ssh"}', '1');
    await expectSeries('gatehouse_audit_available', '1');
    // The session ended: none active.
    await expectSeries('sum(gatehouse_sessions_active) or vector(0)', '0');
    expect(
      Number(await promValue('gatehouse_certificates_issued_total{type="ssh-user"}')),
    ).toBeGreaterThanOrEqual(1);
    expect(await promValue('gatehouse_event_loop_lag_seconds{quantile="0.99"}')).toBeDefined();
  }, 90_000);
});
