import type { Adapter, AdapterContext, DesktopSpec } from '@gatehouse/core';
import { DesktopSession, type SessionOptions } from './session.js';

export interface RdpAdapterOptions {
  /** Desktops registered with the gateway (like `desktops:` in the config). */
  desktops?: DesktopSpec[];
  /** How long the browser may take to send its RDCleanPath request. Default 10 s. */
  requestTimeoutMs?: number;
  /** Dial, X.224 and TLS with the desktop together. Default 15 s. */
  upstreamTimeoutMs?: number;
}

/**
 * The RDP adapter: core's RDCleanPath WebSocket route (/v1/ws/desktop) hands
 * each authenticated browser socket to a DesktopSession.
 */
export class RdpAdapter implements Adapter {
  readonly name = 'rdp';
  readonly #opts: RdpAdapterOptions;
  readonly #sessions = new Set<Promise<void>>();

  constructor(opts: RdpAdapterOptions = {}) {
    this.#opts = opts;
  }

  register(ctx: AdapterContext): void {
    for (const d of this.#opts.desktops ?? []) ctx.desktops.addStatic(d);
    const opts: SessionOptions = {
      requestTimeoutMs: this.#opts.requestTimeoutMs ?? 10_000,
      upstreamTimeoutMs: this.#opts.upstreamTimeoutMs ?? 15_000,
    };
    ctx.desktopRelays.provide({
      open: (conn) => {
        const run = new DesktopSession(ctx, conn, opts).run();
        this.#sessions.add(run);
        void run.finally(() => this.#sessions.delete(run));
      },
    });
  }

  async close(): Promise<void> {
    // Core's gateway close terminates live sessions; wait for their end events.
    await Promise.allSettled([...this.#sessions]);
  }
}
