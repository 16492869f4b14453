/**
 * The helper and its programs on this kernel, driven directly: real
 * processes in real session cgroups, real curl and python3 sockets.
 */
import { execFile } from 'node:child_process';
import dgram from 'node:dgram';
import { mkdir, rm, rmdir, writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type BpfEvent,
  type BpfSession,
  createEnforcer,
  type Enforcer,
  type SessionCgroup,
} from '../src/index.js';

let enforcer: Enforcer;
let tcp4: net.Server;
let tcp6: net.Server;
let port4 = 0;
let port6 = 0;
const cleanups: (() => Promise<void>)[] = [];

function listen(s: net.Server, host: string): Promise<number> {
  return new Promise((resolve) => s.listen(0, host, () => resolve((s.address() as net.AddressInfo).port)));
}

beforeAll(async () => {
  enforcer = await createEnforcer({ parentName: `gatehouse-test-${process.pid}` });
  tcp4 = net.createServer((c) => c.end('HTTP/1.0 200 OK\r\n\r\nhello\n'));
  tcp6 = net.createServer((c) => c.end('HTTP/1.0 200 OK\r\n\r\nhello6\n'));
  port4 = await listen(tcp4, '127.0.0.1');
  port6 = await listen(tcp6, '::1');
});

afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
  await enforcer?.close();
  if (enforcer) await rmdir(enforcer.parent);
  tcp4?.close();
  tcp6?.close();
});

interface Opened {
  cg: SessionCgroup;
  session: BpfSession;
  events: BpfEvent[];
  done: Promise<void>;
}

let n = 0;
async function openSession(policy: Parameters<Enforcer['open']>[1]): Promise<Opened> {
  const cg = await enforcer.createCgroup(`t${n++}`);
  const session = await enforcer.open(cg.path, policy);
  const events: BpfEvent[] = [];
  const done = (async () => {
    for await (const e of session) events.push(e);
  })();
  cleanups.push(async () => {
    await cg.kill().catch(() => undefined);
    await cg.waitEmpty();
    await session.close().catch(() => undefined);
    await cg.remove();
  });
  return { cg, session, events, done };
}

