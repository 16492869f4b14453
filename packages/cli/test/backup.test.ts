/**
 * `gatehouse backup` while the gateway serves and writes, `gatehouse restore`
 * into a new data dir, and a second `gatehouse start` on it that serves the
 * same users and CAs (the BUILT binary). Bad input: a non-empty data dir, a
 * damaged file, another passphrase, another cluster, not a backup at all.
 */
import { mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { admin, type Daemon, PASSWORD, restartDaemon, run, startDaemon } from './harness.js';

const PASSPHRASE = 'a long and random backup passphrase';
const env = { GATEHOUSE_BACKUP_PASSPHRASE: PASSPHRASE };
let d: Daemon;
let restored: Daemon | undefined;
let file: string;

beforeAll(async () => {
  d = await startDaemon({ cluster: 'bk' });
  await admin(
    d,
    ['users', 'add', 'alice', '--roles', 'access', '--logins', 'root', '--password-stdin'],
    `${PASSWORD}\n`,
  );
  await admin(d, ['nodes', 'add', 'web1', '--addr', '127.0.0.1:2222', '--label', 'env=dev']);
  file = join(d.root, 'gh.backup');
}, 60_000);

afterAll(async () => {
  await restored?.stop();
  if (d) {
    await d.stop();
    rmSync(d.root, { recursive: true, force: true });
  }
});

describe('backup and restore', () => {
  it('backs up while users are being added, restores elsewhere, and the restored gateway serves the same users and CAs', async () => {
    // Load: a writer adding users through the data dir while the backup runs.
    let writing = true;
    const writer = (async () => {
      let n = 0;
      while (writing && n < 20) {
        await admin(d, ['users', 'add', `load${n}`, '--roles', 'access']);
        n++;
      }
      return n;
    })();
    const b = await run(['--config', d.configFile, 'backup', '--out', file], { env });
    writing = false;
    const added = await writer;
    expect(b.stderr).toBe('');
    expect(b.code).toBe(0);
    expect(b.stdout).toContain(`Backup of cluster bk (${d.dataDir}) written to ${file}`);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(added).toBeGreaterThan(0);
    // Sealed: neither the user names nor the secrets key are readable in the file.
    const raw = readFileSync(file);
    expect(raw.includes(Buffer.from('alice'))).toBe(false);
    expect(raw.includes(readFileSync(join(d.dataDir, 'secrets.key')).subarray(0, 20))).toBe(false);

    const root = join(d.root, 'restored');
    const dataDir = join(root, 'data');
    const r = await run(['restore', file, '--data-dir', dataDir, '--cluster', 'bk'], { env });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`Restored cluster bk`);

    const configFile = join(root, 'gatehouse.yaml');
    writeFileSync(
      configFile,
      `cluster_name: bk\ndata_dir: ${dataDir}\nlisten: 127.0.0.1:0\nauth:\n  second_factor: "off"\n`,
    );
    restored = await restartDaemon({ ...d, root, dataDir, configFile });
    // The same host CA (the pin clients trust) and user CA.
    expect(restored.pin).toBe(d.pin);
    const caOld = await run(['ca', 'export', '--format', 'sshd', '--proxy', d.proxy, '--ca-pin', d.pin]);
    const caNew = await run([
      'ca',
      'export',
      '--format',
      'sshd',
      '--proxy',
      restored.proxy,
      '--ca-pin',
      d.pin,
    ]);
    expect(caNew.code, caNew.stderr).toBe(0);
    expect(caNew.stdout).toBe(caOld.stdout);
    // The same users, with their passwords: alice logs in to the restored gateway and sees web1.
    const home = join(root, 'home-alice');
    const login = await run(
      ['login', '--proxy', restored.proxy, '--user', 'alice', '--ca-pin', d.pin, '--password-stdin'],
      { env: { GATEHOUSE_HOME: home }, input: `${PASSWORD}\n` },
    );
    expect(login.code, login.stderr).toBe(0);
    const ls = await run(['ls', '--json'], { env: { GATEHOUSE_HOME: home } });
    expect(JSON.parse(ls.stdout)).toEqual([
      expect.objectContaining({ name: 'web1', labels: { env: 'dev' } }),
    ]);
    // Every user the backup's snapshot had is there, and the database is whole.
    const users = await run(['--config', configFile, 'users', 'ls', '--json']);
    const names = (JSON.parse(users.stdout) as { name: string }[]).map((u) => u.name);
    expect(names).toContain('alice');
    const loads = names.filter((n) => n.startsWith('load'));
    // A snapshot is a prefix of the writer's sequence: load0..loadK, no gaps.
    expect(loads.sort((a, b) => Number(a.slice(4)) - Number(b.slice(4)))).toEqual(
      loads.map((_, i) => `load${i}`),
    );
  });

  it('refuses a non-empty data dir, a damaged file, another passphrase, another cluster and a file that is no backup', async () => {
    const target = join(d.root, 'target');
    mkdirSync(target);
    writeFileSync(join(target, 'something'), 'x');
    const full = await run(['restore', file, '--data-dir', target, '--cluster', 'bk'], { env });
    expect(full.code).toBe(1);
    expect(full.stderr).toContain(`error: the data dir ${target} is not empty`);

    const empty = join(d.root, 'empty');
    const damaged = join(d.root, 'damaged.backup');
    const bytes = readFileSync(file);
    bytes[bytes.length - 100] = bytes[bytes.length - 100]! ^ 0x01;
    writeFileSync(damaged, bytes);
    const bad = await run(['restore', damaged, '--data-dir', empty, '--cluster', 'bk'], { env });
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain('is corrupted or sealed with another passphrase');

    const wrongPw = await run(['restore', file, '--data-dir', empty, '--cluster', 'bk'], {
      env: { GATEHOUSE_BACKUP_PASSPHRASE: 'another long passphrase' },
    });
    expect(wrongPw.code).toBe(1);
    expect(wrongPw.stderr).toContain('is corrupted or sealed with another passphrase');

    const other = await run(['restore', file, '--data-dir', empty, '--cluster', 'prod'], { env });
    expect(other.code).toBe(1);
    expect(other.stderr).toContain(`error: ${file} is a backup of cluster "bk", not "prod"`);

    // The cluster name in the header is authenticated: edited to match, the file is refused.
    const edited = join(d.root, 'edited.backup');
    writeFileSync(
      edited,
      Buffer.from(
        readFileSync(file).toString('latin1').replace('"cluster":"bk"', '"cluster":"pr"'),
        'latin1',
      ),
    );
    const forged = await run(['restore', edited, '--data-dir', empty, '--cluster', 'pr'], { env });
    expect(forged.code).toBe(1);
    expect(forged.stderr).toContain('is corrupted or sealed with another passphrase');

    const notOne = await run(['restore', d.configFile, '--data-dir', empty, '--cluster', 'bk'], { env });
    expect(notOne.code).toBe(1);
    expect(notOne.stderr).toContain('is not a Gatehouse backup');
    // Nothing was written by any refusal.
    expect(() => statSync(empty)).toThrow();
  });
});
