import { execFileSync, spawnSync } from 'node:child_process';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { pkcs8Der, pkcs12 } from './keystore.js';

/** The keystore files db login writes, read back by the real openssl (MAC, key decryption, pairing). */
describe('db login key files', () => {
  const dir = mkdtempSync(join(tmpdir(), 'gh-keystore-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const keyFile = join(dir, 'k.pem');
  const certFile = join(dir, 'c.pem');
  execFileSync('openssl', [
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-keyout',
    keyFile,
    '-out',
    certFile,
    '-subj',
    '/CN=alice',
    '-days',
    '1',
  ]);
  const keyPem = readFileSync(keyFile, 'utf8');
  const certPem = readFileSync(certFile, 'utf8');
  const openssl = (p12: Buffer, password: string) => {
    const file = join(dir, 'out.p12');
    writeFileSync(file, p12);
    return spawnSync('openssl', ['pkcs12', '-in', file, '-passin', `pass:${password}`, '-nodes'], {
      encoding: 'utf8',
    });
  };

  it('the .pk8 is the same key as unencrypted PKCS#8 DER', () => {
    const der = pkcs8Der(keyPem);
    const back = createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
    expect(back.export({ type: 'pkcs8', format: 'pem' })).toBe(
      createPrivateKey(keyPem).export({ type: 'pkcs8', format: 'pem' }),
    );
  });

  for (const password of ['', 'correct horse', 'pässwörd ✓']) {
    it(`openssl verifies the keystore's MAC and finds the certificate and its key (password ${JSON.stringify(password)})`, () => {
      const r = openssl(pkcs12(certPem, keyPem, password), password);
      expect(r.stderr).toBe('');
      expect(r.status).toBe(0);
      const cert = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/.exec(r.stdout)?.[0] ?? '';
      expect(new X509Certificate(cert).fingerprint256).toBe(new X509Certificate(certPem).fingerprint256);
      const key = /-----BEGIN PRIVATE KEY-----[\s\S]*?-----END PRIVATE KEY-----/.exec(r.stdout)?.[0] ?? '';
      expect(createPrivateKey(key).export({ type: 'pkcs8', format: 'pem' })).toBe(
        createPrivateKey(keyPem).export({ type: 'pkcs8', format: 'pem' }),
      );
      // Both bags carry the same localKeyId: that is how readers pair the key with its certificate.
      const ids = r.stdout.match(/localKeyID: ([0-9A-F ]+)/g) ?? [];
      expect(ids).toHaveLength(2);
      expect(ids[0]).toBe(ids[1]);
    });
  }

  it('a wrong password fails the MAC check', () => {
    const r = openssl(pkcs12(certPem, keyPem, 'right'), 'wrong');
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain('Mac verify error');
  });
});
