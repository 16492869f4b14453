import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Identity, Revocation } from '../src/index.js';
import { startGateway, type TestGateway } from './helpers.js';

/**
 * Core's session lifecycle (LiveSessions) on a real gateway: what a session
 * bound after a change that took its access away does.
 */
describe('LiveSessions.bind', () => {
  let t: TestGateway;

  beforeAll(async () => {
    t = await startGateway({ webDir: false });
  });

  afterAll(async () => {
    await t?.close();
  });

  const identity = (user: string): Identity => ({
    user,
    roles: ['access'],
    traits: { logins: ['gh-test'] },
    expires: new Date(Date.now() + 3600e3),
  });

  async function grantFor(user: string) {
    await t.gw.admin.createUser({ name: user, roles: ['access'], traits: { logins: ['gh-test'] } });
    return t.gw.authorizer.authorize(identity(user), {
      kind: 'node',
      name: 'web1',
      labels: {},
      login: 'gh-test',
    });
  }

  /** Binds `grant` and records what core tells its terminate hook. */
  function bind(grant: Awaited<ReturnType<typeof grantFor>>) {
    const ended: Revocation[] = [];
    const live = t.gw.liveSessions.bind(
      grant,
      { kind: 'ssh', protocol: 'ssh', server: 'web1', login: 'gh-test' },
      { terminate: (r) => ended.push(r) },
    );
    return { live, ended };
  }

  it('ends a session whose user was locked between authorize and bind (a lock mid-handshake), before it starts', async () => {
    const grant = await grantFor('hana');
    // The upstream is still being dialed: the lock's watch event finds no session to end.
    await t.gw.admin.lockUser('hana', { message: 'mid-handshake' });
    await new Promise((r) => setTimeout(r, 50));
    const { live, ended } = bind(grant);
    const r = await live.ready;
    expect(r).toEqual({ cause: 'locked', message: 'access locked (user hana): mid-handshake' });
    expect(ended).toEqual([r]);
    expect(live.ended).toBe(true);
    expect(t.gw.liveSessions.get(grant.sessionId)).toBeUndefined();
  });

  it('ends a session whose user was deleted between authorize and bind', async () => {
    const grant = await grantFor('ivo');
    await t.gw.admin.deleteUser('ivo');
    const { live, ended } = bind(grant);
    expect(await live.ready).toMatchObject({ cause: 'user_deleted', message: 'user "ivo" no longer exists' });
    expect(ended).toHaveLength(1);
  });

  it('lets a session whose access holds start: ready resolves undefined and it is listed', async () => {
    const grant = await grantFor('jon');
    const { live, ended } = bind(grant);
    expect(await live.ready).toBeUndefined();
    expect(ended).toEqual([]);
    expect(t.gw.liveSessions.get(grant.sessionId)).toMatchObject({ user: 'jon', protocol: 'ssh' });
    // A later check of an ended session says why it ended, not a generic "has ended".
    t.gw.liveSessions.kill(grant.sessionId, 'root');
    expect(await live.check()).toEqual({ cause: 'killed', message: 'ended by root', by: 'root' });
  });

  it('ends an SSH session whose roles now ask the node for another session policy (the node keeps enforcing the old one)', async () => {
    const role = (options: string[]) =>
      t.gw.admin.putRole(
        [
          'kind: role',
          'name: netpol',
          'allow:',
          '  logins: [gh-test]',
          '  node_labels: { "*": "*" }',
          ...options,
        ].join('\n'),
      );
    await role(['options:', '  restrict_network: { deny: [10.0.0.0/8] }']);
    await t.gw.admin.createUser({ name: 'lea', roles: ['netpol'], traits: { logins: ['gh-test'] } });
    const grant = await t.gw.authorizer.authorize(
      { ...identity('lea'), roles: ['netpol'] },
      { kind: 'node', name: 'web1', labels: {}, login: 'gh-test' },
    );
    expect(grant.options.restrictNetwork.deny).toEqual(['10.0.0.0/8']);
    const { live, ended } = bind(grant);
    expect(await live.ready).toBeUndefined();
    // The same policy in another order, and a change elsewhere: the session goes on.
    await role([
      'options:',
      '  restrict_network: { deny: [10.0.0.0/8, 10.0.0.0/8] }',
      '  max_session_ttl: 2h',
    ]);
    expect(await live.check()).toBeUndefined();
    await role(['options:', '  restrict_network: { deny: [10.0.0.0/8, 192.168.0.0/16] }']);
    const r = {
      cause: 'access_revoked',
      message: "your roles' restrict_network changed; reconnect to run under the new policy",
    };
    expect(await live.check()).toEqual(r);
    expect(ended).toEqual([r]);
    const denied = (await t.gw.audit.search({ types: ['access.denied'], user: 'lea' })).events;
    expect(denied[0]).toMatchObject({ resource: 'web1', reason: r.message });
  });

  it('retargets a session to a grant of the same identity (MySQL COM_CHANGE_USER) without extending its end', async () => {
    await t.gw.admin.createUser({ name: 'kim', roles: ['access'], traits: { logins: ['gh-test'] } });
    const who = identity('kim');
    const target = { kind: 'node', name: 'web1', labels: {}, login: 'gh-test' } as const;
    const first = await t.gw.authorizer.authorize(who, target);
    const { live, ended } = bind(first);
    expect(await live.ready).toBeUndefined();
    const listed = t.gw.liveSessions.get(first.sessionId);
    const later = await t.gw.authorizer.authorize({ ...who, expires: new Date(Date.now() + 7200e3) }, target);
    // Another identity's grant (even of the same user name) is not taken.
    expect(() => live.retarget(later, 'other')).toThrow(/cannot take another identity's grant/);
    const second = await t.gw.authorizer.authorize(who, target);
    live.retarget(second, 'gh-test2');
    expect(live.grant).toBe(second);
    expect(t.gw.liveSessions.get(first.sessionId)).toMatchObject({
      login: 'gh-test2',
      expires: listed?.expires,
    });
    // Re-checks now judge the new grant, and still pass.
    expect(await live.check()).toBeUndefined();
    expect(ended).toEqual([]);
    live.end();
  });
});
