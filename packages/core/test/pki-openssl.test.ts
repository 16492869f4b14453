/**
 * X.509 certificates from CertificateAuthorities against real verifiers:
 * the openssl CLI, Node's TLS stack (mTLS both ways) and kubectl (Go's
 * crypto/x509, the strictest parser our users run).
 */

import { execFile } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import https from 'node:https';
import type net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { promisify } from 'node:util';
import { MemoryAuditLog } from '@gatehouse/audit/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryBackend } from '../src/backend/memory.js';
import { systemClock } from '../src/clock.js';
import { AesGcmSealer } from '../src/crypto/seal.js';
import type { Identity } from '../src/identity/types.js';
import { CertificateAuthorities } from '../src/pki/authority.js';
import { decodeIdentity, IDENTITY_EXTENSION_OID } from '../src/pki/x509.js';

const run = promisify(execFile);

let dir: string;
let cas: CertificateAuthorities;
let backend: MemoryBackend;
// Whole seconds: certificates carry second precision, and the decoded
// identity's expiry is capped by the certificate's notAfter.
const now = new Date(Math.floor(Date.now() / 1000) * 1000);
const until = new Date(now.getTime() + 3600e3);
const identity: Identity = {
  user: 'alice',
  roles: ['dev', 'ops'],
  traits: { logins: ['root'], kube_groups: ['developers'] },
  expires: until,
  mfaVerifiedAt: now,
  route: { kind: 'kube', cluster: 'prod' },
};

interface KeyFiles {
  key: string;
  publicPem: string;
  privatePem: string;
}

async function newKey(name: string): Promise<KeyFiles> {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const privatePem = privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
  const key = path.join(dir, `${name}.key`);
  await writeFile(key, privatePem);
  await chmod(key, 0o600);
  return { key, privatePem, publicPem: publicKey.export({ type: 'spki', format: 'pem' }) as string };
}

async function file(name: string, content: string): Promise<string> {
  const p = path.join(dir, name);
  await writeFile(p, content);
  return p;
}

async function openssl(args: string[]): Promise<{ code: number; out: string }> {
  try {
    const { stdout, stderr } = await run('openssl', args);
    return { code: 0, out: stdout + stderr };
  } catch (e) {
    const err = e as { code?: number; stdout?: string; stderr?: string };
    if (typeof err.code !== 'number') throw e;
    return { code: err.code, out: (err.stdout ?? '') + (err.stderr ?? '') };
  }
}

let userKey: KeyFiles;
let userCertFile: string;
let userPem: string;
let serverKey: KeyFiles;
let serverPem: string;
let dbKey: KeyFiles;
let dbPem: string;

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'gh-pki-x509-'));
  backend = new MemoryBackend({ sweepIntervalMs: 0 });
  cas = new CertificateAuthorities({
    backend,
    sealer: new AesGcmSealer(randomBytes(32)),
    clock: systemClock,
    clusterName: 'acme',
    audit: new MemoryAuditLog({ cluster: 'acme' }),
  });
  await cas.init();
  userKey = await newKey('user');
  userPem = (
    await cas.issueX509UserCert({
      publicKeyPem: userKey.publicPem,
      identity,
      notBefore: now,
      notAfter: until,
    })
  ).cert;
  userCertFile = await file('user.pem', userPem);
  serverKey = await newKey('server');
  serverPem = (
    await cas.issueX509ServerCert({
      publicKeyPem: serverKey.publicPem,
      commonName: 'gatehouse-proxy',
      dnsNames: ['localhost', 'kube.acme'],
      ipAddresses: ['127.0.0.1'],
      notBefore: now,
      notAfter: until,
    })
  ).cert;
  dbKey = await newKey('db');
  dbPem = (
    await cas.issueDbClientCert({
      publicKeyPem: dbKey.publicPem,
      dbUser: 'reader',
      notBefore: now,
      notAfter: until,
    })
  ).cert;
  await file('user-ca.pem', cas.export('x509'));
  await file('host-ca.pem', cas.export('x509', { type: 'host' }));
  await file('db-ca.pem', cas.export('postgres'));
});

