import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { generateEd25519OpenSsh } from './keys.js';
import { ClientHome, proxyDirName, replaceKnownHosts, splitPems } from './profile.js';

const mode = (p: string) => statSync(p).mode & 0o777;

const files = {
  sshKey: 'PRIVATE',
  sshPub: 'ssh-ed25519 AAAA',
  sshCert: 'ssh-ed25519-cert-v01@openssh.com AAAA',
  tlsKey: 'TLSKEY',
  tlsCert: 'TLSCERT',
  cas: '-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n',
};

describe('replaceKnownHosts', () => {
  const k1 = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOne gatehouse host CA';
  const k2 = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAITwo';

  it('appends marked @cert-authority lines and keeps foreign lines', () => {
    const out = replaceKnownHosts('github.com ssh-ed25519 AAAAgh\n', 'acme', [k1]);
    expect(out).toBe(
      'github.com ssh-ed25519 AAAAgh\n@cert-authority * ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOne gatehouse-cluster=acme\n',
    );
  });

  it("replaces the lines it wrote for the same cluster, not other clusters'", () => {
    let text = replaceKnownHosts('', 'acme', [k1]);
    text = replaceKnownHosts(text, 'other', [k1]);
    text = replaceKnownHosts(text, 'acme', [k2]);
    const lines = text.trim().split('\n');
    expect(lines).toEqual([
      '@cert-authority * ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOne gatehouse-cluster=other',
      '@cert-authority * ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAITwo gatehouse-cluster=acme',
    ]);
  });

  it('does not treat a cluster whose name extends another as the same', () => {
    const text = replaceKnownHosts(replaceKnownHosts('', 'acme-prod', [k1]), 'acme', []);
    expect(text).toContain('gatehouse-cluster=acme-prod');
  });

  it('rejects a key that is not an OpenSSH key line', () => {
    expect(() => replaceKnownHosts('', 'acme', ['garbage'])).toThrow(/not an OpenSSH key/);
  });

  it('writes lines the real ssh-keygen finds as a CA for any host', () => {
    const dir = mkdtempSync(join(tmpdir(), 'gh-kh-'));
    try {
      const key = generateEd25519OpenSsh('host CA').publicKey;
      const file = join(dir, 'known_hosts');
      writeFileSync(file, replaceKnownHosts('', 'acme', [key]));
      const out = execFileSync('ssh-keygen', ['-F', 'node1.example.com', '-f', file], { encoding: 'utf8' });
      expect(out).toContain(key.split(' ')[1]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('ClientHome', () => {
  let dir: string;
  let home: ClientHome;

  beforeEach(() => {
    dir = join(mkdtempSync(join(tmpdir(), 'gh-home-')), 'home');
    home = new ClientHome(dir);
  });
  afterEach(() => rmSync(join(dir, '..'), { recursive: true, force: true }));

  it('uses GATEHOUSE_HOME, else ~/.gatehouse', () => {
    expect(ClientHome.fromEnv({ GATEHOUSE_HOME: '/x/y' }).dir).toBe('/x/y');
    expect(ClientHome.fromEnv({}).dir.endsWith('/.gatehouse')).toBe(true);
  });

  it('writes keys and profile with 0700 dirs and 0600 files, even under a loose umask', () => {
    const old = process.umask(0o000);
    try {
      const paths = home.saveKeys('127.0.0.1:3080', 'alice', files);
      home.setCurrent({ proxy: '127.0.0.1:3080', user: 'alice', cluster: 'acme' });
      home.updateKnownHosts('acme', ['ssh-ed25519 AAAA']);
      expect(paths.dir).toBe(join(dir, 'keys', '127.0.0.1_3080', 'alice'));
      for (const d of [dir, join(dir, 'keys'), join(dir, 'keys', '127.0.0.1_3080'), paths.dir]) {
        expect(mode(d), d).toBe(0o700);
      }
      for (const f of [paths.sshKey, paths.sshPub, paths.sshCert, paths.tlsKey, paths.tlsCert, paths.cas]) {
        expect(mode(f), f).toBe(0o600);
      }
      expect(mode(home.profilePath)).toBe(0o600);
      expect(mode(home.knownHostsPath)).toBe(0o600);
      expect(readFileSync(paths.sshKey, 'utf8')).toBe('PRIVATE\n');
    } finally {
      process.umask(old);
    }
  });

  it('tightens a key file and directory that were loosened', () => {
    const paths = home.saveKeys('p:1', 'alice', files);
    chmodSync(paths.tlsKey, 0o644);
    chmodSync(paths.dir, 0o755);
    home.saveKeys('p:1', 'alice', files);
    expect(mode(paths.tlsKey)).toBe(0o600);
    expect(mode(paths.dir)).toBe(0o700);
  });

  it('remembers profiles per proxy and the current one', () => {
    expect(home.current()).toBeUndefined();
    home.setCurrent({ proxy: 'a:1', user: 'alice', cluster: 'one' });
    home.setCurrent({ proxy: 'b:2', user: 'bob', cluster: 'two', caPin: 'sha256:00' });
    expect(home.current()).toEqual({ proxy: 'b:2', user: 'bob', cluster: 'two', caPin: 'sha256:00' });
    expect(Object.keys(home.readProfiles().profiles).sort()).toEqual(['a:1', 'b:2']);
  });

  it('finds stored CAs for a known proxy only', () => {
    home.saveKeys('a:1', 'alice', files);
    home.setCurrent({ proxy: 'a:1', user: 'alice', cluster: 'one' });
    expect(home.storedCas('a:1')).toEqual([files.cas]);
    expect(home.storedCas('b:2')).toBeUndefined();
  });

  it('logout of one profile removes its keys and its cluster lines, keeping the others', () => {
    home.saveKeys('a:1', 'alice', files);
    home.saveKeys('b:2', 'bob', files);
    home.setCurrent({ proxy: 'b:2', user: 'bob', cluster: 'two' });
    home.setCurrent({ proxy: 'a:1', user: 'alice', cluster: 'one' });
    home.updateKnownHosts('one', ['ssh-ed25519 AAAAone']);
    home.updateKnownHosts('two', ['ssh-ed25519 AAAAtwo']);
    const removed = home.removeProfile('a:1');
    expect(removed?.user).toBe('alice');
    expect(existsSync(home.keyPaths('a:1', 'alice').dir)).toBe(false);
    expect(existsSync(home.keyPaths('b:2', 'bob').sshKey)).toBe(true);
    const kh = readFileSync(home.knownHostsPath, 'utf8');
    expect(kh).not.toContain('AAAAone');
    expect(kh).toContain('AAAAtwo');
    expect(home.current()).toBeUndefined();
    expect(home.readProfiles().profiles['b:2']?.user).toBe('bob');
  });

  it('logout --all removes every key and Gatehouse line but keeps foreign known_hosts lines', () => {
    writeFileSync(join(dir, '..', 'x'), '');
    home.saveKeys('a:1', 'alice', files);
    home.setCurrent({ proxy: 'a:1', user: 'alice', cluster: 'one' });
    home.updateKnownHosts('one', ['ssh-ed25519 AAAAone']);
    writeFileSync(
      home.knownHostsPath,
      `github.com ssh-ed25519 AAAAgh\n${readFileSync(home.knownHostsPath, 'utf8')}`,
    );
    expect(home.removeAll().map((e) => e.user)).toEqual(['alice']);
    expect(existsSync(join(dir, 'keys'))).toBe(false);
    expect(existsSync(home.profilePath)).toBe(false);
    expect(readFileSync(home.knownHostsPath, 'utf8')).toBe('github.com ssh-ed25519 AAAAgh\n');
  });

  it('refuses user names that would escape the keys directory', () => {
    expect(() => home.keyPaths('a:1', '../evil')).toThrow(/cannot be used/);
    expect(() => home.keyPaths('a:1', '..')).toThrow(/cannot be used/);
  });

  it('reports a corrupt profile file with a hint', () => {
    home.saveKeys('a:1', 'alice', files);
    writeFileSync(home.profilePath, '{not json');
    expect(() => home.readProfiles()).toThrow(/not a Gatehouse profile/);
  });

  it('makes safe directory names for proxies', () => {
    expect(proxyDirName('[::1]:3080')).toBe('__1_3080');
    expect(proxyDirName('gh.example.com:443')).toBe('gh.example.com_443');
  });

  it('splits PEM bundles', () => {
    expect(splitPems(`${files.cas}junk\n${files.cas}`)).toHaveLength(2);
    expect(splitPems('nothing')).toEqual([]);
  });
});
