import { generateKeyPairSync, type KeyObject, sign } from 'node:crypto';
import { isGatehouseError, type SshCertificate, verifyClientSignature } from '@gatehouse/core';
import { describe, expect, it } from 'vitest';
import { isValidLogin, parseGroupList, parsePasswdLine } from './passwd.js';
import { checkCanServe, isAllowedClientEnv, SETPRIV, sessionArgv, sessionEnv, spawnPlan } from './spawn.js';

const alice = {
  name: 'alice',
  uid: 1000,
  gid: 1000,
  groups: [1000, 27],
  home: '/home/alice',
  shell: '/bin/bash',
};

describe('passwd parsing', () => {
  it('reads a getent passwd line', () => {
    expect(parsePasswdLine('alice:x:1000:1001:Alice,,,:/home/alice:/bin/zsh\n')).toEqual({
      name: 'alice',
      uid: 1000,
      gid: 1001,
      home: '/home/alice',
      shell: '/bin/zsh',
    });
  });
  it('defaults an empty shell and home like login(1)', () => {
    expect(parsePasswdLine('svc:x:5:5::::'.slice(0, -1))).toMatchObject({ home: '/', shell: '/bin/sh' });
  });
  it('rejects malformed lines and ids', () => {
    expect(() => parsePasswdLine('alice:x:1000')).toThrow(/malformed/);
    expect(() => parsePasswdLine('alice:x:-1:0::/:/bin/sh')).toThrow(/bad uid/);
  });
  it('reads id -G output', () => {
    expect(parseGroupList('1000 27 100\n')).toEqual([1000, 27, 100]);
    expect(() => parseGroupList('')).toThrow();
    expect(() => parseGroupList('1000 x')).toThrow();
  });
  it('accepts only plausible login names (never a leading dash)', () => {
    expect(isValidLogin('alice')).toBe(true);
    expect(isValidLogin('host$')).toBe(true);
    expect(isValidLogin('-oProxyCommand')).toBe(false);
    expect(isValidLogin('a b')).toBe(false);
    expect(isValidLogin('')).toBe(false);
  });
});

describe('spawning as the login', () => {
  it('as root, goes through setpriv with exact ids and groups', () => {
    expect(spawnPlan({ uid: 0, name: 'root' }, alice, ['/bin/bash', '-l'])).toEqual({
      file: SETPRIV,
      args: ['--reuid=1000', '--regid=1000', '--groups=1000,27', '--', '/bin/bash', '-l'],
    });
  });
  it('as the same non-root user, runs directly', () => {
    expect(spawnPlan({ uid: 1000, name: 'alice' }, alice, ['/bin/bash', '-c', 'id'])).toEqual({
      file: '/bin/bash',
      args: ['-c', 'id'],
    });
  });
  it('as another non-root user, refuses and says why', () => {
    let err: unknown;
    try {
      checkCanServe({ uid: 1001, name: 'bob' }, alice);
    } catch (e) {
      err = e;
    }
    expect(isGatehouseError(err, 'GH_ERR_ACCESS_DENIED')).toBe(true);
    expect((err as Error).message).toBe(
      'this node service runs as "bob" (not root), so it can only start sessions as "bob", not "alice"',
    );
  });
  it('builds argv like sshd: login shell or shell -c', () => {
    expect(sessionArgv(alice, undefined)).toEqual(['/bin/bash', '-l']);
    expect(sessionArgv(alice, 'ls -l')).toEqual(['/bin/bash', '-c', 'ls -l']);
  });
  it('builds the environment from scratch plus allowed client variables', () => {
    const env = sessionEnv({
      user: alice,
      term: 'xterm-256color',
      clientEnv: { LANG: 'C.UTF-8', LD_PRELOAD: '/tmp/x.so', PATH: '/evil' },
      connection: '10.0.0.1 5555 10.0.0.2 3022',
      originalCommand: 'rm -rf /',
    });
    expect(env).toEqual({
      LANG: 'C.UTF-8',
      HOME: '/home/alice',
      USER: 'alice',
      LOGNAME: 'alice',
      SHELL: '/bin/bash',
      PATH: '/usr/local/bin:/usr/bin:/bin:/usr/games',
      SSH_CONNECTION: '10.0.0.1 5555 10.0.0.2 3022',
      SSH_CLIENT: '10.0.0.1 5555 3022',
      TERM: 'xterm-256color',
      SSH_ORIGINAL_COMMAND: 'rm -rf /',
    });
  });
  it('allowlists env names', () => {
    for (const ok of ['LANG', 'LC_ALL', 'LC_CTYPE', 'TZ', 'GATEHOUSE_SESSION'])
      expect(isAllowedClientEnv(ok)).toBe(true);
    for (const bad of ['PATH', 'LD_PRELOAD', 'BASH_ENV', 'HOME', 'lc_all', 'LC_'])
      expect(isAllowedClientEnv(bad)).toBe(false);
  });
});

