import { execFileSync } from 'node:child_process';
import { createPrivateKey, createPublicKey, sign, verify } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sshEd25519PublicKeyToKeyObject } from '@gatehouse/core';
import { afterAll, describe, expect, it } from 'vitest';
import { generateEd25519OpenSsh, generateLoginKeys, readEd25519OpenSsh } from './keys.js';

const dir = mkdtempSync(join(tmpdir(), 'gh-keys-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('generateEd25519OpenSsh', () => {
  it('writes a private key the real ssh-keygen reads back to the same public key', () => {
    for (let i = 0; i < 5; i++) {
      // Several keys: the padding length depends on the comment length.
      const comment = `alice@gatehouse${'x'.repeat(i)}`;
      const k = generateEd25519OpenSsh(comment);
      const file = join(dir, `id_${i}`);
      writeFileSync(file, k.privateKey, { mode: 0o600 });
      const derived = execFileSync('ssh-keygen', ['-y', '-f', file], { encoding: 'utf8' }).trim();
      expect(derived.split(' ').slice(0, 2)).toEqual(k.publicKey.split(' ').slice(0, 2));
      expect(k.publicKey.endsWith(` ${comment}`)).toBe(true);
      const fp = execFileSync('ssh-keygen', ['-l', '-f', file], { encoding: 'utf8' });
      expect(fp).toContain(comment);
    }
  });
});

describe('generateLoginKeys', () => {
  it('makes a P-256 TLS key pair whose halves match', () => {
    const k = generateLoginKeys('bob');
    const priv = createPrivateKey(k.tlsPrivateKey);
    const pub = createPublicKey(k.tlsPublicKey);
    expect(priv.asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
    const sig = sign('sha256', Buffer.from('x'), priv);
    expect(verify('sha256', Buffer.from('x'), pub, sig)).toBe(true);
    expect(k.tlsPublicKey).toContain('BEGIN PUBLIC KEY');
    expect(k.sshPublicKey).toMatch(/^ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI[A-Za-z0-9+/]+ bob$/);
  });
});

describe('readEd25519OpenSsh', () => {
  it('reads back the key generateEd25519OpenSsh wrote: it signs what the public key verifies', () => {
    const k = generateEd25519OpenSsh('test');
    const key = readEd25519OpenSsh(k.privateKey);
    const sig = sign(null, Buffer.from('hello'), key);
    expect(verify(null, Buffer.from('hello'), sshEd25519PublicKeyToKeyObject(k.publicKey), sig)).toBe(true);
  });

  it('refuses what is not an OpenSSH private key', () => {
    expect(() => readEd25519OpenSsh('ssh-ed25519 AAAA')).toThrow(/no OPENSSH PRIVATE KEY block/);
  });
});
