import { generateKeyPairSync, randomBytes, verify, X509Certificate } from 'node:crypto';
import type { AuditEmitter, AuditEvent, AuditEventInput } from '@gatehouse/audit';
import { afterEach, describe, expect, it } from 'vitest';
import { MemoryBackend } from '../backend/memory.js';
import { ManualClock } from '../clock.js';
import { AesGcmSealer, type Sealer } from '../crypto/seal.js';
import { GatehouseError, isGatehouseError } from '../errors.js';
import type { Identity } from '../identity/types.js';
import { BACKDATE_MS, CertificateAuthorities } from './authority.js';
import { certPermissions } from './ssh-userauth.js';
import {
  ed25519PublicKeyToSsh,
  SSH_SESSION_ID_EXTENSION,
  SSH_SESSION_POLICY_EXTENSION,
  sshCertificateIdentity,
  verifySshCertificate,
} from './sshcert.js';
import type { CaRecord } from './types.js';
import { decodeIdentity, spkiPin } from './x509.js';

/** The real AES-GCM sealer, recording the AADs it was asked to bind. */
class RecordingSealer implements Sealer {
  readonly #inner = new AesGcmSealer(randomBytes(32));
  aads: string[] = [];
  seal(plain: string, aad: string): string {
    this.aads.push(aad);
    return this.#inner.seal(plain, aad);
  }
  open(sealed: string, aad: string): string {
    return this.#inner.open(sealed, aad);
  }
}

class TestAudit implements AuditEmitter {
  events: AuditEventInput[] = [];
  fail = false;
  async emit(e: AuditEventInput): Promise<AuditEvent> {
    if (this.fail) throw new GatehouseError('GH_ERR_AUDIT_UNAVAILABLE', 'audit down');
    this.events.push(e);
    return e as unknown as AuditEvent;
  }
  async record(e: AuditEventInput): Promise<void> {
    await this.emit(e).catch(() => undefined);
  }
  available(): boolean {
    return !this.fail;
  }
}

const backends: MemoryBackend[] = [];
afterEach(async () => {
  for (const b of backends.splice(0)) await b.close();
});

function setup(
  over: { backend?: MemoryBackend; clusterName?: string; clock?: ManualClock; sealer?: RecordingSealer } = {},
) {
  const clock = over.clock ?? new ManualClock(new Date('2026-03-01T12:00:00Z'));
  const backend = over.backend ?? new MemoryBackend({ clock, sweepIntervalMs: 0 });
  backends.push(backend);
  const audit = new TestAudit();
  const sealer = over.sealer ?? new RecordingSealer();
  const cas = new CertificateAuthorities({
    backend,
    sealer,
    clock,
    clusterName: over.clusterName ?? 'acme',
    audit,
  });
  return { cas, backend, audit, sealer, clock };
}

/** Another process on the same backend with the same secrets key. */
function reopen(backend: MemoryBackend, sealer: Sealer): CertificateAuthorities {
  return new CertificateAuthorities({
    backend,
    sealer,
    clock: new ManualClock(),
    clusterName: 'acme',
    audit: new TestAudit(),
  });
}

const identity = (expires: Date): Identity => ({
  user: 'alice',
  roles: ['dev'],
  traits: { logins: ['root'] },
  expires,
  route: { kind: 'kube', cluster: 'prod' },
});
const sshPub = () => ed25519PublicKeyToSsh(generateKeyPairSync('ed25519').publicKey);
const ecPem = () =>
  generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({
    type: 'spki',
    format: 'pem',
  }) as string;

