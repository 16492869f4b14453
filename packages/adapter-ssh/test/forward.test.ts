/**
 * Forwarding, file transfer and live control through the SSH proxy, with
 * the real OpenSSH client (ssh -L/-R/-D, scp, sftp, curl through SOCKS) and
 * a real sshd node.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import { freePort } from '@gatehouse/core/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../../core/test/helpers.js';
import { loginUser, runTool, sshJ, startEnv, type TestEnv, type UserFiles } from './peers.js';

const run = promisify(execFile);
const PASSWORD = 'correct horse battery staple';

let env: TestEnv;
let alice: UserFiles;
let bob: UserFiles;
let echo: net.Server;
let echoPort: number;
let web: http.Server;
let webPort: number;

async function events(type: string) {
  return (await env.gw.audit.search({ types: [type], limit: 500 })).events;
}

beforeAll(async () => {
  env = await startEnv();
  const { gw } = env;
  const role = (name: string, forwarding: boolean) =>
    [
      'kind: role',
      `name: ${name}`,
      'allow:',
      `  logins: [${env.login}]`,
      '  node_labels: { env: dev }',
      'options:',
      `  port_forwarding: ${forwarding}`,
      '',
    ].join('\n');
  await gw.admin.putRole(role('fwd', true));
  await gw.admin.putRole(role('nofwd', false));
  await gw.admin.createUser({ name: 'alice', roles: ['fwd'], password: PASSWORD });
  await gw.admin.createUser({ name: 'bob', roles: ['nofwd'], password: PASSWORD });
  await gw.nodes.add({ name: 'node1', addr: `127.0.0.1:${env.sshd.port}`, labels: { env: 'dev' } }, 'test');
  alice = await loginUser(env, 'alice', PASSWORD);
  bob = await loginUser(env, 'bob', PASSWORD);
  echo = net.createServer((s) => s.pipe(s));
  await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r));
  echoPort = (echo.address() as net.AddressInfo).port;
  web = http.createServer((_req, res) => res.end('hello through socks'));
  await new Promise<void>((r) => web.listen(0, '127.0.0.1', r));
  webPort = (web.address() as net.AddressInfo).port;
}, 60_000);

afterAll(async () => {
  echo?.close();
  web?.close();
  await env?.close();
});

function echoThrough(port: number, payload: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => s.end(payload));
    let got = '';
    s.on('data', (d) => {
      got += d;
    });
    s.on('close', () => resolve(got));
    // A refused forward may reset the local connection instead of closing it.
    s.on('error', (err: NodeJS.ErrnoException) => (err.code === 'ECONNRESET' ? resolve(got) : reject(err)));
  });
}

/** Starts `ssh -N` with a forward and waits until `port` accepts (boxed: awaiting the bare promise would wait for ssh to exit). */
async function forwarding(
  f: UserFiles,
  flag: string,
  spec: string,
  port: number,
): Promise<{ p: ReturnType<typeof sshJ> }> {
  const p = sshJ(env, f, `${env.login}@node1`, ['-N', '-o', 'ExitOnForwardFailure=yes', flag, spec], {
    keepStdinOpenMs: 60_000,
  });
  await waitFor(
    () =>
      new Promise<boolean | undefined>((resolve) => {
        const s = net.connect(port, '127.0.0.1', () => {
          s.destroy();
          resolve(true);
        });
        s.on('error', () => resolve(undefined));
      }),
    `forwarded port ${port}`,
    20_000,
  );
  return { p };
}

describe('port forwarding (role option port_forwarding)', () => {
  it('-L reaches a TCP echo server from the node side, audited with addresses', async () => {
    const local = await freePort();
    const { p } = await forwarding(alice, '-L', `127.0.0.1:${local}:127.0.0.1:${echoPort}`, local);
    try {
      expect(await echoThrough(local, 'ping-L')).toBe('ping-L');
    } finally {
      p.child.kill('SIGTERM');
      await p;
    }
    const fwd = await waitFor(
      async () =>
        (await events('port_forward')).find((e) => 'target' in e && e.target === `127.0.0.1:${echoPort}`),
      'port_forward',
    );
    expect(fwd).toMatchObject({ user: 'alice', direction: 'local', success: true, server: 'node1' });
  });

  it('-R listens on the node and comes back to the client side', async () => {
    const remote = await freePort();
    const { p } = await forwarding(alice, '-R', `127.0.0.1:${remote}:127.0.0.1:${echoPort}`, remote);
    try {
      expect(await echoThrough(remote, 'ping-R')).toBe('ping-R');
    } finally {
      p.child.kill('SIGTERM');
      await p;
    }
    const fwd = (await events('port_forward')).find(
      (e) => 'direction' in e && e.direction === 'remote' && e.success,
    );
    expect(fwd).toMatchObject({ user: 'alice', target: `127.0.0.1:${remote}` });
  });

  it('-D is a SOCKS proxy curl can use', async () => {
    const socks = await freePort();
    const { p } = await forwarding(alice, '-D', `127.0.0.1:${socks}`, socks);
    try {
      const { stdout } = await run('curl', [
        '-s',
        '--max-time',
        '20',
        '--socks5-hostname',
        `127.0.0.1:${socks}`,
        `http://localhost:${webPort}/`,
      ]);
      expect(stdout).toBe('hello through socks');
    } finally {
      p.child.kill('SIGTERM');
      await p;
    }
    expect(
      (await events('port_forward')).some((e) => 'target' in e && e.target === `localhost:${webPort}`),
    ).toBe(true);
  });

  it('is refused (and audited) when no role allows it', async () => {
    const local = await freePort();
    const p = sshJ(env, bob, `${env.login}@node1`, ['-N', '-L', `127.0.0.1:${local}:127.0.0.1:${echoPort}`], {
      keepStdinOpenMs: 60_000,
    });
    try {
      await waitFor(
        () =>
          new Promise<boolean | undefined>((resolve) => {
            const s = net.connect(local, '127.0.0.1', () => {
              s.destroy();
              resolve(true);
            });
            s.on('error', () => resolve(undefined));
          }),
        'ssh to listen locally',
        20_000,
      );
      expect(await echoThrough(local, 'nope')).toBe('');
      const denied = await waitFor(
        async () => (await events('port_forward')).find((e) => e.user === 'bob'),
        'denied forward',
      );
      expect(denied).toMatchObject({ success: false, code: 'GH2103W' });
    } finally {
      p.child.kill('SIGTERM');
    }
    const r = await p;
    expect(r.stderr).toContain('port forwarding is not allowed');
  });
});

