/**
 * Content guards on SSH sessions, with the real OpenSSH client and a real
 * sshd node: a canary in a file the user cats ends the session before the
 * canary reaches the client, a match split across packets is caught, a guard
 * added to a role at run time reaches a session that is already running, and
 * an audit-only guard records without ending anything.
 */
import { randomBytes } from 'node:crypto';
import { rm, writeFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../../core/test/helpers.js';
import { loginUser, sshJ, startEnv, type TestEnv, type UserFiles } from './peers.js';

const PASSWORD = 'correct horse battery staple';
const CANARY = `gh-canary-${randomBytes(6).toString('hex')}`;

let env: TestEnv;
let carol: UserFiles;
let file: string;

const role = (guards: string[]) =>
  [
    'kind: role',
    'name: guarded',
    'allow:',
    `  logins: [${env.login}]`,
    '  node_labels: { env: dev }',
    'options:',
    ...(guards.length > 0 ? ['  guards:', ...guards] : []),
    '',
  ].join('\n');

async function events(type: string) {
  return (await env.gw.audit.search({ types: [type], limit: 500 })).events;
}

beforeAll(async () => {
  env = await startEnv();
  await env.gw.admin.putRole(
    role([
      `    - { name: canary, literal: ${CANARY}, on: [output], action: terminate }`,
      '    - { name: aws key, match: "AKIA[0-9A-Z]{16}", on: [output], action: audit }',
    ]),
  );
  await env.gw.admin.createUser({ name: 'carol', roles: ['guarded'], password: PASSWORD });
  await env.gw.nodes.add(
    { name: 'node1', addr: `127.0.0.1:${env.sshd.port}`, labels: { env: 'dev' } },
    'test',
  );
  carol = await loginUser(env, 'carol', PASSWORD);
  file = `/tmp/gh-guard-${randomBytes(4).toString('hex')}`;
  // Far enough in that the canary does not arrive in the first packet.
  await writeFile(file, `${'x'.repeat(70_000)}\nthe secret: ${CANARY}\nafter it\n`, { mode: 0o644 });
}, 60_000);

afterAll(async () => {
  await rm(file, { force: true });
  await env?.close();
});

describe('content guards on SSH sessions', () => {
  it('cat of a file holding the canary ends the session; the canary never reaches the client', async () => {
    const r = await sshJ(env, carol, `${env.login}@node1`, ['--', 'cat', file]);
    const seen = r.stdout.toString() + r.stderr;
    expect(seen).not.toContain(CANARY);
    expect(seen).toContain('ended by the content guard "canary"');
    const hit = await waitFor(
      async () =>
        (await events('session.guard')).find((e) => e.type === 'session.guard' && e.rule === 'canary'),
      'session.guard',
    );
    expect(hit).toMatchObject({
      user: 'carol',
      on: 'output',
      action: 'terminate',
      match_length: CANARY.length,
    });
    // The audit never holds the secret itself.
    expect(JSON.stringify(hit)).not.toContain(CANARY);
    const end = await waitFor(
      async () =>
        (await events('session.end')).find(
          (e) => e.type === 'session.end' && e.session_id === hit.session_id && e.user === 'carol',
        ),
      'session.end',
    );
    expect(end).toMatchObject({ reason: expect.stringContaining('content guard "canary"') });
  });

  it('catches the canary when the node sends it split across two writes', async () => {
    const half = Math.floor(CANARY.length / 2);
    const r = await sshJ(env, carol, `${env.login}@node1`, [
      '--',
      `printf '%s' '${CANARY.slice(0, half)}'; sleep 0.5; printf '%s\\n' '${CANARY.slice(half)}'`,
    ]);
    expect(r.stdout.toString()).not.toContain(CANARY);
    expect(r.stdout.toString() + r.stderr).toContain('ended by the content guard "canary"');
  });

  it('an audit-only guard records the match and lets the session go on', async () => {
    const key = `AKIA${randomBytes(8).toString('hex').toUpperCase()}`;
    const r = await sshJ(env, carol, `${env.login}@node1`, ['--', `echo ${key}; echo still-here`]);
    expect(r.code).toBe(0);
    expect(r.stdout.toString()).toBe(`${key}\nstill-here\n`);
    const hit = await waitFor(
      async () =>
        (await events('session.guard')).find((e) => e.type === 'session.guard' && e.rule === 'aws key'),
      'the audit-only guard',
    );
    expect(hit).toMatchObject({ action: 'audit', match_length: 20 });
  });

  it('a guard added to the role at run time reaches a session that is already running', async () => {
    const fresh = `gh-late-${randomBytes(6).toString('hex')}`;
    // A shell that prints the new canary 2 s from now, then keeps going.
    const p = sshJ(env, carol, `${env.login}@node1`, ['--', `sleep 2; echo ${fresh}; sleep 30`]);
    await waitFor(() => env.gw.liveSessions.list().find((s) => s.user === 'carol'), 'the running session');
    await env.gw.admin.putRole(
      role([
        `    - { name: canary, literal: ${CANARY}, on: [output], action: terminate }`,
        `    - { name: late canary, literal: ${fresh}, on: [output] }`,
      ]),
    );
    const r = await p;
    expect(r.stdout.toString()).not.toContain(fresh);
    expect(r.stdout.toString() + r.stderr).toContain('ended by the content guard "late canary"');
  });
});