describe('CertificateAuthorities.init', () => {
  it('creates user, host and db CAs once, sealed with per-key AADs, and audits it', async () => {
    const { cas, backend, audit, sealer } = setup();
    await cas.init();
    expect(audit.events.map((e) => e.type === 'ca.create' && e.ca)).toEqual(['user', 'host', 'db', 'audit']);
    // The audit key (signs the audit chain's file heads) is stored like the others: sealed.
    const auditRec = await backend.get('cas/audit');
    expect(auditRec?.value).not.toMatch(/PRIVATE KEY/);
    const auditKeyId = cas.auditSigner().keyId;
    expect(sealer.aads).toContain(`ca/audit/${auditKeyId}/ed25519`);
    const data = Buffer.from('head');
    const pub = cas.auditPublicKeys()[auditKeyId] ?? '';
    expect(verify(null, data, pub, cas.auditSigner().sign(data))).toBe(true);
    expect(verify(null, Buffer.from('other'), pub, cas.auditSigner().sign(data))).toBe(false);
    for (const name of ['user', 'host', 'db'] as const) {
      const item = await backend.get(`cas/${name}`);
      const rec = JSON.parse(item?.value ?? 'null') as CaRecord;
      expect(rec.name).toBe(name);
      expect(rec.clusterName).toBe('acme');
      expect(rec.keys).toHaveLength(1);
      const k = rec.keys[0];
      expect(item?.value).not.toMatch(/PRIVATE KEY/);
      expect(sealer.aads).toContain(`ca/${name}/${k?.id}/ssh`);
      expect(sealer.aads).toContain(`ca/${name}/${k?.id}/x509`);
      expect(cas.get(name).map((x) => x.id)).toEqual([k?.id]);
      expect(cas.signingKey(name).sshPublicKey).toBe(k?.sshPublicKey);
      const x = new X509Certificate(k?.x509CertPem ?? '');
      expect(x.subject).toBe(`CN=Gatehouse ${name} CA\nO=acme`);
      expect(x.ca).toBe(true);
      const years = (new Date(x.validTo).getTime() - new Date(x.validFrom).getTime()) / (365.25 * 86400e3);
      expect(years).toBeGreaterThan(9.99);
    }
  });

  it('a second instance loads the same keys and creates nothing', async () => {
    const first = setup();
    await first.cas.init();
    const second = setup({ backend: first.backend, sealer: first.sealer });
    await second.cas.init();
    expect(second.audit.events).toEqual([]);
    expect(second.cas.get('user')).toEqual(first.cas.get('user'));
  });

  it('two instances starting at once end with one CA each (create race)', async () => {
    const a = setup();
    const b = setup({ backend: a.backend, sealer: a.sealer });
    const create = a.backend.create.bind(a.backend);
    let lost = 0;
    a.backend.create = async (...args: Parameters<MemoryBackend['create']>) =>
      create(...args).catch((e: unknown) => {
        if (isGatehouseError(e, 'GH_ERR_ALREADY_EXISTS')) lost++;
        throw e;
      });
    await Promise.all([a.cas.init(), b.cas.init()]);
    // Both saw no CA and generated one; the loser of each create reloaded the winner's.
    // The audit key may race too, or one instance may find the other's already stored.
    expect(lost).toBeGreaterThanOrEqual(3);
    for (const name of ['user', 'host', 'db'] as const) {
      expect(a.cas.signingKey(name).id).toBe(b.cas.signingKey(name).id);
    }
    expect(a.cas.auditSigner().keyId).toBe(b.cas.auditSigner().keyId);
    expect(a.audit.events.length + b.audit.events.length).toBe(4);
  });

  it('refuses a backend that belongs to another cluster, and a tampered key', async () => {
    const a = setup();
    const sealer = a.sealer;
    await a.cas.init();
    const other = setup({ backend: a.backend, clusterName: 'other', sealer: a.sealer });
    await expect(other.cas.init()).rejects.toMatchObject({ code: 'GH_ERR_CONFIG_INVALID' });
    const rec = JSON.parse((await a.backend.get('cas/user'))?.value ?? '') as CaRecord;
    const k = rec.keys[0] as CaRecord['keys'][number];
    // Swap in another key's sealed blob: the AAD no longer matches.
    await a.backend.put(
      'cas/user',
      JSON.stringify({ ...rec, keys: [{ ...k, sealedSshPrivateKey: k.sealedX509PrivateKey }] }),
    );
    await expect(reopen(a.backend, sealer).init()).rejects.toMatchObject({ code: 'GH_ERR_INTERNAL' });
    await a.backend.put('cas/user', JSON.stringify({ ...rec, keys: [] }));
    await expect(reopen(a.backend, sealer).init()).rejects.toThrow(/malformed/);
  });

  it('refuses to issue before init', async () => {
    const { cas } = setup();
    expect(() => cas.get('user')).toThrow(/not loaded/);
  });
});

