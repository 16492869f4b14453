import type { AuditEmitter } from './emitter.js';
import { AuditUnavailableError, errorText } from './errors.js';
import type { CommonFields, SshSessionFields } from './events.js';

export type SftpAction = 'read' | 'write' | 'remove' | 'rename' | 'mkdir' | 'rmdir' | 'setstat';

/**
 * The audit API the SSH adapter calls for one session (one channel of a
 * user's connection to a node). Adapters never build event records
 * themselves; every SSH event of a session carries the same identifying
 * fields.
 */
export class SshSessionAudit {
  readonly #emit: AuditEmitter;
  readonly #base: SshSessionFields & Pick<CommonFields, 'user' | 'addr'>;
  readonly #now: () => number;
  readonly #startedAt: number;
  #interactive = false;
  #recorded = false;
  #ended = false;

  constructor(
    emitter: AuditEmitter,
    base: SshSessionFields & Pick<CommonFields, 'user' | 'addr'>,
    opts: { now?: () => number } = {},
  ) {
    this.#emit = emitter;
    this.#base = base;
    this.#now = opts.now ?? Date.now;
    this.#startedAt = this.#now();
  }

  get sessionId(): string {
    return this.#base.session_id;
  }

  /**
   * The connection to the node is up (the user authenticated and was
   * authorized). A precondition: if it cannot be written the session must not
   * start, and what is recorded instead is that it failed to.
   */
  async onSessionStart(): Promise<void> {
    try {
      await this.#emit.emit({ type: 'session.start', success: true, ...this.#base }, { precondition: true });
    } catch (err) {
      await this.onSessionStartFailed(`the audit log is unavailable: ${errorText(err)}`);
      throw err;
    }
  }

  /** Before a new channel (shell, command, file transfer) starts: throws while the log cannot write. */
  assertAvailable(): void {
    if (!this.#emit.available()) {
      // A full export sink (on_full: block) stops new commands too; say which, as the authorizer does.
      const why = this.#emit.unavailableReason?.();
      if (why?.sink !== undefined) {
        throw new AuditUnavailableError(`the audit sink '${why.sink}' is full, so new commands are refused`, {
          hint: why.hint,
        });
      }
      throw new AuditUnavailableError('the audit log cannot write events, so new commands are refused', {
        hint: 'Ask an admin to free disk space on the gateway; Gatehouse resumes by itself.',
      });
    }
  }

  /** A pty shell or command started in this session; `recorded` when its output is being recorded. */
  markInteractive(recorded: boolean): void {
    this.#interactive = true;
    this.#recorded ||= recorded;
  }

  async onSessionStartFailed(error: string): Promise<void> {
    this.#ended = true;
    await this.#emit.record({ type: 'session.start', success: false, error, ...this.#base });
  }

  async onExec(e: {
    command: string;
    exitCode?: number | undefined;
    signal?: string | undefined;
    error?: string | undefined;
  }): Promise<void> {
    await this.#emit.record({
      type: 'exec',
      ...this.#base,
      command: e.command,
      ...(e.exitCode !== undefined ? { exit_code: e.exitCode } : {}),
      ...(e.signal !== undefined ? { signal: e.signal } : {}),
      ...(e.error !== undefined ? { error: e.error } : {}),
    });
  }

  async onPortForward(e: {
    direction: 'local' | 'remote';
    target: string;
    origin?: string | undefined;
    error?: string | undefined;
  }): Promise<void> {
    await this.#emit.record({
      type: 'port_forward',
      ...this.#base,
      success: e.error === undefined,
      direction: e.direction,
      target: e.target,
      ...(e.origin !== undefined ? { origin: e.origin } : {}),
      ...(e.error !== undefined ? { error: e.error } : {}),
    });
  }

  /** `ssh -A`: agent forwarding granted for the session, or refused (`error` says why). */
  async onAgentForward(e: { error?: string | undefined } = {}): Promise<void> {
    await this.#emit.record({
      type: 'agent_forward',
      ...this.#base,
      success: e.error === undefined,
      ...(e.error !== undefined ? { error: e.error } : {}),
    });
  }

  async onSftp(e: {
    action: SftpAction;
    path: string;
    bytes?: number | undefined;
    target?: string | undefined;
    error?: string | undefined;
  }): Promise<void> {
    await this.#emit.record({
      type: 'sftp',
      ...this.#base,
      action: e.action,
      path: e.path,
      ...(e.bytes !== undefined ? { bytes: e.bytes } : {}),
      ...(e.target !== undefined ? { target: e.target } : {}),
      ...(e.error !== undefined ? { error: e.error } : {}),
    });
  }

  /** Idempotent: the first call wins, so every path that ends a session may call it. */
  async onSessionEnd(opts: { reason?: string | undefined; error?: string | undefined } = {}): Promise<void> {
    if (this.#ended) return;
    this.#ended = true;
    await this.#emit.record({
      type: 'session.end',
      ...this.#base,
      duration_ms: this.#now() - this.#startedAt,
      interactive: this.#interactive,
      recorded: this.#recorded,
      ...(opts.reason ? { reason: opts.reason } : {}),
      ...(opts.error ? { error: opts.error } : {}),
    });
  }
}