afterAll(async () => {
  await backend?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('openssl', () => {
  it('verify accepts the user cert against export("x509") and rejects it against the host CA', async () => {
    const ok = await openssl([
      'verify',
      '-x509_strict',
      '-purpose',
      'sslclient',
      '-CAfile',
      path.join(dir, 'user-ca.pem'),
      userCertFile,
    ]);
    expect(ok.out).toContain(': OK');
    expect(ok.code).toBe(0);
    const bad = await openssl(['verify', '-CAfile', path.join(dir, 'host-ca.pem'), userCertFile]);
    expect(bad.code).not.toBe(0);
    expect(bad.out).toMatch(/unable to get local issuer certificate|signature failure/);
  });

  it('x509 -text shows the identity extension OID and its JSON', async () => {
    const { out, code } = await openssl(['x509', '-in', userCertFile, '-noout', '-text']);
    expect(code).toBe(0);
    expect(out).toContain(`${IDENTITY_EXTENSION_OID}: \n`);
    expect(out).toContain(
      `{"v":1,"user":"alice","roles":["dev","ops"],"traits":{"logins":["root"],"kube_groups":["developers"]},"expires":"${until.toISOString()}","mfa_verified_at":"${now.toISOString()}","route":{"kind":"kube","cluster":"prod"}}`,
    );
    expect(out).toMatch(/Subject: CN = alice, O = dev, O = ops/);
    expect(out).toMatch(/X509v3 Extended Key Usage: \n\s+TLS Web Client Authentication/);
    expect(out).toMatch(/Signature Algorithm: ecdsa-with-SHA256/);
  });

  it('the server cert verifies for its SANs only', async () => {
    const server = await file('server.pem', serverPem);
    const ca = path.join(dir, 'host-ca.pem');
    const base = ['verify', '-x509_strict', '-purpose', 'sslserver', '-CAfile', ca];
    expect((await openssl([...base, '-verify_hostname', 'localhost', server])).code).toBe(0);
    expect((await openssl([...base, '-verify_hostname', 'kube.acme', server])).code).toBe(0);
    expect((await openssl([...base, '-verify_ip', '127.0.0.1', server])).code).toBe(0);
    const wrongName = await openssl([...base, '-verify_hostname', 'evil.example', server]);
    expect(wrongName.code).not.toBe(0);
    expect(wrongName.out).toMatch(/hostname mismatch/);
    expect((await openssl([...base, '-verify_ip', '127.0.0.2', server])).code).not.toBe(0);
    // Not usable as a client cert: the EKU says serverAuth only.
    expect((await openssl(['verify', '-purpose', 'sslclient', '-CAfile', ca, server])).code).not.toBe(0);
  });

  it('the db client cert has subject CN=<db user> and chains to the db CA', async () => {
    const db = await file('db.pem', dbPem);
    const { out } = await openssl(['x509', '-in', db, '-noout', '-subject', '-nameopt', 'RFC2253']);
    expect(out.trim()).toBe('subject=O=acme,CN=reader');
    expect(
      (await openssl(['verify', '-purpose', 'sslclient', '-CAfile', path.join(dir, 'db-ca.pem'), db])).code,
    ).toBe(0);
    expect((await openssl(['verify', '-CAfile', path.join(dir, 'user-ca.pem'), db])).code).not.toBe(0);
  });
});

describe('Node TLS', () => {
  async function mtls(client: {
    key: string;
    cert: string;
  }): Promise<{ data: string; identity?: Identity; serverError?: string }> {
    const server = tls.createServer({
      key: serverKey.privatePem,
      cert: serverPem,
      ca: cas.trustedX509Pems('user'),
      requestCert: true,
      rejectUnauthorized: true,
    });
    let identity: Identity | undefined;
    let serverError: string | undefined;
    server.on('secureConnection', (s) => {
      identity = decodeIdentity(s.getPeerX509Certificate() ?? '');
      s.end('hello');
    });
    server.on('tlsClientError', (e) => {
      serverError = String(e);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const { port } = server.address() as net.AddressInfo;
    try {
      // With TLS 1.3 the server judges the client cert after the client's
      // handshake finished, so a refusal shows up as a close without data.
      const data = await new Promise<string>((resolve) => {
        const s = tls.connect({
          host: '127.0.0.1',
          port,
          servername: 'localhost',
          ca: cas.trustedX509Pems('host'),
          ...client,
        });
        let buf = '';
        s.on('data', (d) => {
          buf += d;
        });
        s.on('error', () => {});
        s.on('close', () => resolve(buf));
      });
      return { data, ...(identity ? { identity } : {}), ...(serverError ? { serverError } : {}) };
    } finally {
      server.close();
    }
  }

  it('completes mTLS with the server and user certs, and the server reads the identity', async () => {
    const r = await mtls({ key: userKey.privatePem, cert: userPem });
    expect(r.serverError).toBeUndefined();
    expect(r.data).toBe('hello');
    expect(r.identity).toEqual(identity);
  });

  it('the server refuses a client cert from another Gatehouse CA', async () => {
    const r = await mtls({ key: dbKey.privatePem, cert: dbPem });
    expect(r.data).toBe('');
    expect(r.identity).toBeUndefined();
    // Node reports the verification failure to the server as a failed handshake.
    expect(r.serverError).toMatch(/Error/);
  });
});

describe('kubectl (Go crypto/x509)', () => {
  // Regression: with the identity under 2.25.<128-bit UUID>, Go refused to
  // load the certificate at all ("x509: malformed extension OID field").
  it('loads the user cert, trusts export("kube") and presents the identity', async () => {
    const presented: Identity[] = [];
    const server = https.createServer(
      {
        key: serverKey.privatePem,
        cert: serverPem,
        ca: cas.trustedX509Pems('user'),
        requestCert: true,
        rejectUnauthorized: true,
      },
      (req, res) => {
        const peer = (req.socket as tls.TLSSocket).getPeerX509Certificate();
        if (peer) presented.push(decodeIdentity(peer));
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ major: '1', minor: '32', gitVersion: 'v1.32.0', platform: 'linux/amd64' }));
      },
    );
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const { port } = server.address() as net.AddressInfo;
    try {
      const kubeconfig = await file(
        'kubeconfig',
        JSON.stringify({
          apiVersion: 'v1',
          kind: 'Config',
          clusters: [
            {
              name: 'acme',
              cluster: {
                server: `https://localhost:${port}`,
                'certificate-authority': await file('kube-ca.pem', cas.export('kube')),
              },
            },
          ],
          users: [{ name: 'alice', user: { 'client-certificate': userCertFile, 'client-key': userKey.key } }],
          contexts: [{ name: 'acme', context: { cluster: 'acme', user: 'alice' } }],
          'current-context': 'acme',
        }),
      );
      const { stdout } = await run(
        'kubectl',
        ['--kubeconfig', kubeconfig, '--cache-dir', path.join(dir, 'kcache'), 'version', '-o', 'json'],
        {
          timeout: 30_000,
        },
      );
      expect(JSON.parse(stdout).serverVersion.gitVersion).toBe('v1.32.0');
      expect(presented.length).toBeGreaterThan(0);
      expect(presented[0]).toEqual(identity);
    } finally {
      server.close();
      server.closeAllConnections();
    }
  });
});
