import { closeSync, constants, mkdirSync, openSync, readSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import {
  ANCHOR_FILE,
  type AnchorRecord,
  anchorPayload,
  type ChainTail,
  DirLock,
  endsWithNewline,
  eventFiles,
  fdSize,
  fileKey,
  fileName,
  GENESIS,
  type HeadRecord,
  type HeadSigner,
  headPath,
  headPayload,
  lineHash,
  readJson,
  signed,
  tailOf,
  withChain,
  writeJsonAtomic,
} from './chain.js';
import type { AuditEvent } from './events.js';
import { writeWhole } from './spool.js';

/** Where the chain ends, and in which file; `firstHere`: the newest file has no chained line yet. */
type End = ChainTail & { file: string; firstHere?: boolean };

/** `.chain.state`: where the last writer left the chain, so the next one need not read the file back. */
interface ChainState {
  file: string;
  size: number;
  seq: number;
  hash: string;
}

const STATE_FILE = '.chain.state';
/**
 * The state is rewritten in place at offset 0, padded to a fixed size: on
 * ext4, truncating and rewriting a small file each time made the kernel
 * flush it on close (auto_da_alloc), ~3 ms per batch.
 */
const STATE_BYTES = 256;
const NEWLINE = Buffer.from('\n');
/** Bytes a chain prefix adds to a line: `"chain":{"seq":N,"prev":"<64 hex>"},`. */
const PREFIX_BYTES = 100;

export interface ChainWriterOptions {
  dir: string;
  maxBytes: number;
  maxFiles?: number;
  files: () => string[];
}

/**
 * Writes chained lines for the JSON-lines sink. Every batch is chained and
 * appended while holding the directory's lock, so the daemon and a local
 * admin command writing to the same directory extend one chain, in file
 * order. The chain always continues in the newest file: an event stamped
 * just before midnight that is written after another process opened the
 * next day's file goes there (its `time` still says when it happened).
 */
export class ChainWriter {
  readonly #dir: string;
  readonly #maxBytes: number;
  readonly #maxFiles: number | undefined;
  readonly #files: () => string[];
  readonly #lock: DirLock;
  readonly #statePath: string;
  #signer: HeadSigner | undefined;
  #cur: { file: string; fd: number } | undefined;
  #stateFd: number | undefined;
  /** The state as this writer left it, valid while it kept the lock (same generation). */
  #cache: { gen: number; st: ChainState } | undefined;

  constructor(opts: ChainWriterOptions) {
    this.#dir = opts.dir;
    this.#maxBytes = opts.maxBytes;
    this.#maxFiles = opts.maxFiles;
    this.#files = opts.files;
    // The state file is written when the lock is let go: while this writer
    // holds it, nobody else needs it, and after a crash the files are read back.
    this.#lock = new DirLock(opts.dir, { onRelease: () => this.#flushState() });
    this.#statePath = join(opts.dir, STATE_FILE);
  }

  setSigner(signer: HeadSigner): void {
    this.#signer = signer;
    // The newest file may have been started before the key was available
    // (the CA store audits its own creation): sign its head now.
    mkdirSync(this.#dir, { recursive: true, mode: 0o700 });
    this.#lock.run(() => {
      const newest = this.#files().at(-1);
      if (newest === undefined) return;
      const head = readJson<HeadRecord>(headPath(this.#dir, newest));
      if (head && head.sig === undefined && head.file === newest) {
        writeJsonAtomic(headPath(this.#dir, newest), signed(head, headPayload(head), signer));
      }
    });
  }

  /**
   * Chains and writes `events` in one write(2). `lines[i]`, when given, is
   * `events[i]` serialized by the log (without a chain). Each event gets its
   * `chain` field once the write succeeded, so sinks that see it afterwards
   * export the same link.
   */
  write(events: AuditEvent[], lines?: readonly string[]): void {
    if (events.length === 0) return;
    const bodies = events.map((e, i) => {
      const line = lines?.[i];
      if (line !== undefined && !line.startsWith('{"chain"'))
        return line.endsWith('\n') ? line.slice(0, -1) : line;
      // An event handed over again (a replay) is chained afresh where it lands now.
      const { chain: _chain, ...rest } = e as AuditEvent & { chain?: unknown };
      return JSON.stringify(rest);
    });
    const lastDay = events.at(-1)?.time.slice(0, 10) ?? '';
    // The directory exists while this writer holds its lock (the lock is a file in it): make
    // sure of it only when taking the lock, not at every batch (two syscalls each time).
    if (!this.#lock.held) mkdirSync(this.#dir, { recursive: true, mode: 0o700 });
    const links = this.#lock.run(() => {
      const approx = bodies.reduce((n, b) => n + Buffer.byteLength(b) + PREFIX_BYTES, 0);
      const { file, tail, size } = this.#target(lastDay, approx);
      const fd = this.#fd(file);
      // The size #target just read (under this lock) for the newest file; one fstat otherwise.
      const before = size ?? fdSize(fd);
      let seq = tail?.seq ?? 0;
      let prev = tail?.hash ?? GENESIS;
      const out: { seq: number; prev: string }[] = [];
      let text = '';
      let firstHash = '';
      for (const body of bodies) {
        const link = { seq: seq + 1, prev };
        const line = withChain(body, link);
        prev = lineHash(line);
        if (out.length === 0) firstHash = prev;
        seq = link.seq;
        out.push(link);
        text += `${line}\n`;
      }
      let buf = Buffer.from(text, 'utf8');
      // A torn write at the end of the file becomes a line of its own; the chain links past it.
      if (tail?.needsNewline && tail.file === file) buf = Buffer.concat([NEWLINE, buf]);
      writeWhole(fd, buf);
      // The file's first chained line (a new file, or one with only older, unchained lines or a fragment).
      if (before === 0 || (tail?.firstHere && tail.file === file))
        this.#writeHead(file, out[0] as { seq: number; prev: string }, firstHash);
      this.#saveState({ file, size: before + buf.length, seq, hash: prev });
      return out;
    });
    events.forEach((e, i) => {
      (e as AuditEvent & { chain?: unknown }).chain = links[i];
    });
  }

  close(): void {
    this.#lock.release();
    this.#closeFile();
    if (this.#stateFd !== undefined) {
      closeSync(this.#stateFd);
      this.#stateFd = undefined;
    }
  }

  #closeFile(): void {
    if (this.#cur) {
      closeSync(this.#cur.fd);
      this.#cur = undefined;
    }
  }

  /**
   * The file the next batch goes to, and the chain's end before it
   * (undefined: the first line ever); `size`: that file's size when known.
   */
  #target(day: string, bytes: number): { file: string; tail: End | undefined; size?: number } {
    const end = this.#end();
    const newest = end.newest;
    if (newest === undefined) return { file: fileName(day, 0), tail: undefined };
    const nk = fileKey(newest) as { day: string; n: number };
    const useDay = day > nk.day ? day : nk.day;
    if (useDay === nk.day) {
      const size = end.newestSize;
      // An empty file always takes the batch, so one oversized event cannot loop forever.
      if (size === 0 || size + bytes <= this.#maxBytes)
        return { file: newest, tail: end.tail, ...(size >= 0 ? { size } : {}) };
      return { file: this.#rotated(fileName(useDay, nk.n + 1)), tail: end.tail };
    }
    return { file: this.#rotated(fileName(useDay, 0)), tail: end.tail };
  }

  #rotated(file: string): string {
    if (this.#maxFiles !== undefined) {
      const all = this.#files();
      const remove = all.slice(0, Math.max(0, all.length + 1 - this.#maxFiles));
      if (remove.length > 0) removeOldest(this.#dir, all, remove.length, this.#signer);
    }
    return file;
  }

  /** The newest file and where the chain ends: from the state file, or read back after a crash. */
  #end(): {
    newest: string | undefined;
    newestSize: number;
    tail: End | undefined;
  } {
    const st = this.#cache?.gen === this.#lock.generation ? this.#cache.st : this.#readState();
    if (st && typeof st.file === 'string' && fileKey(st.file)) {
      const size = this.#sizeOf(st.file);
      if (size === st.size) {
        return {
          newest: st.file,
          newestSize: size,
          tail: { file: st.file, seq: st.seq, prev: '', hash: st.hash, needsNewline: false },
        };
      }
    }
    // No state, or a write after it (a crash between the write and the state
    // update, a torn write, or a writer without the chain): read the files back.
    const files = this.#files();
    const newest = files.at(-1);
    if (newest === undefined) return { newest: undefined, newestSize: 0, tail: undefined };
    const newestSize = this.#sizeOf(newest);
    for (let i = files.length - 1; i >= 0; i--) {
      const f = files[i] as string;
      const fd = openSync(join(this.#dir, f), 'r');
      try {
        const t = tailOf(fd, fdSize(fd));
        if (t)
          return {
            newest,
            newestSize,
            tail: { ...t, file: f, needsNewline: f === newest && t.needsNewline },
          };
        // The newest file may hold only a torn fragment: it still needs its newline.
        // The newest file holds no chained line: only a torn fragment, or
        // lines from before the chain was enabled. The chain goes on from an
        // older file, or starts here.
        if (f === newest && newestSize > 0) {
          const needsNewline = !endsWithNewline(fd, newestSize);
          const prevEnd = this.#tailBefore(files, i);
          return {
            newest,
            newestSize,
            tail: prevEnd
              ? { ...prevEnd, needsNewline, file: newest, firstHere: true }
              : { seq: 0, prev: GENESIS, hash: GENESIS, needsNewline, file: newest, firstHere: true },
          };
        }
      } finally {
        closeSync(fd);
      }
    }
    return { newest, newestSize, tail: undefined };
  }

  #tailBefore(files: string[], i: number): ChainTail | undefined {
    for (let j = i - 1; j >= 0; j--) {
      const fd = openSync(join(this.#dir, files[j] as string), 'r');
      try {
        const t = tailOf(fd, fdSize(fd));
        if (t) return t;
      } finally {
        closeSync(fd);
      }
    }
    return undefined;
  }

  #sizeOf(file: string): number {
    if (this.#cur?.file === file) return fdSize(this.#cur.fd);
    try {
      const fd = openSync(join(this.#dir, file), 'r');
      try {
        return fdSize(fd);
      } finally {
        closeSync(fd);
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return -1;
      throw err;
    }
  }

  #fd(file: string): number {
    if (this.#cur?.file === file) return this.#cur.fd;
    this.#closeFile();
    const fd = openSync(join(this.#dir, file), 'a+', 0o600);
    this.#cur = { file, fd };
    return fd;
  }

  #writeHead(file: string, link: { seq: number; prev: string }, first: string): void {
    const head: HeadRecord = { v: 1, file, seq: link.seq, prev: link.prev, first };
    writeJsonAtomic(headPath(this.#dir, file), signed(head, headPayload(head), this.#signer));
  }

  #state(): number {
    // Read-write without O_APPEND, so the state is rewritten at offset 0.
    this.#stateFd ??= openSync(this.#statePath, constants.O_RDWR | constants.O_CREAT, 0o600);
    return this.#stateFd;
  }

  #readState(): ChainState | undefined {
    const buf = Buffer.alloc(STATE_BYTES);
    const n = readSync(this.#state(), buf, 0, STATE_BYTES, 0);
    try {
      return JSON.parse(buf.toString('utf8', 0, n)) as ChainState;
    } catch {
      return undefined;
    }
  }

  #saveState(st: ChainState): void {
    this.#cache = { gen: this.#lock.generation, st };
  }

  #flushState(): void {
    const st = this.#cache?.gen === this.#lock.generation ? this.#cache.st : undefined;
    if (!st) return;
    // One positioned write, not atomic on purpose: a torn state fails to
    // parse or to match the file size, and the end is read back from the files.
    const text = JSON.stringify(st);
    const buf = Buffer.alloc(STATE_BYTES, 0x20);
    buf.write(text, 'utf8');
    writeSync(this.#state(), buf, 0, STATE_BYTES, 0);
  }
}

/**
 * Removes the `count` oldest of `files` (with their heads) and records where
 * the kept chain now starts in a signed `chain-anchor.json`, so `audit
 * verify` can tell files removed by retention from files removed by
 * someone else. The anchor is written before anything is deleted. Call with
 * the directory's lock held (ChainWriter) or through `removeOldestLocked`.
 */
function removeOldest(dir: string, files: string[], count: number, signer: HeadSigner | undefined): string[] {
  const remove = files.slice(0, count);
  const keep = files[count];
  if (keep === undefined || remove.length === 0) return [];
  const head = readJson<HeadRecord>(headPath(dir, keep)) ?? firstLink(dir, keep);
  const old = readJson<AnchorRecord>(join(dir, ANCHOR_FILE));
  const anchor: AnchorRecord = {
    v: 1,
    file: keep,
    seq: head?.seq ?? 0,
    prev: head?.prev ?? GENESIS,
    removed: [...(old?.removed ?? []), ...remove].slice(-1000),
    time: new Date().toISOString(),
  };
  writeJsonAtomic(join(dir, ANCHOR_FILE), signed(anchor, anchorPayload(anchor), signer));
  for (const f of remove) {
    for (const p of [join(dir, f), headPath(dir, f)]) {
      try {
        unlinkSync(p);
      } catch (err) {
        // Another process removed it first.
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      }
    }
  }
  return remove;
}

/** The link of a file's first line, when its head sidecar is missing. */
function firstLink(dir: string, file: string): { seq: number; prev: string } | undefined {
  const fd = openSync(join(dir, file), 'r');
  try {
    const buf = Buffer.alloc(256);
    const n = readSync(fd, buf, 0, buf.length, 0);
    const m = /^\{"chain":\{"seq":(\d+),"prev":"([0-9a-f]{64})"\}/.exec(buf.toString('utf8', 0, n));
    return m ? { seq: Number(m[1]), prev: m[2] as string } : undefined;
  } finally {
    closeSync(fd);
  }
}

/**
 * Retention for a chained directory: removes the event files for which
 * `expired(file)` is true, oldest first and never the newest file, and
 * records the anchor. Returns the files removed.
 */
export function removeExpiredFiles(
  dir: string,
  expired: (file: string) => boolean,
  signer: HeadSigner | undefined,
): string[] {
  const lock = new DirLock(dir);
  return lock.run(() => {
    const files = eventFiles(dir);
    let count = 0;
    while (count < files.length - 1 && expired(files[count] as string)) count++;
    return removeOldest(dir, files, count, signer);
  });
}
