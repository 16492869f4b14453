/**
 * Enhanced recording and restrict_network on Gatehouse's node service, end
 * to end: roles in the gateway, the real OpenSSH client through the
 * gateway (`ssh -J`), the node's session cgroups and the eBPF helper on
 * this kernel, real curl and python3 sockets inside the session.
 */

import { execFile } from 'node:child_process';
import dgram from 'node:dgram';
import { readdirSync } from 'node:fs';
import { readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { promisify } from 'node:util';
import type { AuditEvent } from '@gatehouse/audit';
import { MemoryAuditLog } from '@gatehouse/audit/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../../core/test/helpers.js';
import type { NodeService } from '../src/node/index.js';
import { createUnixUser, type TestUnixUser } from './node-helpers.js';
import {
  loginUser,
  runTool,
  sshConfig,
  sshJ,
  startEnv,
  startTestNode,
  type TestEnv,
  type UserFiles,
} from './peers.js';

const run = promisify(execFile);
const PASSWORD = 'correct horse battery staple';
const CGROUP_PARENT = '/sys/fs/cgroup/unified/gatehouse';
let env: TestEnv;
let node: NodeService;
let plainNode: NodeService;
let audit: MemoryAuditLog;
let unix: TestUnixUser;
let alice: UserFiles;
let bob: UserFiles;
let tcp4: net.Server;
let tcp6: net.Server;
let udp: dgram.Socket;
let port4 = 0;
let port6 = 0;
let udpPort = 0;
let extraUserCa = '';
const FILE = `/tmp/gh-bpf-node-${process.pid}.txt`;

// A python3 probe: "ok <data>" or "errno <n> <message>" for a TCP connect or a UDP sendto.
const PROBE = [
  'import socket,sys',
  'kind,host,port=sys.argv[1],sys.argv[2],int(sys.argv[3])',
  'fam=socket.AF_INET6 if ":" in host else socket.AF_INET',
  's=socket.socket(fam, socket.SOCK_STREAM if kind=="tcp" else socket.SOCK_DGRAM)',
  'try:',
  '  if kind=="tcp":',
  '    s.connect((host,port)); print("ok", s.recv(100).decode().split()[-1])',
  '  else:',
  '    s.sendto(b"x",(host,port)); print("ok sent")',
  'except OSError as e:',
  '  print("errno", e.errno, e.strerror)',
].join('\n');
const probe = (kind: 'tcp' | 'udp', host: string, port: number) =>
  `python3 -c '${PROBE}' ${kind} ${host} ${port}`;

function listen(s: net.Server, host: string): Promise<number> {
  return new Promise((resolve) => s.listen(0, host, () => resolve((s.address() as net.AddressInfo).port)));
}

beforeAll(async () => {
  env = await startEnv();
  unix = createUnixUser();
  audit = new MemoryAuditLog();
  node = await startTestNode(env, 'node3', {
    audit,
    // Plus a CA a test signs an old-style certificate with (set by that test).
    trustedUserCaKeys: () => [
      ...env.gw.authorities.get('user').map((k) => k.sshPublicKey),
      ...(extraUserCa ? [extraUserCa] : []),
    ],
  });
  plainNode = await startTestNode(env, 'node4', { audit: new MemoryAuditLog(), enforcement: false });
  await env.gw.admin.putRole(
    [
      'kind: role',
      'name: restricted',
      'allow:',
      `  logins: [${unix.name}]`,
      '  node_labels: { env: dev }',
      'options:',
      '  enhanced_recording: [command, disk, network]',
      '  restrict_network: { deny: [127.0.0.0/8, "::1/128"] }',
    ].join('\n'),
  );
  await env.gw.admin.putRole(
    [
      'kind: role',
      'name: allowlisted',
      'allow:',
      `  logins: [${unix.name}]`,
      '  node_labels: { env: dev }',
      'options:',
      '  enhanced_recording: [network]',
      '  restrict_network: { allow: [127.0.0.1/32, "::1/128"] }',
    ].join('\n'),
  );
  await env.gw.admin.createUser({ name: 'alice', roles: ['restricted'], password: PASSWORD });
  await env.gw.admin.createUser({ name: 'bob', roles: ['allowlisted'], password: PASSWORD });
  alice = await loginUser(env, 'alice', PASSWORD);
  bob = await loginUser(env, 'bob', PASSWORD);
  tcp4 = net.createServer((c) => c.end('HTTP/1.0 200 OK\r\n\r\nhello4\n'));
  tcp6 = net.createServer((c) => c.end('HTTP/1.0 200 OK\r\n\r\nhello6\n'));
  port4 = await listen(tcp4, '127.0.0.1');
  port6 = await listen(tcp6, '::1');
  udp = dgram.createSocket('udp4');
  await new Promise<void>((r) => udp.bind(0, '127.0.0.1', () => r()));
  udpPort = udp.address().port;
  await writeFile(FILE, 'abc\n', { mode: 0o644 });
}, 90_000);

afterAll(async () => {
  await node?.close();
  await plainNode?.close();
  await env?.close();
  unix?.remove();
  tcp4?.close();
  tcp6?.close();
  udp?.close();
  await rm(FILE, { force: true });
});

/** The node's audit events of the one session whose command line contained `marker`. */
async function sessionEvents(marker: string, until: (evs: AuditEvent[]) => boolean): Promise<AuditEvent[]> {
  return waitFor(
    () => {
      const first = audit.find('session.command').find((e) => e.argv.join(' ').includes(marker));
      if (!first) return undefined;
      const evs = audit.events.filter((e) => e.session_id === first.session_id);
      return until(evs) ? evs : undefined;
    },
    `the enhanced events of the session running ${marker}`,
    20_000,
  );
}

describe('restrict_network through the gateway to the node service', () => {
  it('a deny rule refuses TCP and UDP, IPv4 and IPv6, with "Operation not permitted"; the refusals are audited with the rule', async () => {
    const cmd = [
      `curl -sS http://127.0.0.1:${port4}/; echo curl4=$?`,
      `curl -sS "http://[::1]:${port6}/"; echo curl6=$?`,
      probe('tcp', '127.0.0.1', port4),
      probe('udp', '127.0.0.1', udpPort),
      probe('udp', '::1', udpPort),
      'echo deny-marker',
    ].join('; ');
    const r = await sshJ(env, alice, `${unix.name}@node3`, ['--', cmd]);
    const out = r.stdout.toString();
    expect(out).toContain('curl4=7');
    expect(out).toContain('curl6=7');
    expect(out.match(/errno 1 Operation not permitted/g)).toHaveLength(3);
    expect(r.stderr).toMatch(/curl: \(7\)/);
    const evs = await sessionEvents('deny-marker', (e) =>
      e.some((x) => x.type === 'session.network' && x.dst_addr === '::1' && x.protocol === 'udp'),
    );
    const refused = evs.flatMap((e) =>
      e.type === 'session.network' && !e.success
        ? [`${e.operation} ${e.protocol} ${e.dst_addr} ${e.rule}`]
        : [],
    );
    expect(refused).toEqual([
      'connect tcp 127.0.0.1 127.0.0.0/8',
      'connect tcp ::1 ::1/128',
      'connect tcp 127.0.0.1 127.0.0.0/8',
      'sendmsg udp 127.0.0.1 127.0.0.0/8',
      'sendmsg udp ::1 ::1/128',
    ]);
    const n = evs.find((e) => e.type === 'session.network');
    expect(n).toMatchObject({ code: 'GH2113W', user: 'alice', login: unix.name, server: 'node3' });
  });

  it('an allow rule lets the listed networks through and refuses the rest', async () => {
    const cmd = [
      `curl -sS http://127.0.0.1:${port4}/`,
      `curl -sS "http://[::1]:${port6}/"`,
      `curl -sS http://127.0.0.2:${port4}/; echo other=$?`,
      probe('udp', '127.0.0.1', udpPort),
      probe('udp', '127.0.0.2', udpPort),
      'echo allow-marker',
    ].join('; ');
    const r = await sshJ(env, bob, `${unix.name}@node3`, ['--', cmd]);
    const out = r.stdout.toString();
    expect(out).toContain('hello4\nhello6\n');
    expect(out).toContain('other=7');
    expect(out).toContain('ok sent\nerrno 1 Operation not permitted\n');
    // bob records network only: the marker is found through his session's connects instead.
    const evs = await waitFor(
      () => {
        const mine = audit.find('session.network').filter((e) => e.user === 'bob');
        return mine.length >= 5 ? mine : undefined;
      },
      "bob's network events",
      20_000,
    );
    expect(evs.map((e) => `${e.protocol} ${e.dst_addr} ${e.success ? 'ok' : e.rule}`)).toEqual([
      'tcp 127.0.0.1 ok',
      'tcp ::1 ok',
      'tcp 127.0.0.2 not in allow list',
      'udp 127.0.0.1 ok',
      'udp 127.0.0.2 not in allow list',
    ]);
    expect(audit.find('session.command').filter((e) => e.user === 'bob')).toEqual([]);
  });

  it('a process that tries to leave the session cgroup is refused and stays enforced', async () => {
    const cmd = [
      'echo $$ > /sys/fs/cgroup/unified/cgroup.procs; echo moved=$?',
      `curl -sS http://127.0.0.1:${port4}/; echo curl=$?`,
      'echo escape-marker',
    ].join('; ');
    const r = await sshJ(env, alice, `${unix.name}@node3`, ['--', cmd]);
    expect(r.stdout.toString()).toContain('moved=1');
    expect(r.stderr).toMatch(/Permission denied/);
    expect(r.stdout.toString()).toContain('curl=7');
  });

  it('a node that cannot enforce the role refuses the session and says why', async () => {
    const r = await sshJ(env, alice, `${unix.name}@node4`, ['--', 'echo should-not-run']);
    expect(r.stdout.toString()).not.toContain('should-not-run');
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(
      'gatehouse node node4: the role requires restrict_network, which this node cannot enforce: this node service runs without eBPF enforcement',
    );
  });
});

describe('restrict_network and an OpenSSH node (which cannot enforce it)', () => {
  beforeAll(async () => {
    // sshd refuses a locked account before it looks at the certificate: unlock it ('*': no password).
    await run('usermod', ['-p', '*', unix.name]);
    await env.gw.nodes.add(
      { name: 'plain-sshd', addr: `127.0.0.1:${env.sshd.port}`, labels: { env: 'dev' } },
      'test',
    );
  });

  it('refuses the session: the policy is a critical option sshd does not know (it ran unrestricted)', async () => {
    const r = await sshJ(env, alice, `${unix.name}@plain-sshd`, ['--', 'echo should-not-run']);
    expect(r.stdout.toString()).not.toContain('should-not-run');
    expect(r.code).not.toBe(0);
    expect(await env.sshd.log()).toContain('gatehouse-session-policy@gatehouse.dev');
  });

  it('the login certificate straight to sshd (ssh -i, no proxy) is refused too', async () => {
    const r = await runTool('ssh', [
      '-F',
      alice.config,
      '-p',
      String(env.sshd.port),
      '-o',
      'HostKeyAlias=node1',
      `${unix.name}@127.0.0.1`,
      '--',
      'echo should-not-run',
    ]);
    expect(r.stdout.toString()).not.toContain('should-not-run');
    expect(r.code).toBe(255);
  });
});

/** The real OpenSSH client straight to `n` (no proxy) with `f`'s key and certificate. */
function sshDirect(f: UserFiles, n: NodeService, alias: string, command: string) {
  return runTool('ssh', [
    '-F',
    f.config,
    '-p',
    String(n.port),
    '-o',
    `HostKeyAlias=${alias}`,
    `${unix.name}@127.0.0.1`,
    '--',
    command,
  ]);
}

describe('a login certificate used straight against the node (ssh -i, no proxy)', () => {
  it("carries the roles' session policy: the deny rule refuses the connection and it is recorded (it ran unrestricted)", async () => {
    const r = await sshDirect(
      alice,
      node,
      'node3',
      `curl -sS http://127.0.0.1:${port4}/; echo direct-marker=$?`,
    );
    expect(r.stdout.toString()).toBe('direct-marker=7\n');
    expect(r.stderr).toMatch(/curl: \(7\)/);
    const evs = await sessionEvents('direct-marker', (e) => e.some((x) => x.type === 'session.network'));
    expect(evs.find((e) => e.type === 'session.network')).toMatchObject({
      success: false,
      dst_addr: '127.0.0.1',
      rule: '127.0.0.0/8',
      user: 'alice',
    });
  });

  it('a certificate without the session policy extension (minted before it existed) is refused with what to do', async () => {
    // An OpenSSH-made certificate from a CA the node trusts: the permit-* extensions, no policy.
    const ca = `${env.dir}/old-ca`;
    const key = `${env.dir}/old_id`;
    await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', ca]);
    await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', key]);
    await run('ssh-keygen', ['-q', '-s', ca, '-I', 'alice', '-n', unix.name, '-V', '+1h', `${key}.pub`]);
    extraUserCa = (await readFile(`${ca}.pub`, 'utf8')).trim();
    const config = `${env.dir}/old-ssh_config`;
    await writeFile(config, sshConfig({ key, cert: `${key}-cert.pub`, knownHosts: alice.knownHosts }));
    const r = await sshDirect({ ...alice, config }, node, 'node3', 'echo should-not-run');
    expect(r.stdout.toString()).not.toContain('should-not-run');
    expect(r.code).toBe(255);
    expect(r.stderr).toContain(
      'gatehouse node node3: the certificate of "alice" carries no session policy (it predates session policies) (log in again with gatehouse login to get a current certificate)',
    );
    expect(audit.last('access.denied')).toMatchObject({ user: 'alice', resource: 'node3' });
  });
});

describe('enhanced recording through the gateway to the node service', () => {
  it('a bash -c pipeline gives session.command events with argv in order, the file read a session.open, exits their codes', async () => {
    const r = await sshJ(env, alice, `${unix.name}@node3`, [
      '--',
      `bash -c "cat ${FILE} | tr a b | wc -c; echo pipeline-marker; exit 4"`,
    ]);
    expect(r.stdout.toString()).toBe('4\npipeline-marker\n');
    expect(r.code).toBe(4);
    const evs = await sessionEvents('pipeline-marker', (e) =>
      e.some((x) => x.type === 'session.command.exit' && x.exit_code === 4),
    );
    const argv = evs.flatMap((e) => (e.type === 'session.command' ? [e.argv.join(' ')] : []));
    // setpriv (the node dropping to the login), the login shell's -c, then bash and the pipeline.
    expect(argv.slice(0, 3)).toEqual([
      expect.stringMatching(
        /^\/usr\/bin\/setpriv --reuid=\d+ --regid=\d+ --groups=[\d,]+ -- \/bin\/bash -c /,
      ),
      `/bin/bash -c bash -c "cat ${FILE} | tr a b | wc -c; echo pipeline-marker; exit 4"`,
      `bash -c cat ${FILE} | tr a b | wc -c; echo pipeline-marker; exit 4`,
    ]);
    expect(new Set(argv.slice(3))).toEqual(new Set([`cat ${FILE}`, 'tr a b', 'wc -c']));
    const cmd = evs.find((e) => e.type === 'session.command' && e.argv[0] === 'cat');
    expect(cmd).toMatchObject({
      code: 'GH2110I',
      user: 'alice',
      login: unix.name,
      server: 'node3',
      uid: unix.uid,
    });
    const opens = evs.filter((e) => e.type === 'session.open' && e.path === FILE);
    expect(opens).toEqual([expect.objectContaining({ code: 'GH2112I', result: 3, flags: 0 })]);
  });

  it('a background process started with setsid nohup is still attributed to its session after ssh returns', async () => {
    const r = await sshJ(env, alice, `${unix.name}@node3`, [
      '--',
      `setsid nohup sh -c 'sleep 1; cat ${FILE} > /dev/null; echo late-marker > /dev/null' > /dev/null 2>&1 & echo started-marker`,
    ]);
    expect(r.stdout.toString()).toBe('started-marker\n');
    const evs = await sessionEvents('started-marker', (e) =>
      e.some((x) => x.type === 'session.open' && x.path === FILE),
    );
    const sessionId = evs[0]?.session_id;
    expect(evs).toContainEqual(expect.objectContaining({ type: 'session.command', argv: ['sleep', '1'] }));
    expect(evs).toContainEqual(
      expect.objectContaining({ type: 'session.command', argv: ['cat', FILE], session_id: sessionId }),
    );
    // The cgroup goes once the background job is done.
    await waitFor(
      () => !readdirSync(CGROUP_PARENT).includes(sessionId ?? ''),
      'the session cgroup to be removed',
      20_000,
    );
  });
});

describe("the node's events carry the proxy's session id", () => {
  it('session.command of a session through the gateway has the id sessions ls and session.start show (the node made up its own)', async () => {
    const ssh = sshJ(env, alice, `${unix.name}@node3`, ['--', 'echo link-marker; sleep 30']);
    const evs = await sessionEvents('link-marker', (e) =>
      e.some((x) => x.type === 'session.command' && x.argv[0] === 'sleep'),
    );
    const id = evs[0]?.session_id;
    const live = (await env.gw.admin.listSessions()).sessions.filter(
      (s) => s.user === 'alice' && s.server === 'node3',
    );
    expect(live.map((s) => s.id)).toEqual([id]);
    expect(await env.gw.admin.killSession(id as string)).toBeUndefined();
    await ssh;
    const start = (await env.gw.audit.search({ types: ['session.start'], limit: 500 })).events.filter(
      (e) => e.session_id === id,
    );
    expect(start).toEqual([expect.objectContaining({ user: 'alice', server: 'node3', login: unix.name })]);
    // Every node event of the session (the ended sleep's exit too) carries it.
    const sleep = evs.flatMap((e) =>
      e.type === 'session.command' && e.argv[0] === 'sleep' ? [e.pid] : [],
    )[0];
    const all = await sessionEvents('link-marker', (e) =>
      e.some((x) => x.type === 'session.command.exit' && x.pid === sleep),
    );
    expect(new Set(all.map((e) => e.session_id))).toEqual(new Set([id]));
  });
});

describe('role changes', () => {
  it('a role edited to add restrict_network applies to the next session (a cached certificate kept the old policy), and ends a running one with the reason', async () => {
    const role = (extra: string[]) =>
      env.gw.admin.putRole(
        [
          'kind: role',
          'name: editable',
          'allow:',
          `  logins: [${unix.name}]`,
          '  node_labels: { env: dev }',
          ...extra,
        ].join('\n'),
      );
    await role([]);
    await env.gw.admin.createUser({ name: 'carol', roles: ['editable'], password: PASSWORD });
    const carol = await loginUser(env, 'carol', PASSWORD);
    const cmd = `curl -sS http://127.0.0.1:${port4}/; echo curl=$?`;
    const before = await sshJ(env, carol, `${unix.name}@node3`, ['--', cmd]);
    expect(before.stdout.toString()).toBe('hello4\ncurl=0\n');
    await role(['options:', '  restrict_network: { deny: [127.0.0.0/8] }']);
    const after = await sshJ(env, carol, `${unix.name}@node3`, ['--', cmd]);
    expect(after.stdout.toString()).toBe('curl=7\n');

    // A running session's node cannot learn a new policy: core ends the session and says why.
    const running = sshJ(env, carol, `${unix.name}@node3`, [
      '--',
      'echo running; sleep 30; echo not-reached',
    ]);
    let out = '';
    running.child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
    });
    await waitFor(() => out.includes('running'), 'the session to run', 20_000);
    await role(['options:', '  restrict_network: { deny: [127.0.0.0/8, 10.0.0.0/8] }']);
    const ended = await running;
    expect(ended.code).not.toBe(0);
    expect(out).toBe('running\n');
    expect(ended.stderr).toContain(
      "your roles' restrict_network changed; reconnect to run under the new policy",
    );
  });
});

