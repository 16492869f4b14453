/**
 * Test doubles for code that emits audit events. No test framework imports:
 * usable from any runner.
 */
import type { AuditEmitter } from '../emitter.js';
import { AuditValidationError } from '../errors.js';
import {
  type AuditEvent,
  type AuditEventInput,
  type AuditEventType,
  codeFor,
  EVENT_CODES,
} from '../events.js';
import { createIdGenerator } from '../id.js';
import { type AuditQuery, type AuditSearchResult, searchInMemory } from '../query.js';
import type { AuditSink } from '../sinks/types.js';

export interface MemoryAuditLogOptions {
  cluster?: string;
  clock?: () => Date;
  idGen?: () => string;
}

/** Keeps events in memory; `search` has the same semantics as the SQLite index. */
export class MemoryAuditLog implements AuditEmitter {
  readonly events: AuditEvent[] = [];
  readonly cluster: string;
  readonly #clock: () => Date;
  readonly #idGen: () => string;

  constructor(opts: MemoryAuditLogOptions = {}) {
    this.cluster = opts.cluster ?? 'test';
    this.#clock = opts.clock ?? (() => new Date());
    this.#idGen = opts.idGen ?? createIdGenerator(() => this.#clock().getTime());
  }

  async emit(input: AuditEventInput): Promise<AuditEvent> {
    if (typeof input !== 'object' || input === null || !Object.hasOwn(EVENT_CODES, input.type)) {
      throw new AuditValidationError(`unknown audit event type ${JSON.stringify(input?.type)}`);
    }
    const { type, ...rest } = input;
    const e = {
      id: this.#idGen(),
      time: this.#clock().toISOString(),
      type,
      code: codeFor(input),
      cluster: this.cluster,
      ...rest,
    } as AuditEvent;
    // Round-trip like a real sink would, so tests see what is actually stored.
    this.events.push(JSON.parse(JSON.stringify(e)) as AuditEvent);
    return e;
  }

  async record(input: AuditEventInput): Promise<void> {
    await this.emit(input);
  }

  available(): boolean {
    return true;
  }

  async search(q: AuditQuery = {}): Promise<AuditSearchResult> {
    return searchInMemory(this.events, q);
  }

  /** Every event of one type, oldest first. */
  find<T extends AuditEventType>(type: T): Extract<AuditEvent, { type: T }>[] {
    return this.events.filter((e): e is Extract<AuditEvent, { type: T }> => e.type === type);
  }

  /** The most recent event of one type. */
  last<T extends AuditEventType>(type: T): Extract<AuditEvent, { type: T }> | undefined {
    return this.find(type).at(-1);
  }

  clear(): void {
    this.events.length = 0;
  }
}

/** A sink that keeps what it receives in memory. */
export class MemorySink implements AuditSink {
  readonly name: string;
  readonly events: AuditEvent[] = [];
  closed = false;

  constructor(name = 'memory') {
    this.name = name;
  }

  write(e: AuditEvent): void {
    this.events.push(e);
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}

/**
 * A sink that refuses every write until `recover()`; then it behaves like a
 * MemorySink. `attempts` counts every write call, refused or not.
 */
export class FailingSink implements AuditSink {
  readonly name: string;
  readonly events: AuditEvent[] = [];
  failing: boolean;
  attempts = 0;
  closed = false;
  #error: string;

  constructor(opts: { name?: string; failing?: boolean; error?: string } = {}) {
    this.name = opts.name ?? 'failing';
    this.failing = opts.failing ?? true;
    this.#error = opts.error ?? 'sink unavailable';
  }

  async write(e: AuditEvent): Promise<void> {
    this.attempts++;
    if (this.failing) throw new Error(this.#error);
    this.events.push(e);
  }

  fail(error?: string): void {
    if (error !== undefined) this.#error = error;
    this.failing = true;
  }

  recover(): void {
    this.failing = false;
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}

export { MemoryRecordingStore, type MemoryRecordingStoreOptions } from '../recording/memory-store.js';
export { RSYSLOGD, type Rsyslog, type SyslogLine, startRsyslog } from './rsyslog.js';
