import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GatehouseError } from '../errors.js';
import { caPinOf, fetchPinnedCa, normalizePin } from './pin.js';

const openssl = (dir: string, ...args: string[]) =>
  execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });

interface PkiOpts {
  caSubject?: string;
  /** Hex subject key id to claim for the CA (an impostor copies the real one). */
  caSkid?: string;
  san?: string;
}

/** A CA and a server cert signed by it, made by the real openssl. */
function makePki(dir: string, name: string, o: PkiOpts = {}) {
  const subj = o.caSubject ?? `/CN=${name} host CA`;
  const skid = o.caSkid ? ['-addext', `subjectKeyIdentifier=${o.caSkid}`] : [];
  openssl(dir, 'ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', `${name}-ca.key`);
  openssl(
    dir,
    'req',
    '-x509',
    '-new',
    '-key',
    `${name}-ca.key`,
    '-subj',
    subj,
    ...skid,
    '-days',
    '2',
    '-out',
    `${name}-ca.crt`,
  );
  openssl(dir, 'ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', `${name}-srv.key`);
  openssl(dir, 'req', '-new', '-key', `${name}-srv.key`, '-subj', '/CN=proxy', '-out', `${name}-srv.csr`);
  const san = o.san ?? 'IP:127.0.0.1,DNS:localhost';
  writeFileSync(join(dir, `${name}-ext.cnf`), `subjectAltName=${san}\nbasicConstraints=CA:FALSE\n`);
  openssl(
    dir,
    'x509',
    '-req',
    '-in',
    `${name}-srv.csr`,
    '-CA',
    `${name}-ca.crt`,
    '-CAkey',
    `${name}-ca.key`,
    '-CAcreateserial',
    '-days',
    '1',
    '-extfile',
    `${name}-ext.cnf`,
    '-out',
    `${name}-srv.crt`,
  );
  const read = (f: string) => readFileSync(join(dir, f), 'utf8');
  return {
    caCert: read(`${name}-ca.crt`),
    srvCert: read(`${name}-srv.crt`),
    srvKey: read(`${name}-srv.key`),
  };
}

async function serve(opts: tls.TlsOptions): Promise<{ server: tls.Server; port: number }> {
  const server = tls.createServer(opts, (s) => s.on('error', () => s.destroy()));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, port: (server.address() as AddressInfo).port };
}

