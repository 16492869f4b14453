import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { applyFile, type PatchFile, parsePatch } from '../scripts/patch-ssh2.mjs';

/**
 * The applier an installed @gatehouse/adapter-ssh uses for the ssh2 patch (patch-package in the
 * repository). The repository's node_modules/ssh2 is patched already, so the original is made
 * from it by applying the patch in reverse, then patched forward again.
 */
const repo = fileURLToPath(new URL('../../../', import.meta.url));
const patch = readFileSync(path.join(repo, 'patches/ssh2+1.17.0.patch'), 'utf8');
const ssh2 = path.dirname(createRequire(import.meta.url).resolve('ssh2/package.json'));
const files = parsePatch(patch);
const reversed = (f: PatchFile): PatchFile => ({
  path: f.path,
  hunks: f.hunks.map((h) => ({ oldStart: h.oldStart, old: h.new, new: h.old })),
});
const patched = (f: PatchFile) => readFileSync(path.join(ssh2, f.path), 'utf8');

describe('the ssh2 patch applier', () => {
  it('reads every file of the patch', () => {
    expect(files.map((f) => f.path)).toEqual([
      'lib/keygen.js',
      'lib/protocol/Protocol.js',
      'lib/protocol/constants.js',
      'lib/protocol/crypto.js',
      'lib/protocol/kex.js',
      'lib/server.js',
    ]);
  });

  it('leaves an already patched ssh2 alone', () => {
    for (const f of files) expect(applyFile(patched(f), f), f.path).toBeNull();
  });

  it("turns the original into exactly the repository's patched files", () => {
    for (const f of files) {
      const original = applyFile(patched(f), reversed(f));
      expect(original, f.path).not.toBeNull();
      expect(original).not.toContain('Gatehouse patch');
      expect(applyFile(original!, f), f.path).toBe(patched(f));
    }
  });

  it('refuses code that matches neither side (another ssh2), naming the file and hunk', () => {
    const f = files.find((x) => x.path === 'lib/server.js')!;
    const original = applyFile(patched(f), reversed(f))!;
    const other = original.replace('if (session._ending) {', 'if (session._ending || x) {');
    expect(() => applyFile(other, f)).toThrow(/^ssh2 lib\/server\.js: hunk \d+ \(line \d+\) does not match/);
  });
});
