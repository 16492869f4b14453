/**
 * The proxy in front of Gatehouse's own node service (src/node): the node is
 * treated like any OpenSSH node (it trusts the user CA and presents a host
 * certificate), reached with the real OpenSSH client through `ssh -J`.
 */

import type { RecordingEvent } from '@gatehouse/audit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../../core/test/helpers.js';
import type { NodeService } from '../src/node/index.js';
import { createUnixUser, type TestUnixUser } from './node-helpers.js';
import { loginUser, sshJ, startEnv, startTestNode, type TestEnv, type UserFiles } from './peers.js';

const PASSWORD = 'correct horse battery staple';
let env: TestEnv;
let node: NodeService;
let alice: UserFiles;
let unix: TestUnixUser;

beforeAll(async () => {
  env = await startEnv();
  unix = createUnixUser();
  const { gw } = env;
  node = await startTestNode(env);
  await gw.admin.putRole(
    `kind: role\nname: dev\nallow:\n  logins: [${unix.name}]\n  node_labels: { env: dev }\n`,
  );
  await gw.admin.createUser({ name: 'alice', roles: ['dev'], password: PASSWORD });
  alice = await loginUser(env, 'alice', PASSWORD);
}, 60_000);

afterAll(async () => {
  await node?.close();
  await env?.close();
  unix?.remove();
});

describe('ssh -J through the gateway to the built-in node service', () => {
  it('runs a command; output and exit status come back', async () => {
    const r = await sshJ(env, alice, `${unix.name}@node2`, ['--', 'echo builtin-$((1+1)); exit 5'], {
      timeoutMs: 30_000,
    });
    expect(r.stdout.toString()).toBe('builtin-2\n');
    expect(r.code).toBe(5);
  });

  it('records a pty shell on the built-in node with exactly the bytes ssh printed', async () => {
    const r = await sshJ(env, alice, `${unix.name}@node2`, ['-tt'], { input: 'echo MARK-$((7*6))\nexit\n' });
    expect(r.stdout.toString()).toContain('MARK-42');
    const meta = await waitFor(async () => {
      const m = (await env.recordings.list()).find((x) => x.server === 'node2');
      return m?.ended ? m : undefined;
    }, 'the recording to end');
    const out: Buffer[] = [];
    for await (const e of env.recordings.read(meta.session_id) as AsyncIterable<RecordingEvent>) {
      if (e.type === 'output') out.push(Buffer.from(e.data));
    }
    expect(Buffer.concat(out).equals(r.stdout)).toBe(true);
  });
});
