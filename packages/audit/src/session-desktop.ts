import type { AuditEmitter } from './emitter.js';
import type { CommonFields, DesktopRejectReason, DesktopSessionFields } from './events.js';

type Base = DesktopSessionFields & Pick<CommonFields, 'user' | 'addr'>;

/**
 * The audit API the RDP adapter calls for one desktop session: its start
 * (a precondition: no audit, no session), its failure to start, and its end
 * exactly once. Adapters never build event records themselves.
 */
export class DesktopAudit {
  readonly #emit: AuditEmitter;
  readonly #base: Base;
  readonly #now: () => number;
  #startedAt: number | undefined;
  #ended = false;

  constructor(emitter: AuditEmitter, base: Base, opts: { now?: () => number } = {}) {
    this.#emit = emitter;
    this.#base = base;
    this.#now = opts.now ?? Date.now;
  }

  /** The relay runs: TLS to the desktop is up and the browser has its answer. */
  async onStart(s: { tlsVerify: 'ca' | 'fingerprint' | 'skipped'; security: string }): Promise<void> {
    await this.#emit.emit(
      {
        type: 'desktop.session.start',
        success: true,
        ...this.#base,
        tls_verify: s.tlsVerify,
        security: s.security,
      },
      { precondition: true },
    );
    this.#startedAt = this.#now();
  }

  /** The desktop could not be reached, refused TLS, or its certificate was not trusted. */
  async onStartFailed(error: string): Promise<void> {
    if (this.#ended) return;
    this.#ended = true;
    await this.#emit.record({ type: 'desktop.session.start', success: false, ...this.#base, error });
  }

  /** Idempotent: the first call wins, so every path that ends a session may call it. No-op before onStart. */
  async onEnd(e: {
    bytesIn: number;
    bytesOut: number;
    reason: string;
    error?: string | undefined;
  }): Promise<void> {
    if (this.#ended || this.#startedAt === undefined) return;
    this.#ended = true;
    await this.#emit.record({
      type: 'desktop.session.end',
      ...this.#base,
      duration_ms: Math.max(0, this.#now() - this.#startedAt),
      bytes_in: e.bytesIn,
      bytes_out: e.bytesOut,
      reason: e.reason,
      ...(e.error ? { error: e.error } : {}),
    });
  }
}

/** A request the desktop relay refused before any authorization (malformed, oversized, a bad token). */
export async function auditDesktopReject(
  emitter: AuditEmitter,
  e: {
    user?: string | undefined;
    remoteAddr?: string | undefined;
    server?: string | undefined;
    reason: DesktopRejectReason;
    error: string;
  },
): Promise<void> {
  await emitter.record({
    type: 'desktop.reject',
    ...(e.user ? { user: e.user } : {}),
    ...(e.remoteAddr ? { addr: { remote: e.remoteAddr } } : {}),
    ...(e.server ? { server: e.server } : {}),
    reason: e.reason,
    error: e.error,
  });
}