describe('enhanced_recording_paths: which opens are recorded', () => {
  it('a role that excludes /etc records no open of /etc/hostname but the one under its included path; a relative path is recorded', async () => {
    await env.gw.admin.putRole(
      [
        'kind: role',
        'name: paths',
        'allow:',
        `  logins: [${unix.name}]`,
        '  node_labels: { env: dev }',
        'options:',
        '  enhanced_recording: [disk]',
        '  enhanced_recording_paths: { include: [/tmp], exclude: [/etc] }',
      ].join('\n'),
    );
    await env.gw.admin.createUser({ name: 'erin', roles: ['paths'], password: PASSWORD });
    const erin = await loginUser(env, 'erin', PASSWORD);
    const r = await sshJ(env, erin, `${unix.name}@node3`, [
      '--',
      `cat /etc/hostname >/dev/null; (cd /etc && cat hostname >/dev/null); cat ${FILE}`,
    ]);
    expect(r.stdout.toString()).toBe('abc\n');
    // Events arrive in order: once the open of FILE (the last) is in, the others would be too.
    const last = await waitFor(
      () => audit.find('session.open').find((e) => e.user === 'erin' && e.path === FILE),
      'the open of the included file',
      20_000,
    );
    const opens = audit
      .find('session.open')
      .filter((e) => e.session_id === last.session_id)
      .map((e) => e.path);
    // Not /etc/hostname (excluded), nor the loader's and libc's opens (outside the include).
    expect(opens).toEqual(['hostname', FILE]);
  });
});