describe('client signature verification', () => {
  const u32 = (n: number) => {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(n);
    return b;
  };
  const str = (b: Buffer | string) => {
    const d = typeof b === 'string' ? Buffer.from(b) : b;
    return Buffer.concat([u32(d.length), d]);
  };
  const mpint = (b: Buffer) => str(b[0]! & 0x80 ? Buffer.concat([Buffer.alloc(1), b]) : b);
  const certFor = (keyType: string, publicKey: Buffer) =>
    ({ keyType, publicKey }) as unknown as SshCertificate;
  const data = Buffer.from('session id + userauth request');

  function ecdsaBlob(pub: KeyObject): Buffer {
    const jwk = pub.export({ format: 'jwk' });
    const point = Buffer.concat([
      Buffer.from([4]),
      Buffer.from(jwk.x as string, 'base64url'),
      Buffer.from(jwk.y as string, 'base64url'),
    ]);
    return Buffer.concat([str('ecdsa-sha2-nistp256'), str('nistp256'), str(point)]);
  }

  it('verifies ECDSA P-256 (r, s as mpints) and rejects a wrong signature', () => {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const raw = sign('sha256', data, { key: privateKey, dsaEncoding: 'ieee-p1363' });
    const sig = Buffer.concat([
      str('ecdsa-sha2-nistp256'),
      str(Buffer.concat([mpint(raw.subarray(0, 32)), mpint(raw.subarray(32))])),
    ]);
    const cert = certFor('ecdsa-sha2-nistp256', ecdsaBlob(publicKey));
    expect(verifyClientSignature(cert, data, sig)).toBe(true);
    expect(verifyClientSignature(cert, Buffer.from('other data'), sig)).toBe(false);
  });

  it('verifies rsa-sha2-512 and refuses SHA-1 ssh-rsa signatures', () => {
    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const jwk = publicKey.export({ format: 'jwk' });
    const blob = Buffer.concat([
      str('ssh-rsa'),
      mpint(Buffer.from(jwk.e as string, 'base64url')),
      mpint(Buffer.from(jwk.n as string, 'base64url')),
    ]);
    const cert = certFor('ssh-rsa', blob);
    const good = Buffer.concat([str('rsa-sha2-512'), str(sign('sha512', data, privateKey))]);
    expect(verifyClientSignature(cert, data, good)).toBe(true);
    const sha1 = Buffer.concat([str('ssh-rsa'), str(sign('sha1', data, privateKey))]);
    expect(() => verifyClientSignature(cert, data, sha1)).toThrow(/does not fit/);
  });

  it('refuses a signature algorithm of another key type', () => {
    const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const sig = Buffer.concat([
      str('ssh-ed25519'),
      str(sign(null, data, generateKeyPairSync('ed25519').privateKey)),
    ]);
    expect(() =>
      verifyClientSignature(certFor('ecdsa-sha2-nistp256', ecdsaBlob(publicKey)), data, sig),
    ).toThrow(/does not fit/);
  });
});