describe('issuing', () => {
  it('SSH user certs carry key id, principals, extensions, identity and a backdated start', async () => {
    const { cas, audit, clock } = setup();
    await cas.init();
    const now = clock.now();
    const until = new Date(now.getTime() + 8 * 3600e3);
    const out = await cas.issueSshUserCert({
      publicKey: sshPub(),
      keyId: 'alice',
      principals: ['root', 'alice'],
      validAfter: now,
      validBefore: until,
      permitPortForwarding: true,
      sourceAddress: '10.0.0.0/8',
      identity: identity(until),
    });
    const c = verifySshCertificate(out.cert, [cas.signingKey('user').sshPublicKey], now, {
      clientAddress: '10.1.1.1',
    });
    expect(c.keyId).toBe('alice');
    expect(c.principals).toEqual(['root', 'alice']);
    expect(c.validAfter.getTime()).toBe(now.getTime() - BACKDATE_MS);
    expect(c.validBefore.getTime()).toBe(until.getTime());
    expect(Object.keys(c.extensions)).toEqual([
      'gatehouse-identity@gatehouse.dev',
      'gatehouse-session-policy@gatehouse.dev',
      'permit-port-forwarding',
      'permit-pty',
    ]);
    expect(c.criticalOptions).toEqual({ 'source-address': '10.0.0.0/8' });
    expect(sshCertificateIdentity(c)).toEqual(identity(until));
    expect(out.serial).toBe(c.serial.toString());
    expect(out.expires).toEqual(until);
    expect(audit.events.at(-1)).toEqual({
      type: 'cert.create',
      cert_type: 'ssh-user',
      user: 'alice',
      identity: 'alice',
      serial: out.serial,
      principals: ['root', 'alice'],
      roles: ['dev'],
      route: { kind: 'kube', cluster: 'prod' },
      expires: until.toISOString(),
    });
  });

  it('SSH user certs always carry the session policy the node enforces; a node refuses a certificate without one', async () => {
    const { cas, clock } = setup();
    await cas.init();
    const now = clock.now();
    const key = sshPub();
    const issue = (sessionPolicy: Parameters<typeof cas.issueSshUserCert>[0]['sessionPolicy']) =>
      cas.issueSshUserCert({
        publicKey: key,
        keyId: 'alice',
        principals: ['root'],
        validAfter: now,
        validBefore: new Date(now.getTime() + 60_000),
        ...(sessionPolicy ? { sessionPolicy } : {}),
      });
    const parse = async (p: Parameters<typeof issue>[0]) =>
      certPermissions(
        verifySshCertificate((await issue(p)).cert, [cas.signingKey('user').sshPublicKey], now),
      );
    const policy = {
      enhancedRecording: ['command'],
      restrictNetwork: { deny: ['10.0.0.0/8'], allow: ['::1/128'] },
    };
    expect((await parse(policy)).sessionPolicy).toEqual(policy);
    const empty = { enhancedRecording: [], restrictNetwork: { deny: [], allow: [] } };
    // Written even when empty (and when the caller passes none), so a node can tell a certificate
    // that predates session policies (refused) from one whose roles ask for nothing.
    for (const p of [empty, undefined]) {
      const c = verifySshCertificate((await issue(p)).cert, [cas.signingKey('user').sshPublicKey], now);
      expect(Object.keys(c.extensions).sort()).toEqual([SSH_SESSION_POLICY_EXTENSION, 'permit-pty']);
      expect(certPermissions(c).sessionPolicy).toEqual(empty);
    }
    const c = verifySshCertificate((await issue(empty)).cert, [cas.signingKey('user').sshPublicKey], now);
    delete c.extensions[SSH_SESSION_POLICY_EXTENSION];
    expect(() => certPermissions(c)).toThrow(/carries no session policy/);
    // A policy the node cannot read refuses the login rather than dropping restrictions.
    c.extensions[SSH_SESSION_POLICY_EXTENSION] = '{"restrict_network":{"deny":"10.0.0.0/8"}}';
    expect(() => certPermissions(c)).toThrow(/malformed/);
  });

  it("an upstream certificate names the proxy's session; a malformed id is refused on both sides", async () => {
    const { cas, clock, audit } = setup();
    await cas.init();
    const now = clock.now();
    const issue = (sessionId: string) =>
      cas.issueSshUserCert({
        publicKey: sshPub(),
        keyId: 'alice',
        principals: ['root'],
        validAfter: now,
        validBefore: new Date(now.getTime() + 60_000),
        sessionId,
      });
    const id = '3f1c2d9e-0b7a-4f7e-9a51-6b1d2c3e4f50';
    const c = verifySshCertificate((await issue(id)).cert, [cas.signingKey('user').sshPublicKey], now);
    expect(certPermissions(c).sessionId).toBe(id);
    expect(audit.events.at(-1)).toMatchObject({ type: 'cert.create', cert_type: 'ssh-user', session_id: id });
    await expect(issue('a b')).rejects.toThrow(/session id/);
    c.extensions[SSH_SESSION_ID_EXTENSION] = '../x';
    expect(() => certPermissions(c)).toThrow(/session id is malformed/);
  });

  it('SSH host certs are host type, signed by the host CA', async () => {
    const { cas, audit, clock } = setup();
    await cas.init();
    const now = clock.now();
    const out = await cas.issueSshHostCert({
      publicKey: sshPub(),
      keyId: 'node1',
      principals: ['node1', '127.0.0.1'],
      validAfter: now,
      validBefore: new Date(now.getTime() + 3600e3),
    });
    const c = verifySshCertificate(out.cert, [cas.signingKey('host').sshPublicKey], now, { type: 'host' });
    expect(c.extensions).toEqual({});
    expect(() =>
      verifySshCertificate(out.cert, [cas.signingKey('user').sshPublicKey], now, { type: 'host' }),
    ).toThrow(/trusted/);
    expect(audit.events.at(-1)).toMatchObject({
      type: 'cert.create',
      cert_type: 'ssh-host',
      identity: 'node1',
    });
  });

  it('rejects requests that would grant too much or are inconsistent', async () => {
    const { cas, clock } = setup();
    await cas.init();
    const now = clock.now();
    const base = {
      publicKey: sshPub(),
      keyId: 'alice',
      principals: ['root'],
      validAfter: now,
      validBefore: new Date(now.getTime() + 1000),
    };
    const code = async (p: Promise<unknown>) =>
      p.then(
        () => 'ok',
        (e) => (isGatehouseError(e) ? e.code : String(e)),
      );
    expect(await code(cas.issueSshUserCert({ ...base, principals: [] }))).toBe('GH_ERR_VALIDATION');
    expect(await code(cas.issueSshUserCert({ ...base, validBefore: now }))).toBe('GH_ERR_VALIDATION');
    expect(await code(cas.issueSshUserCert({ ...base, keyId: 'bob', identity: identity(now) }))).toBe(
      'GH_ERR_VALIDATION',
    );
    expect(await code(cas.issueSshUserCert({ ...base, sourceAddress: 'nowhere' }))).toBe(
      'GH_ERR_CERT_INVALID',
    );
    expect(await code(cas.issueSshUserCert(base))).toBe('ok');
  });

  it('X.509 user, server and db certs chain to their CAs', async () => {
    const { cas, audit, clock } = setup();
    await cas.init();
    const now = clock.now();
    const until = new Date(now.getTime() + 3600e3);
    const user = await cas.issueX509UserCert({
      publicKeyPem: ecPem(),
      identity: identity(until),
      notBefore: now,
      notAfter: until,
    });
    const server = await cas.issueX509ServerCert({
      publicKeyPem: ecPem(),
      commonName: 'proxy',
      dnsNames: ['localhost'],
      ipAddresses: ['127.0.0.1'],
      notBefore: now,
      notAfter: until,
    });
    const db = await cas.issueDbClientCert({
      publicKeyPem: ecPem(),
      dbUser: 'reader',
      notBefore: now,
      notAfter: until,
    });
    const ca = (n: 'user' | 'host' | 'db') => new X509Certificate(cas.signingKey(n).x509CertPem);
    expect(new X509Certificate(user.cert).checkIssued(ca('user'))).toBe(true);
    expect(new X509Certificate(user.cert).verify(ca('user').publicKey)).toBe(true);
    expect(new X509Certificate(user.cert).verify(ca('host').publicKey)).toBe(false);
    expect(new X509Certificate(server.cert).verify(ca('host').publicKey)).toBe(true);
    expect(new X509Certificate(db.cert).verify(ca('db').publicKey)).toBe(true);
    expect(new Date(new X509Certificate(user.cert).validFrom).getTime()).toBe(now.getTime() - BACKDATE_MS);
    expect(decodeIdentity(user.cert)).toEqual(identity(until));
    expect(new X509Certificate(db.cert).subject).toBe('CN=reader\nO=acme');
    expect(
      audit.events.slice(-3).map((e) => e.type === 'cert.create' && [e.cert_type, e.identity, e.serial]),
    ).toEqual([
      ['x509-user', 'alice', user.serial],
      ['x509-server', 'proxy', server.serial],
      ['x509-db', 'reader', db.serial],
    ]);
  });

  it('hands out no certificate when the audit event cannot be kept', async () => {
    const { cas, audit, clock } = setup();
    await cas.init();
    audit.fail = true;
    const now = clock.now();
    await expect(
      cas.issueDbClientCert({
        publicKeyPem: ecPem(),
        dbUser: 'r',
        notBefore: now,
        notAfter: new Date(now.getTime() + 1000),
      }),
    ).rejects.toMatchObject({ code: 'GH_ERR_AUDIT_UNAVAILABLE' });
  });
});