describe('the sftp subsystem through the gateway to the node service', () => {
  it('runs sftp-server in the session cgroup: its file reads are session.open events', async () => {
    const local = `${FILE}.copy`;
    const r = await runTool(
      'sftp',
      ['-F', alice.config, '-J', `alice@127.0.0.1:${env.port}`, '-b', '-', `${unix.name}@node3`],
      { input: `get ${FILE} ${local}\n` },
    );
    expect(r.code).toBe(0);
    await rm(local, { force: true });
    const server = await waitFor(
      () => audit.find('session.command').find((e) => e.argv.some((a) => a.endsWith('sftp-server'))),
      'sftp-server in a session.command event',
      20_000,
    );
    await waitFor(
      () =>
        audit.events.find(
          (e) =>
            e.type === 'session.open' &&
            e.session_id === server.session_id &&
            e.path === FILE &&
            e.result >= 0,
        ),
      'the sftp read as a session.open event',
      20_000,
    );
  });
});

describe('when the eBPF helper dies (decision 0023: sessions end)', () => {
  it('ends the running session with the reason, audits it, and the next session gets a new helper', async () => {
    const helperPid = async (): Promise<number> => {
      const { stdout } = await run('pgrep', ['-P', String(process.pid), '-f', 'gatehouse-bpf-helper']);
      const pids = stdout.trim().split('\n').map(Number);
      expect(pids).toHaveLength(1);
      return pids[0] as number;
    };
    const first = await helperPid();
    const ssh = sshJ(env, alice, `${unix.name}@node3`, [
      '--',
      'echo running-marker; sleep 30; echo not-reached',
    ]);
    await sessionEvents('running-marker', (e) =>
      e.some((x) => x.type === 'session.command' && x.argv[0] === 'sleep'),
    );
    process.kill(first, 'SIGKILL');
    const r = await ssh;
    expect(r.stdout.toString()).toBe('running-marker\n');
    expect(r.stderr).toContain(
      'gatehouse node node3: session enforcement stopped (killed by SIGKILL); the session is ended',
    );
    expect(audit.last('session.enforcement_failed')).toMatchObject({
      code: 'GH2115E',
      user: 'alice',
      error: 'the eBPF helper stopped: killed by SIGKILL',
    });
    const again = await sshJ(env, alice, `${unix.name}@node3`, [
      '--',
      `curl -sS http://127.0.0.1:${port4}/; echo curl=$?`,
    ]);
    expect(again.stdout.toString()).toContain('curl=7');
    expect(await helperPid()).not.toBe(first);
  });
});
