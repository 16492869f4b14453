import { closeSync, fstatSync, mkdirSync, openSync, readSync, statSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { eventFiles, FILE_RE, fileName, type HeadSigner } from '../chain.js';
import { ChainWriter } from '../chain-writer.js';
import type { AuditEvent } from '../events.js';
import { writeWhole } from '../spool.js';
import type { AuditSink } from './types.js';

export interface JsonlFileSinkOptions {
  /** Directory for the event files; created (mode 0700) if missing. */
  dir: string;
  /** Start a new numbered file once the current one would grow beyond this. Default 64 MiB. */
  maxBytes?: number;
  /** Keep at most this many event files; the oldest are deleted on rotation. Default: keep all. */
  maxFiles?: number;
  name?: string;
  /**
   * Hash-chain every line (decision 0029): each line starts with
   * `"chain":{"seq","prev"}` and each file gets a signed `<file>.head`.
   * Writers of one directory then take turns through a lock file. Default false.
   */
  chain?: boolean;
}

const DAY_RE = /^\d{4}-\d{2}-\d{2}$/;

const NEWLINE = Buffer.from('\n');

function endsWithNewline(fd: number): boolean {
  const size = fstatSync(fd).size;
  if (size === 0) return true;
  const last = Buffer.alloc(1);
  readSync(fd, last, 0, 1, size - 1);
  return last[0] === 0x0a;
}

interface Current {
  day: string;
  n: number;
  fd: number;
}

/**
 * The audit record: one JSON line per event in `events-YYYY-MM-DD[.N].jsonl`
 * (UTC day of the event).
 *
 * Several processes (the daemon and a local admin CLI) may append to the same
 * directory. Each line is written with one write(2) on an O_APPEND descriptor,
 * so lines from different processes never interleave. Rotation never renames
 * a file: it opens the next number, so a process that still holds the old
 * file keeps appending to a file that exists, and finds the newer one the
 * next time it sees its own file is full.
 */
export class JsonlFileSink implements AuditSink {
  readonly name: string;
  readonly dir: string;
  readonly #maxBytes: number;
  readonly #maxFiles: number | undefined;
  #cur: Current | undefined;
  /** A failed write may have left a fragment at the end of a file. */
  #torn = false;
  readonly #chain: ChainWriter | undefined;

  constructor(opts: JsonlFileSinkOptions) {
    this.name = opts.name ?? 'jsonl';
    this.dir = opts.dir;
    this.#maxBytes = opts.maxBytes ?? 64 * 1024 * 1024;
    this.#maxFiles = opts.maxFiles;
    if (!(this.#maxBytes > 0)) throw new RangeError('JsonlFileSink: maxBytes must be positive');
    if (this.#maxFiles !== undefined && !(Number.isInteger(this.#maxFiles) && this.#maxFiles >= 1)) {
      throw new RangeError('JsonlFileSink: maxFiles must be a positive integer');
    }
    if (opts.chain) {
      this.#chain = new ChainWriter({
        dir: this.dir,
        maxBytes: this.#maxBytes,
        files: () => this.files(),
        ...(this.#maxFiles !== undefined ? { maxFiles: this.#maxFiles } : {}),
      });
    }
  }

  /**
   * The key that signs each file's head (the CA store's audit key). The CA
   * store writes its own first events before it can hand the key over: the
   * head of the file being written is signed then.
   */
  setHeadSigner(signer: HeadSigner): void {
    this.#chain?.setSigner(signer);
  }

  get chained(): boolean {
    return this.#chain !== undefined;
  }

  write(e: AuditEvent): void {
    if (this.#chain) {
      this.#chain.write([e]);
      return;
    }
    const day = e.time.slice(0, 10);
    // The day becomes part of a file name: never let a malformed time pick the path.
    if (!DAY_RE.test(day)) throw new Error(`JsonlFileSink: event ${e.id} has a malformed time ${e.time}`);
    const line = Buffer.from(`${JSON.stringify(e)}\n`, 'utf8');
    this.#append(this.#fdFor(day, line.length), line);
  }

  /**
   * Group commit: consecutive events of one day go out in a single write(2),
   * so lines from other processes still never land inside a batch line.
   * `lines`, when given, holds each event's JSON line (the log serializes once).
   */
  writeBatch(events: AuditEvent[], lines?: readonly string[]): void {
    if (this.#chain) {
      this.#chain.write(events, lines);
      return;
    }
    let i = 0;
    while (i < events.length) {
      const day = events[i]!.time.slice(0, 10);
      if (!DAY_RE.test(day)) {
        throw new Error(`JsonlFileSink: event ${events[i]!.id} has a malformed time ${events[i]!.time}`);
      }
      let text = '';
      let j = i;
      for (; j < events.length && events[j]!.time.slice(0, 10) === day; j++) {
        text += lines?.[j] ?? `${JSON.stringify(events[j])}\n`;
      }
      const buf = Buffer.from(text, 'utf8');
      this.#append(this.#fdFor(day, buf.length), buf);
      i = j;
    }
  }

  async close(): Promise<void> {
    this.#closeCurrent();
    this.#chain?.close();
  }

  /**
   * One write(2), whole or not at all: a write cut short by a full disk is
   * taken back, so no event is ever glued to half of another. If even that
   * failed, the next write starts on a new line: the fragment stays a line of
   * its own (a reader skips it) and the events after it are intact.
   */
  #append(fd: number, buf: Buffer): void {
    let data = buf;
    if (this.#torn && !endsWithNewline(fd)) data = Buffer.concat([NEWLINE, buf]);
    try {
      writeWhole(fd, data);
    } catch (err) {
      if ((err as { torn?: boolean }).torn) this.#torn = true;
      throw err;
    }
    this.#torn = false;
  }

  /** Event files in this directory, oldest first. */
  files(): string[] {
    return eventFiles(this.dir);
  }

  #fdFor(day: string, lineLen: number): number {
    const cur = this.#cur;
    if (cur && cur.day === day && !this.#full(fstatSync(cur.fd).size, lineLen)) return cur.fd;
    // Day changed, first write, or our file is full: find the newest file of
    // that day (another process may have rotated already) and use it if it has room.
    this.#closeCurrent();
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    let n = this.#highest(day);
    let size = this.#size(join(this.dir, fileName(day, n)));
    if (this.#full(size, lineLen)) {
      n++;
      size = 0;
    }
    const fd = openSync(join(this.dir, fileName(day, n)), 'a+', 0o600);
    this.#cur = { day, n, fd };
    if (this.#maxFiles !== undefined && size === 0) this.#prune(this.#maxFiles);
    return fd;
  }

  #full(size: number, lineLen: number): boolean {
    // An empty file always takes the line, so one oversized event cannot loop forever.
    return size > 0 && size + lineLen > this.#maxBytes;
  }

  #highest(day: string): number {
    let max = 0;
    for (const f of this.files()) {
      const m = FILE_RE.exec(f);
      if (m && m[1] === day) max = Math.max(max, Number(m[2] ?? 0));
    }
    return max;
  }

  #size(path: string): number {
    try {
      return statSync(path).size;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 0;
      throw err;
    }
  }

  #prune(keep: number): void {
    const all = this.files();
    const current = this.#cur ? fileName(this.#cur.day, this.#cur.n) : undefined;
    for (const f of all.slice(0, Math.max(0, all.length - keep))) {
      if (f === current) continue;
      try {
        unlinkSync(join(this.dir, f));
      } catch (err) {
        // Another process pruning the same directory got there first.
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      }
    }
  }

  #closeCurrent(): void {
    if (this.#cur) {
      closeSync(this.#cur.fd);
      this.#cur = undefined;
    }
  }
}
