import { TOTP, URI } from 'otpauth';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GatehouseClient, isGatehouseError, ManualClock } from '../src/index.js';
import { newTlsKey, startGateway, type TestGateway } from './helpers.js';

const PASSWORD = 'a long enough passphrase';

/** The default cluster setting: password + TOTP, through the real HTTP API over TLS. */
describe('second factor (otp) end to end', () => {
  let t: TestGateway;
  let clock: ManualClock;
  let client: GatehouseClient;
  let totp: TOTP;

  const code = () => totp.generate({ timestamp: clock.now().getTime() });
  const failure = (e: unknown) => (isGatehouseError(e) ? e.code : String(e));

  beforeAll(async () => {
    clock = new ManualClock(Date.now());
    t = await startGateway({ clock, secondFactor: 'otp' });
    client = new GatehouseClient({ proxy: `127.0.0.1:${t.port}`, caPem: t.caPem });
  });
  afterAll(() => t.close());

  it('the first admin enrolls TOTP from the bootstrap invite', async () => {
    const invite = await t.gw.bootstrapAdmin();
    expect(invite?.user).toBe('admin');
    const info = await client.inspectInvite(invite!.token);
    expect(info.second_factor).toBe('otp');
    expect(info.totp?.uri).toMatch(/^otpauth:\/\/totp\/.*secret=/);
    const parsed = URI.parse(info.totp!.uri);
    expect(parsed).toBeInstanceOf(TOTP);
    totp = parsed as TOTP;
    expect(totp.secret.base32).toBe(info.totp!.secret);
    // A wrong code does not consume the invite.
    const bad = await client
      .acceptInvite(invite!.token, { password: PASSWORD, otp: '000000' })
      .catch(failure);
    expect(bad).toBe('GH_ERR_SECOND_FACTOR_INVALID');
    await client.acceptInvite(invite!.token, { password: PASSWORD, otp: code() });
    // One use only.
    const again = await client
      .acceptInvite(invite!.token, { password: PASSWORD, otp: code() })
      .catch(failure);
    expect(again).toBe('GH_ERR_TOKEN_INVALID');
    expect(await t.gw.bootstrapAdmin()).toBeUndefined();
  });

  it('login needs the code, refuses a wrong one and a reused one, and issues certificates with the right one', async () => {
    clock.advance(30_000);
    const key = newTlsKey();
    expect(await client.login({ user: 'admin', password: PASSWORD }).catch(failure)).toBe(
      'GH_ERR_SECOND_FACTOR_REQUIRED',
    );
    expect(await client.login({ user: 'admin', password: PASSWORD, otp: '123456' }).catch(failure)).toBe(
      'GH_ERR_SECOND_FACTOR_INVALID',
    );
    const c = code();
    const res = await client.login({
      user: 'admin',
      password: PASSWORD,
      otp: c,
      tls_public_key: key.publicPem,
    });
    expect(res.user).toBe('admin');
    expect(res.tls_cert).toContain('BEGIN CERTIFICATE');
    // The same code again, still inside its 30 s window: refused.
    expect(await client.login({ user: 'admin', password: PASSWORD, otp: c }).catch(failure)).toBe(
      'GH_ERR_SECOND_FACTOR_INVALID',
    );
    const events = await t.gw.audit.search({ types: ['user.login'], user: 'admin', limit: 20 });
    const reasons = events.events.map((e) => (e.type === 'user.login' && !e.success ? e.reason : 'ok'));
    expect(reasons).toContain('second_factor_reused');
    expect(reasons).toContain('second_factor_invalid');
    expect(reasons).toContain('ok');
  });

  it('locks the account out with backoff after repeated failures, without revealing the password was right', async () => {
    await t.gw.admin.createUser({ name: 'bob', roles: ['access'], password: PASSWORD });
    for (let i = 0; i < 5; i++) {
      expect(await client.login({ user: 'bob', password: 'wrong password here' }).catch(failure)).toBe(
        'GH_ERR_BAD_CREDENTIALS',
      );
    }
    expect(await client.login({ user: 'bob', password: PASSWORD }).catch(failure)).toBe(
      'GH_ERR_LOGIN_BACKOFF',
    );
    clock.advance(61_000);
    // bob has no TOTP device yet (created with a password but never enrolled).
    expect(await client.login({ user: 'bob', password: PASSWORD, otp: '123456' }).catch(failure)).toBe(
      'GH_ERR_SECOND_FACTOR_NOT_ENROLLED',
    );
  });
});
