/**
 * `gatehouse node check` (the built binary) on this machine: as root every
 * item works and the helper really loads; as a plain user it says why not
 * and exits 1, so scripts can refuse to deploy.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { TEST_LOGIN } from '@gatehouse/core/testing';
import { describe, expect, it } from 'vitest';
import { BIN, run } from './harness.js';

const exec = promisify(execFile);

describe('gatehouse node check', () => {
  it('as root: every item works, the programs load and attach', async () => {
    const r = await run(['node', 'check', '--json']);
    expect(r.code).toBe(0);
    const report = JSON.parse(r.stdout) as { ok: boolean; items: { name: string; ok: boolean }[] };
    expect(report.ok).toBe(true);
    expect(report.items.map((i) => `${i.name} ${i.ok}`)).toEqual([
      'linux true',
      'root true',
      'btf true',
      'cgroup2 true',
      'sessions true',
      'tracefs true',
      'helper true',
      'programs true',
    ]);
  });

  it('as a plain user: names what is missing and exits 1', async () => {
    const r = await exec('runuser', ['-u', TEST_LOGIN, '--', process.execPath, BIN, 'node', 'check']).then(
      (x) => ({ code: 0, stdout: x.stdout }),
      (e: { code: number; stdout: string }) => ({ code: e.code, stdout: e.stdout }),
    );
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/^FAIL {2}root {6}running as uid \d+: loading BPF programs needs root$/m);
    expect(r.stdout).toMatch(/^FAIL {2}programs {2}not tried: fix the items above first$/m);
    // Not root: no cgroup per session either (sessions still run, in the service's cgroup).
    expect(r.stdout).toMatch(
      /^FAIL {2}sessions {2}sessions run in the node service's cgroup: the node service runs as uid \d+, not root$/m,
    );
    expect(r.stdout).toContain('sessions whose roles ask for them are refused');
  });
});
