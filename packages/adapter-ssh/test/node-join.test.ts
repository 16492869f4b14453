import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { MemoryAuditLog } from '@gatehouse/audit/testing';
import { type Clock, GatehouseClient, isGatehouseError } from '@gatehouse/core';
import { TEST_LOGIN } from '@gatehouse/core/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type TestGateway, waitFor } from '../../core/test/helpers.js';
import { builtinNode, generateHostKey, type JoinedNode, startJoinedNode } from '../src/node/index.js';
import { certify, newClientKey, runSsh, sshArgs } from './node-helpers.js';

/** Real time plus an offset the test moves forward (TLS certificates stay valid; tokens expire). */
class OffsetClock implements Clock {
  offsetMs = 0;
  now(): Date {
    return new Date(Date.now() + this.offsetMs);
  }
}

const clock = new OffsetClock();
let tg: TestGateway;
let dir: string;
let client: GatehouseClient;
const joined: JoinedNode[] = [];

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

const joinReq = (token: string, name: string) => ({
  token,
  name,
  addr: '127.0.0.1:3022',
  labels: { env: 'dev' },
  host_public_key: generateHostKey().publicKey,
});

async function refusal(p: Promise<unknown>): Promise<{ code: string; message: string }> {
  try {
    await p;
  } catch (e) {
    if (isGatehouseError(e)) return { code: e.code, message: e.message };
    throw e;
  }
  throw new Error('expected a refusal');
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'gh-join-'));
  tg = await startGateway({ clock });
  client = new GatehouseClient({ proxy: `127.0.0.1:${tg.port}`, caPem: tg.caPem });
});

afterAll(async () => {
  client?.close();
  for (const n of joined) await n.close();
  await tg?.close();
  await rm(dir, { recursive: true, force: true });
});

