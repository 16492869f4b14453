import { randomBytes } from 'node:crypto';
import {
  type AuditEmitter,
  type AuditEvent,
  type AuditEventInput,
  AuditUnavailableError,
  Spool,
} from '@gatehouse/audit';
import {
  type Clock,
  type LogFn,
  MAX_NODE_AUDIT_BATCH,
  MAX_NODE_AUDIT_EVENT_BYTES,
  type NodeAuditEventLine,
  type NodeAuditRequest,
  type NodeAuditResponse,
  signNodeAudit,
  toGatehouseError,
} from '@gatehouse/core';

/**
 * The audit log of a joined node: it has none of its own, so every event is
 * appended to an on-disk spool (JSON lines, @gatehouse/audit's Spool) and
 * sent to the gateway in order, in batches signed with the node's host key
 * (POST /v1/nodes/audit, core's NodeAuditIngest). A batch leaves the spool
 * only once the gateway answered; while it cannot be reached, events wait on
 * disk and go out when it returns. Each event carries (boot, seq) so the
 * gateway skips what it already wrote when a batch is sent twice. See
 * docs/decisions/0023-bpf-helper.md.
 */

export interface NodeAuditForwarderOptions {
  /** Spool directory (created 0700); one node process per directory. */
  dir: string;
  /** Sends one signed batch (GatehouseClient.nodeAudit). */
  send: (req: NodeAuditRequest) => Promise<NodeAuditResponse>;
  /** The node's host certificate (OpenSSH line); a function when it is renewed while running (CA rotation). */
  cert: string | (() => string);
  /** Signs bytes with the certified host key (Ed25519). */
  sign: (data: Buffer) => Buffer;
  clock: Clock;
  log: LogFn;
  /** Also called with each event's JSON (e.g. stderr, for the host's journal). */
  copy?: (line: string) => void;
  /** First retry delay after a failed send; doubles up to retryMaxMs. Default 500 ms. */
  retryInitialMs?: number;
  /** Default 30 s. */
  retryMaxMs?: number;
  /** Most bytes of events in one batch. Default 512 KiB. */
  maxBatchBytes?: number;
}

interface SpoolLine extends NodeAuditEventLine {
  boot: string;
}

export class NodeAuditForwarder implements AuditEmitter {
  readonly #o: NodeAuditForwarderOptions;
  readonly #spool: Spool;
  readonly #boot = randomBytes(9).toString('base64url');
  #seq = 0;
  #timer: NodeJS.Timeout | undefined;
  #retry: NodeJS.Timeout | undefined;
  /** Ends a retry wait early (close). */
  #wakeRetry: (() => void) | undefined;
  #sending: Promise<void> | undefined;
  #delay: number;
  #closed = false;
  #lastError: string | undefined;
  /** Resolvers of flush() calls waiting for the spool to empty. */
  #waiters: (() => void)[] = [];

