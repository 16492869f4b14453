import type { AuditEvent } from '@gatehouse/audit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Identity, isGatehouseError } from '../src/index.js';
import { startGateway, type TestGateway, waitFor } from './helpers.js';

const ROLES = `kind: role
name: desk-dev
allow:
  desktop_labels: { env: [dev, prod] }
  desktop_logins: [Administrator, "{{internal.desktop_logins}}"]
deny:
  desktop_labels: { env: prod }
`;

describe('desktops in core: registry, RBAC, single-use tokens', () => {
  let t: TestGateway;
  const identity = (user: string, roles: string[]): Identity => ({
    user,
    roles,
    traits: { desktop_logins: ['alice-win'] },
    expires: new Date(Date.now() + 3600_000),
  });

  async function audit(type: string, match: (e: AuditEvent) => boolean): Promise<AuditEvent> {
    return waitFor(
      async () => (await t.gw.audit.search({ types: [type], limit: 1000 })).events.find(match),
      type,
    );
  }

  beforeAll(async () => {
    t = await startGateway({ webDir: false });
    await t.gw.admin.putRole(ROLES, { create: true });
    for (const name of ['alice', 'bob']) await t.gw.admin.createUser({ name, roles: ['desk-dev'] });
    await t.gw.admin.addDesktop({
      name: 'dev1',
      addr: '127.0.0.1:3389',
      labels: { env: 'dev' },
      insecure_skip_verify: true,
      credentials: [{ login: 'Administrator', password: 'Sup3r-secret!' }],
    });
    await t.gw.admin.addDesktop({
      name: 'prod1',
      addr: '10.0.0.5',
      labels: { env: 'prod' },
      tls_fingerprint: 'AB:'.repeat(31) + 'AB',
    });
  });
  afterAll(() => t.close());

  it('stores credentials sealed and never lists them; a listing shows what a user may reach', async () => {
    const raw = (await t.gw.backend.get('desktops/dev1'))!.value;
    expect(raw).not.toContain('Sup3r-secret!');
    const all = await t.gw.admin.listDesktops();
    expect(JSON.stringify(all)).not.toContain('Sup3r-secret!');
    expect(all.map((d) => [d.name, d.addr, d.tls_verify, d.logins])).toEqual([
      ['dev1', '127.0.0.1:3389', 'skipped', ['Administrator']],
      ['prod1', '10.0.0.5', 'fingerprint', []],
    ]);
    // alice has no desktop:list rule: she sees dev1 only (prod is denied by label), with her logins.
    const mine = await t.gw.authorizedAdmin(identity('alice', ['desk-dev'])).listDesktops();
    expect(mine.map((d) => [d.name, d.allowed])).toEqual([
      ['dev1', { logins: ['Administrator', 'alice-win'] }],
    ]);
    const created = await audit('desktop.create', (e) => 'name' in e && e.name === 'dev1');
    expect(created.code).toBe('GH1080I');
  });

  it('refuses a desktop without a way to trust its certificate', async () => {
    await expect(t.gw.admin.addDesktop({ name: 'bare', addr: 'h:3389' })).rejects.toThrow(
      /no way to trust its TLS certificate/,
    );
  });

  it('mints a token only for an allowed desktop and login; deny wins; each refusal is audited', async () => {
    const ctx = { remoteAddr: '127.0.0.1' };
    const view = await t.gw.desktopTokens.mint(identity('alice', ['desk-dev']), 'dev1', 'Administrator', ctx);
    expect(view).toMatchObject({ destination: 'dev1', path: '/v1/ws/desktop' });
    expect(view.token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const refusals: [string, string, RegExp][] = [
      ['prod1', 'Administrator', /denied/],
      ['dev1', 'root', /desktop_logins|login/],
      ['nope', 'Administrator', /no desktop "nope"/],
    ];
    for (const [desktop, login, msg] of refusals) {
      const err = await t.gw.desktopTokens
        .mint(identity('alice', ['desk-dev']), desktop, login, ctx)
        .catch((e) => e);
      expect(isGatehouseError(err, 'GH_ERR_ACCESS_DENIED'), String(err)).toBe(true);
      expect(String(err.message)).toMatch(msg);
      await audit('access.denied', (e) => 'resource' in e && e.resource === desktop && e.user === 'alice');
    }
  });

  it('a token is redeemed once, by its user, for its desktop; a replay is refused and audited', async () => {
    const alice = identity('alice', ['desk-dev']);
    const view = await t.gw.desktopTokens.mint(alice, 'dev1', 'Administrator', {});
    const q = { user: 'alice', destination: 'dev1', remoteAddr: '127.0.0.1' };
    const grant = await t.gw.desktopTokens.redeem(view.token, q);
    expect(grant.target).toMatchObject({ kind: 'desktop', name: 'dev1', login: 'Administrator' });
    expect((await t.gw.desktops.credentialFor(grant))?.password).toBe('Sup3r-secret!');
    await expect(t.gw.desktopTokens.redeem(view.token, q)).rejects.toThrow(/already used/);
    const replay = await audit('desktop.reject', (e) => 'reason' in e && e.reason === 'token_invalid');
    expect(replay).toMatchObject({ user: 'alice', code: 'GH2310W' });

    const forBob = await t.gw.desktopTokens.mint(alice, 'dev1', 'Administrator', {});
    await expect(t.gw.desktopTokens.redeem(forBob.token, { ...q, user: 'bob' })).rejects.toThrow(/not yours/);
    const other = await t.gw.desktopTokens.mint(alice, 'dev1', 'Administrator', {});
    await expect(t.gw.desktopTokens.redeem(other.token, { ...q, destination: 'prod1' })).rejects.toThrow(
      /is for "dev1", not "prod1"/,
    );
    await audit('desktop.reject', (e) => 'reason' in e && e.reason === 'destination_mismatch');
  });

  it('a lock between minting and redeeming wins', async () => {
    const view = await t.gw.desktopTokens.mint(identity('bob', ['desk-dev']), 'dev1', 'Administrator', {});
    await t.gw.admin.lockUser('bob', { message: 'incident 42' });
    await expect(
      t.gw.desktopTokens.redeem(view.token, { user: 'bob', destination: 'dev1', remoteAddr: '127.0.0.1' }),
    ).rejects.toThrow(/incident 42/);
    await t.gw.admin.unlockUser('bob');
  });

  it('credentials are handed out only for a desktop grant', async () => {
    const fake = { target: { kind: 'desktop', name: 'dev1', login: 'Administrator' } };
    // A look-alike object is not a Grant: only the Authorizer mints them.
    await expect(t.gw.desktops.credentialFor(fake as never)).rejects.toThrow(/need a desktop grant/);
  });
});
