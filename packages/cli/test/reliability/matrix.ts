import type { AuditEvent } from '@gatehouse/audit';
import { GARBAGE, Probe } from './probe.js';

/**
 * The stage matrix's vocabulary: a Stage drives a fresh connection to one
 * point of one protocol (before the first byte, mid-sniff, mid-TLS, during
 * authentication, in an authenticated session), a Fault is what the client
 * then does wrong, and an Expect says what the gateway must do about it.
 * stages.test.ts holds the table; runCase() plays one row.
 */

/**
 * - garbage: bytes that are no protocol (or a framed message full of them)
 * - repeat: a message that is fine once, sent again and again
 * - reset: a TCP RST, no goodbye
 * - fin: our half-close, still reading
 * - stall: silence
 * - trickle: one byte now and then, never enough to finish the stage
 * - huge: a message header declaring a length far past any limit
 * - half: half a message, then silence
 * - none: the stage itself is the attack (e.g. a foreign client certificate)
 * - anything else: a stage-specific message in `Stage.send`
 */
export type Fault =
  | 'garbage'
  | 'reset'
  | 'fin'
  | 'stall'
  | 'trickle'
  | 'repeat'
  | 'huge'
  | 'half'
  | 'none'
  | (string & {});

/** What the gateway must do after the fault. */
export interface Expect {
  /** `closed`: it ends the connection; `open`: it keeps it (an authenticated session may idle); `any`: after a reset. */
  end: 'closed' | 'open' | 'any';
  /** What the client must hear first, in its own protocol. */
  reply?: { what: string; test: (b: Buffer) => boolean };
  /** The audit event the case must leave (one at least; counts are another developer's business). */
  audit?: { type: AuditEvent['type']; reason?: string; status?: number };
  /**
   * A known bug this case shows, in code someone else owns right now: the
   * case runs, and its test is expected to fail (it.fails) until the fix
   * lands; then the test fails and says so, and this line goes.
   */
  bug?: string;
}

export interface StageContext {
  /** The address this case's connection names in the audit log (its own source, or its PROXY header's). */
  addr: string;
}

export interface Stage<C> {
  /** Where the connection goes in and what it reached, e.g. "PostgreSQL in TLS: startup half sent". */
  name: string;
  /** The entry point column of the matrix. */
  entry: string;
  /** The MySQL port instead of the main one. */
  port?: 'main' | 'mysql';
  /** Connect from the trusted PROXY source (the stage sends a header naming `addr`). */
  trusted?: boolean;
  /** What the stage needs before its connection opens (a deadline runs from the connect). */
  prepare?(c: C & StageContext): Promise<void>;
  /** Drives a fresh probe to the stage; throws if the gateway answers unlike a healthy one. */
  open(p: Probe, c: C & StageContext): Promise<void>;
  /** Bytes for the faults that need stage-specific ones. */
  send?: Partial<Record<Fault, Buffer>>;
  faults: Partial<Record<Fault, Expect>>;
  /** Cleanup of what open() made besides the probe (e.g. a second connection). */
  after?(c: C & StageContext): void;
}

export interface Case<C> {
  id: number;
  stage: Stage<C>;
  fault: Fault;
  expect: Expect;
  /** The case's own loopback address (its connection's source, or the source in its PROXY header). */
  addr: string;
}

export interface Outcome {
  /** The stage could not be reached (the gateway misbehaved before the fault). */
  openError?: string;
  /** The gateway closed the connection after the fault (within the wait). */
  closed: boolean;
  /** What the client received after the fault. */
  reply: Buffer;
  /** What the client library reported (a TLS alert, a reset), if anything. */
  errors: string[];
  /** The connection's own address:port (what a refusal before a PROXY header is parsed names). */
  source: string;
}

/** The loopback address of case `id` (127.77.0.1 onwards). */
export function caseAddr(id: number): string {
  return `127.77.${Math.floor(id / 250)}.${(id % 250) + 1}`;
}

/** Every (stage, fault) pair of the table, numbered. */
export function cases<C>(stages: Stage<C>[]): Case<C>[] {
  const out: Case<C>[] = [];
  for (const stage of stages) {
    for (const [fault, expect] of Object.entries(stage.faults)) {
      const id = out.length;
      out.push({ id, stage, fault, expect: expect!, addr: caseAddr(id) });
    }
  }
  return out;
}

export interface RunOptions {
  /** Main and MySQL ports. */
  ports: { main: number; mysql: number };
  /** The source address the gateway trusts PROXY headers from. */
  trustedSource: string;
  /** How long a closing case may take: past the longest deadline, with room for a loaded machine. */
  closeWithinMs: number;
  /** How long an `open` case is watched: past every handshake deadline. */
  staysOpenForMs: number;
  /** Gap between bytes of a trickle. */
  trickleEveryMs: number;
  /**
   * How many cases may be opening (connect, TLS, login) at once: the
   * handshakes are the CPU-heavy part, and a burst of all of them at once
   * would only measure the machine. Faults and waits are not limited.
   */
  opening: Semaphore;
}

