import { createPublicKey, type KeyObject, verify as verifySig } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  ANCHOR_FILE,
  type AnchorRecord,
  anchorPayload,
  type ChainLink,
  eventFiles,
  fileKey,
  GENESIS,
  type HeadRecord,
  headPath,
  headPayload,
  lineHash,
  linkOf,
  readJson,
} from './chain.js';

/**
 * What `verifyAuditChain` can find. Problems (the record was altered):
 * `edited` (a line's bytes differ from what the next line recorded),
 * `deleted` (events missing inside a file), `file_missing` (events missing
 * at a file boundary: a file removed), `reordered`, `inserted` (a line
 * without a chain link after the chain began), `start_missing` (the oldest
 * file does not start the chain and no retention anchor says why),
 * `head_invalid`, `anchor_invalid`. Warnings (not tampering): `truncated`
 * (a write cut short, e.g. by a crash or a full disk), `head_missing`,
 * `head_unsigned`, `unchained` (lines written before the chain was enabled).
 */
export type ChainProblemKind =
  | 'edited'
  | 'deleted'
  | 'file_missing'
  | 'reordered'
  | 'inserted'
  | 'start_missing'
  | 'head_invalid'
  | 'anchor_invalid'
  | 'truncated'
  | 'head_missing'
  | 'head_unsigned'
  | 'unchained';

const WARNINGS: ReadonlySet<ChainProblemKind> = new Set([
  'truncated',
  'head_missing',
  'head_unsigned',
  'unchained',
]);

export interface ChainProblem {
  kind: ChainProblemKind;
  file: string;
  /** 1-based line in `file`. */
  line?: number;
  /** The event id on that line, when it could be read. */
  id?: string;
  seq?: number;
  message: string;
}

export interface VerifyChainOptions {
  /** The audit directory (`<data dir>/audit`). */
  dir: string;
  /** Start at the first file of this UTC day, trusting its signed head. */
  since?: Date;
  /** The audit keys of the CA store by key id (public keys: PEM or KeyObject). */
  keys: Record<string, string | KeyObject>;
}

export interface VerifyChainResult {
  /** No problems (warnings allowed). */
  ok: boolean;
  files: number;
  events: number;
  /** Where verification started: the first event checked. */
  first?: { file: string; seq: number; from: 'genesis' | 'anchor' | 'head' | 'unverified' };
  /** The last event checked: its seq and hash (compare with an exported copy). */
  last?: { file: string; seq: number; hash: string };
  problems: ChainProblem[];
  warnings: ChainProblem[];
}

interface Entry {
  line: number;
  bytes: Buffer;
  /** Parsed JSON, or undefined when the bytes are not JSON (a torn write). */
  value: unknown;
  link: ChainLink | undefined;
  id: string | undefined;
  /** The last line, without a newline. */
  unterminated: boolean;
}

function entries(buf: Buffer): Entry[] {
  const out: Entry[] = [];
  let start = 0;
  let line = 1;
  while (start < buf.length) {
    let nl = buf.indexOf(0x0a, start);
    const unterminated = nl === -1;
    if (unterminated) nl = buf.length;
    const bytes = buf.subarray(start, nl);
    let value: unknown;
    try {
      value = JSON.parse(bytes.toString('utf8'));
    } catch {
      value = undefined;
    }
    const id = (value as { id?: unknown } | undefined)?.id;
    out.push({
      line,
      bytes,
      value,
      link: value === undefined ? undefined : linkOf(value),
      id: typeof id === 'string' ? id : undefined,
      unterminated,
    });
    start = nl + 1;
    line++;
  }
  return out;
}

function toKey(k: string | KeyObject): KeyObject {
  return typeof k === 'string' ? createPublicKey(k) : k;
}

/**
 * Checks the hash chain of an audit directory (decision 0029), offline: it
 * reads the files and needs only the audit public keys. It reports every
 * place the record was changed, removed or reordered, with the file, line
 * and event id, and tells a torn last line (crash) from tampering.
 */
export function verifyAuditChain(opts: VerifyChainOptions): VerifyChainResult {
  const steps = verifySteps(opts);
  for (;;) {
    const r = steps.next();
    if (r.done) return r.value;
  }
}

/**
 * The same, yielding to the event loop after each file: what a running
 * gateway answers `audit verify` with, so a long record (one file hashes in
 * ~0.1-0.2 s) never holds up the sessions it relays for longer than that.
 */
