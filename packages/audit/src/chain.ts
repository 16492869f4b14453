import { createHash } from 'node:crypto';
import {
  fstatSync,
  lstatSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  readSync,
  renameSync,
  statSync,
  symlinkSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';

/**
 * The hash chain of the JSON-lines audit record (decision 0029). Every line
 * the JSONL sink writes starts with `{"chain":{"seq":N,"prev":"<hex>"},`:
 * `seq` counts lines over all files of the directory (1 for the first ever),
 * `prev` is the SHA-256 of the previous line's exact bytes (without its
 * newline), across file boundaries; the first line ever links to GENESIS.
 * Each file's first line is also recorded in a signed sidecar
 * `<file>.head`, so rewriting the chain from some point on needs the
 * audit key from the CA store.
 */
export interface ChainLink {
  seq: number;
  prev: string;
}

export const GENESIS = '0'.repeat(64);

/** SHA-256 (hex) of one line's bytes, without the trailing newline. */
export function lineHash(line: Buffer | string): string {
  const h = createHash('sha256');
  if (typeof line === 'string') {
    h.update(line.endsWith('\n') ? line.slice(0, -1) : line, 'utf8');
  } else {
    h.update(line.at(-1) === 0x0a ? line.subarray(0, -1) : line);
  }
  return h.digest('hex');
}

/**
 * `line` (one event as JSON, `{...}` with or without newline) with the chain
 * link as its first field. First, so even a line cut short by a crash still
 * says where it belonged.
 */
export function withChain(line: string, link: ChainLink): string {
  return `{"chain":{"seq":${link.seq},"prev":"${link.prev}"},${line.slice(1)}`;
}

/** Signs file heads with the audit key of the CA store (core owns the key). */
export interface HeadSigner {
  readonly keyId: string;
  sign(data: Buffer): Buffer;
}

/** `<file>.head`: where a file's chain starts, signed. */
export interface HeadRecord {
  v: 1;
  file: string;
  /** The first line's link: its seq and the hash of the line before it (in the previous file). */
  seq: number;
  prev: string;
  /** SHA-256 of the first line. */
  first: string;
  key_id?: string;
  /** base64 Ed25519 signature over `headPayload(...)`. */
  sig?: string;
}

export function headPath(dir: string, file: string): string {
  return join(dir, `${file}.head`);
}

/** The signed bytes: a fixed prefix and every field on its own line, so no field can bleed into another. */
export function headPayload(h: Pick<HeadRecord, 'file' | 'seq' | 'prev' | 'first'>): Buffer {
  return Buffer.from(`gatehouse-audit-head-v1\n${h.file}\n${h.seq}\n${h.prev}\n${h.first}\n`, 'utf8');
}

/** `chain-anchor.json`: after retention removed the oldest files, where the kept chain starts. */
export interface AnchorRecord {
  v: 1;
  /** The oldest file kept. */
  file: string;
  seq: number;
  prev: string;
  /** Files removed, and when. */
  removed: string[];
  time: string;
  key_id?: string;
  sig?: string;
}

export const ANCHOR_FILE = 'chain-anchor.json';

export function anchorPayload(a: Pick<AnchorRecord, 'file' | 'seq' | 'prev'>): Buffer {
  return Buffer.from(`gatehouse-audit-anchor-v1\n${a.file}\n${a.seq}\n${a.prev}\n`, 'utf8');
}

export function signed<T extends HeadRecord | AnchorRecord>(
  rec: T,
  payload: Buffer,
  signer: HeadSigner | undefined,
): T {
  if (!signer) return rec;
  return { ...rec, key_id: signer.keyId, sig: signer.sign(payload).toString('base64') };
}

/** Writes a small JSON file atomically (temp file + rename), mode 0600. */
export function writeJsonAtomic(path: string, value: unknown): void {
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(value)}\n`, { mode: 0o600 });
  renameSync(tmp, path);
}

export function readJson<T>(path: string): T | undefined {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  try {
    return JSON.parse(text) as T;
  } catch {
    return undefined;
  }
}

/** The link a parsed line carries, if it is a well-formed one. */
export function linkOf(value: unknown): ChainLink | undefined {
  const c = (value as { chain?: unknown } | null)?.chain as Partial<ChainLink> | undefined;
  if (
    c &&
    typeof c === 'object' &&
    Number.isSafeInteger(c.seq) &&
    (c.seq as number) >= 1 &&
    typeof c.prev === 'string' &&
    /^[0-9a-f]{64}$/.test(c.prev)
  ) {
    return { seq: c.seq as number, prev: c.prev };
  }
  return undefined;
}

/** The end of a file: its last complete line (without newline) and any bytes after it. */
export interface FileTail {
  last: Buffer | undefined;
  /** Bytes after the last newline: empty, a whole line missing only its newline, or a torn write. */
  rest: Buffer;
}

/** Reads backwards from `size` until the last complete line is found (lines may be long). */
export function readTail(fd: number, size: number): FileTail {
  let window = Math.min(size, 64 * 1024);
  for (;;) {
    const buf = Buffer.alloc(window);
    const start = size - window;
    readSync(fd, buf, 0, window, start);
    const lastNl = buf.lastIndexOf(0x0a);
    if (lastNl === -1 && start > 0) {
      window = Math.min(size, window * 4);
      continue;
    }
    const rest = Buffer.from(buf.subarray(lastNl + 1));
    if (lastNl === -1) return { last: undefined, rest };
    const prevNl = lastNl === 0 ? -1 : buf.lastIndexOf(0x0a, lastNl - 1);
    if (prevNl === -1 && start > 0) {
      window = Math.min(size, window * 4);
      continue;
    }
    return { last: Buffer.from(buf.subarray(prevNl + 1, lastNl)), rest };
  }
}

/** The chain state at the end of a file, and whether the file needs a newline before the next line. */
export interface ChainTail extends ChainLink {
  /** The hash of the last line (the `prev` of the next one). */
  hash: string;
  /** The file ends in bytes without a newline (a torn write): terminate them first. */
  needsNewline: boolean;
}

/**
 * Where the chain stands at the end of the file `fd` (of `size` bytes), or
 * undefined when it holds no chained line (a new file, or one whose only
 * line was torn). A last line missing only its newline counts as written; a
 * torn fragment does not (the next line links past it, and verify reports
 * it as truncated).
 */
export function tailOf(fd: number, size: number): ChainTail | undefined {
  if (size === 0) return undefined;
  const { last, rest } = readTail(fd, size);
  const needsNewline = rest.length > 0;
  if (rest.length > 0) {
    const link = parseLink(rest);
    if (link) return { seq: link.seq, prev: link.prev, hash: lineHash(rest), needsNewline };
  }
  if (last === undefined) return undefined;
  const link = parseLink(last);
  if (!link) {
    // The last whole line is not a chained event (a fragment terminated by an
    // earlier writer): the chain goes on from the line before it.
    const before = size - rest.length - last.length - 1;
    const t = tailOf(fd, before);
    return t ? { ...t, needsNewline } : undefined;
  }
  return { seq: link.seq, prev: link.prev, hash: lineHash(last), needsNewline };
}

function parseLink(line: Buffer): ChainLink | undefined {
  try {
    return linkOf(JSON.parse(line.toString('utf8')));
  } catch {
    return undefined;
  }
}

/** Locks this process holds, by path: a second writer on the same directory in this process takes it over. */
const heldHere = new Map<string, DirLock>();
/** How often a lock holder that keeps writing looks for another writer's request. */
const WANT_CHECK_MS = 2;

/**
 * A lock shared by every process that writes to one audit directory. Node
 * has no flock(2): the lock is a symlink, created atomically, whose target
 * is the owner's pid; one whose process is gone is taken over.
 *
 * Creating and removing it costs two directory updates (~50-200 µs on ext4),
 * more than chaining a line, so a writer keeps it between batches (a lease)
 * and lets go after `idleMs` without writes, or right after its current
 * batch once another writer has asked for it (`.chain.want`). `generation`
 * changes whenever the lock was let go, so the holder knows when to re-read
 * what other writers may have written meanwhile.
 */
export class DirLock {
  readonly path: string;
  readonly #wantPath: string;
  readonly #idleMs: number;
  readonly #timeoutMs: number;
  readonly #onRelease: (() => void) | undefined;
  readonly #sleeper = new Int32Array(new SharedArrayBuffer(4));
  #held = false;
  #lastUse = 0;
  /** When `run` last looked for another writer's request (see WANT_CHECK_MS). */
  #lastWantCheck = 0;
  #timer: NodeJS.Timeout | undefined;
  generation = 0;

  /** `onRelease` runs just before the lock is let go (the writer saves what the next one needs). */
  constructor(dir: string, opts: { idleMs?: number; timeoutMs?: number; onRelease?: () => void } = {}) {
    this.#onRelease = opts.onRelease;
    this.path = join(dir, '.chain.lock');
    this.#wantPath = join(dir, '.chain.want');
    this.#idleMs = opts.idleMs ?? 20;
    this.#timeoutMs = opts.timeoutMs ?? 30_000;
  }

  /** Whether this writer holds the lock now (it keeps it between batches until idle or asked). */
  get held(): boolean {
    return this.#held;
  }

  /** Runs `fn` holding the lock (synchronously: `fn` never spans an await). */
  run<T>(fn: () => T): T {
    if (!this.#held) this.#acquire();
    let ok = false;
    try {
      const out = fn();
      ok = true;
      return out;
    } finally {
      const now = Date.now();
      this.#lastUse = now;
      // After a failure, or when another writer waits: let go now. Under load
      // a batch follows another every few microseconds; looking for a request
      // (an lstat: it is a symlink to a pid, which existsSync would follow)
      // once per WANT_CHECK_MS instead of per batch keeps the batch at one
      // write(2), and delays the other writer by at most that.
      let wanted = false;
      if (ok && now - this.#lastWantCheck >= WANT_CHECK_MS) {
        this.#lastWantCheck = now;
        wanted = lstatSync(this.#wantPath, { throwIfNoEntry: false }) !== undefined;
      }
      if (!ok || wanted) this.release();
      else this.#armIdle();
    }
  }

  /** Lets go of the lock (idle, closing, or another writer in this process needs it). */
  release(): void {
    if (this.#timer) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    if (!this.#held) return;
    try {
      this.#onRelease?.();
    } catch {
      // Only a hint for the next holder: one it cannot trust (stale, torn,
      // missing) makes it read the end of the files back instead.
    } finally {
      this.#held = false;
      this.generation++;
      if (heldHere.get(this.path) === this) heldHere.delete(this.path);
      removeIfPresent(this.path);
    }
  }

  #armIdle(): void {
    if (this.#timer) return;
    const t = setTimeout(() => {
      this.#timer = undefined;
      if (Date.now() - this.#lastUse >= this.#idleMs) this.release();
      else this.#armIdle();
    }, this.#idleMs);
    // A lease never keeps a process alive; a process that exits holding it leaves a stale lock others take over.
    t.unref();
    this.#timer = t;
  }

  #acquire(): void {
    // Same process, same directory (two gateways on one data dir): the other writer is between batches.
    heldHere.get(this.path)?.release();
    const deadline = Date.now() + this.#timeoutMs;
    this.#letWaiterFirst(deadline);
    let asked = false;
    for (let spins = 0; ; spins++) {
      try {
        symlinkSync(String(process.pid), this.path);
        this.#held = true;
        this.generation++;
        heldHere.set(this.path, this);
        if (asked) removeIfPresent(this.#wantPath);
        return;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
      if (this.#stale()) {
        // Take it over by renaming first: of two processes that both found it
        // stale, only one rename succeeds.
        const mine = `${this.path}.stale.${process.pid}`;
        try {
          renameSync(this.path, mine);
          unlinkSync(mine);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
        }
        continue;
      }
      if (!asked) {
        // Ask the holder to let go after its current batch instead of at its next idle moment.
        try {
          symlinkSync(String(process.pid), this.#wantPath);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        }
        asked = true;
      }
      if (Date.now() > deadline) {
        throw Object.assign(
          new Error(
            `the audit chain lock ${this.path} has been held for ${this.#timeoutMs} ms by another process`,
          ),
          { code: 'ETIMEDOUT' },
        );
      }
      Atomics.wait(this.#sleeper, 0, 0, Math.min(0.2 * (1 + spins), 5));
    }
  }

  /**
   * Another process asked for the lock (and this one probably just let go
   * for it): give it the turn instead of taking the lock straight back. It
   * removes its request once it holds the lock.
   */
  #letWaiterFirst(deadline: number): void {
    for (let spins = 0; Date.now() < deadline; spins++) {
      let pid: number;
      try {
        pid = Number(readlinkSync(this.#wantPath));
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ENOENT' || code === 'EINVAL') return;
        throw err;
      }
      if (pid === process.pid || !alive(pid)) {
        removeIfPresent(this.#wantPath);
        return;
      }
      // Bounded: a waiter that never shows up costs at most this long once.
      if (spins > 200) return;
      Atomics.wait(this.#sleeper, 0, 0, 0.5);
    }
  }

  #stale(): boolean {
    let pid: number;
    try {
      pid = Number(readlinkSync(this.path));
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return false;
      // Not a symlink: not ours to keep.
      if (code === 'EINVAL') return true;
      throw err;
    }
    if (!Number.isSafeInteger(pid) || pid <= 0) return true;
    // Ours, but no writer of this process holds it: left behind by one that failed.
    if (pid === process.pid) return !heldHere.has(this.path);
    return !alive(pid);
  }
}

function alive(pid: number): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}

