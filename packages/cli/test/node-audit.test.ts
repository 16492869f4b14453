/**
 * A joined node's audit events reach the gateway's audit log: `gatehouse
 * node start` (the built CLI, a separate process with its own eBPF helper)
 * joins `gatehouse start`; alice's role asks for enhanced recording of
 * commands; real OpenSSH runs commands on the node through the gateway and
 * directly with her login certificate. The node's session.command events
 * land in the gateway's audit files with the proxy's session id and
 * server = the node; while the gateway is stopped they wait in the node's
 * spool and arrive once it is back.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { AuditEvent } from '@gatehouse/audit';
import { TEST_LOGIN } from '@gatehouse/core/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  admin,
  auditEvents,
  BIN,
  type Daemon,
  PASSWORD,
  restartDaemon,
  run,
  startDaemon,
} from './harness.js';

const exec = promisify(execFile);
const NODE = 'web9';

let d: Daemon;
let home: string;
let spoolDir: string;
let nodePort = 0;
let node: ChildProcess | undefined;
let nodeOut = '';
let nodeErr = '';

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

async function until<T>(
  what: string,
  f: () => T | undefined | Promise<T | undefined>,
  ms = 30_000,
): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}\nnode stderr:\n${nodeErr}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

const aliceEnv = () => ({ ...process.env, GATEHOUSE_DATA_DIR: '', GATEHOUSE_HOME: home });

/** ssh through the gateway (the block `gatehouse config ssh` prints). */
function sshViaGateway(command: string) {
  return exec('ssh', ['-F', join(home, 'ssh_config'), `${TEST_LOGIN}@${NODE}.acme`, command], {
    env: aliceEnv(),
    timeout: 30_000,
  });
}

/** ssh straight to the node with alice's login certificate (no gateway involved). */
function sshDirect(command: string) {
  return exec(
    'ssh',
    [
      '-F',
      join(home, 'ssh_config'),
      '-o',
      'ProxyCommand=none',
      '-o',
      'HostName=127.0.0.1',
      '-o',
      `HostKeyAlias=${NODE}.acme`,
      '-p',
      String(nodePort),
      `${TEST_LOGIN}@${NODE}.acme`,
      command,
    ],
    { env: aliceEnv(), timeout: 30_000 },
  );
}

const commands = (marker: string): AuditEvent[] =>
  auditEvents(d).filter(
    (e) => e.type === 'session.command' && (e as { argv: string[] }).argv.includes(marker),
  );

beforeAll(async () => {
  const port = await freePort();
  d = await startDaemon({ cluster: 'acme', listen: `127.0.0.1:${port}` });
  home = join(d.root, 'home-alice');
  spoolDir = mkdtempSync(join(tmpdir(), 'gh-node-spool-'));
  await admin(
    d,
    ['roles', 'create', '-f', '-'],
    'kind: role\nname: recorded\noptions:\n  enhanced_recording: [command]\n',
  );
  await admin(
    d,
    ['users', 'add', 'alice', '--roles', 'access,recorded', '--logins', TEST_LOGIN, '--password-stdin'],
    `${PASSWORD}\n`,
  );
  const login = await run(
    ['login', '--proxy', d.proxy, '--user', 'alice', '--ca-pin', d.pin, '--password-stdin'],
    { env: aliceEnv(), input: `${PASSWORD}\n` },
  );
  expect(login.code, login.stderr).toBe(0);
  const cfg = await run(['config', 'ssh'], { env: aliceEnv() });
  expect(cfg.code, cfg.stderr).toBe(0);
  writeFileSync(join(home, 'ssh_config'), `${cfg.stdout}Host *\n  BatchMode yes\n`);

  const token = JSON.parse((await admin(d, ['tokens', 'add', '--type', 'node', '--json'])).stdout) as {
    token: string;
  };
  nodePort = await freePort();
  node = spawn(
    process.execPath,
    [
      BIN,
      'node',
      'start',
      '--proxy',
      d.proxy,
      '--ca-pin',
      d.pin,
      '--token',
      token.token,
      '--name',
      NODE,
      '--listen',
      `127.0.0.1:${nodePort}`,
      '--spool-dir',
      spoolDir,
    ],
    { env: { ...process.env, GATEHOUSE_HOME: join(d.root, 'home-node') }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  node.stdout!.on('data', (x) => {
    nodeOut += x;
  });
  node.stderr!.on('data', (x) => {
    nodeErr += x;
  });
  await until('the node to join', () =>
    nodeOut.includes(`Node ${NODE} joined cluster acme`) ? true : undefined,
  );
}, 120_000);

afterAll(async () => {
  if (node && node.exitCode === null) {
    const exited = new Promise((r) => node!.once('exit', r));
    node.kill('SIGTERM');
    await exited;
  }
  await d?.stop();
  if (d) rmSync(d.root, { recursive: true, force: true });
  if (spoolDir) rmSync(spoolDir, { recursive: true, force: true });
});

describe("a joined node's enhanced recording reaches the gateway's audit log", () => {
  it('session.command events of a session through the gateway carry its session id and server = the node', async () => {
    const r = await sshViaGateway('bash -c "/bin/echo nodeaudit-via-proxy; /bin/true done"');
    expect(r.stdout).toBe('nodeaudit-via-proxy\n');
    const [cmd] = await until('session.command in the audit log', () => {
      const found = commands('nodeaudit-via-proxy');
      return found.length > 0 ? found : undefined;
    });
    expect(cmd).toMatchObject({ server: NODE, login: TEST_LOGIN, user: 'alice', program: '/bin/echo' });
    expect((cmd as { node_event_id?: string }).node_event_id).toMatch(/^[A-Za-z0-9_-]+:\d+$/);
    // The proxy's own record of the session: same id.
    const start = auditEvents(d).find(
      (e) => e.type === 'session.start' && e.session_id === cmd!.session_id && e.server === NODE,
    );
    expect(start, `no session.start for ${cmd!.session_id}`).toBeDefined();
    // stderr keeps a copy for the host's journal.
    expect(nodeErr).toContain('nodeaudit-via-proxy');
  });

  it('events made while the gateway is stopped wait in the node spool and arrive after it returns', async () => {
    const code = await d.stop();
    expect(code).toBe(0);
    const r = await sshDirect('bash -c "/bin/echo nodeaudit-while-down; /bin/true done"');
    expect(r.stdout).toBe('nodeaudit-while-down\n');
    const spool = join(spoolDir, 'gateway.spool.jsonl');
    await until('the event in the node spool', () =>
      existsSync(spool) && readFileSync(spool, 'utf8').includes('nodeaudit-while-down') ? true : undefined,
    );
    expect(commands('nodeaudit-while-down')).toEqual([]);
    d = await restartDaemon(d);
    const cmds = await until(
      'the spooled event in the audit log',
      () => {
        const found = commands('nodeaudit-while-down');
        return found.length > 0 ? found : undefined;
      },
      60_000,
    );
    expect(cmds).toHaveLength(1);
    expect(cmds[0]).toMatchObject({ server: NODE, user: 'alice' });
    // Seen by the node before the gateway wrote it.
    const c = cmds[0] as AuditEvent & { node_time: string };
    expect(Date.parse(c.node_time)).toBeLessThan(Date.parse(c.time));
    expect(nodeErr).toMatch(/they stay spooled in/);
    await until('the spool to empty', () => (existsSync(spool) ? undefined : true));
  }, 120_000);
});
