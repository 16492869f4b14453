import { closeSync, existsSync, mkdirSync, openSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { AuditEvent, AuditEventInput } from './events.js';
import { writeWhole } from './spool.js';

/** Event types that open a session, and the type that ends it. */
const ENDS = {
  'session.start': 'session.end',
  'db.session.start': 'db.session.end',
  'kube.exec.start': 'kube.exec.end',
  'desktop.session.start': 'desktop.session.end',
} as const;
type StartType = keyof typeof ENDS;
type EndType = (typeof ENDS)[StartType];
const END_TYPES = new Set<string>(Object.values(ENDS));

type StartEvent = Extract<AuditEvent, { type: StartType }>;

interface JournalLine {
  /** Who wrote the journal: a later process closes only what a dead one left open. */
  pid?: number;
  open?: StartEvent;
  close?: string;
}

/** How a session that nobody ended is closed when its gateway starts again. */
export interface OrphanClose {
  reason: string;
  /** Sessions whose recording was finalized at restart (they were interactive and recorded). */
  recorded?: ReadonlySet<string>;
}

/**
 * The sessions this process has open, by their start events, in a small
 * append-only file next to its spool. A process killed mid-session (kill -9,
 * a crash, power loss) leaves starts without ends; the next process on the
 * same spool directory ends each of them (`session.end` and friends with the
 * restart as the reason), so no session stays open forever in the record.
 */
export class OpenSessionJournal {
  readonly path: string;
  readonly #open = new Map<string, StartEvent>();
  /** Left by an earlier process that is gone. */
  readonly #orphans: StartEvent[] = [];
  #lines = 0;
  #foreign: number | undefined;
  #fd: number | undefined;

  constructor(path: string) {
    this.path = path;
    this.#load();
  }

  /** The live process that still writes this journal, if not this one (then nothing is closed). */
  get foreignOwner(): number | undefined {
    return this.#foreign;
  }

  /** Starts that an earlier process never ended. */
  get orphans(): readonly StartEvent[] {
    return this.#orphans;
  }

  get size(): number {
    return this.#open.size;
  }

  /** Follows one durable event: a session start is remembered, its end forgets it. */
  observe(e: AuditEvent): void {
    if (this.#foreign !== undefined) return;
    if (e.type in ENDS) {
      const start = e as StartEvent;
      if (start.success !== true || !start.session_id) return;
      this.#open.set(start.session_id, start);
      this.#append({ open: start });
    } else if (END_TYPES.has(e.type)) {
      const id = (e as { session_id?: string }).session_id;
      if (!id || !this.#open.delete(id)) return;
      this.#append({ close: id });
    }
  }

  /** The end events for every orphan, to emit; `forget()` once they are written. */
  closeEvents(how: OrphanClose, now: Date): AuditEventInput[] {
    return this.#orphans.map((s) => endFor(s, how, now));
  }

  /** The orphans were ended: rewrites the journal with what this process has open. */
  forget(): void {
    this.#orphans.length = 0;
    if (this.#foreign === undefined) this.#compact();
  }

  #append(line: JournalLine): void {
    // The first write of this process starts the file over with its pid (and
    // what it has open); after that it is rewritten now and then, so it stays
    // the size of what is open, not of all history.
    if (this.#fd === undefined || (this.#lines > 1000 && this.#lines > 4 * this.#open.size)) {
      this.#compact();
      this.#fd = openSync(this.path, 'a', 0o600);
      return;
    }
    writeWhole(this.#fd, Buffer.from(`${JSON.stringify(line)}\n`));
    this.#lines++;
  }

  /** Closes the journal file (the process is stopping; what is open stays recorded). */
  close(): void {
    if (this.#fd !== undefined) closeSync(this.#fd);
    this.#fd = undefined;
  }

  #compact(): void {
    const lines = [{ pid: process.pid }, ...[...this.#open.values()].map((open) => ({ open }))];
    const text = lines.map((l) => `${JSON.stringify(l)}\n`).join('');
    mkdirSync(dirname(this.path), { recursive: true, mode: 0o700 });
    const tmp = `${this.path}.tmp`;
    writeFileSync(tmp, text, { mode: 0o600 });
    renameSync(tmp, this.path);
    this.close();
    this.#lines = lines.length;
  }

  #load(): void {
    if (!existsSync(this.path)) return;
    const open = new Map<string, StartEvent>();
    let pid: number | undefined;
    for (const text of readFileSync(this.path, 'utf8').split('\n')) {
      if (!text) continue;
      let line: JournalLine;
      try {
        line = JSON.parse(text) as JournalLine;
      } catch {
        // A line torn by the crash this journal exists for; the lines before it still count.
        continue;
      }
      if (line.pid !== undefined) pid = line.pid;
      if (line.open?.session_id) open.set(line.open.session_id, line.open);
      if (line.close) open.delete(line.close);
    }
    // A journal another live process still writes is not ours to close (one
    // process per spool directory; a reused pid only delays the closing).
    if (pid !== undefined && pid !== process.pid && alive(pid)) this.#foreign = pid;
    else this.#orphans.push(...open.values());
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function endFor(s: StartEvent, how: OrphanClose, now: Date): AuditEventInput {
  const duration_ms = Math.max(0, now.getTime() - Date.parse(s.time));
  const common = {
    ...(s.user !== undefined ? { user: s.user } : {}),
    ...(s.addr !== undefined ? { addr: s.addr } : {}),
    message: `the gateway that ran this session stopped before it ended (${how.reason})`,
  };
  const type: EndType = ENDS[s.type];
  switch (s.type) {
    case 'session.start': {
      const recorded = how.recorded?.has(s.session_id) ?? false;
      return {
        type: 'session.end',
        ...common,
        session_id: s.session_id,
        server: s.server,
        login: s.login,
        duration_ms,
        interactive: recorded,
        recorded,
        reason: how.reason,
      };
    }
    case 'db.session.start':
      return {
        type: 'db.session.end',
        ...common,
        session_id: s.session_id,
        db_service: s.db_service,
        db_protocol: s.db_protocol,
        db_user: s.db_user,
        db_name: s.db_name,
        ...(s.server !== undefined ? { server: s.server } : {}),
        duration_ms,
        // No count: it was kept by the process that died (each query has its own event).
        error: how.reason,
      };
    case 'kube.exec.start':
      return {
        type: 'kube.exec.end',
        ...common,
        session_id: s.session_id,
        kube_cluster: s.kube_cluster,
        kube_user: s.kube_user,
        kube_groups: s.kube_groups,
        command: s.command,
        ...(s.server !== undefined ? { server: s.server } : {}),
        duration_ms,
        reason: how.reason,
      };
    case 'desktop.session.start':
      return {
        type: 'desktop.session.end',
        ...common,
        session_id: s.session_id,
        server: s.server,
        login: s.login,
        duration_ms,
        // The byte counts were kept by the process that died.
        bytes_in: 0,
        bytes_out: 0,
        reason: how.reason,
      };
    default: {
      const never: never = s;
      throw new Error(`no end for ${type} ${String(never)}`);
    }
  }
}