function removeIfPresent(path: string): void {
  try {
    unlinkSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}

/** Whether the first `size` bytes of `fd` end in a newline (true when empty). */
export function endsWithNewline(fd: number, size: number): boolean {
  if (size === 0) return true;
  const last = Buffer.alloc(1);
  readSync(fd, last, 0, 1, size - 1);
  return last[0] === 0x0a;
}

/** Size of a file, 0 when it does not exist. */
export function sizeOf(path: string): number {
  try {
    return statSync(path).size;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 0;
    throw err;
  }
}

export function fdSize(fd: number): number {
  return fstatSync(fd).size;
}

export const FILE_RE = /^events-(\d{4}-\d{2}-\d{2})(?:\.(\d+))?\.jsonl$/;

export function fileName(day: string, n: number): string {
  return n === 0 ? `events-${day}.jsonl` : `events-${day}.${n}.jsonl`;
}

/** The UTC day and sequence number in an event file's name. */
export function fileKey(file: string): { day: string; n: number } | undefined {
  const m = FILE_RE.exec(file);
  return m ? { day: m[1] as string, n: Number(m[2] ?? 0) } : undefined;
}

/** Event files (`events-YYYY-MM-DD[.N].jsonl`) in `dir`, oldest first; none when it does not exist. */
export function eventFiles(dir: string): string[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  return names
    .map((f) => ({ f, k: fileKey(f) }))
    .filter((x): x is { f: string; k: { day: string; n: number } } => x.k !== undefined)
    .sort((a, b) => (a.k.day !== b.k.day ? (a.k.day < b.k.day ? -1 : 1) : a.k.n - b.k.n))
    .map((x) => x.f);
}
