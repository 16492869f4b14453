import { createHash } from 'node:crypto';
import {
  closeSync,
  fstatSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  renameSync,
  statSync,
  unlinkSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';

/**
 * The hash chain of the JSON-lines audit record (decision 00XX). Every line
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

/**
 * A lock shared by every process that writes to one audit directory, held
 * only while a batch is chained and written (a few syscalls, never across an
 * await). Node has no flock(2): the lock is a file created with O_EXCL that
 * holds the owner's pid; one left by a killed process (pid gone, or older
 * than `staleMs`) is taken over.
 */
export class DirLock {
  readonly path: string;
  readonly #staleMs: number;
  readonly #timeoutMs: number;
  readonly #sleeper = new Int32Array(new SharedArrayBuffer(4));

  constructor(dir: string, opts: { staleMs?: number; timeoutMs?: number } = {}) {
    this.path = join(dir, '.chain.lock');
    this.#staleMs = opts.staleMs ?? 10_000;
    this.#timeoutMs = opts.timeoutMs ?? 30_000;
  }

  /** Runs `fn` holding the lock (synchronously: the lock never outlives one turn of the event loop). */
  run<T>(fn: () => T): T {
    this.#acquire();
    try {
      return fn();
    } finally {
      unlinkSync(this.path);
    }
  }

  #acquire(): void {
    const deadline = Date.now() + this.#timeoutMs;
    for (let spins = 0; ; spins++) {
      try {
        const fd = openSync(this.path, 'wx', 0o600);
        try {
          writeSync(fd, String(process.pid));
        } finally {
          closeSync(fd);
        }
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
      if (Date.now() > deadline) {
        throw Object.assign(
          new Error(
            `the audit chain lock ${this.path} has been held for ${this.#timeoutMs} ms by another process`,
          ),
          { code: 'ETIMEDOUT' },
        );
      }
      // The holder needs microseconds; sleep a little longer each time.
      Atomics.wait(this.#sleeper, 0, 0, Math.min(1 + spins, 10));
    }
  }

  #stale(): boolean {
    let pid: number;
    let mtime: number;
    try {
      pid = Number(readFileSync(this.path, 'utf8'));
      mtime = statSync(this.path).mtimeMs;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw err;
    }
    if (Date.now() - mtime > this.#staleMs) return true;
    // Empty: the holder was killed between creating and writing it (or is writing it now: mtime decides).
    if (!Number.isSafeInteger(pid) || pid <= 0) return Date.now() - mtime > 1000;
    // This thread never holds the lock across calls: one with our pid was left by a crash.
    if (pid === process.pid) return true;
    try {
      process.kill(pid, 0);
      return false;
    } catch (err) {
      return (err as NodeJS.ErrnoException).code === 'ESRCH';
    }
  }
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