/** Runs argv inside the session cgroup: the shell joins it, then execs. */
function runIn(o: Opened, argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      '/bin/sh',
      ['-c', 'echo $$ > "$0" && exec "$@"', o.cg.procsFile, ...argv],
      { timeout: 20_000 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

async function finish(o: Opened): Promise<{ lost: number }> {
  await o.cg.waitEmpty();
  const r = await o.session.close();
  await o.done;
  return r;
}

const PY_UDP =
  'import socket,sys\ns=socket.socket(socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET, socket.SOCK_DGRAM)\ntry:\n  s.sendto(b"x",(sys.argv[1],int(sys.argv[2])))\n  print("sent")\nexcept OSError as e:\n  print("errno",e.errno)\n';

describe('restrict_network in the kernel', () => {
  it('refuses TCP connect to a denied IPv4 and IPv6 address with EPERM and names the rule', async () => {
    const o = await openSession({ record: [], deny: ['127.0.0.0/8', '::1/128'], allow: [] });
    const r4 = await runIn(o, ['curl', '-sS', `http://127.0.0.1:${port4}/`]);
    const r6 = await runIn(o, ['curl', '-sS', `http://[::1]:${port6}/`]);
    await finish(o);
    expect(r4.code).toBe(7);
    expect(r6.code).toBe(7);
    const net = o.events.filter((e) => e.type === 'network');
    expect(net).toEqual([
      expect.objectContaining({
        op: 'connect',
        family: 4,
        addr: '127.0.0.1',
        port: port4,
        denied: true,
        rule: '127.0.0.0/8',
        protocol: 'tcp',
      }),
      expect.objectContaining({
        op: 'connect',
        family: 6,
        addr: '::1',
        port: port6,
        denied: true,
        rule: '::1/128',
        protocol: 'tcp',
      }),
    ]);
  });

  it('allows only the allow list, IPv4 and IPv6, and records allowed connects', async () => {
    const o = await openSession({ record: ['network'], deny: [], allow: [`127.0.0.1/32`, '::1/128'] });
    const ok4 = await runIn(o, ['curl', '-sS', `http://127.0.0.1:${port4}/`]);
    const ok6 = await runIn(o, ['curl', '-sS', `http://[::1]:${port6}/`]);
    const no = await runIn(o, ['curl', '-sS', `http://127.0.0.2:${port4}/`]);
    await finish(o);
    expect(ok4.stdout).toBe('hello\n');
    expect(ok6.stdout).toBe('hello6\n');
    expect(no.code).toBe(7);
    const verdicts = o.events.flatMap((e) =>
      e.type === 'network' ? [`${e.addr} ${e.denied ? e.rule : 'ok'}`] : [],
    );
    expect(verdicts).toEqual(['127.0.0.1 ok', '::1 ok', '127.0.0.2 not in allow list']);
  });

  it('refuses UDP sendto (sendmsg4/6) to denied addresses and lets others through', async () => {
    const sock = dgram.createSocket('udp4');
    await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
    const udpPort = sock.address().port;
    const o = await openSession({ record: [], deny: ['127.0.0.2/32', '::1/128'], allow: [] });
    const denied4 = await runIn(o, ['python3', '-c', PY_UDP, '127.0.0.2', String(udpPort)]);
    const denied6 = await runIn(o, ['python3', '-c', PY_UDP, '::1', String(udpPort)]);
    const allowed = await runIn(o, ['python3', '-c', PY_UDP, '127.0.0.1', String(udpPort)]);
    await finish(o);
    sock.close();
    expect(denied4.stdout).toBe('errno 1\n');
    expect(denied6.stdout).toBe('errno 1\n');
    expect(allowed.stdout).toBe('sent\n');
    expect(
      o.events
        .filter((e) => e.type === 'network')
        .map((e) => e.type === 'network' && `${e.op} ${e.protocol} ${e.addr}`),
    ).toEqual(['sendmsg udp 127.0.0.2', 'sendmsg udp ::1']);
  });

  it('a process that moves to a child cgroup or out of the session stays enforced', async () => {
    const o = await openSession({ record: [], deny: ['127.0.0.0/8'], allow: [] });
    const child = path.join(o.cg.path, 'escape');
    await mkdir(child);
    const outside = path.join(path.dirname(enforcer.parent), `gh-escape-${process.pid}`);
    await mkdir(outside);
    cleanups.push(async () => {
      await rmdir(outside).catch(() => undefined);
    });
    const url = `http://127.0.0.1:${port4}/`;
    const toChild = await runIn(o, ['sh', '-c', `echo $$ > ${child}/cgroup.procs && exec curl -sS ${url}`]);
    const toOutside = await runIn(o, [
      'sh',
      '-c',
      `echo $$ > ${outside}/cgroup.procs && exec curl -sS ${url}`,
    ]);
    await finish(o);
    await rmdir(child);
    expect(toChild.code).toBe(7);
    expect(toOutside.code).toBe(7);
  });
});

describe('enhanced recording in the kernel', () => {
  it('records a pipeline with argv in order, exit codes and file opens', async () => {
    const o = await openSession({ record: ['command', 'disk'], deny: [], allow: [] });
    const marker = `/tmp/gh-bpf-${process.pid}-${Date.now()}`;
    await writeFile(marker, 'x');
    cleanups.push(async () => {
      await rm(marker, { force: true });
    });
    const r = await runIn(o, [
      'bash',
      '-c',
      `cat ${marker} | tr x y | wc -c; (setsid nohup sleep 0.3 >/dev/null 2>&1 &); exit 3`,
    ]);
    await finish(o);
    expect(r.code).toBe(3);
    const execs = o.events.filter((e) => e.type === 'exec');
    const argvs = execs.map((e) => e.type === 'exec' && e.argv.join(' '));
    expect(argvs[0]).toBe(
      `bash -c cat ${marker} | tr x y | wc -c; (setsid nohup sleep 0.3 >/dev/null 2>&1 &); exit 3`,
    );
    expect(argvs).toEqual(
      expect.arrayContaining([
        `cat ${marker}`,
        'tr x y',
        'wc -c',
        'setsid nohup sleep 0.3',
        'nohup sleep 0.3',
        'sleep 0.3',
      ]),
    );
    const opens = o.events.filter((e) => e.type === 'open' && e.path === marker);
    expect(opens).toEqual([expect.objectContaining({ ret: 3, flags: 0 })]);
    const bashPid = execs[0]?.pid;
    expect(o.events).toContainEqual(expect.objectContaining({ type: 'exit', pid: bashPid, exitCode: 3 }));
    // The background sleep outlived bash and was still attributed; the session waited for it.
    const sleep = execs.find((e) => e.type === 'exec' && e.argv[0] === 'sleep');
    expect(o.events).toContainEqual(expect.objectContaining({ type: 'exit', pid: sleep?.pid, exitCode: 0 }));
  });
});

// Opens argv[1]+".openat2" with openat2, and on x86_64 argv[1]+".open" with
// open and argv[1]+".creat" with creat, through syscall(2): libc's open()
// is openat, so these paths are only seen if those syscalls are traced.
// Prints each fd.
const PY_OPENS = `import ctypes,struct,sys
libc=ctypes.CDLL(None,use_errno=True); libc.syscall.restype=ctypes.c_long
base=sys.argv[1].encode(); CLOEXEC=0o2000000
how=ctypes.create_string_buffer(struct.pack("QQQ",CLOEXEC,0,4))
print("openat2", libc.syscall(ctypes.c_long(437),ctypes.c_long(-100),ctypes.c_char_p(base+b".openat2"),how,ctypes.c_long(24)))
if sys.argv[2]=="x64":
  print("open", libc.syscall(ctypes.c_long(2),ctypes.c_char_p(base+b".open"),ctypes.c_long(CLOEXEC)))
  print("creat", libc.syscall(ctypes.c_long(85),ctypes.c_char_p(base+b".creat"),ctypes.c_long(0o600)))
`;

describe('disk recording beyond openat', () => {
  it('records files opened with openat2, open and creat (only openat was traced)', async () => {
    const o = await openSession({ record: ['disk'], deny: [], allow: [] });
    const base = `/tmp/gh-bpf-opens-${process.pid}-${Date.now()}`;
    await writeFile(`${base}.openat2`, 'x');
    await writeFile(`${base}.open`, 'x');
    cleanups.push(async () => {
      for (const ext of ['openat2', 'open', 'creat']) await rm(`${base}.${ext}`, { force: true });
    });
    const r = await runIn(o, ['python3', '-c', PY_OPENS, base, process.arch]);
    await finish(o);
    expect(r.stderr).toBe('');
    const fds = Object.fromEntries(
      r.stdout
        .trim()
        .split('\n')
        .map((l) => l.split(' '))
        .map(([k, v]) => [k, Number(v)]),
    );
    const opened = (ext: string) => o.events.filter((e) => e.type === 'open' && e.path === `${base}.${ext}`);
    expect(fds.openat2).toBeGreaterThanOrEqual(3);
    expect(opened('openat2')).toEqual([expect.objectContaining({ flags: 0o2000000, ret: fds.openat2 })]);
    if (process.arch !== 'x64') return; // no open or creat syscall (arm64)
    expect(enforcer.skipped).toEqual([]);
    expect(fds.open).toBeGreaterThanOrEqual(3);
    expect(fds.creat).toBeGreaterThanOrEqual(3);
    expect(opened('open')).toEqual([expect.objectContaining({ flags: 0o2000000, ret: fds.open })]);
    // creat is open(O_CREAT | O_WRONLY | O_TRUNC).
    expect(opened('creat')).toEqual([expect.objectContaining({ flags: 0o1101, ret: fds.creat })]);
  });
});

describe('the helper', () => {
  it('counts events the ring buffer could not take and reports them for the session', async () => {
    const small = await createEnforcer({
      parentName: `gatehouse-test-${process.pid}`,
      ringBufferBytes: 4096,
    });
    const cg = await small.createCgroup('lossy');
    const s = await small.open(cg.path, { record: ['disk'], deny: [], allow: [] });
    const events: BpfEvent[] = [];
    const done = (async () => {
      for await (const e of s) events.push(e);
    })();
    // 20,000 openat calls in one burst: far more than 4 KiB of ring buffer holds between polls.
    const r = await new Promise<number>((resolve) =>
      execFile(
        '/bin/sh',
        [
          '-c',
          'echo $$ > "$0" && exec "$@"',
          cg.procsFile,
          'python3',
          '-c',
          'import os\nfor i in range(20000): os.close(os.open("/dev/null", os.O_RDONLY))',
        ],
        (err) => resolve(err ? 1 : 0),
      ),
    );
    expect(r).toBe(0);
    await cg.waitEmpty();
    const { lost } = await s.close();
    await done;
    await small.close();
    await cg.remove();
    const opens = events.filter((e) => e.type === 'open' && e.path === '/dev/null').length;
    const reported = events.filter((e) => e.type === 'lost');
    expect(lost).toBeGreaterThan(0);
    expect(reported.at(-1)).toEqual({ type: 'lost', total: lost });
    // Nothing vanishes unaccounted: delivered + lost covers every open.
    expect(opens + lost).toBeGreaterThanOrEqual(20_000);
  });

  it('tells open sessions when it dies (fail closed: the caller ends them)', async () => {
    const e2 = await createEnforcer({ parentName: `gatehouse-test-${process.pid}` });
    const cg = await e2.createCgroup('dies');
    cleanups.push(async () => {
      await cg.remove().catch(() => undefined);
    });
    const s = await e2.open(cg.path, { record: ['command'], deny: [], allow: [] });
    const events: BpfEvent[] = [];
    const done = (async () => {
      for await (const e of s) events.push(e);
    })();
    // Kill the helper the way a crash would.
    process.kill(e2.pid, 'SIGKILL');
    const reason = await e2.exited;
    await done;
    expect(reason).toBe('killed by SIGKILL');
    expect(events).toEqual([{ type: 'helper-exit', reason: 'killed by SIGKILL' }]);
    await expect(e2.open(cg.path, { record: [], deny: [], allow: [] })).rejects.toThrow(/stopped/);
  });
});
