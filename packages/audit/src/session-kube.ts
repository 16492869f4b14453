import type { AuditEmitter } from './emitter.js';
import type { CommonFields, KubeFields, KubeRequestFields } from './events.js';

type Base = KubeFields & Pick<CommonFields, 'user' | 'addr' | 'server'>;

/**
 * The audit API the Kubernetes adapter calls: one instance per client
 * connection (the identity and impersonation are fixed once authorized).
 * Adapters never build event records themselves.
 */
export class KubeAudit {
  readonly #emit: AuditEmitter;
  readonly #base: Base;
  readonly #now: () => number;

  constructor(emitter: AuditEmitter, base: Base, opts: { now?: () => number } = {}) {
    this.#emit = emitter;
    this.#base = base;
    this.#now = opts.now ?? Date.now;
  }

  async onRequest(req: KubeRequestFields, res: { code: number; error?: string }): Promise<void> {
    await this.#emit.record({
      type: 'kube.request',
      ...this.#base,
      ...req,
      success: res.code < 400,
      response_code: res.code,
      ...(res.error ? { error: res.error } : {}),
    });
  }

  /** An exec/attach session; the returned object ends it exactly once. */
  async onExecStart(
    req: KubeRequestFields,
    s: {
      sessionId: string;
      command: string;
      container?: string | undefined;
      tty: boolean;
      recorded: boolean;
    },
  ): Promise<KubeExecAudit> {
    // A precondition: the session does not start if this cannot be written.
    await this.#emit.emit(
      {
        type: 'kube.exec.start',
        success: true,
        ...this.#base,
        ...req,
        session_id: s.sessionId,
        command: s.command,
        ...(s.container ? { container: s.container } : {}),
        tty: s.tty,
        recorded: s.recorded,
      },
      { precondition: true },
    );
    return new KubeExecAudit(
      this.#emit,
      { ...this.#base, session_id: s.sessionId, command: s.command },
      this.#now,
    );
  }

  /** A port-forward tunnel ended (its start is the kube.request with code 101). */
  async onPortForwardEnd(
    req: KubeRequestFields,
    t: {
      sessionId: string;
      ports?: string | undefined;
      startedAt: number;
      bytesIn: number;
      bytesOut: number;
      reason?: string | undefined;
    },
  ): Promise<void> {
    await this.#emit.record({
      type: 'kube.portforward.end',
      ...this.#base,
      ...req,
      session_id: t.sessionId,
      ...(t.ports ? { ports: t.ports } : {}),
      duration_ms: Math.max(0, this.#now() - t.startedAt),
      bytes_in: t.bytesIn,
      bytes_out: t.bytesOut,
      ...(t.reason ? { reason: t.reason } : {}),
    });
  }

  async onExecStartFailed(
    req: KubeRequestFields,
    s: { sessionId: string; command: string; error: string },
  ): Promise<void> {
    await this.#emit.record({
      type: 'kube.exec.start',
      success: false,
      ...this.#base,
      ...req,
      session_id: s.sessionId,
      command: s.command,
      error: s.error,
    });
  }
}

export class KubeExecAudit {
  readonly #emit: AuditEmitter;
  readonly #base: Base & { session_id: string; command: string };
  readonly #now: () => number;
  readonly #startedAt: number;
  #ended = false;

  constructor(
    emitter: AuditEmitter,
    base: Base & { session_id: string; command: string },
    now: () => number,
  ) {
    this.#emit = emitter;
    this.#base = base;
    this.#now = now;
    this.#startedAt = now();
  }

  /** Idempotent: the first call wins, so every path that ends a session may call it. */
  async onEnd(
    opts: { exitCode?: number | undefined; reason?: string | undefined; error?: string | undefined } = {},
  ): Promise<void> {
    if (this.#ended) return;
    this.#ended = true;
    await this.#emit.record({
      type: 'kube.exec.end',
      ...this.#base,
      duration_ms: this.#now() - this.#startedAt,
      ...(opts.exitCode !== undefined ? { exit_code: opts.exitCode } : {}),
      ...(opts.reason ? { reason: opts.reason } : {}),
      ...(opts.error ? { error: opts.error } : {}),
    });
  }
}
