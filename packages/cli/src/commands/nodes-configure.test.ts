import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { managedBlock, nodeFiles, withManagedBlock } from './nodes-configure.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function keyDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'gh-sshd-'));
  dirs.push(d);
  return d;
}

describe('the sshd_config block nodes configure writes', () => {
  it('goes first (sshd keeps the first value, and a Match block runs to the end) and replaces itself', () => {
    const dir = keyDir();
    const files = nodeFiles(join(dir, 'sshd_config'));
    const original =
      'Port 22\nTrustedUserCAKeys /etc/ssh/other_ca.pub\nMatch User backup\n  ForceCommand rsync\n';
    const block = managedBlock({ node: 'web1', files, prefix: 'gatehouse-proxy:', existingConfig: original });
    const once = withManagedBlock(original, block);
    expect(once.startsWith('# BEGIN gatehouse')).toBe(true);
    expect(once.endsWith(original)).toBe(true);
    expect(once).toContain(`TrustedUserCAKeys ${files.userCa}\n`);
    expect(once).toMatch(/^AuthorizedPrincipalsCommand \/\S*echo gatehouse-proxy:%u$/m);
    // Running it again changes nothing: one block, the rest as it was.
    const twice = withManagedBlock(
      once,
      managedBlock({ node: 'web1', files, prefix: 'gatehouse-proxy:', existingConfig: once }),
    );
    expect(twice).toBe(once);
  });

  it("names the machine's default host keys when the config names none (ours alone would drop them)", () => {
    const dir = keyDir();
    writeFileSync(join(dir, 'ssh_host_ed25519_key'), 'x');
    const files = nodeFiles(join(dir, 'sshd_config'));
    const block = managedBlock({ node: 'web1', files, prefix: 'p:', existingConfig: 'Port 22\n' });
    expect(block).toContain(`HostKey ${files.hostKey}\n`);
    expect(block).toContain(`HostKey ${join(dir, 'ssh_host_ed25519_key')}\n`);
    expect(block).not.toContain('ssh_host_rsa_key'); // not on this machine
    const named = managedBlock({ node: 'web1', files, prefix: 'p:', existingConfig: 'HostKey /k\n' });
    expect(named).not.toContain('ssh_host_ed25519_key');
  });

  it('refuses a block whose end marker is gone rather than guess where it ended', () => {
    expect(() => withManagedBlock('# BEGIN gatehouse: x\nHostKey /k\nPort 22\n', '')).toThrow(
      /no "# END gatehouse"/,
    );
  });
});