describe('fetchPinnedCa', () => {
  let dir: string;
  let server: tls.Server;
  let port: number;
  let pki: ReturnType<typeof makePki>;
  let other: ReturnType<typeof makePki>;
  let pin: string;
  const received: Buffer[] = [];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'gh-pin-'));
    pki = makePki(dir, 'a');
    other = makePki(dir, 'b');
    pin = caPinOf(new X509Certificate(pki.caCert));
    server = tls.createServer({ key: pki.srvKey, cert: pki.srvCert + pki.caCert }, (s) => {
      s.on('data', (d: Buffer) => received.push(d));
      s.on('error', () => s.destroy());
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as AddressInfo).port;
  });

  afterAll(async () => {
    await new Promise((r) => server.close(r));
    rmSync(dir, { recursive: true, force: true });
  });

  it('returns the CA whose SPKI matches the pin, and sends no application data', async () => {
    const got = await fetchPinnedCa({ host: '127.0.0.1', port, pin });
    expect(got.caPem).toHaveLength(1);
    expect(new X509Certificate(got.caPem[0]!).fingerprint256).toBe(
      new X509Certificate(pki.caCert).fingerprint256,
    );
    expect(got.pin).toBe(pin);
    expect(Buffer.concat(received).length).toBe(0);
  });

  it('the returned CA verifies the proxy with normal TLS verification', async () => {
    const got = await fetchPinnedCa({
      host: '127.0.0.1',
      port,
      pin: pin.toUpperCase().replace('SHA256', 'sha256'),
    });
    const authorized = await new Promise<boolean>((resolve, reject) => {
      const s = tls.connect({ host: '127.0.0.1', port, ca: got.caPem }, () => {
        resolve(s.authorized);
        s.destroy();
      });
      s.on('error', reject);
    });
    expect(authorized).toBe(true);
  });

  it('rejects a wrong pin with GH_ERR_CERT_INVALID', async () => {
    const wrong = caPinOf(new X509Certificate(other.caCert));
    const err = await fetchPinnedCa({ host: '127.0.0.1', port, pin: wrong }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(GatehouseError);
    expect((err as GatehouseError).code).toBe('GH_ERR_CERT_INVALID');
    expect((err as GatehouseError).message).toContain(wrong);
  });

  it('refuses without a pin and says how to get one', async () => {
    const err = await fetchPinnedCa({ host: '127.0.0.1', port }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(GatehouseError);
    expect((err as GatehouseError).code).toBe('GH_ERR_CERT_INVALID');
    expect((err as GatehouseError).hint).toContain('--ca-pin');
    expect((err as GatehouseError).hint).toContain('gatehouse start');
  });

  it('insecure accepts the presented CA and reports its pin', async () => {
    const got = await fetchPinnedCa({ host: '127.0.0.1', port, insecure: true });
    expect(got.pin).toBe(pin);
  });

  it('rejects a leaf not signed by the pinned CA even when names and key ids match', async () => {
    // An impostor CA copies the real CA's subject and key id, so it links into
    // the presented chain, but its key did not sign the leaf.
    const realSkid = execFileSync('openssl', ['x509', '-noout', '-ext', 'subjectKeyIdentifier'], {
      input: pki.caCert,
    })
      .toString()
      .split('\n')[1]!
      .trim()
      .replaceAll(':', '');
    expect(realSkid).toMatch(/^[0-9A-F]{40}$/);
    const impostor = makePki(dir, 'imp', { caSubject: '/CN=a host CA', caSkid: realSkid });
    const bad = await serve({ key: pki.srvKey, cert: pki.srvCert + impostor.caCert });
    try {
      const err = await fetchPinnedCa({
        host: '127.0.0.1',
        port: bad.port,
        pin: caPinOf(new X509Certificate(impostor.caCert)),
      }).catch((e: unknown) => e);
      expect((err as GatehouseError).code).toBe('GH_ERR_CERT_INVALID');
      expect((err as GatehouseError).message).toContain('not signed by the pinned CA');
    } finally {
      await new Promise((r) => bad.server.close(r));
    }
  });

  it('rejects a certificate that is not valid at the given time', async () => {
    const later = new Date(Date.now() + 10 * 86_400_000);
    const err = await fetchPinnedCa({ host: '127.0.0.1', port, pin, now: () => later }).catch(
      (e: unknown) => e,
    );
    expect((err as GatehouseError).code).toBe('GH_ERR_CERT_INVALID');
    expect((err as GatehouseError).message).toContain('not valid now');
  });

  it('rejects a host name the certificate does not cover', async () => {
    const elsewhere = makePki(dir, 'else', { san: 'DNS:elsewhere.example' });
    const srv = await serve({ key: elsewhere.srvKey, cert: elsewhere.srvCert + elsewhere.caCert });
    try {
      const err = await fetchPinnedCa({
        host: '127.0.0.1',
        port: srv.port,
        pin: caPinOf(new X509Certificate(elsewhere.caCert)),
      }).catch((e: unknown) => e);
      expect((err as GatehouseError).code).toBe('GH_ERR_CERT_INVALID');
      expect((err as GatehouseError).message).toContain('not valid for "127.0.0.1"');
    } finally {
      await new Promise((r) => srv.server.close(r));
    }
  });

  it('reports an unreachable proxy as GH_ERR_UPSTREAM_UNAVAILABLE', async () => {
    const closed = tls.createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const closedPort = (closed.address() as AddressInfo).port;
    await new Promise((r) => closed.close(r));
    const err = await fetchPinnedCa({ host: '127.0.0.1', port: closedPort, pin }).catch((e: unknown) => e);
    expect((err as GatehouseError).code).toBe('GH_ERR_UPSTREAM_UNAVAILABLE');
    expect((err as GatehouseError).hint).toContain('gatehouse start');
  });

  it('normalizes pins and rejects malformed ones', () => {
    const hex = 'ab'.repeat(32);
    expect(normalizePin(`SHA256:${hex.toUpperCase()}`)).toBe(`sha256:${hex}`);
    expect(normalizePin(`sha256:${hex.match(/../g)!.join(':')}`)).toBe(`sha256:${hex}`);
    expect(() => normalizePin('sha256:abcd')).toThrow(/invalid CA pin/);
    expect(() => normalizePin(hex)).toThrow(/invalid CA pin/);
  });
});
