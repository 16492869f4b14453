import {
  appendFileSync,
  closeSync,
  fstatSync,
  ftruncateSync,
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

  /**
   * Appends `count` lines (`text` ends in '\n') with a single write. Throws if
   * the spool cannot be written; a write cut short (disk full) is taken back,
   * so the spool never holds half an event.
   */
  append(text: string, count = 1): void {
    mkdirSync(this.#dir, { recursive: true, mode: 0o700 });
    appendWhole(this.path, Buffer.from(text, 'utf8'));
    this.pending += count;
  }

  /** Reads up to `max` complete lines after the offset; `end` is the byte offset after each line. */
  read(max: number): { lines: { text: string; end: number }[]; eof: boolean } {
    let fd: number;
    try {
      fd = openSync(this.path, 'r');
    } catch (err) {
      // Nothing was ever spooled (the events waited in memory instead).
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { lines: [], eof: true };
      throw err;
    }
    try {
      const size = fstatSync(fd).size;
      const lines: { text: string; end: number }[] = [];
      // No bigger than what is there to read: export sinks read small tails many times.
      const chunk = Buffer.allocUnsafe(Math.max(1, Math.min(1 << 20, size - this.offset)));
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

  /**
   * Records that everything up to `offset` was delivered. `persist: false`
   * only moves it in memory (a crash then resends from the last persisted
   * offset: at least once), for callers that commit many small batches.
   */
  commit(offset: number, delivered: number, persist = true): void {
    this.offset = offset;
    this.pending = Math.max(0, this.pending - delivered);
    if (!persist) return;
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

  /**
   * Rewrites the spool without its delivered prefix (after an export sink
   * dropped its oldest events) and returns the new size. The offset is reset
   * before the rename: a crash in between replays delivered events again
   * (duplicates receivers tolerate), never skips undelivered ones.
   */
  compact(): number {
    const rest = readFileSync(this.path).subarray(this.offset);
    const tmp = `${this.path}.tmp`;
    writeFileSync(tmp, rest, { mode: 0o600 });
    removeIfExists(this.#offsetPath);
    renameSync(tmp, this.path);
    this.offset = 0;
    return rest.length;
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

/**
 * Appends `buf` to `path` with one write(2) on an O_APPEND descriptor. If
 * the write fails or is cut short (ENOSPC, EDQUOT), the bytes it left are
 * taken back (when the file grew by exactly them: nobody else appended), so
 * a reader never meets half a line glued to the next one.
 */
export function appendWhole(path: string, buf: Buffer, mode = 0o600): void {
  const fd = openSync(path, 'a', mode);
  try {
    writeWhole(fd, buf);
  } finally {
    closeSync(fd);
  }
}

/**
 * One write(2) of `buf` on the O_APPEND descriptor `fd`. A failed or short
 * write is taken back; the error thrown has `torn: true` when that was not
 * possible (the file may now end in a fragment: the next writer starts a
 * new line).
 */
export function writeWhole(fd: number, buf: Buffer): void {
  const before = fstatSync(fd).size;
  let written = 0;
  try {
    written = writeSync(fd, buf);
  } catch (err) {
    throw Object.assign(err as Error, { torn: !takeBack(fd, before, 0) });
  }
  if (written !== buf.length) {
    const err = new Error(`short write (${written} of ${buf.length} bytes): the disk may be full`);
    throw Object.assign(err, { code: 'ENOSPC', torn: !takeBack(fd, before, written) });
  }
}

/** Removes the bytes a failed write left at the end; true when the file is whole (again). */
function takeBack(fd: number, before: number, written: number): boolean {
  let size: number;
  try {
    size = fstatSync(fd).size;
  } catch {
    return false;
  }
  if (size === before) return true;
  // Only our own bytes: if the file grew by more, another process appended too.
  if (size !== before + written) return false;
  try {
    ftruncateSync(fd, before);
    return true;
  } catch {
    return false;
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