describe('export and pins', () => {
  it('prints only public trust material in each format', async () => {
    const { cas } = setup();
    await cas.init();
    const user = cas.signingKey('user');
    const host = cas.signingKey('host');
    const db = cas.signingKey('db');
    expect(cas.export('sshd')).toBe(`${user.sshPublicKey}\n`);
    expect(cas.export('known_hosts')).toBe(`@cert-authority * ${host.sshPublicKey}\n`);
    expect(cas.export('known_hosts', { hosts: '*.example.com,10.0.0.*' })).toBe(
      `@cert-authority *.example.com,10.0.0.* ${host.sshPublicKey}\n`,
    );
    expect(() => cas.export('known_hosts', { hosts: 'a b' })).toThrow(/spaces/);
    expect(cas.export('x509')).toBe(user.x509CertPem);
    expect(cas.export('x509', { type: 'host' })).toBe(host.x509CertPem);
    expect(cas.export('postgres')).toBe(db.x509CertPem);
    expect(cas.export('mariadb')).toBe(db.x509CertPem);
    expect(cas.export('kube')).toBe(host.x509CertPem);
    expect(cas.trustedX509Pems('db')).toEqual([db.x509CertPem]);
    for (const f of ['sshd', 'known_hosts', 'x509', 'postgres', 'mariadb', 'kube'] as const) {
      expect(cas.export(f)).not.toMatch(/PRIVATE/);
    }
  });

  it('caPin is the SPKI pin of the host CA', async () => {
    const { cas } = setup();
    await cas.init();
    expect(cas.caPin()).toBe(spkiPin(cas.signingKey('host').x509CertPem));
    expect(cas.caPin()).not.toBe(spkiPin(cas.signingKey('user').x509CertPem));
    expect(cas.caPin()).toMatch(/^sha256:[0-9a-f]{64}$/);
  });
});