describe('node join tokens', () => {
  it('a token joins once; the second use is refused', async () => {
    const t = await tg.gw.admin.createJoinToken({ kind: 'node', ttl: '30m' });
    expect(t.kind).toBe('node');
    expect(t.command).toContain(`--token ${t.token}`);
    expect(t.command).toContain(tg.gw.caPin());
    const res = await client.joinNode(joinReq(t.token, 'web1'));
    expect(res.node).toEqual({ name: 'web1', addr: '127.0.0.1:3022', labels: { env: 'dev' } });
    expect(res.user_ca_keys).toEqual(tg.gw.authorities.get('user').map((k) => k.sshPublicKey));
    expect(res.host_cert).toMatch(/^ssh-ed25519-cert-v01@openssh.com /);
    const again = await refusal(client.joinNode(joinReq(t.token, 'web2')));
    expect(again.code).toBe('GH_ERR_TOKEN_INVALID');
    expect(again.message).toContain('already used');
    const events = (await tg.gw.admin.searchAudit({ types: ['node.join', 'node.join_token.create'] })).events;
    expect(events.filter((e) => e.type === 'node.join' && e.success === true).map((e) => e.server)).toEqual([
      'web1',
    ]);
    expect(events.some((e) => e.type === 'node.join' && e.success === false && e.code === 'GH1072W')).toBe(
      true,
    );
    expect(JSON.stringify(events)).not.toContain(t.token);
  });

  it('an unknown token is refused, and a malformed request does not burn a token', async () => {
    expect((await refusal(client.joinNode(joinReq('x'.repeat(32), 'nope')))).code).toBe(
      'GH_ERR_TOKEN_INVALID',
    );
    const t = await tg.gw.admin.createJoinToken({ kind: 'node' });
    expect((await refusal(client.joinNode({ ...joinReq(t.token, 'Bad Name') }))).code).toBe(
      'GH_ERR_VALIDATION',
    );
    const ok = await client.joinNode(joinReq(t.token, 'good'));
    expect(ok.node.name).toBe('good');
  });

  it('creating a token over the API needs token:create', async () => {
    const anon = await refusal(client.createJoinToken({ kind: 'node' }));
    expect(anon.code).toBe('GH_ERR_UNAUTHENTICATED');
  });

  it('a joined node serves the real OpenSSH client with its new host certificate and the cluster user CA', async () => {
    const t = await tg.gw.admin.createJoinToken({ kind: 'node' });
    const port = await freePort();
    const audit = new MemoryAuditLog();
    const node = await startJoinedNode({
      proxy: `127.0.0.1:${tg.port}`,
      caPin: tg.gw.caPin(),
      token: t.token,
      name: 'db1',
      labels: { env: 'dev' },
      listen: `127.0.0.1:${port}`,
      clock,
      audit,
      caRefreshMs: 0,
    });
    joined.push(node);
    const reg = (tg.gw as unknown as { nodes: { get(n: string): Promise<unknown> } }).nodes;
    expect(await reg.get('db1')).toMatchObject({ addr: `127.0.0.1:${port}`, labels: { env: 'dev' } });
    const knownHosts = path.join(dir, 'known_hosts');
    await writeFile(knownHosts, tg.gw.exportCa('known_hosts', { hosts: 'db1' }));
    const key = await newClientKey(dir, 'joiner');
    await certify(tg.gw, key, { principals: [TEST_LOGIN] });
    const res = await runSsh([
      ...sshArgs({ port, knownHosts, key, login: TEST_LOGIN, alias: 'db1' }),
      'echo joined-ok',
    ]);
    expect(res.stderr).toBe('');
    expect(res.stdout).toBe('joined-ok\n');
    expect(res.code).toBe(0);
  });

  it('a joined node refuses the login certificate of a locked user (the revocation list it fetches), and takes it back once unlocked', async () => {
    const t = await tg.gw.admin.createJoinToken({ kind: 'node' });
    const port = await freePort();
    const node = await startJoinedNode({
      proxy: `127.0.0.1:${tg.port}`,
      caPin: tg.gw.caPin(),
      token: t.token,
      name: 'db2',
      listen: `127.0.0.1:${port}`,
      clock,
      audit: new MemoryAuditLog(),
      caRefreshMs: 0,
      revocationRefreshMs: 100,
    });
    joined.push(node);
    await tg.gw.admin.createUser({
      name: 'rita',
      roles: ['access'],
      traits: { logins: [TEST_LOGIN] },
      password: 'correct horse battery staple',
    });
    const key = await newClientKey(dir, 'rita');
    // A certificate from a real login (what the revocation list tracks), not one minted in the test.
    const res = await client.login({
      user: 'rita',
      password: 'correct horse battery staple',
      ssh_public_key: key.publicKey,
    });
    await writeFile(key.certPath, `${res.ssh_cert}\n`);
    const knownHosts = path.join(dir, 'known_hosts_db2');
    await writeFile(knownHosts, tg.gw.exportCa('known_hosts', { hosts: 'db2' }));
    const ssh = () =>
      runSsh([...sshArgs({ port, knownHosts, key, login: TEST_LOGIN, alias: 'db2' }), 'echo direct-ok']);
    expect((await ssh()).stdout).toBe('direct-ok\n');
    const lock = await tg.gw.admin.lockUser('rita', { message: 'left the company' });
    // A run that authenticated just before the node fetched the list is ended by the node's sweep
    // (a bare disconnect); what this test waits for is the refusal at authentication.
    const refused = await waitFor(async () => {
      const r = await ssh();
      return r.code === 255 && r.stderr.includes('is revoked') ? r : undefined;
    }, 'the node to refuse the locked user at authentication');
    expect(refused.stdout).toBe('');
    await tg.gw.admin.deleteLock(lock.id);
    await waitFor(async () => (await ssh()).stdout === 'direct-ok\n', 'the node to accept the unlocked user');
  });

  it('a lock ends what a direct login still runs on a joined node, the setsid nohup job included', async () => {
    const t = await tg.gw.admin.createJoinToken({ kind: 'node' });
    const port = await freePort();
    const node = await startJoinedNode({
      proxy: `127.0.0.1:${tg.port}`,
      caPin: tg.gw.caPin(),
      token: t.token,
      name: 'db3',
      listen: `127.0.0.1:${port}`,
      clock,
      audit: new MemoryAuditLog(),
      caRefreshMs: 0,
      revocationRefreshMs: 100,
    });
    joined.push(node);
    await tg.gw.admin.createUser({
      name: 'sam',
      roles: ['access'],
      traits: { logins: [TEST_LOGIN] },
      password: 'correct horse battery staple',
    });
    const key = await newClientKey(dir, 'sam');
    const res = await client.login({
      user: 'sam',
      password: 'correct horse battery staple',
      ssh_public_key: key.publicKey,
    });
    await writeFile(key.certPath, `${res.ssh_cert}\n`);
    const knownHosts = path.join(dir, 'known_hosts_db3');
    await writeFile(knownHosts, tg.gw.exportCa('known_hosts', { hosts: 'db3' }));
    let out = '';
    const ssh = spawn(
      'ssh',
      [
        ...sshArgs({ port, knownHosts, key, login: TEST_LOGIN, alias: 'db3' }),
        'setsid nohup sleep 1618 >/dev/null 2>&1 & echo $!; exec sleep 600',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    ssh.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    const exited = new Promise<number | null>((r) => ssh.on('close', (code) => r(code)));
    const pid = await waitFor(
      () => {
        const m = /^(\d+)\n/.exec(out);
        return m ? Number(m[1]) : undefined;
      },
      'the job pid',
      30_000,
    );
    try {
      expect(existsSync(`/proc/${pid}`)).toBe(true);
      await tg.gw.admin.lockUser('sam', { message: 'left the company' });
      // The node learns it from the revocation list it fetches, not from the gateway.
      expect(await exited).not.toBe(0);
      await waitFor(
        () => (existsSync(`/proc/${pid}`) ? undefined : true),
        'the nohup job to be killed',
        30_000,
      );
    } finally {
      ssh.kill('SIGKILL');
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // Gone already, as it should be.
      }
    }
  });

  it('refuses to join a proxy whose CA does not match the pin', async () => {
    const t = await tg.gw.admin.createJoinToken({ kind: 'node' });
    const bad = `sha256:${'0'.repeat(64)}`;
    const r = await refusal(
      startJoinedNode({
        proxy: `127.0.0.1:${tg.port}`,
        caPin: bad,
        token: t.token,
        name: 'evil',
        listen: '127.0.0.1:0',
        clock,
        audit: new MemoryAuditLog(),
      }),
    );
    expect(r.code).toBe('GH_ERR_CERT_INVALID');
  });
  // Last: it moves the gateway clock forward, and OpenSSH checks certificates against real time.
  it('an expired token is refused', async () => {
    const t = await tg.gw.admin.createJoinToken({ kind: 'node', ttl: '5m' });
    clock.offsetMs += 6 * 60_000;
    const r = await refusal(client.joinNode(joinReq(t.token, 'late')));
    expect(r.code).toBe('GH_ERR_TOKEN_INVALID');
    expect(r.message).toContain('expired');
  });
});

describe('builtinNode adapter', () => {
  it('registers the local machine as a node with builtin=true and serves it with a host-CA certificate', async () => {
    const added: { name: string; addr: string; labels: Record<string, string> }[] = [];
    const adapter = builtinNode({
      name: 'local1',
      registry: {
        add: async (spec) => {
          added.push(spec);
          return spec;
        },
      },
    });
    const gw2 = await startGateway();
    try {
      gw2.gw.use(adapter);
      await gw2.gw.ready();
      const svc = await waitFor(() => adapter.service(), 'the built-in node');
      expect(added).toEqual([{ name: 'local1', addr: svc.address, labels: { builtin: 'true' } }]);
      expect(svc.host).toBe('127.0.0.1');
      const knownHosts = path.join(dir, 'known_hosts_builtin');
      await writeFile(knownHosts, gw2.gw.exportCa('known_hosts', { hosts: 'local1' }));
      const key = await newClientKey(dir, 'builtin-user');
      await certify(gw2.gw, key, { principals: [TEST_LOGIN] });
      const res = await runSsh([
        ...sshArgs({ port: svc.port, knownHosts, key, login: TEST_LOGIN, alias: 'local1' }),
        'id -un',
      ]);
      expect(res.stdout).toBe(`${TEST_LOGIN}\n`);
      expect(res.code).toBe(0);
    } finally {
      await gw2.close();
    }
    expect(adapter.service()).toBeDefined();
  });

  it('presents a host certificate from the new host CA key after update_servers, without ending open sessions', async () => {
    const adapter = builtinNode({ name: 'local2', registry: { add: async (spec) => spec } });
    const gw2 = await startGateway();
    try {
      gw2.gw.use(adapter);
      await gw2.gw.ready();
      const svc = await waitFor(() => adapter.service(), 'the built-in node');
      const key = await newClientKey(dir, 'builtin-rot');
      const knownHosts = path.join(dir, 'known_hosts_builtin_rot');
      const reach = async (word: string) => {
        await writeFile(knownHosts, gw2.gw.exportCa('known_hosts', { hosts: 'local2' }));
        await certify(gw2.gw, key, { principals: [TEST_LOGIN] });
        return runSsh([
          ...sshArgs({ port: svc.port, knownHosts, key, login: TEST_LOGIN, alias: 'local2' }),
          `echo ${word}`,
        ]);
      };
      expect((await reach('before')).stdout).toBe('before\n');
      const live = spawn(
        'ssh',
        [
          ...sshArgs({ port: svc.port, knownHosts, key, login: TEST_LOGIN, alias: 'local2' }),
          'read x; echo got-$x',
        ],
        { stdio: ['pipe', 'pipe', 'pipe'] },
      );
      let liveOut = '';
      live.stdout.on('data', (b) => {
        liveOut += b;
      });
      const liveExit = new Promise<number | null>((r) => live.once('exit', r));
      for (const phase of ['init', 'update_clients', 'update_servers', 'standby'] as const) {
        await gw2.gw.authorities.rotate('host', { phase });
      }
      // known_hosts now names only the new host CA key: the node's certificate must come from it.
      expect(gw2.gw.exportCa('known_hosts').trim().split('\n')).toHaveLength(1);
      const after = await reach('after');
      expect(after.stderr).not.toMatch(/Host key verification failed/);
      expect(after.stdout).toBe('after\n');
      live.stdin.end('still-here\n');
      expect(await liveExit).toBe(0);
      expect(liveOut).toBe('got-still-here\n');
    } finally {
      await gw2.close();
    }
  });
});
