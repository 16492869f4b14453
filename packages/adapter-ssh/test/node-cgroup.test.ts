/**
 * Every SSH session on Gatehouse's node service runs in a cgroup of its own,
 * policy or not (decision 0023): real OpenSSH through the gateway (`ssh -J`)
 * to a node service as root on this machine's cgroup v2. A `setsid nohup`
 * job outlives a normal logout (as with OpenSSH) and still belongs to its
 * session; when the gateway ends a session (a lock) the node kills
 * everything the session started, that job included.
 */
import { existsSync, readFileSync } from 'node:fs';
import { findCgroup2Mount } from '@gatehouse/bpf';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../../core/test/helpers.js';
import type { NodeService } from '../src/node/index.js';
import { createUnixUser, type TestUnixUser } from './node-helpers.js';
import { loginUser, sshJ, startEnv, startTestNode, type TestEnv, type UserFiles } from './peers.js';

const PASSWORD = 'correct horse battery staple';
let env: TestEnv;
let node: NodeService;
let unix: TestUnixUser;
let carol: UserFiles;
let dave: UserFiles;
const leftovers: number[] = [];

/** The cgroup path of a live process (cgroup v2 line "0::/..."), or undefined once it is gone. */
function cgroupOf(pid: number): string | undefined {
  try {
    return /^0::(.*)$/m.exec(readFileSync(`/proc/${pid}/cgroup`, 'utf8'))?.[1];
  } catch {
    return undefined;
  }
}

const alive = (pid: number) => existsSync(`/proc/${pid}`);
const MOUNT = findCgroup2Mount(readFileSync('/proc/mounts', 'utf8')) ?? '/sys/fs/cgroup';

beforeAll(async () => {
  env = await startEnv();
  unix = createUnixUser();
  node = await startTestNode(env, 'node7');
  await env.gw.admin.putRole(
    ['kind: role', 'name: plain', 'allow:', `  logins: [${unix.name}]`, '  node_labels: { env: dev }'].join(
      '\n',
    ),
  );
  await env.gw.admin.createUser({ name: 'carol', roles: ['plain'], password: PASSWORD });
  await env.gw.admin.createUser({ name: 'dave', roles: ['plain'], password: PASSWORD });
  carol = await loginUser(env, 'carol', PASSWORD);
  dave = await loginUser(env, 'dave', PASSWORD);
}, 90_000);

afterAll(async () => {
  for (const pid of leftovers) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // Already gone: what the test wanted.
    }
  }
  await node?.close();
  await env?.close();
  unix?.remove();
});

describe('a cgroup per session (no policy)', () => {
  it('a setsid nohup job survives a normal logout, in its session cgroup, which is removed when the job ends', async () => {
    const r = await sshJ(env, carol, `${unix.name}@node7`, [
      '--',
      'setsid nohup sleep 3141 >/dev/null 2>&1 & echo $!; grep ^0:: /proc/self/cgroup',
    ]);
    expect(r.code, r.stderr).toBe(0);
    const [pidText, cgLine] = r.stdout.toString().trim().split('\n');
    const pid = Number(pidText);
    leftovers.push(pid);
    // The session's own cgroup under the Gatehouse parent, not the node service's.
    const sessionCg = /^0::(\/.*gatehouse\/[^/]+)$/.exec(cgLine ?? '')?.[1];
    expect(sessionCg, cgLine).toBeDefined();
    expect(cgroupOf(process.pid)).not.toBe(sessionCg);
    // Logged out; the job lives on, still in the session's cgroup.
    expect(alive(pid)).toBe(true);
    expect(readFileSync(`/proc/${pid}/cmdline`, 'utf8')).toBe('sleep\x003141\x00');
    expect(cgroupOf(pid)).toBe(sessionCg);
    const dir = `${MOUNT}${sessionCg}`;
    expect(existsSync(dir)).toBe(true);
    // Its last process gone, the node removes the session cgroup.
    process.kill(pid, 'SIGKILL');
    await waitFor(() => (existsSync(dir) ? undefined : true), `the node to remove ${dir}`, 30_000);
  });

  it('a lock ends the session and kills everything it started, the setsid nohup job included', async () => {
    const ssh = sshJ(env, dave, `${unix.name}@node7`, [
      '--',
      'setsid nohup sleep 2718 >/dev/null 2>&1 & echo $!; exec sleep 600',
    ]);
    let out = '';
    ssh.child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
    });
    const pid = await waitFor(
      () => {
        const m = /^(\d+)\n/.exec(out);
        return m ? Number(m[1]) : undefined;
      },
      'the job pid',
      30_000,
    );
    leftovers.push(pid);
    expect(alive(pid)).toBe(true);
    const cg = cgroupOf(pid);
    expect(cg).toMatch(/gatehouse\//);
    await env.gw.admin.lockUser('dave', { message: 'incident 42' });
    const r = await ssh;
    expect(r.code).not.toBe(0);
    await waitFor(() => (alive(pid) ? undefined : true), 'the nohup job to be killed', 30_000);
    await waitFor(
      () => (existsSync(`${MOUNT}${cg}`) ? undefined : true),
      'the session cgroup to be removed',
      30_000,
    );
  });
});
