import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { systemdUnit } from './systemd.js';

const script = fileURLToPath(new URL('../bin/gatehouse.js', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'gh-systemd-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Directives of the [Service] section, name -> values. */
function service(unit: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  const section = unit.split('[Service]\n')[1]!.split('\n[')[0]!;
  for (const line of section.split('\n')) {
    const m = /^([A-Za-z]+)=(.*)$/.exec(line);
    if (m) out.set(m[1]!, [...(out.get(m[1]!) ?? []), m[2]!]);
  }
  return out;
}

const hasAnalyze = spawnSync('systemd-analyze', ['--version']).status === 0;

/**
 * `systemd-analyze verify` on the unit: its exit status and everything it printed (it exits 0
 * on an unknown key, with a warning on stderr, so the output must be empty too).
 */
function verify(unit: string): string {
  const file = join(dir, 'gatehouse.service');
  writeFileSync(file, unit);
  const r = spawnSync('systemd-analyze', ['verify', file], { encoding: 'utf8' });
  return `status ${r.status} ${r.stdout}${r.stderr}`;
}

describe('systemdUnit', () => {
  const gateway = systemdUnit({
    node: process.execPath,
    script,
    dataDir: '/var/lib/gatehouse',
    config: '/etc/gatehouse.yaml',
    user: 'gatehouse',
  });
  const withNode = systemdUnit({ node: process.execPath, script, dataDir: '/srv/gate house' });

  it('the gateway-only unit is sandboxed: read-only system but the data dir, no privileges but binding low ports', () => {
    const s = service(gateway);
    expect(s.get('ExecStart')).toEqual([`${process.execPath} ${script} start --config /etc/gatehouse.yaml`]);
    expect(s.get('User')).toEqual(['gatehouse']);
    expect(s.get('StateDirectory')).toEqual(['gatehouse']);
    expect(s.get('ProtectSystem')).toEqual(['strict']);
    expect(s.get('ReadWritePaths')).toEqual(['/var/lib/gatehouse']);
    expect(s.get('NoNewPrivileges')).toEqual(['yes']);
    expect(s.get('PrivateTmp')).toEqual(['yes']);
    expect(s.get('ProtectHome')).toEqual(['yes']);
    expect(s.get('CapabilityBoundingSet')).toEqual(['CAP_NET_BIND_SERVICE']);
    expect(s.get('Restart')).toEqual(['on-failure']);
    expect(s.get('ExecReload')).toEqual(['/bin/kill -HUP $MAINPID']);
  });

  it('the unit with the built-in node runs as root without a sandbox its sessions would inherit', () => {
    const s = service(withNode);
    expect(s.get('ExecStart')).toEqual([`${process.execPath} ${script} start --data-dir "/srv/gate house"`]);
    expect(s.get('User')).toEqual(['root']);
    for (const k of [
      'ProtectSystem',
      'ProtectHome',
      'PrivateTmp',
      'NoNewPrivileges',
      'CapabilityBoundingSet',
      'UMask',
    ]) {
      expect(s.has(k), k).toBe(false);
    }
    expect(s.get('ExecReload')).toEqual(['/bin/kill -HUP $MAINPID']);
  });

  it.runIf(hasAnalyze)('both units pass systemd-analyze verify', () => {
    expect(verify(gateway)).toBe('status 0 ');
    expect(verify(withNode)).toBe('status 0 ');
    // The check can fail: a misspelt key is reported.
    expect(verify(gateway.replace('ProtectSystem=', 'ProtectSystm='))).toContain(
      "Unknown key 'ProtectSystm'",
    );
  });
});
