import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { decodeKrl, encodeKrl, KrlError } from './krl.js';

const caKey = Buffer.concat([
  Buffer.from([0, 0, 0, 11]),
  Buffer.from('ssh-ed25519'),
  Buffer.from([0, 0, 0, 32]),
  Buffer.alloc(32, 7),
]);

describe('KRL', () => {
  it('encodes serials sorted and once, and reads back what it wrote', () => {
    const at = new Date('2026-01-02T03:04:05Z');
    const bytes = encodeKrl({
      version: 9n,
      generatedAt: at,
      sections: [{ caKey, serials: [5n, 2n ** 63n, 5n, 1n] }],
    });
    const d = decodeKrl(bytes);
    expect(d.version).toBe(9n);
    expect(d.generatedAt).toEqual(at);
    expect([...(d.serials.get(caKey.toString('hex')) ?? [])]).toEqual([1n, 5n, 2n ** 63n]);
    // The same revocations give the same bytes.
    expect(
      encodeKrl({ version: 9n, generatedAt: at, sections: [{ caKey, serials: [1n, 5n, 2n ** 63n] }] }),
    ).toEqual(bytes);
  });

  it('is what ssh-keygen reads (its -Q check against an empty and a non-empty list)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'gh-krl-'));
    try {
      const key = join(dir, 'k');
      execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', key]);
      const file = join(dir, 'krl');
      writeFileSync(
        file,
        encodeKrl({ version: 1n, generatedAt: new Date(), sections: [{ caKey, serials: [42n] }] }),
      );
      // A plain key is not revoked by a serial list: ssh-keygen parses the file and says "ok".
      expect(execFileSync('ssh-keygen', ['-Q', '-f', file, `${key}.pub`], { encoding: 'utf8' })).toContain(
        'ok',
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses what it cannot vouch for: bad magic, truncation, other section kinds', () => {
    const good = encodeKrl({ version: 1n, generatedAt: new Date(0), sections: [{ caKey, serials: [3n] }] });
    expect(() => decodeKrl(Buffer.from('SSHKRX\n\0'))).toThrow(KrlError);
    expect(() => decodeKrl(good.subarray(0, good.length - 3))).toThrow(/truncated/);
    const other = Buffer.concat([good.subarray(0, 44), Buffer.from([2, 0, 0, 0, 0])]);
    expect(() => decodeKrl(other)).toThrow(/unsupported KRL section type 2/);
  });

  it('reads a generation time past what a Date holds as the latest Date (was an Invalid Date)', () => {
    // fuzz finding: a generated_date of 2^56 seconds decoded to an Invalid Date.
    const b = encodeKrl({ version: 1n, generatedAt: new Date(0), sections: [] });
    b.writeBigUInt64BE(2n ** 56n, 20);
    expect(decodeKrl(b).generatedAt.getTime()).toBe(8.64e15);
  });
});
