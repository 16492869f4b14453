import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { GatehouseError } from '../errors.js';
import { AesGcmSealer, loadOrCreateSecretsKey, SECRETS_KEY_ENV } from './seal.js';

async function failure(fn: () => unknown): Promise<GatehouseError> {
  let err: unknown;
  try {
    await fn();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(GatehouseError);
  return err as GatehouseError;
}

const key = (fill: number) => Buffer.alloc(32, fill);

describe('AesGcmSealer', () => {
  const sealer = new AesGcmSealer(key(1));

  it('round-trips unicode and empty plaintexts', () => {
    for (const plain of ['', 'secret', '-----BEGIN PRIVATE KEY-----\nMC4C…\n', 'Grüße 🙂'.repeat(1000)]) {
      expect(sealer.open(sealer.seal(plain, 'ca/user/1/ssh'), 'ca/user/1/ssh')).toBe(plain);
    }
  });

  it('produces v1.<nonce>.<ciphertext+tag> with a fresh 12-byte nonce each time', () => {
    const a = sealer.seal('same', 'aad');
    const b = sealer.seal('same', 'aad');
    expect(a).toMatch(/^v1\.[A-Za-z0-9_-]{16}\.[A-Za-z0-9_-]+$/);
    expect(a).not.toBe(b);
    const [, nonce, body] = a.split('.');
    expect(Buffer.from(nonce!, 'base64url')).toHaveLength(12);
    expect(Buffer.from(body!, 'base64url')).toHaveLength('same'.length + 16);
  });

  it('refuses a different AAD', async () => {
    const sealed = sealer.seal('secret', 'ca/user/1/ssh');
    const err = await failure(() => sealer.open(sealed, 'ca/host/1/ssh'));
    expect(err.code).toBe('GH_ERR_INTERNAL');
    expect(err.hint).toMatch(/secrets key does not match the data dir/);
  });

  it('refuses tampered data', async () => {
    const sealed = sealer.seal('secret value', 'aad');
    const [v, nonce, body] = sealed.split('.') as [string, string, string];
    const flip = (s: string, i: number) => {
      const buf = Buffer.from(s, 'base64url');
      buf[i]! ^= 1;
      return buf.toString('base64url');
    };
    const variants = [
      `${v}.${flip(nonce, 0)}.${body}`,
      `${v}.${nonce}.${flip(body, 0)}`,
      `${v}.${nonce}.${flip(body, Buffer.from(body, 'base64url').length - 1)}`,
      `${v}.${nonce}.${Buffer.from(body, 'base64url').subarray(0, 15).toString('base64url')}`,
      `v2.${nonce}.${body}`,
      `${v}.${nonce}`,
      `${v}.${nonce}.${body}.x`,
      `${v}.${nonce}.${body}!`,
      '',
    ];
    for (const bad of variants) {
      const err = await failure(() => sealer.open(bad, 'aad'));
      expect(err.code).toBe('GH_ERR_INTERNAL');
    }
    expect(sealer.open(sealed, 'aad')).toBe('secret value');
  });

  it('refuses the wrong key', async () => {
    const sealed = sealer.seal('secret', 'aad');
    const err = await failure(() => new AesGcmSealer(key(2)).open(sealed, 'aad'));
    expect(err.code).toBe('GH_ERR_INTERNAL');
    expect(err.hint).toMatch(/does not match the data dir/);
    expect(err.cause).toBeInstanceOf(Error);
  });

  it('requires a 32-byte key', async () => {
    const err = await failure(() => new AesGcmSealer(Buffer.alloc(16)));
    expect(err.code).toBe('GH_ERR_CONFIG_INVALID');
  });
});

describe('loadOrCreateSecretsKey', () => {
  let dataDir: string;

  beforeEach(async () => {
    dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'gh-seal-'));
  });

  afterEach(async () => {
    await fs.rm(dataDir, { recursive: true, force: true });
  });

  const file = () => path.join(dataDir, 'secrets.key');

  it('creates secrets.key with mode 0600 as base64 text and returns the same key next time', async () => {
    const prev = process.umask(0o022);
    try {
      const k = await loadOrCreateSecretsKey({ dataDir, env: {} });
      expect(k).toHaveLength(32);
      expect((await fs.stat(file())).mode & 0o777).toBe(0o600);
      expect(await fs.readFile(file(), 'utf8')).toBe(`${k.toString('base64')}\n`);
      expect(await loadOrCreateSecretsKey({ dataDir, env: {} })).toEqual(k);
      expect((await fs.readdir(dataDir)).sort()).toEqual(['secrets.key']);
    } finally {
      process.umask(prev);
    }
  });

  it('creates a missing data dir', async () => {
    const nested = path.join(dataDir, 'a', 'b');
    const k = await loadOrCreateSecretsKey({ dataDir: nested, env: {} });
    expect(await fs.readFile(path.join(nested, 'secrets.key'), 'utf8')).toBe(`${k.toString('base64')}\n`);
  });

  it('reads a key written by openssl rand -base64 32', async () => {
    const text = await new Promise<string>((resolve, reject) => {
      const p = spawn('openssl', ['rand', '-base64', '32']);
      let out = '';
      p.stdout.on('data', (d: Buffer) => {
        out += d.toString();
      });
      p.on('error', reject);
      p.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`openssl exited ${code}`))));
    });
    await fs.writeFile(file(), text, { mode: 0o600 });
    const k = await loadOrCreateSecretsKey({ dataDir, env: {} });
    expect(k.toString('base64')).toBe(text.trim());
  });

  it('refuses a key file that group or others can read', async () => {
    await loadOrCreateSecretsKey({ dataDir, env: {} });
    for (const mode of [0o640, 0o604, 0o660]) {
      await fs.chmod(file(), mode);
      const err = await failure(() => loadOrCreateSecretsKey({ dataDir, env: {} }));
      expect(err.code).toBe('GH_ERR_CONFIG_INVALID');
      expect(err.hint).toBe(`Restrict it to its owner: chmod 600 ${file()}`);
    }
    await fs.chmod(file(), 0o400);
    expect(await loadOrCreateSecretsKey({ dataDir, env: {} })).toHaveLength(32);
  });

  it('refuses a malformed key file instead of replacing it', async () => {
    await fs.writeFile(file(), 'not a key\n', { mode: 0o600 });
    const err = await failure(() => loadOrCreateSecretsKey({ dataDir, env: {} }));
    expect(err.code).toBe('GH_ERR_CONFIG_INVALID');
    expect(await fs.readFile(file(), 'utf8')).toBe('not a key\n');
  });

  it('uses GATEHOUSE_SECRETS_KEY over the file and does not create one', async () => {
    const envKey = Buffer.alloc(32, 7);
    const k = await loadOrCreateSecretsKey({
      dataDir,
      env: { [SECRETS_KEY_ENV]: envKey.toString('base64') },
    });
    expect(k).toEqual(envKey);
    await expect(fs.stat(file())).rejects.toMatchObject({ code: 'ENOENT' });

    const fromFile = await loadOrCreateSecretsKey({ dataDir, env: {} });
    expect(fromFile).not.toEqual(envKey);
    const again = await loadOrCreateSecretsKey({
      dataDir,
      env: { [SECRETS_KEY_ENV]: envKey.toString('base64') },
    });
    expect(again).toEqual(envKey);
  });

  it('refuses a malformed GATEHOUSE_SECRETS_KEY with a hint to generate one', async () => {
    const bad = [
      '',
      'short',
      Buffer.alloc(16).toString('base64'),
      Buffer.alloc(33).toString('base64'),
      Buffer.alloc(32, 0xff).toString('base64url'),
      Buffer.alloc(32).toString('hex'),
      `${Buffer.alloc(32).toString('base64').slice(0, 42)}B=`,
    ];
    for (const value of bad) {
      const err = await failure(() => loadOrCreateSecretsKey({ dataDir, env: { [SECRETS_KEY_ENV]: value } }));
      expect(err.code).toBe('GH_ERR_CONFIG_INVALID');
      expect(err.hint).toContain('openssl rand -base64 32');
    }
    await expect(fs.stat(file())).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('concurrent first starts agree on one key', async () => {
    const keys = await Promise.all(
      Array.from({ length: 8 }, () => loadOrCreateSecretsKey({ dataDir, env: {} })),
    );
    for (const k of keys) expect(k).toEqual(keys[0]);
    expect(await fs.readFile(file(), 'utf8')).toBe(`${keys[0]!.toString('base64')}\n`);
    expect(await fs.readdir(dataDir)).toEqual(['secrets.key']);
  });

  it('a sealer built from the loaded key opens what an earlier start sealed', async () => {
    const sealed = new AesGcmSealer(await loadOrCreateSecretsKey({ dataDir, env: {} })).seal('s', 'a');
    const reloaded = new AesGcmSealer(await loadOrCreateSecretsKey({ dataDir, env: {} }));
    expect(reloaded.open(sealed, 'a')).toBe('s');
    const err = await failure(async () => {
      const other = await fs.mkdtemp(path.join(os.tmpdir(), 'gh-seal-other-'));
      try {
        new AesGcmSealer(await loadOrCreateSecretsKey({ dataDir: other, env: {} })).open(sealed, 'a');
      } finally {
        await fs.rm(other, { recursive: true, force: true });
      }
    });
    expect(err.code).toBe('GH_ERR_INTERNAL');
  });
});
