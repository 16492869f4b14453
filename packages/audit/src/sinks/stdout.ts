import type { AuditEvent } from '../events.js';
import type { AuditSink } from './types.js';

export interface StdoutSinkOptions {
  name?: string;
  /** Defaults to process.stdout; any writable with `write(string)` works. */
  stream?: { write(chunk: string): unknown };
}

/** JSON lines on stdout, for containers whose log collector ships stdout. */
export class StdoutSink implements AuditSink {
  readonly name: string;
  readonly #stream: { write(chunk: string): unknown };

  constructor(opts: StdoutSinkOptions = {}) {
    this.name = opts.name ?? 'stdout';
    this.#stream = opts.stream ?? process.stdout;
  }

  write(e: AuditEvent): void {
    this.#stream.write(`${JSON.stringify(e)}\n`);
  }
}