/** A counting semaphore. */
export class Semaphore {
  #free: number;
  readonly #waiting: (() => void)[] = [];
  constructor(n: number) {
    this.#free = n;
  }
  async acquire(): Promise<() => void> {
    if (this.#free > 0) this.#free--;
    else await new Promise<void>((r) => this.#waiting.push(r));
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.#waiting.shift();
      if (next) next();
      else this.#free++;
    };
  }
}

/** Plays one row: reach the stage, misbehave, watch what the gateway does. */
export async function runCase<C>(c: Case<C>, ctx: C, o: RunOptions): Promise<Outcome> {
  const { stage, fault } = c;
  const from = stage.trusted ? o.trustedSource : c.addr;
  const sctx = { ...ctx, addr: c.addr };
  let p: Probe | undefined;
  const release = await o.opening.acquire();
  try {
    await stage.prepare?.(sctx);
    p = await Probe.connect(stage.port === 'mysql' ? o.ports.mysql : o.ports.main, from);
    await stage.open(p, sctx);
  } catch (err) {
    release();
    p?.close();
    stage.after?.(sctx);
    return {
      openError: (err as Error).message,
      closed: false,
      reply: Buffer.alloc(0),
      errors: [],
      source: p ? `${from}:${p.raw.localPort}` : from,
    };
  }
  release();
  const source = `${from}:${p.raw.localPort}`;
  p.mark();
  const bytes = stage.send?.[fault];
  switch (fault) {
    case 'reset':
      p.reset();
      break;
    case 'fin':
      p.fin();
      break;
    case 'garbage':
      p.write(bytes ?? GARBAGE);
      break;
    case 'trickle':
      if (!bytes) throw new Error(`${stage.name}: trickle needs send.trickle`);
      void p.trickle(bytes, o.trickleEveryMs);
      break;
    case 'repeat':
      if (!bytes) throw new Error(`${stage.name}: repeat needs send.repeat`);
      void p.repeat(bytes, o.trickleEveryMs * 3);
      break;
    case 'stall':
    case 'none':
      break;
    default:
      if (!bytes) throw new Error(`${stage.name}: fault ${fault} needs send.${fault}`);
      p.write(bytes);
  }
  let closed = false;
  if (c.expect.end === 'closed') closed = await p.serverClosed(o.closeWithinMs);
  else if (c.expect.end === 'open') closed = await p.serverClosed(o.staysOpenForMs);
  const out: Outcome = { closed, reply: p.data, errors: p.errors, source };
  p.close();
  stage.after?.(sctx);
  return out;
}

/** Why an outcome does not meet its expectation (empty when it does). */
export function verdict(e: Expect, out: Outcome): string[] {
  if (out.openError) return [`the stage was not reached: ${out.openError}`];
  const bad: string[] = [];
  if (e.end === 'closed' && !out.closed) bad.push('the gateway kept the connection open');
  if (e.end === 'open' && out.closed)
    bad.push('the gateway closed an authenticated session that was only idle');
  if (e.reply && !e.reply.test(out.reply)) {
    bad.push(
      `the client did not hear ${e.reply.what}; it got ${JSON.stringify(out.reply.toString('latin1').slice(0, 160))}`,
    );
  }
  return bad;
}

/**
 * Whether an audit event is about this case: its remote address is the
 * case's own (bare, or with any port), or exactly the connection's
 * address:port (for a trusted source whose PROXY header was never parsed).
 */
export function eventOf(e: AuditEvent, c: { addr: string }, out: Outcome | undefined): boolean {
  const remote = (e as { addr?: { remote?: string } }).addr?.remote ?? '';
  return remote === c.addr || remote.startsWith(`${c.addr}:`) || (out !== undefined && remote === out.source);
}

export function auditMatches(e: AuditEvent, want: NonNullable<Expect['audit']>): boolean {
  const x = e as AuditEvent & { reason?: string; status?: number };
  return (
    e.type === want.type &&
    (want.reason === undefined || x.reason === want.reason) &&
    (want.status === undefined || x.status === want.status)
  );
}

/** One line per event, for a failure message. */
export function describeEvents(events: AuditEvent[]): string {
  return events
    .map((e) => {
      const x = e as AuditEvent & { reason?: string; status?: number; error?: string };
      return `${e.type}${x.reason ? ` ${x.reason}` : ''}${x.status ? ` ${x.status}` : ''}${x.error ? `: ${x.error}` : ''}`;
    })
    .join('\n');
}
