/**
 * A host CA rotation with nodes joined by token (`gatehouse node start
 * --token`), end to end: the real OpenSSH client through the proxy (`ssh -J`)
 * to joined node services. A node that follows the rotation renews its host
 * certificate from the new key with its current one (no token) and swaps it in
 * without ending open sessions; a node that missed the rotation gets an error
 * saying to join again, and the gateway audits it.
 */
import { spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import {
  isGatehouseError,
  parseSshCertificate,
  sshBlobFingerprint,
  sshFingerprint,
  systemClock,
} from '@gatehouse/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../../core/test/helpers.js';
import { type JoinedNode, startJoinedNode } from '../src/node/index.js';
import { loginUser, runTool, sshJ, startEnv, type TestEnv, type UserFiles } from './peers.js';

const PASSWORD = 'correct horse battery staple';
let env: TestEnv;
let alice: UserFiles;
const nodes: JoinedNode[] = [];

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

/** Which host CA key signed a host certificate line. */
const signerOf = (cert: string) => sshBlobFingerprint(parseSshCertificate(cert).signatureKey);

async function join(name: string, caRefreshMs: number): Promise<JoinedNode> {
  const t = await env.gw.admin.createJoinToken({ kind: 'node' });
  const node = await startJoinedNode({
    proxy: `127.0.0.1:${env.port}`,
    caPin: env.gw.caPin(),
    token: t.token,
    name,
    labels: { env: 'dev' },
    listen: `127.0.0.1:${await freePort()}`,
    clock: systemClock,
    // The default forwarding to the gateway's audit log: it signs with the (renewed) certificate.
    auditSpoolDir: path.join(env.dir, `spool-${name}`),
    caRefreshMs,
    revocationRefreshMs: 0,
  });
  nodes.push(node);
  return node;
}

beforeAll(async () => {
  env = await startEnv();
  await env.gw.admin.putRole(
    ['kind: role', 'name: dev', 'allow:', `  logins: [${env.login}]`, '  node_labels: { env: dev }', ''].join(
      '\n',
    ),
  );
  await env.gw.admin.createUser({ name: 'alice', roles: ['dev'], password: PASSWORD });
  alice = await loginUser(env, 'alice', PASSWORD);
}, 60_000);

afterAll(async () => {
  for (const n of nodes) await n.close();
  await env?.close();
});

async function refusal(p: Promise<unknown>): Promise<{ code: string; message: string; hint: string }> {
  try {
    await p;
  } catch (e) {
    if (isGatehouseError(e)) return { code: e.code, message: e.message, hint: e.hint ?? '' };
    throw e;
  }
  throw new Error('expected a refusal');
}

describe('host CA rotation with joined nodes', () => {
  it('a joined node renews its host certificate from the new key without ending its sessions; one that missed the rotation is told to join again', async () => {
    // Follows the rotation by its timer, every 200 ms here (10 minutes by default).
    const follower = await join('jn1', 200);
    // Away through the whole rotation: never refreshes.
    const away = await join('jn2', 0);
    // Learns the new key at init, then is away through update_servers and standby.
    const late = await join('jn3', 0);
    const oldKey = sshFingerprint(env.gw.authorities.get('host')[0]!.sshPublicKey);
    const joinedCert = follower.hostCert();
    expect(signerOf(joinedCert)).toBe(oldKey);

    const ssh = (node: string, command: string) => sshJ(env, alice, `${env.login}@${node}`, ['--', command]);
    expect((await ssh('jn1', 'echo before')).stdout.toString()).toBe('before\n');

    // A live session through the proxy, open across every phase.
    const live = spawn(
      'ssh',
      [
        '-F',
        alice.config,
        '-J',
        `alice@127.0.0.1:${env.port}`,
        `${env.login}@jn1`,
        'echo ready; read x; echo got-$x',
      ],
      { stdio: ['pipe', 'pipe', 'pipe'] },
    );
    let liveOut = '';
    let liveErr = '';
    live.stdout.on('data', (b) => {
      liveOut += b;
    });
    live.stderr.on('data', (b) => {
      liveErr += b;
    });
    const liveExit = new Promise<number | null>((r) => live.once('exit', r));
    try {
      await waitFor(() => (liveOut === 'ready\n' ? true : undefined), 'the live session', 30_000);

      await env.gw.authorities.rotate('host', { phase: 'init' });
      const newKey = sshFingerprint(env.gw.authorities.get('host')[0]!.sshPublicKey);
      expect(newKey).not.toBe(oldKey);
      // What a user's new login does in init: known_hosts trusts both keys (the proxy switches at update_servers).
      await writeFile(alice.knownHosts, env.gw.exportCa('known_hosts'));
      await late.refreshCas();
      // init signs with the old key still: nothing to renew yet.
      expect(late.hostCert()).toBe(late.join.host_cert);
      expect((await ssh('jn1', 'echo init')).stdout.toString()).toBe('init\n');

      await env.gw.authorities.rotate('host', { phase: 'update_clients' });
      expect((await ssh('jn1', 'echo clients')).stdout.toString()).toBe('clients\n');

      await env.gw.authorities.rotate('host', { phase: 'update_servers' });
      // The node's own timer notices that the host CA signs with another key and renews.
      await waitFor(
        () => (signerOf(follower.hostCert()) === newKey ? true : undefined),
        'the joined node to renew its host certificate from the new host CA key',
        30_000,
      );
      expect((await ssh('jn1', 'echo servers')).stdout.toString()).toBe('servers\n');

      await env.gw.authorities.rotate('host', { phase: 'standby' });
      // Only the new key is trusted now, by the proxy and by the client's known_hosts.
      const knownHosts = env.gw.exportCa('known_hosts').trim().split('\n');
      expect(knownHosts).toHaveLength(1);
      expect(knownHosts[0]).toContain(env.gw.authorities.get('host')[0]!.sshPublicKey);
      await writeFile(alice.knownHosts, `${knownHosts[0]}\n`);

      const after = await ssh('jn1', 'echo after');
      expect(after.stderr).not.toMatch(/failed host verification|Host key verification failed/);
      expect(after.stdout.toString()).toBe('after\n');
      expect(after.code).toBe(0);
      expect(follower.hostCert()).not.toBe(joinedCert);
      expect(parseSshCertificate(follower.hostCert()).publicKey).toEqual(
        parseSshCertificate(joinedCert).publicKey,
      );

      live.stdin.end('still-here\n');
      expect(await liveExit).toBe(0);
      expect(liveOut).toBe('ready\ngot-still-here\n');
      expect(liveErr).not.toMatch(/closed|broken/i);
    } finally {
      live.kill('SIGKILL');
    }

    // Straight to the node, the real OpenSSH client checks its certificate against the new key only.
    const direct = (login: string, command: string) =>
      runTool('ssh', ['-F', alice.config, '-p', String(follower.port), `${login}@127.0.0.1`, command]);
    const ok = await direct(env.login, 'echo direct-after');
    expect(ok.stderr).not.toMatch(/Host key verification failed|REMOTE HOST IDENTIFICATION/);
    expect(ok.stdout.toString()).toBe('direct-after\n');
    // A refused login there is audited by the node and forwarded, signed with the renewed certificate.
    const denied = await direct('root', 'true');
    expect(denied.code).toBe(255);
    expect(denied.stderr).not.toMatch(/Host key verification failed/);
    await waitFor(
      async () =>
        (await env.gw.audit.search({ types: ['access.denied'], limit: 500 })).events.find(
          (e) => e.server === 'jn1' && e.login === 'root' && e.node_event_id !== undefined,
        ),
      "jn1's forwarded access.denied",
      30_000,
    );
    const auditRefused = (await env.gw.audit.search({ types: ['node.audit_refused'], limit: 100 })).events;
    expect(auditRefused).toEqual([]);

    // Away through the whole rotation: the proxy refuses its old certificate and says what to do (audited).
    const refusedSession = await ssh('jn2', 'echo nope');
    expect(refusedSession.code).not.toBe(0);
    expect(refusedSession.stderr).toContain('node "jn2" failed host verification');
    expect(refusedSession.stderr).toContain('joins again with a new token');
    const starts = (await env.gw.audit.search({ types: ['session.start'], limit: 500 })).events;
    expect(
      starts.find((e) => e.server === 'jn2' && e.code === 'GH2100W' && /new token/.test(JSON.stringify(e))),
    ).toBeDefined();
    // ...and the node itself cannot verify the proxy any more: it says to join again.
    const awayErr = await refusal(away.refreshCas());
    expect(awayErr.code).toBe('GH_ERR_CERT_INVALID');
    expect(awayErr.message).toContain('cannot follow the cluster');
    expect(awayErr.hint).toContain('gatehouse tokens add --type node');

    // Knew the new key but missed update_servers: it reaches the proxy, whose refusal to renew is audited.
    const lateErr = await refusal(late.refreshCas());
    expect(lateErr.code).toBe('GH_ERR_CERT_INVALID');
    expect(lateErr.message).toContain('cannot renew the host certificate of node "jn3"');
    expect(lateErr.hint).toContain('gatehouse tokens add --type node');
    const renewRefused = (await env.gw.audit.search({ types: ['node.renew_refused'], limit: 100 })).events;
    expect(renewRefused).toEqual([
      expect.objectContaining({
        server: 'jn3',
        code: 'GH1075W',
        error: expect.stringContaining('not valid'),
      }),
    ]);
  }, 120_000);
});
