/**
 * SIGHUP to a real `gatehouse start` (the BUILT binary): the config is read
 * again, configured resources change at once, changes that need a restart
 * are named (log + audit), an invalid config is refused with the old one
 * kept, and a live SSH session through the gateway goes on throughout.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { AuditEvent } from '@gatehouse/audit';
import type { NodeView } from '@gatehouse/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../../core/test/helpers.js';
import {
  addAccessUser,
  admin,
  auditEvents,
  BIN,
  type Daemon,
  PASSWORD,
  run,
  startDaemon,
} from './harness.js';

const login = `ghr${randomBytes(3).toString('hex')}`;
const CONFIG_NODES = 'nodes:\n  - name: cfg-one\n    addr: 127.0.0.1:2201\n';
let d: Daemon;
let base: string;
let live: ChildProcess | undefined;

const reloads = (): AuditEvent[] => auditEvents(d).filter((e) => e.type === 'gateway.reload');

async function hup(count: number): Promise<AuditEvent> {
  process.kill(d.pid, 'SIGHUP');
  return waitFor(() => reloads()[count - 1], `gateway.reload event #${count}`, 15_000);
}

/** The nodes the RUNNING daemon serves (its API, as an admin): `--config` would read the file instead. */
async function daemonNodes(): Promise<NodeView[]> {
  const r = await run(['ls', '--json'], { env: { GATEHOUSE_HOME: join(d.root, 'home-ops') } });
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as NodeView[];
}

async function nodeNames(): Promise<string[]> {
  return (await daemonNodes()).map((n) => n.name);
}

beforeAll(async () => {
  execFileSync('useradd', ['-m', '-s', '/bin/bash', login]);
  execFileSync('usermod', ['-p', '*', login]);
  // The built-in node serves the live session: no other SSH server needed.
  d = await startDaemon({ cluster: 'reload', extraConfig: `builtin_node: true\n${CONFIG_NODES}` });
  base = readFileSync(d.configFile, 'utf8');
  await addAccessUser(d, 'alice', login);
  await admin(d, ['users', 'add', 'ops', '--roles', 'admin', '--password-stdin'], `${PASSWORD}\n`);
  for (const who of ['alice', 'ops']) {
    const r = await run(['login', '--proxy', d.proxy, '--user', who, '--ca-pin', d.pin, '--password-stdin'], {
      env: { GATEHOUSE_HOME: join(d.root, `home-${who}`) },
      input: `${PASSWORD}\n`,
    });
    expect(r.code, r.stderr).toBe(0);
  }
}, 90_000);

afterAll(async () => {
  if (live && live.exitCode === null) live.kill('SIGKILL');
  execFileSync('userdel', ['-r', '-f', login], { stdio: 'ignore' });
  if (d) {
    await d.stop();
    rmSync(d.root, { recursive: true, force: true });
  }
});

describe('SIGHUP reloads the config', () => {
  it('swaps configured nodes, names what needs a restart, refuses a broken config, and a live session goes on', async () => {
    const nodes = (await daemonNodes()).filter((n) => n.labels.builtin === 'true');
    expect(nodes).toHaveLength(1);
    const builtin = nodes[0]!.name;
    // A session open across every reload below: it answers once it reads a line.
    live = spawn(process.execPath, [BIN, 'ssh', `${login}@${builtin}`, 'echo ready; read x; echo got-$x'], {
      env: { ...process.env, GATEHOUSE_HOME: join(d.root, 'home-alice') },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    live.stdout!.on('data', (b) => {
      out += b;
    });
    live.stderr!.on('data', (b) => {
      err += b;
    });
    const exited = new Promise<number | null>((r) => live!.once('exit', r));
    await waitFor(() => out.includes('ready\n') || undefined, `the live session (${err})`, 20_000);
    expect(await nodeNames()).toContain('cfg-one');

    // 1. A node replaced in the file, and MySQL's listener turned on (a listener: restart).
    writeFileSync(
      d.configFile,
      base.replace(CONFIG_NODES, 'nodes:\n  - name: cfg-two\n    addr: 127.0.0.1:2202\n') +
        'mysql_listen: 127.0.0.1:0\n',
    );
    const ok = await hup(1);
    expect(ok).toMatchObject({
      code: 'GH1202I',
      success: true,
      applied: ['nodes'],
      restart_required: ['mysql_listen'],
    });
    const names = await nodeNames();
    expect(names).toContain('cfg-two');
    expect(names).not.toContain('cfg-one');
    await waitFor(() => d.err().includes('reloaded') || undefined, 'the reload log line');
    expect(d.err()).toContain(`gatehouse: reloaded ${d.configFile}: applied nodes`);
    expect(d.err()).toContain('only a restart applies them: mysql_listen');

    // 2. A config that does not load: refused, the running one (with cfg-two) stays.
    writeFileSync(d.configFile, base.replace('listen: 127.0.0.1:0', 'listen: nowhere'));
    const bad = await hup(2);
    expect(bad).toMatchObject({ code: 'GH1202W', success: false });
    expect((bad as { error: string }).error).toMatch(/gatehouse\.yaml:3:9: listen: write HOST:PORT/);
    await waitFor(
      () => d.err().includes('still running the previous config') || undefined,
      'the refusal line',
    );
    expect(d.alive()).toBe(true);
    expect(await nodeNames()).toContain('cfg-two');

    // 3. Two nodes with one name: refused as a whole, nothing half applied.
    writeFileSync(
      d.configFile,
      base.replace(
        CONFIG_NODES,
        'nodes:\n  - name: cfg-three\n    addr: 127.0.0.1:2203\n  - name: cfg-three\n    addr: 127.0.0.1:2204\n',
      ),
    );
    const dup = await hup(3);
    expect(dup).toMatchObject({ success: false });
    expect((dup as { error: string }).error).toContain('node "cfg-three" is configured twice');
    expect(await nodeNames()).not.toContain('cfg-three');
    expect(await nodeNames()).toContain('cfg-two');

    // The session opened before the first reload is still there and answers.
    live.stdin!.end('after-reloads\n');
    expect(await exited).toBe(0);
    expect(out).toBe('ready\ngot-after-reloads\n');
    expect(d.alive()).toBe(true);
  });
});