  constructor(o: NodeAuditForwarderOptions) {
    this.#o = o;
    this.#spool = new Spool(o.dir, 'gateway');
    // Events a previous run could not deliver go first.
    this.#spool.load();
    this.#delay = o.retryInitialMs ?? 500;
    if (this.#spool.pending > 0) this.#schedule(0);
    else this.#spool.clear();
  }

  /** Events on disk not yet accepted by the gateway. */
  pending(): number {
    return this.#spool.pending;
  }

  async emit(input: AuditEventInput): Promise<AuditEvent> {
    if (this.#closed) throw new AuditUnavailableError('the node audit forwarder is closed');
    const time = this.#o.clock.now().toISOString();
    const seq = this.#seq + 1;
    const event = { ...input } as Record<string, unknown>;
    let text = JSON.stringify({ boot: this.#boot, seq, time, event } satisfies SpoolLine);
    if (Buffer.byteLength(text) > MAX_NODE_AUDIT_EVENT_BYTES) {
      // The gateway would refuse it: send what identifies it, and say so.
      const small = { type: event.type, session_id: event.session_id, message: 'event too large: truncated' };
      text = JSON.stringify({ boot: this.#boot, seq, time, event: small } satisfies SpoolLine);
    }
    // Throws when the disk takes nothing: the caller learns the event was not kept.
    this.#spool.append(`${text}\n`);
    this.#seq = seq;
    this.#o.copy?.(text);
    this.#schedule(0);
    return { ...input, id: `${this.#boot}:${seq}`, time, code: '', cluster: '' } as AuditEvent;
  }

  async record(input: AuditEventInput): Promise<void> {
    try {
      await this.emit(input);
    } catch (e) {
      this.#o.log('error', `node: audit event ${input.type} could not be spooled`, e);
    }
  }

  available(): boolean {
    return !this.#closed;
  }

  /** Resolves once everything spooled so far reached the gateway (tests; shutdown with a deadline). */
  flush(): Promise<void> {
    if (this.#spool.pending === 0) return Promise.resolve();
    this.#schedule(0);
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  /** Stops sending; what is not delivered stays in the spool for the next run. */
  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#timer);
    clearTimeout(this.#retry);
    this.#wakeRetry?.();
    await this.#sending;
  }

  #schedule(ms: number): void {
    // A send in progress picks up what was appended; a waiting retry is not cut short by new events.
    if (this.#closed || this.#sending || this.#timer) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#sending = this.#drain().finally(() => {
        this.#sending = undefined;
        if (this.#spool.pending > 0) this.#schedule(0);
      });
    }, ms);
    this.#timer.unref();
  }

  async #drain(): Promise<void> {
    while (!this.#closed && this.#spool.pending > 0) {
      const { lines } = this.#spool.read(MAX_NODE_AUDIT_BATCH);
      const maxBytes = this.#o.maxBatchBytes ?? 512 * 1024;
      const batch: { line: SpoolLine; end: number }[] = [];
      let bytes = 0;
      for (const l of lines) {
        let parsed: SpoolLine;
        try {
          parsed = JSON.parse(l.text) as SpoolLine;
        } catch {
          // A torn line (crash mid-append): kept aside for an operator, never sent.
          const file = this.#spool.reject(l.text);
          this.#o.log('error', `node: an unreadable audit spool line was moved to ${file}`);
          if (batch.length === 0) this.#spool.commit(l.end, 1);
          break;
        }
        // One batch is one boot's consecutive run (the gateway checks it).
        const prev = batch[batch.length - 1]?.line;
        if (prev && (prev.boot !== parsed.boot || parsed.seq !== prev.seq + 1)) break;
        bytes += l.text.length;
        if (batch.length > 0 && bytes > maxBytes) break;
        batch.push({ line: parsed, end: l.end });
      }
      if (batch.length === 0) continue;
      const boot = batch[0]!.line.boot;
      const req = signNodeAudit(
        typeof this.#o.cert === 'function' ? this.#o.cert() : this.#o.cert,
        {
          ts: this.#o.clock.now().getTime(),
          boot,
          events: batch.map(({ line }) => ({ seq: line.seq, time: line.time, event: line.event })),
        },
        this.#o.sign,
      );
      let res: NodeAuditResponse;
      try {
        res = await this.#o.send(req);
      } catch (e) {
        const ge = toGatehouseError(e);
        const why = ge ? `${ge.code}: ${ge.message}` : String(e);
        // Said once per outage, not per retry.
        if (why !== this.#lastError) {
          this.#o.log(
            'error',
            `node: the gateway did not take ${this.#spool.pending} audit event(s) (${why}); they stay spooled in ${this.#o.dir} and are sent when it does`,
          );
        }
        this.#lastError = why;
        const wait = this.#delay;
        this.#delay = Math.min(this.#delay * 2, this.#o.retryMaxMs ?? 30_000);
        await new Promise<void>((r) => {
          this.#wakeRetry = r;
          this.#retry = setTimeout(r, wait);
          this.#retry.unref();
        });
        this.#wakeRetry = undefined;
        continue;
      }
      if (this.#lastError !== undefined) this.#o.log('error', 'node: the gateway takes audit events again');
      this.#lastError = undefined;
      this.#delay = this.#o.retryInitialMs ?? 500;
      for (const r of res.refused) {
        this.#o.log('error', `node: the gateway refused audit event ${boot}:${r.seq}: ${r.reason}`);
      }
      this.#spool.commit(batch[batch.length - 1]!.end, batch.length);
      if (this.#spool.pending === 0) {
        this.#spool.clear();
        for (const w of this.#waiters.splice(0)) w();
      }
    }
  }
}
