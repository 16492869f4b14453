import { MemoryAuditLog } from '@gatehouse/audit/testing';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MemoryBackend } from '../backend/memory.js';
import { ManualClock } from '../clock.js';
import { GatehouseError } from '../errors.js';
import type { UserRecord } from '../identity/types.js';
import { parseRole } from '../rbac/role-schema.js';
import type { Role } from '../rbac/types.js';
import { AccessRequestService, type Reviewer } from './service.js';

const role = (name: string, allow: object = {}, deny: object = {}): Role =>
  parseRole({ kind: 'role', name, allow, deny });

const ROLES: Record<string, Role> = Object.fromEntries(
  [
    role('dev', {
      request: { roles: ['prod-*'], search_as_roles: ['db-reader'], max_duration: '4h' },
    }),
    role('strict', {
      request: { roles: ['prod-db'], thresholds: [{ approve: 2, deny: 1 }], reason: { mode: 'required' } },
    }),
    role('no-prod-admin', {}, { request: { roles: ['prod-admin'] } }),
    role('prod-db', { db_labels: { env: 'prod' }, db_users: ['app'], db_names: ['*'] }),
    role('prod-admin', { rules: [{ resources: ['*'], verbs: ['*'] }] }),
    role('db-reader', { db_labels: { env: 'prod' }, db_users: ['reader'], db_names: ['*'] }),
    role('reviewer', { review_requests: { roles: ['prod-*', 'db-*'] } }),
    role(
      'payments-reviewer',
      { review_requests: { roles: ['prod-*'], where: 'contains(requester.traits["team"], "payments")' } },
      { review_requests: { roles: ['*'], where: 'equals(request.user, "mallory")' } },
    ),
    role(
      'reviewer-no-admin',
      { review_requests: { roles: ['*'] } },
      { review_requests: { roles: ['prod-admin'] } },
    ),
  ].map((r) => [r.name, r]),
);

const USERS: Record<string, string[]> = {
  alice: ['dev'],
  carol: ['dev', 'strict'],
  dave: ['dev', 'no-prod-admin'],
  bob: ['reviewer'],
  erin: ['reviewer'],
  mallory: ['dev'],
  frank: ['payments-reviewer'],
};
const TRAITS: Record<string, Record<string, string[]>> = {
  alice: { team: ['payments'] },
  mallory: { team: ['payments'] },
  carol: { team: ['web'] },
};