describe('CertificateAuthorities.rotate', () => {
  const hour = 3_600_000;
  /** Which key id signed a fresh SSH user, SSH host, X.509 server and db client certificate. */
  async function signers(cas: CertificateAuthorities, clock: ManualClock) {
    const now = clock.now();
    const until = new Date(now.getTime() + hour);
    const byKey = (name: 'user' | 'host' | 'db', verifyWith: (k: string) => boolean) =>
      cas.get(name).find((k) => verifyWith(k.x509CertPem) || verifyWith(k.sshPublicKey))?.id;
    const userSsh = await cas.issueSshUserCert({
      publicKey: sshPub(),
      keyId: 'alice',
      principals: ['root'],
      validAfter: now,
      validBefore: until,
    });
    const hostSsh = await cas.issueSshHostCert({
      publicKey: sshPub(),
      keyId: 'n1',
      principals: ['n1'],
      validAfter: now,
      validBefore: until,
    });
    const server = await cas.issueX509ServerCert({
      publicKeyPem: ecPem(),
      commonName: 'proxy',
      dnsNames: ['proxy'],
      ipAddresses: [],
      notBefore: now,
      notAfter: until,
    });
    const db = await cas.issueDbClientCert({
      publicKeyPem: ecPem(),
      dbUser: 'reader',
      notBefore: now,
      notAfter: until,
    });
    const sshBy =
      (cert: string, type: 'user' | 'host' = 'user') =>
      (k: string) => {
        if (!k.startsWith('ssh-')) return false;
        try {
          verifySshCertificate(cert, [k], now, { type });
          return true;
        } catch {
          // Not this key's: the other one is tried.
          return false;
        }
      };
    const x509By = (pem: string) => (k: string) =>
      k.startsWith('-----') && new X509Certificate(pem).verify(new X509Certificate(k).publicKey);
    return {
      user: byKey('user', sshBy(userSsh.cert)),
      host: byKey('host', sshBy(hostSsh.cert, 'host')),
      server: byKey('host', x509By(server.cert)),
      db: byKey('db', x509By(db.cert)),
    };
  }

  it('walks init, update_clients, update_servers, standby: both keys trusted until standby, signing switches by role', async () => {
    const { cas, audit, clock } = setup();
    await cas.init();
    const old = { user: cas.get('user')[0]!.id, host: cas.get('host')[0]!.id, db: cas.get('db')[0]!.id };
    const changed: string[] = [];
    cas.onChange((n) => changed.push(n));

    for (const type of ['user', 'host', 'db'] as const)
      await cas.rotate(type, { phase: 'init', actor: 'root' });
    const fresh = { user: cas.get('user')[0]!.id, host: cas.get('host')[0]!.id, db: cas.get('db')[0]!.id };
    expect(cas.get('user').map((k) => k.id)).toEqual([fresh.user, old.user]);
    expect(fresh.user).not.toBe(old.user);
    expect(await signers(cas, clock)).toEqual({
      user: old.user,
      host: old.host,
      server: old.host,
      db: old.db,
    });

    for (const type of ['user', 'host', 'db'] as const) await cas.rotate(type, { phase: 'update_clients' });
    expect(await signers(cas, clock)).toEqual({
      user: fresh.user,
      host: old.host,
      server: old.host,
      db: fresh.db,
    });

    for (const type of ['user', 'host', 'db'] as const) await cas.rotate(type, { phase: 'update_servers' });
    expect(await signers(cas, clock)).toEqual({
      user: fresh.user,
      host: fresh.host,
      server: fresh.host,
      db: fresh.db,
    });
    expect(cas.get('host')).toHaveLength(2);

    for (const type of ['user', 'host', 'db'] as const) await cas.rotate(type, { phase: 'standby' });
    expect(cas.get('user').map((k) => k.id)).toEqual([fresh.user]);
    expect(cas.get('host').map((k) => k.id)).toEqual([fresh.host]);
    expect(cas.status().map((s) => [s.type, s.phase, s.last_result, s.keys.length])).toEqual([
      ['user', 'standby', 'completed', 1],
      ['host', 'standby', 'completed', 1],
      ['db', 'standby', 'completed', 1],
    ]);
    expect(changed).toHaveLength(12);

    const rotations = audit.events.filter((e) => e.type === 'ca.rotate');
    expect(rotations.map((e) => e.type === 'ca.rotate' && `${e.ca}:${e.previous_phase}>${e.phase}`)).toEqual([
      'user:standby>init',
      'host:standby>init',
      'db:standby>init',
      'user:init>update_clients',
      'host:init>update_clients',
      'db:init>update_clients',
      'user:update_clients>update_servers',
      'host:update_clients>update_servers',
      'db:update_clients>update_servers',
      'user:update_servers>standby',
      'host:update_servers>standby',
      'db:update_servers>standby',
    ]);
    const first = rotations[0]!;
    expect(first.type === 'ca.rotate' && first.user).toBe('root');
    expect(first.type === 'ca.rotate' && first.old_key?.id).toBe(old.user);
    expect(first.type === 'ca.rotate' && first.new_key?.ssh_fingerprint).toMatch(
      /^SHA256:[A-Za-z0-9+/]{43}$/,
    );
    expect(first.type === 'ca.rotate' && first.new_key?.x509_fingerprint).toMatch(/^sha256:[0-9a-f]{64}$/);
  });

  it('exports both keys during a rotation, each PEM whole (a glued bundle was unreadable to OpenSSL)', async () => {
    const { cas } = setup();
    await cas.init();
    await cas.rotate('db', { phase: 'init' });
    const bundle = cas.export('postgres');
    expect(bundle).not.toContain('----------');
    const pems = bundle.match(/-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g) ?? [];
    expect(pems.map((p) => spkiPin(p))).toEqual(cas.get('db').map((k) => spkiPin(k.x509CertPem)));
    expect(cas.export('sshd', { type: 'db' }).trim().split('\n')).toHaveLength(2);
  });

  it('refuses an old-CA certificate after standby', async () => {
    const { cas, clock } = setup();
    await cas.init();
    const now = clock.now();
    const oldCert = await cas.issueSshUserCert({
      publicKey: sshPub(),
      keyId: 'alice',
      principals: ['root'],
      validAfter: now,
      validBefore: new Date(now.getTime() + hour),
    });
    for (const phase of ['init', 'update_clients', 'update_servers'] as const) {
      await cas.rotate('user', { phase });
      expect(() =>
        verifySshCertificate(
          oldCert.cert,
          cas.get('user').map((k) => k.sshPublicKey),
          now,
        ),
      ).not.toThrow();
    }
    await cas.rotate('user', { phase: 'standby' });
    expect(() =>
      verifySshCertificate(
        oldCert.cert,
        cas.get('user').map((k) => k.sshPublicKey),
        now,
      ),
    ).toThrow(/not signed by a trusted Gatehouse CA/);
  });

  it('rolls back mid-phase: the old key signs again, and standby then drops the new one', async () => {
    const { cas, clock } = setup();
    await cas.init();
    const old = cas.get('user')[0]!.id;
    await cas.rotate('user', { phase: 'init' });
    await cas.rotate('user', { phase: 'update_clients' });
    const fresh = cas.get('user')[0]!.id;
    expect((await signers(cas, clock)).user).toBe(fresh);
    await cas.rotate('user', { phase: 'rollback' });
    expect((await signers(cas, clock)).user).toBe(old);
    expect(cas.get('user')).toHaveLength(2);
    await cas.rotate('user', { phase: 'standby' });
    expect(cas.get('user').map((k) => k.id)).toEqual([old]);
    expect(cas.status()[0]!.last_result).toBe('rolled_back');
  });

  it('refuses a rotation started twice, rollback after standby, and skipping a phase, with GH_ERR_CA_ROTATION', async () => {
    const { cas } = setup();
    await cas.init();
    const code = async (p: Promise<unknown>) =>
      p.then(
        () => 'ok',
        (e: unknown) => (e as GatehouseError).code,
      );
    expect(await code(cas.rotate('host', { phase: 'rollback' }))).toBe('GH_ERR_CA_ROTATION');
    expect(await code(cas.rotate('host', { phase: 'update_servers' }))).toBe('GH_ERR_CA_ROTATION');
    await cas.rotate('host');
    await expect(cas.rotate('host')).rejects.toThrow(/already in progress \(phase init\)/);
    expect(await code(cas.rotate('host', { phase: 'update_servers' }))).toBe('GH_ERR_CA_ROTATION');
    await cas.rotate('host', { phase: 'update_clients' });
    await cas.rotate('host', { phase: 'update_servers' });
    await cas.rotate('host', { phase: 'standby' });
    await expect(cas.rotate('host', { phase: 'rollback' })).rejects.toThrow(/nothing to roll back/);
    expect(cas.get('host')).toHaveLength(1);
  });

  it('a rotation started by two processes at once: one wins, the other gets GH_ERR_CA_ROTATION', async () => {
    const { cas, backend, sealer } = setup();
    await cas.init();
    const other = reopen(backend, sealer);
    await other.init();
    const results = await Promise.allSettled([cas.rotate('db'), other.rotate('db')]);
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    const lost = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
    expect(isGatehouseError(lost.reason, 'GH_ERR_CA_ROTATION')).toBe(true);
  });

  it('resumes after a restart: the phase and both keys come from the backend, and automatic mode moves on when due', async () => {
    const { cas, backend, sealer, clock } = setup();
    await cas.init();
    await cas.rotate('user', { graceMs: 3 * hour });
    expect(cas.status()[0]).toMatchObject({ phase: 'init', mode: 'auto', grace: '3h' });
    const restarted = new CertificateAuthorities({
      backend,
      sealer,
      clock,
      clusterName: 'acme',
      audit: new TestAudit(),
    });
    await restarted.init();
    expect(restarted.status()[0]).toMatchObject({ phase: 'init', mode: 'auto' });
    expect(restarted.get('user').map((k) => k.id)).toEqual(cas.get('user').map((k) => k.id));
    expect(await restarted.advanceDue()).toEqual([]);
    clock.advance(hour);
    expect(await restarted.advanceDue()).toEqual(['user']);
    expect(restarted.status()[0]!.phase).toBe('update_clients');
    // The first process sees the step at its next reload.
    expect(await cas.reload()).toEqual(['user']);
    expect(cas.status()[0]!.phase).toBe('update_clients');
    clock.advance(hour);
    await restarted.advanceDue();
    clock.advance(hour);
    await restarted.advanceDue();
    expect(restarted.status()[0]).toMatchObject({ phase: 'standby', last_result: 'completed' });
    expect(restarted.get('user')).toHaveLength(1);
    expect(restarted.nextDue()).toBeUndefined();
  });
});