describe('file transfer (scp uses SFTP in OpenSSH 9)', () => {
  it('scp and sftp round-trip files; each file is audited with path, direction and bytes', async () => {
    const data = randomBytes(300_000);
    const src = path.join(env.dir, 'upload.bin');
    await writeFile(src, data);
    const remote = `/tmp/gh-scp-${randomBytes(4).toString('hex')}.bin`;
    const jump = `${alice.user}@127.0.0.1:${env.port}`;
    const up = await runTool('scp', ['-F', alice.config, '-J', jump, src, `${env.login}@node1:${remote}`]);
    expect(up.stderr).toBe('');
    expect(up.code).toBe(0);
    const back = path.join(env.dir, 'download.bin');
    const sftp = await runTool('sftp', ['-F', alice.config, '-J', jump, '-b', '-', `${env.login}@node1`], {
      input: `get ${remote} ${back}\nrm ${remote}\n`,
    });
    expect(sftp.code).toBe(0);
    expect((await readFile(back)).equals(data)).toBe(true);
    const files = await waitFor(async () => {
      const e = (await events('sftp')).filter((x) => 'path' in x && x.path === remote);
      return e.length >= 3 ? e : undefined;
    }, 'sftp events');
    const byAction = (a: string) => files.find((e) => 'action' in e && e.action === a);
    expect(byAction('write')).toMatchObject({ bytes: data.length, user: 'alice', server: 'node1' });
    expect(byAction('read')).toMatchObject({ bytes: data.length });
    expect(byAction('remove')).toBeDefined();
  });
});

describe('live control: a session ends within about a second, with a message', () => {
  /** Starts ssh and waits for its session to be live (a new one: an earlier test's may still be ending). */
  async function live(f: UserFiles, args: string[], input?: string) {
    const before = new Set(env.gw.liveSessions.list().map((s) => s.id));
    const p = sshJ(env, f, `${env.login}@node1`, args, { input, keepStdinOpenMs: 60_000 });
    const id = await waitFor(
      () => env.gw.liveSessions.list().find((s) => s.user === f.user && !before.has(s.id))?.id,
      'a live session',
      20_000,
    );
    return { p, id };
  }
  const liveShell = (f: UserFiles) => live(f, ['-tt'], 'echo READY\n');

  it('an admin kill ends it (gatehouse sessions kill)', async () => {
    const { p, id } = await liveShell(alice);
    const t0 = Date.now();
    await env.gw.admin.killSession(id);
    const r = await p;
    // The bound the issue sets is 1 s; allow slack for a loaded CI machine.
    expect(Date.now() - t0).toBeLessThan(5_000);
    expect(r.stdout.toString() + r.stderr).toContain('ended by');
    const end = await waitFor(
      async () => (await events('session.end')).find((e) => e.session_id === id),
      'session.end',
    );
    expect(end).toMatchObject({ reason: expect.stringContaining('ended by') });
  });

  it('a connection with no session channel yet (ssh -N) still gets the reason, in the DISCONNECT', async () => {
    const { p, id } = await live(alice, ['-N']);
    await env.gw.admin.killSession(id);
    const r = await p;
    expect(r.stderr).toMatch(/Received disconnect from .*ended by/);
  });

  it('locking the user ends it', async () => {
    const { p, id } = await liveShell(bob);
    const t0 = Date.now();
    await env.gw.admin.lockUser('bob', { message: 'incident 42' });
    const r = await p;
    expect(Date.now() - t0).toBeLessThan(5_000);
    expect(r.stdout.toString() + r.stderr).toContain('incident 42');
    await env.gw.admin.unlockUser('bob');
    const end = await waitFor(
      async () => (await events('session.end')).find((e) => e.session_id === id),
      'session.end',
    );
    expect(end).toMatchObject({ reason: expect.stringContaining('locked') });
  });

  it('the certificate expiring ends it', async () => {
    const t0 = Date.now();
    const short = await loginUser(env, 'alice', PASSWORD, { ttl: '4s' });
    const { p } = await liveShell(short);
    const r = await p;
    const elapsed = Date.now() - t0;
    // Ends at the certificate's expiry: 4 s after login, less up to 1 s since SSH validity is in whole
    // seconds; generous upper bound for a loaded machine.
    expect(elapsed).toBeGreaterThanOrEqual(2_900);
    expect(elapsed).toBeLessThan(10_000);
    expect(r.stdout.toString() + r.stderr).toContain('expired');
  });
});