describe('AccessRequestService', () => {
  let clock: ManualClock;
  let backend: MemoryBackend;
  let audit: MemoryAuditLog;
  let svc: AccessRequestService;
  const reviewer = (name: string): Reviewer => ({
    kind: 'user',
    name,
    roles: USERS[name]!.map((r) => ROLES[r]!),
    traits: {},
  });
  const code = async (p: Promise<unknown>) => {
    try {
      await p;
    } catch (e) {
      if (e instanceof GatehouseError) return `${e.code}: ${e.message}`;
      throw e;
    }
    return 'ok';
  };

  beforeEach(() => {
    clock = new ManualClock();
    backend = new MemoryBackend({ clock, sweepIntervalMs: 0 });
    audit = new MemoryAuditLog({ clock: () => clock.now() });
    svc = new AccessRequestService({
      backend,
      clock,
      audit,
      log: () => {},
      getUser: async (name) =>
        USERS[name]
          ? ({
              name,
              roles: USERS[name],
              traits: TRAITS[name] ?? {},
              createdAt: '',
              updatedAt: '',
              createdBy: '',
            } as UserRecord)
          : undefined,
      resolveRoles: async (names) =>
        names.map((n) => {
          const r = ROLES[n];
          if (!r) throw new GatehouseError('GH_ERR_ACCESS_DENIED', `role "${n}" does not exist`);
          return r;
        }),
      findResource: async (r) =>
        r.kind === 'db' && r.name === 'orders' ? { name: 'orders', labels: { env: 'prod' } } : undefined,
    });
  });
  afterEach(async () => {
    svc.close();
    await backend.close();
  });

  it('a request allowed by allow.request waits for a review, and one approval approves it', async () => {
    const r = await svc.create('alice', { roles: ['prod-db'], reason: 'INC-1', ttl: '2h' });
    expect(r).toMatchObject({
      user: 'alice',
      roles: ['prod-db'],
      state: 'pending',
      thresholds: { approve: 1, deny: 1 },
    });
    expect(Date.parse(r.expires) - Date.parse(r.created)).toBe(2 * 3600_000);
    const after = await svc.review(reviewer('bob'), r.id, { verdict: 'approve', reason: 'ok' });
    expect(after.state).toBe('approved');
    expect(after.resolved?.by).toBe('bob');
    expect((await svc.grants({ user: 'alice', accessRequests: [r.id] })).map((g) => g.roles)).toEqual([
      ['prod-db'],
    ]);
    expect(audit.events.map((e) => e.type)).toEqual(['access_request.create', 'access_request.review']);
  });

  it('refuses a role no allow.request covers, and a role a deny rule names (deny wins)', async () => {
    expect(await code(svc.create('alice', { roles: ['db-reader'] }))).toMatch(
      /GH_ERR_ACCESS_DENIED: .*none of your roles allows requesting role "db-reader"/,
    );
    expect(await code(svc.create('dave', { roles: ['prod-admin'] }))).toMatch(
      /GH_ERR_ACCESS_DENIED: .*role "no-prod-admin" denies requesting role "prod-admin"/,
    );
    expect(audit.events.filter((e) => e.type === 'access.denied')).toHaveLength(2);
  });

  it('refuses an empty reason where a role requires one, and a ttl over max_duration', async () => {
    expect(await code(svc.create('carol', { roles: ['prod-db'], reason: '   ' }))).toMatch(
      /GH_ERR_VALIDATION: a reason is required/,
    );
    expect(await code(svc.create('alice', { roles: ['prod-db'], ttl: '5h' }))).toMatch(
      /GH_ERR_VALIDATION: ttl 5h is longer than your roles allow for this request \(4h\)/,
    );
  });

  it('a 2-approval threshold needs two distinct reviewers; the requester and a second review by one reviewer are refused', async () => {
    const r = await svc.create('carol', { roles: ['prod-db'], reason: 'INC-2' });
    expect(r.thresholds).toEqual({ approve: 2, deny: 1 });
    expect(await code(svc.review(reviewer('carol'), r.id, { verdict: 'approve' }))).toMatch(
      /GH_ERR_ACCESS_DENIED: you cannot review your own/,
    );
    expect((await svc.review(reviewer('bob'), r.id, { verdict: 'approve' })).state).toBe('pending');
    expect(await code(svc.review(reviewer('bob'), r.id, { verdict: 'approve' }))).toMatch(
      /GH_ERR_ALREADY_EXISTS: you already reviewed/,
    );
    expect((await svc.review(reviewer('erin'), r.id, { verdict: 'approve' })).state).toBe('approved');
  });

  it('a reviewer without review_requests for every requested role is refused', async () => {
    const r = await svc.create('alice', { roles: ['prod-admin'] });
    const noAdmin: Reviewer = { kind: 'user', name: 'x', roles: [ROLES['reviewer-no-admin']!], traits: {} };
    expect(await code(svc.review(noAdmin, r.id, { verdict: 'approve' }))).toMatch(
      /GH_ERR_ACCESS_DENIED: .*denies reviewing requests for role "prod-admin"/,
    );
    const nobody: Reviewer = { kind: 'user', name: 'y', roles: [ROLES.dev!], traits: {} };
    expect(await code(svc.review(nobody, r.id, { verdict: 'deny' }))).toMatch(
      /none of your roles allows reviewing/,
    );
  });

  it('review_requests.where limits reviews to the requests it holds for; a deny where refuses only there', async () => {
    const alices = await svc.create('alice', { roles: ['prod-db'], reason: 'INC-1' });
    const carols = await svc.create('carol', { roles: ['prod-db'], reason: 'INC-2' });
    const mallorys = await svc.create('mallory', { roles: ['prod-db'], reason: 'INC-3' });
    // carol's team is web: frank's where does not hold.
    expect(await code(svc.review(reviewer('frank'), carols.id, { verdict: 'approve' }))).toBe(
      `GH_ERR_ACCESS_DENIED: access denied: the review_requests.where of role "payments-reviewer" does not allow reviewing this request for role "prod-db"`,
    );
    // mallory is in payments, but the deny's where names her.
    expect(await code(svc.review(reviewer('frank'), mallorys.id, { verdict: 'approve' }))).toBe(
      'GH_ERR_ACCESS_DENIED: access denied: role "payments-reviewer" denies reviewing requests for role "prod-db"',
    );
    expect((await svc.review(reviewer('frank'), alices.id, { verdict: 'approve' })).state).toBe('approved');
    // The requester's traits are read at review time: alice moved to web, her next request is not frank's.
    TRAITS.alice = { team: ['web'] };
    try {
      const later = await svc.create('alice', { roles: ['prod-db'], reason: 'INC-4' });
      expect(await code(svc.review(reviewer('frank'), later.id, { verdict: 'approve' }))).toMatch(
        /does not allow reviewing this request/,
      );
    } finally {
      TRAITS.alice = { team: ['payments'] };
    }
    expect((await svc.reviewable(reviewer('frank') as never, carols)).ok).toBe(false);
  });

  it('no approval after expiry; the certificate of an expired request is refused as expired', async () => {
    const r = await svc.create('alice', { roles: ['prod-db'], ttl: '1h' });
    await svc.review(reviewer('bob'), r.id, { verdict: 'approve' });
    clock.advance(3600_000);
    expect((await svc.get(r.id)).state).toBe('expired');
    const e = await svc.grants({ user: 'alice', accessRequests: [r.id] }).catch((x: unknown) => x);
    expect(e).toMatchObject({ code: 'GH_ERR_ACCESS_DENIED', details: { reason: 'access request expired' } });
    const p = await svc.create('alice', { roles: ['prod-db'], ttl: '1h' });
    clock.advance(3600_000);
    expect(await code(svc.review(reviewer('bob'), p.id, { verdict: 'approve' }))).toMatch(
      /GH_ERR_ACCESS_REQUEST_CLOSED: access request \w+ expired at/,
    );
  });

  it('a denial after approval and a drop end the access; closed requests take no more reviews', async () => {
    const r = await svc.create('alice', { roles: ['prod-db'] });
    await svc.review(reviewer('bob'), r.id, { verdict: 'approve' });
    expect((await svc.review(reviewer('erin'), r.id, { verdict: 'deny', reason: 'not now' })).state).toBe(
      'denied',
    );
    expect(await code(svc.grants({ user: 'alice', accessRequests: [r.id] }))).toMatch(/was denied by erin/);
    const d = await svc.create('alice', { roles: ['prod-db'] });
    expect((await svc.drop('alice', d.id, 'done')).state).toBe('dropped');
    expect(await code(svc.review(reviewer('bob'), d.id, { verdict: 'approve' }))).toMatch(
      /ACCESS_REQUEST_CLOSED.*dropped/,
    );
    expect(await code(svc.drop('alice', d.id))).toMatch(/ACCESS_REQUEST_CLOSED/);
  });

  it("a certificate naming someone else's request is refused", async () => {
    const r = await svc.create('alice', { roles: ['prod-db'] });
    await svc.review(reviewer('bob'), r.id, { verdict: 'approve' });
    expect(await code(svc.grants({ user: 'mallory', accessRequests: [r.id] }))).toMatch(/no longer exists/);
  });

  it('a resource request takes the search_as_roles that reach the resource', async () => {
    const r = await svc.create('alice', { resources: ['db/orders'], reason: 'x' });
    expect(r).toMatchObject({ roles: ['db-reader'], resources: [{ kind: 'db', name: 'orders' }] });
    expect(await code(svc.create('alice', { resources: ['db/missing'] }))).toMatch(/GH_ERR_NOT_FOUND/);
    expect(await code(svc.create('alice', { resources: ['orders'] }))).toMatch(
      /GH_ERR_VALIDATION: "orders" is not a resource/,
    );
  });
});
