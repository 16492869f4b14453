import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type AdapterContext,
  CertificateAuthorities,
  ClientTicket,
  Grant,
  isGatehouseError,
  parseSshCertificate,
} from '../src/index.js';
import { startGateway, type TestGateway } from './helpers.js';

/**
 * DESIGN.md: adapters get upstream credentials only in exchange for a
 * Grant, never a CA. These tests hold the adapter's view (AdapterContext)
 * to that: nothing reachable from it signs a user certificate without a
 * Grant (or a ticket core made).
 */
describe('credentials only for a Grant', () => {
  let t: TestGateway;
  let ctx: AdapterContext;
  let dir: string;
  let publicKey: string;

  beforeAll(async () => {
    t = await startGateway();
    t.gw.use({
      name: 'spy',
      register(c) {
        ctx = c;
      },
    });
    await t.gw.ready();
    await t.gw.admin.createUser({ name: 'ann', roles: ['access'], traits: { logins: ['ubuntu'] } });
    dir = mkdtempSync(join(tmpdir(), 'gh-cred-'));
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'k')]);
    publicKey = execFileSync('cat', [join(dir, 'k.pub')], { encoding: 'utf8' }).trim();
  });

  afterAll(async () => {
    await t?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('no CertificateAuthorities is reachable from what an adapter is given', () => {
    const seen = new Set<unknown>();
    const found: string[] = [];
    // Everything reachable through public properties, as an adapter could walk it.
    const walk = (v: unknown, path: string, depth: number) => {
      if (typeof v !== 'object' || v === null || seen.has(v) || depth > 4) return;
      seen.add(v);
      if (v instanceof CertificateAuthorities) found.push(path);
      for (const k of Reflect.ownKeys(v)) {
        let child: unknown;
        try {
          child = (v as Record<PropertyKey, unknown>)[k];
        } catch (err) {
          // A getter that needs a live state is not a way in either; say which one it was.
          child = err;
        }
        walk(child, `${path}.${String(k)}`, depth + 1);
      }
    };
    walk(ctx, 'ctx', 0);
    expect(found).toEqual([]);
    expect(Object.keys(ctx)).not.toContain('authorities');
  });

  it('a look-alike grant or ticket gets nothing; Grant and ClientTicket cannot be made outside core', async () => {
    const forged = {
      sessionId: 'x',
      identity: { user: 'ann', roles: ['access'], traits: {}, expires: new Date(Date.now() + 3600e3) },
      target: { kind: 'node', name: 'web1', labels: {}, login: 'root' },
      expires: new Date(Date.now() + 3600e3),
      options: { permitPty: true, portForwarding: true },
      roles: ['access'],
    };
    const refusal = await Promise.resolve()
      .then(() => ctx.credentials.sshUserCertForGrant(forged as never, publicKey))
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    expect(isGatehouseError(refusal, 'GH_ERR_ACCESS_DENIED')).toBe(true);
    const ticket = await Promise.resolve()
      .then(() =>
        ctx.credentials.sshClientCert({ identity: forged.identity, login: 'root' } as never, publicKey),
      )
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    expect(isGatehouseError(ticket, 'GH_ERR_ACCESS_DENIED')).toBe(true);
    expect(
      () => new (Grant as unknown as new (s: symbol, f: unknown) => unknown)(Symbol('x'), forged),
    ).toThrow(/only be created by the Authorizer/);
    expect(() => new (ClientTicket as unknown as new (s: symbol) => unknown)(Symbol('x'))).toThrow(
      /only be created by core/,
    );
  });

  it('a real grant gets a certificate for its login only, ending no later than the grant', async () => {
    const user = (await t.gw.users.get('ann'))!;
    const grant = await ctx.authorizer.authorize(
      {
        user: 'ann',
        userId: user.id,
        roles: ['access'],
        traits: { logins: ['ubuntu'] },
        expires: new Date(Date.now() + 3600e3),
      },
      { kind: 'node', name: 'web1', labels: {}, login: 'ubuntu' },
      { remoteAddr: '127.0.0.1' },
    );
    const issued = await ctx.credentials.sshUserCertForGrant(grant, publicKey);
    const cert = parseSshCertificate(issued.cert);
    // The login, and the proxy-only form an agentless node maps it from (nodes configure).
    expect(cert.principals).toEqual(['ubuntu', 'gatehouse-proxy:ubuntu']);
    expect(cert.keyId).toBe('ann');
    expect(cert.validBefore.getTime()).toBeLessThanOrEqual(grant.expires.getTime());
    // The access role allows ssh -A: the node's sshd honours it only with this extension.
    expect(grant.options.agentForwarding).toBe(true);
    expect(Object.keys(cert.extensions)).toContain('permit-agent-forwarding');
    // ssh-keygen reads it as a user certificate for that one principal.
    writeFileSync(join(dir, 'k-cert.pub'), `${issued.cert}\n`);
    const shown = execFileSync('ssh-keygen', ['-L', '-f', join(dir, 'k-cert.pub')], { encoding: 'utf8' });
    expect(shown).toMatch(/Principals:\s*\n\s+ubuntu\s*\n/);
  });
});
