import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * A real small filesystem (tmpfs) for disk-full and read-only tests: writes
 * past its size fail with ENOSPC (a write that does not fit is cut short),
 * Needs root,
 * as CI runs (a test that cannot mount fails: a missing peer is a failure).
 */
export class SmallDisk {
  readonly dir: string;
  #filler = 0;

  constructor(sizeBytes: number) {
    this.dir = mkdtempSync(join(tmpdir(), 'gh-disk-'));
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${sizeBytes},mode=0755`, 'tmpfs', this.dir]);
  }

  /** Fills every free byte (as another program on the host might). */
  fill(): void {
    const file = join(this.dir, `filler-${this.#filler++}`);
    const chunk = Buffer.alloc(64 * 1024, 0x66);
    // Smaller and smaller writes until not even one byte fits.
    for (let size = chunk.length; size >= 1; size = Math.floor(size / 2)) {
      for (;;) {
        try {
          writeFileSync(file, chunk.subarray(0, size), { flag: 'a' });
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === 'ENOSPC') break;
          throw err;
        }
      }
    }
  }

  /** Frees what fill() took. */
  free(): void {
    for (let i = 0; i < this.#filler; i++) rmSync(join(this.dir, `filler-${i}`), { force: true });
    this.#filler = 0;
  }

  /** Free bytes (df). */
  available(): number {
    const out = execFileSync('df', ['--output=avail', '-B1', this.dir], { encoding: 'utf8' });
    return Number(out.trim().split('\n').pop());
  }

  unmount(): void {
    execFileSync('umount', ['-l', this.dir]);
    rmSync(this.dir, { recursive: true, force: true });
  }
}
