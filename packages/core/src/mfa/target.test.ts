import { describe, expect, it } from 'vitest';
import type { AccessTarget } from '../authz/grant.js';
import type { Identity, MfaTarget } from '../identity/types.js';
import { mfaTargetMatches, sessionMfaRefusal } from './target.js';

const node = (name: string, login: string): AccessTarget => ({ kind: 'node', name, labels: {}, login });
const db = (name: string, dbUser: string): AccessTarget => ({
  kind: 'db',
  name,
  labels: {},
  protocol: 'postgres',
  dbUser,
  dbName: 'app',
});
const kube = (name: string): AccessTarget => ({ kind: 'kube', name, labels: {} });
const desktop: AccessTarget = { kind: 'desktop', name: 'win1', labels: {}, login: 'Administrator' };

const login: Identity = {
  user: 'alice',
  roles: ['prod'],
  traits: {},
  expires: new Date(Date.UTC(2030, 0, 1)),
};
const bound = (target: MfaTarget): Identity => ({
  ...login,
  sessionMfa: { target, sessionExpires: login.expires },
});

describe('mfaTargetMatches', () => {
  it('a node binding matches that node and login only', () => {
    const t: MfaTarget = { kind: 'node', node: 'web1', login: 'ops' };
    expect(mfaTargetMatches(t, node('web1', 'ops'))).toBe(true);
    expect(mfaTargetMatches(t, node('web1', 'root'))).toBe(false);
    expect(mfaTargetMatches(t, node('web2', 'ops'))).toBe(false);
    expect(mfaTargetMatches(t, kube('web1'))).toBe(false);
    expect(mfaTargetMatches(t, desktop)).toBe(false);
  });

  it('a database binding matches that database and user; a cluster binding that cluster', () => {
    expect(mfaTargetMatches({ kind: 'db', name: 'orders', user: 'alice' }, db('orders', 'alice'))).toBe(true);
    expect(mfaTargetMatches({ kind: 'db', name: 'orders', user: 'alice' }, db('orders', 'postgres'))).toBe(
      false,
    );
    expect(mfaTargetMatches({ kind: 'db', name: 'orders', user: 'alice' }, db('billing', 'alice'))).toBe(
      false,
    );
    expect(mfaTargetMatches({ kind: 'kube', cluster: 'prod' }, kube('prod'))).toBe(true);
    expect(mfaTargetMatches({ kind: 'kube', cluster: 'prod' }, kube('staging'))).toBe(false);
    expect(mfaTargetMatches({ kind: 'kube', cluster: 'prod' }, db('prod', 'alice'))).toBe(false);
  });
});

describe('sessionMfaRefusal', () => {
  it('required: the login certificate is refused for new node, db and kube sessions, with what to run', () => {
    expect(sessionMfaRefusal(login, node('web1', 'ops'), true)?.hint).toMatch(
      /gatehouse ssh ops@web1 \(copy files with gatehouse scp\)/,
    );
    expect(sessionMfaRefusal(login, db('orders', 'alice'), true)?.hint).toMatch(
      /gatehouse db connect orders/,
    );
    expect(sessionMfaRefusal(login, kube('prod'), true)?.hint).toMatch(
      /gatehouse kubectl --cluster prod -- ARGS, or use the kubectl context of gatehouse kube login prod \(without --static\)/,
    );
    expect(sessionMfaRefusal(login, node('web1', 'ops'), true)?.code).toBe('GH_ERR_SESSION_MFA_REQUIRED');
  });

  it('a desktop is covered too: the login identity alone is refused, with the web UI in the hint', () => {
    const r = sessionMfaRefusal(login, desktop, true);
    expect(r?.code).toBe('GH_ERR_SESSION_MFA_REQUIRED');
    expect(r?.reason).toContain('desktop "win1" as Administrator');
    expect(r?.hint).toMatch(/open desktop win1 from the Resources page of the web UI/);
  });

  it('a desktop binding matches that desktop and login only', () => {
    const t: MfaTarget = { kind: 'desktop', desktop: 'win1', login: 'Administrator' };
    expect(mfaTargetMatches(t, desktop)).toBe(true);
    expect(mfaTargetMatches(t, { ...desktop, name: 'win2' })).toBe(false);
    expect(mfaTargetMatches(t, { ...desktop, login: 'guest' })).toBe(false);
    expect(mfaTargetMatches(t, node('win1', 'Administrator'))).toBe(false);
    expect(sessionMfaRefusal(bound(t), { ...desktop, name: 'win2' }, true)?.reason).toBe(
      'this certificate\'s MFA check was for desktop "win1" as Administrator, not desktop "win2" as Administrator',
    );
  });

  it('not required, or a live session re-checked: no refusal for the login certificate', () => {
    expect(sessionMfaRefusal(login, node('web1', 'ops'), false)).toBeUndefined();
    expect(sessionMfaRefusal(login, node('web1', 'ops'), true, { established: true })).toBeUndefined();
    expect(sessionMfaRefusal(login, desktop, false)).toBeUndefined();
  });

  it('a bound certificate opens its target only, whether or not the roles require the check', () => {
    const id = bound({ kind: 'node', node: 'web1', login: 'ops' });
    for (const required of [true, false]) {
      expect(sessionMfaRefusal(id, node('web1', 'ops'), required)).toBeUndefined();
      expect(sessionMfaRefusal(id, node('web2', 'ops'), required)?.reason).toBe(
        "this certificate's MFA check was for ops@web1, not ops@web2",
      );
      expect(sessionMfaRefusal(id, desktop, required)).toBeDefined();
      // Even a live session re-checked against another target (cannot happen today) is refused.
      expect(sessionMfaRefusal(id, db('web1', 'ops'), required, { established: true })).toBeDefined();
    }
  });
});
