/**
 * SSH through the gateway on ssh2's node:crypto cipher path: the one every
 * installation without a C++ compiler runs, because ssh2's optional native
 * binding (sshcrypto.node) was never built. CI has the binding, so this file
 * turns it off for the whole test process (GATEHOUSE_SSH2_NO_BINDING, a
 * switch of patches/ssh2+1.17.0.patch): the gateway's outer server, the
 * inner server that terminates the user's connection to the node, the
 * gateway's client to the node and the built-in node service all use it.
 *
 * Regressions: without the binding, chacha20-poly1305 broke every connection
 * that ssh2 served inside another ssh2 connection's channel (`ssh -J` through
 * the gateway): real OpenSSH clients failed right after NEWKEYS with
 * "incomplete message". And the web terminal (ssh2 client and server over an
 * in-memory stream, where a write delivers the packet and the peer's reply at
 * once) failed to start a shell: a reply encrypted inside the write reused
 * the sequence number (and AES-GCM IV) of the packet being written.
 */
import { createRequire } from 'node:module';
import type { TerminalViewer } from '@gatehouse/core';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { mintClientTicket } from '../../core/src/pki/credentials.js';
import { waitFor } from '../../core/test/helpers.js';
import type { NodeService } from '../src/node/index.js';
import { createUnixUser, type TestUnixUser } from './node-helpers.js';
import { loginUser, sshJ, startEnv, startTestNode, type TestEnv, type UserFiles } from './peers.js';

// Before any import loads ssh2 (vi.hoisted runs ahead of the imports).
vi.hoisted(() => {
  process.env.GATEHOUSE_SSH2_NO_BINDING = '1';
});

const PASSWORD = 'correct horse battery staple';
let env: TestEnv;
let node: NodeService;
let alice: UserFiles;
let unix: TestUnixUser;

beforeAll(async () => {
  env = await startEnv();
  unix = createUnixUser();
  node = await startTestNode(env);
  await env.gw.admin.putRole(
    `kind: role\nname: dev\nallow:\n  logins: [${unix.name}]\n  node_labels: { env: dev }\n`,
  );
  await env.gw.admin.createUser({ name: 'alice', roles: ['dev'], password: PASSWORD });
  alice = await loginUser(env, 'alice', PASSWORD);
}, 60_000);

afterAll(async () => {
  await node?.close();
  await env?.close();
  unix?.remove();
});

describe('SSH without ssh2 native binding (node:crypto ciphers)', () => {
  it('runs with the binding switched off', () => {
    // Otherwise this file would silently test the binding again.
    const require = createRequire(import.meta.url);
    const crypto = require('ssh2/lib/protocol/crypto.js') as { bindingAvailable: boolean };
    expect(crypto.bindingAvailable).toBe(false);
  });

  // The cipher of the terminated connection (gateway to ssh); the -J hop
  // and the gateway's own connection to the node negotiate their defaults
  // (chacha20-poly1305 first).
  const ciphers: [string, string[]][] = [
    ['chacha20-poly1305@openssh.com', []],
    ['aes128-gcm@openssh.com', []],
    ['aes256-gcm@openssh.com', []],
    ['aes128-ctr', ['-o', 'MACs=hmac-sha2-256-etm@openssh.com']],
    ['aes256-ctr', ['-o', 'MACs=hmac-sha2-512']],
  ];
  for (const [cipher, extra] of ciphers) {
    it(`ssh -J to the built-in node with ${cipher}${extra.length ? ` (${extra[1]})` : ''}`, async () => {
      // 300 000 bytes of output: many full packets and window adjustments.
      const r = await sshJ(
        env,
        alice,
        `${unix.name}@node2`,
        [
          '-o',
          `Ciphers=${cipher}`,
          ...extra,
          '--',
          'head -c 300000 /dev/zero | tr "\\0" x; echo; echo done-$((6*7)); exit 3',
        ],
        { timeoutMs: 30_000 },
      );
      expect(r.stderr).not.toMatch(/incomplete message|Corrupted|Bad packet|MAC/i);
      const out = r.stdout.toString();
      expect(out).toBe(`${'x'.repeat(300_000)}\ndone-42\n`);
      expect(r.code).toBe(3);
    });
  }

  it('a web terminal shell on the built-in node (ssh2 client and server in memory)', async () => {
    const service = env.gw.terminals.get();
    if (!service) throw new Error('the ssh adapter provided no terminal service');
    const chunks: Buffer[] = [];
    const viewer: TerminalViewer = {
      output: (d) => chunks.push(Buffer.from(d)),
      resize: () => {},
      end: () => {},
    };
    const identity = { user: 'alice', roles: ['dev'], traits: {}, expires: new Date(Date.now() + 3600e3) };
    const h = await service.open(
      {
        identity,
        ticket: mintClientTicket(identity, unix.name),
        node: 'node2',
        login: unix.name,
        cols: 80,
        rows: 24,
        remoteAddr: '127.0.0.1',
      },
      viewer,
    );
    h.input(Buffer.from('echo web-$((40+2))\r'));
    await waitFor(() => Buffer.concat(chunks).toString().includes('web-42'), '"web-42" in the web terminal');
    h.detach();
    await waitFor(() => env.gw.liveSessions.get(h.sessionId) === undefined, 'the detached session to end');
  });
});