export async function verifyAuditChainAsync(opts: VerifyChainOptions): Promise<VerifyChainResult> {
  const steps = verifySteps(opts);
  for (;;) {
    const r = steps.next();
    if (r.done) return r.value;
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
}

function* verifySteps(opts: VerifyChainOptions): Generator<void, VerifyChainResult> {
  const keys = new Map<string, KeyObject>();
  for (const [id, k] of Object.entries(opts.keys)) keys.set(id, toKey(k));
  const sigOk = (rec: { key_id?: string; sig?: string }, payload: Buffer): boolean | undefined => {
    if (rec.sig === undefined || rec.key_id === undefined) return undefined;
    const key = keys.get(rec.key_id);
    if (!key) return false;
    try {
      return verifySig(null, payload, key, Buffer.from(rec.sig, 'base64'));
    } catch {
      return false;
    }
  };

  const problems: ChainProblem[] = [];
  const warnings: ChainProblem[] = [];
  const report = (p: ChainProblem) => (WARNINGS.has(p.kind) ? warnings : problems).push(p);

  let files = eventFiles(opts.dir);
  if (opts.since) {
    const day = opts.since.toISOString().slice(0, 10);
    files = files.filter((f) => (fileKey(f)?.day ?? '') >= day);
  }
  const anchor = readJson<AnchorRecord>(join(opts.dir, ANCHOR_FILE));

  let events = 0;
  let unchained = 0;
  let expSeq = 0;
  let prevHash = '';
  let prevRef: { file: string; line: number; id: string | undefined } | undefined;
  let started = false;
  let first: VerifyChainResult['first'];
  let last: VerifyChainResult['last'];
  // A line that could not be read, waiting to see whether the chain links past it.
  let torn: { file: string; line: number } | undefined;

  for (const [fi, file] of files.entries()) {
    const list = entries(readFileSync(join(opts.dir, file)));
    const firstChained = list.find((e) => e.link !== undefined);
    checkHead(file, firstChained);

    for (let i = 0; i < list.length; i++) {
      const e = list[i] as Entry;
      const link = e.link;
      if (!link) {
        if (e.value === undefined) {
          torn = { file, line: e.line };
          continue;
        }
        if (!started) {
          unchained++;
          continue;
        }
        report({
          kind: 'inserted',
          file,
          line: e.line,
          ...(e.id ? { id: e.id } : {}),
          message: `${file}:${e.line}: event ${e.id ?? '(no id)'} has no chain link: it was added to the record by hand`,
        });
        continue;
      }
      events++;
      const hash = lineHash(e.bytes);
      if (!started) {
        started = true;
        first = { file, seq: link.seq, from: startFrom(file, fi, link, e) };
        accept(file, e, link.seq, hash);
        continue;
      }
      if (link.seq === expSeq) {
        if (link.prev !== prevHash) {
          if (torn) {
            report({
              kind: 'edited',
              file: torn.file,
              line: torn.line,
              message: `${torn.file}:${torn.line}: this line is not the event that was written there (the next event records a different hash)`,
            });
          } else {
            const at = prevRef as { file: string; line: number; id: string | undefined };
            report({
              kind: 'edited',
              file: at.file,
              line: at.line,
              seq: expSeq - 1,
              ...(at.id ? { id: at.id } : {}),
              message: `${at.file}:${at.line}: event ${at.id ?? '(no id)'} was changed after it was written (its hash does not match the one the next event recorded)`,
            });
          }
        } else if (torn) {
          reportTorn();
        }
        torn = undefined;
        accept(file, e, link.seq, hash);
        continue;
      }
      if (torn) reportTorn();
      torn = undefined;
      // Out of sequence: a reorder when the expected event is further down this file.
      const j = list.findIndex((x, k) => k > i && x.link?.seq === expSeq);
      if (link.seq > expSeq && j === -1) {
        const missing = link.seq - expSeq;
        const kind = i === list.findIndex((x) => x.link !== undefined) && fi > 0 ? 'file_missing' : 'deleted';
        const where =
          kind === 'file_missing'
            ? `between ${prevRef?.file ?? '?'} and ${file}: an event file was removed`
            : `before ${file}:${e.line} (event ${e.id ?? '(no id)'})`;
        report({
          kind,
          file,
          line: e.line,
          seq: expSeq,
          ...(e.id ? { id: e.id } : {}),
          message: `${missing} event${missing === 1 ? '' : 's'} (seq ${expSeq}${missing > 1 ? `..${link.seq - 1}` : ''}) missing ${where}`,
        });
        accept(file, e, link.seq, hash);
        continue;
      }
      // The window from here to the expected event, put back in order, must link up.
      const end = j === -1 ? i : j;
      const window = list.slice(i, end + 1).filter((x) => x.link !== undefined);
      window.sort((a, b) => (a.link as ChainLink).seq - (b.link as ChainLink).seq);
      const moved = list[end] as Entry;
      report({
        kind: 'reordered',
        file,
        line: e.line,
        seq: link.seq,
        ...(e.id ? { id: e.id } : {}),
        message:
          j === -1
            ? `${file}:${e.line}: event ${e.id ?? '(no id)'} (seq ${link.seq}) is out of order: seq ${expSeq} was expected`
            : `${file}:${e.line}: event ${e.id ?? '(no id)'} (seq ${link.seq}) is out of order: event ${moved.id ?? '(no id)'} (seq ${expSeq}) was written before it but is at line ${moved.line}`,
      });
      if (j === -1) {
        accept(file, e, link.seq, hash);
        continue;
      }
      for (const w of window) {
        const wl = w.link as ChainLink;
        if (wl.seq === expSeq && wl.prev !== prevHash) {
          report({
            kind: 'edited',
            file,
            line: (prevRef as { line: number }).line,
            message: `${file}: the events moved around line ${e.line} do not link up in order either`,
          });
        }
        events += w === e ? 0 : 1;
        accept(file, w, wl.seq, lineHash(w.bytes));
      }
      i = end;
    }
    const lastEntry = list.at(-1);
    if (torn && lastEntry && torn.line === lastEntry.line && lastEntry.unterminated) {
      report({
        kind: 'truncated',
        file,
        line: torn.line,
        message: `${file}:${torn.line}: the last line was cut short (a crash or a full disk while it was written); it is not part of the chain`,
      });
      torn = undefined;
    }
    yield;
  }
  if (torn) reportTorn();
  if (unchained > 0) {
    report({
      kind: 'unchained',
      file: files[0] ?? '',
      message: `${unchained} events were written before the hash chain was enabled and cannot be verified`,
    });
  }
  return {
    ok: problems.length === 0,
    files: files.length,
    events,
    ...(first ? { first } : {}),
    ...(last ? { last } : {}),
    problems,
    warnings,
  };

  function accept(file: string, e: Entry, seq: number, hash: string): void {
    expSeq = seq + 1;
    prevHash = hash;
    prevRef = { file, line: e.line, id: e.id };
    last = { file, seq, hash };
  }

  function reportTorn(): void {
    const t = torn as { file: string; line: number };
    report({
      kind: 'truncated',
      file: t.file,
      line: t.line,
      message: `${t.file}:${t.line}: a line cut short by an interrupted write (crash or full disk); the chain continues past it`,
    });
  }

  function startFrom(
    file: string,
    fi: number,
    link: ChainLink,
    e: Entry,
  ): 'genesis' | 'anchor' | 'head' | 'unverified' {
    if (link.seq === 1 && link.prev === GENESIS) return 'genesis';
    if (opts.since) {
      const head = readJson<HeadRecord>(headPath(opts.dir, file));
      if (
        head &&
        sigOk(head, headPayload(head)) === true &&
        head.seq === link.seq &&
        head.prev === link.prev
      ) {
        return 'head';
      }
    }
    if (anchor && anchor.file === file && fi === 0) {
      const ok = sigOk(anchor, anchorPayload(anchor));
      if (ok === false) {
        report({
          kind: 'anchor_invalid',
          file: ANCHOR_FILE,
          message: `${ANCHOR_FILE}: its signature does not verify with the audit keys of the CA store`,
        });
      } else if (anchor.seq === link.seq && anchor.prev === link.prev) {
        if (ok === undefined) {
          report({ kind: 'head_unsigned', file: ANCHOR_FILE, message: `${ANCHOR_FILE} is not signed` });
        }
        return 'anchor';
      }
    }
    report({
      kind: 'start_missing',
      file,
      line: e.line,
      seq: link.seq,
      ...(e.id ? { id: e.id } : {}),
      message: `${file}:${e.line}: the record starts at seq ${link.seq}, not at the first event: ${link.seq - 1} earlier events were removed without a retention record`,
    });
    return 'unverified';
  }

  function checkHead(file: string, firstChained: Entry | undefined): void {
    if (!firstChained) return;
    const head = readJson<HeadRecord>(headPath(opts.dir, file));
    if (!head) {
      report({
        kind: 'head_missing',
        file,
        message: `${file}.head is missing: the file's start is not signed`,
      });
      return;
    }
    const link = firstChained.link as ChainLink;
    const matches =
      head.file === file &&
      head.seq === link.seq &&
      head.prev === link.prev &&
      head.first === lineHash(firstChained.bytes);
    const sig = sigOk(head, headPayload(head));
    if (!matches || sig === false) {
      report({
        kind: 'head_invalid',
        file,
        line: firstChained.line,
        ...(firstChained.id ? { id: firstChained.id } : {}),
        message: !matches
          ? `${file}:${firstChained.line}: the first event does not match the file's signed head`
          : `${file}.head: its signature does not verify with the audit keys of the CA store`,
      });
    } else if (sig === undefined) {
      report({
        kind: 'head_unsigned',
        file,
        message: `${file}.head is not signed (no audit key when it was written)`,
      });
    }
  }
}
