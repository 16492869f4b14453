import {
  appendFileSync,
  closeSync,
  fstatSync,
  mkdirSync,
  openSync,
  readFileSync,
  readSync,
  renameSync,
  unlinkSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';

/**
 * A per-sink spool: events a sink refused, as JSON lines, plus a small file
 * holding how many bytes of it have already been replayed. Appends happen
 * while the sink is down; replays consume from the recorded offset, so a
 * restart resumes where the last replay stopped (at most one batch is
 * delivered twice, which sinks tolerate).
 */
export class Spool {
  readonly path: string;
  readonly #offsetPath: string;
  readonly #dir: string;
  readonly #sinkName: string;
  /** Bytes of the spool already delivered. */
  offset = 0;
  /** Lines not yet delivered. */
  pending = 0;

  constructor(dir: string, sinkName: string) {
    this.#dir = dir;
    this.#sinkName = sinkName;
    this.path = join(dir, `${sinkName}.spool.jsonl`);
    this.#offsetPath = join(dir, `${sinkName}.spool.offset`);
  }

  /**
   * Picks up a spool left by an earlier run. A torn last line (crash during
   * an append) is terminated so later appends start on a line of their own.
   */
  load(): void {
    let fd: number;
    try {
      fd = openSync(this.path, 'r+');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      // No spool (or the spool dir is not a directory): nothing to replay. An
      // offset left from a cleared spool must not apply to the next one.
      if (code === 'ENOENT' || code === 'ENOTDIR') {
        removeIfExists(this.#offsetPath);
        return;
      }
      throw err;
    }
    try {
      const size = fstatSync(fd).size;
      if (size > 0) {
        const last = Buffer.alloc(1);
        readSync(fd, last, 0, 1, size - 1);
        if (last[0] !== 0x0a) writeSync(fd, '\n', size);
      }
    } finally {
      closeSync(fd);
    }
    this.offset = this.#readOffset();
    this.pending = this.#countLines(this.offset);
  }

  /** Appends one line (must end in '\n') with a single write. Throws if the spool cannot be written. */
  append(line: string): void {
    mkdirSync(this.#dir, { recursive: true, mode: 0o700 });
    appendFileSync(this.path, line, { mode: 0o600 });
    this.pending++;
  }

  /** Reads up to `max` complete lines after the offset; `end` is the byte offset after each line. */
  read(max: number): { lines: { text: string; end: number }[]; eof: boolean } {
    const fd = openSync(this.path, 'r');
    try {
      const size = fstatSync(fd).size;
      const lines: { text: string; end: number }[] = [];
      const chunk = Buffer.allocUnsafe(1 << 20);
      let carry = Buffer.alloc(0);
      let pos = this.offset;
      while (lines.length < max && pos < size) {
        const n = readSync(fd, chunk, 0, chunk.length, pos);
        if (n === 0) break;
        const buf = carry.length > 0 ? Buffer.concat([carry, chunk.subarray(0, n)]) : chunk.subarray(0, n);
        const bufStart = pos - carry.length;
        pos += n;
        let start = 0;
        for (
          let nl = buf.indexOf(0x0a, start);
          nl !== -1 && lines.length < max;
          nl = buf.indexOf(0x0a, start)
        ) {
          lines.push({ text: buf.toString('utf8', start, nl), end: bufStart + nl + 1 });
          start = nl + 1;
        }
        carry = Buffer.from(buf.subarray(start));
      }
      return { lines, eof: lines.length < max };
    } finally {
      closeSync(fd);
    }
  }

  /** Records that everything up to `offset` was delivered. */
  commit(offset: number, delivered: number): void {
    this.offset = offset;
    this.pending = Math.max(0, this.pending - delivered);
    // Replace atomically so a crash never leaves a half-written offset.
    const tmp = `${this.#offsetPath}.tmp`;
    writeFileSync(tmp, String(offset), { mode: 0o600 });
    renameSync(tmp, this.#offsetPath);
  }

  /** Everything was delivered: remove the spool. */
  clear(): void {
    // Offset first: a crash in between then replays the spool again (duplicates
    // that sinks tolerate) instead of skipping the start of a future spool.
    removeIfExists(this.#offsetPath);
    removeIfExists(this.path);
    this.offset = 0;
    this.pending = 0;
  }

  /** Keeps a line that cannot be parsed where an operator can look at it, instead of dropping it. */
  reject(text: string): string {
    const path = join(this.#dir, `${this.#sinkName}.rejected.jsonl`);
    appendFileSync(path, `${text}\n`, { mode: 0o600 });
    return path;
  }

  #readOffset(): number {
    let text: string;
    try {
      text = readFileSync(this.#offsetPath, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 0;
      throw err;
    }
    const n = Number(text.trim());
    return Number.isSafeInteger(n) && n >= 0 ? n : 0;
  }

  #countLines(from: number): number {
    const fd = openSync(this.path, 'r');
    try {
      const size = fstatSync(fd).size;
      if (from > size) {
        // The offset belongs to an older spool file: replay this one from the start.
        this.offset = 0;
        return this.#countLines(0);
      }
      const chunk = Buffer.allocUnsafe(1 << 20);
      let count = 0;
      for (let pos = from; pos < size; ) {
        const n = readSync(fd, chunk, 0, chunk.length, pos);
        if (n === 0) break;
        for (let i = chunk.indexOf(0x0a); i !== -1 && i < n; i = chunk.indexOf(0x0a, i + 1)) count++;
        pos += n;
      }
      return count;
    } finally {
      closeSync(fd);
    }
  }
}

function removeIfExists(path: string): void {
  try {
    unlinkSync(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT' && code !== 'ENOTDIR') throw err;
  }
}
