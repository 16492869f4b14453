import type { Duplex } from 'node:stream';
import type { Adapter, AdapterContext } from '@gatehouse/core';
import { CancelKeys } from './cancel.js';
import { type SessionDeps, type SessionOptions, servePlaintext, serveRefused, serveTls } from './session.js';
import { DEFAULT_MAX_BUFFERED_BYTES, DEFAULT_MAX_MESSAGE_BYTES } from './wire/reader.js';

export interface PostgresAdapterOptions {
  /** How long a client may take to send its startup packet. Default: the listener's handshake_timeout (10 s). */
  startupTimeoutMs?: number;
  /** How long the database may take to accept the connection and finish startup. Default 15 s. */
  upstreamTimeoutMs?: number;
  /** Largest client message accepted (PostgreSQL's own limit is 1 GiB). */
  maxMessageBytes?: number;
  /**
   * Largest audited client message (Query, Parse, Bind, ...) held whole in
   * memory. A larger Query, Parse, Bind or FunctionCall streams to the
   * database as it arrives (its last piece waits for its audit record); a
   * larger Execute or Close is refused. Default 1 MiB.
   */
  maxBufferedMessageBytes?: number;
}

/** ALPN of `gatehouse proxy db`'s local tunnel for PostgreSQL. */
const TUNNEL_ALPN = 'gatehouse-postgres';

/**
 * Serves PostgreSQL on the gateway's main port: core sniffs the SSLRequest
 * and terminates TLS; this adapter reads the startup, asks core
 * (DbAccess) whether the session may happen, connects to the database with a
 * db-CA client certificate, and relays with query audit.
 */
export class PostgresAdapter implements Adapter {
  readonly name = 'postgres';
  readonly #options: Omit<SessionOptions, 'startupTimeoutMs'>;
  readonly #startupTimeoutMs: number | undefined;
  readonly #cancels = new CancelKeys();
  readonly #live = new Set<Duplex>();

  constructor(opts: PostgresAdapterOptions = {}) {
    this.#startupTimeoutMs = opts.startupTimeoutMs;
    this.#options = {
      upstreamTimeoutMs: opts.upstreamTimeoutMs ?? 15_000,
      maxMessageBytes: opts.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES,
      maxBufferedMessageBytes: opts.maxBufferedMessageBytes ?? DEFAULT_MAX_BUFFERED_BYTES,
    };
  }

  register(ctx: AdapterContext): void {
    const deps: SessionDeps = {
      dbAccess: ctx.dbAccess,
      audit: ctx.audit,
      clock: ctx.clock,
      log: ctx.log,
      cancels: this.#cancels,
      options: {
        ...this.#options,
        // The deadline the operator configured for every protocol's handshake
        // (listener.handshake_timeout), not a fixed one a stalled client could outlast.
        startupTimeoutMs: this.#startupTimeoutMs ?? ctx.config.listener.handshakeTimeoutMs,
      },
      live: this.#live,
    };
    const crash = (err: unknown) => ctx.log('error', 'PostgreSQL session failed unexpectedly', err);
    ctx.routes.postgres({
      tls: (socket, info) => {
        serveTls(deps, socket, info).catch((err: unknown) => {
          socket.destroy();
          crash(err);
        });
      },
      plaintext: (socket, info) => {
        servePlaintext(deps, socket, info).catch((err: unknown) => {
          socket.destroy();
          crash(err);
        });
      },
      refused: (socket, _info, refusal) => {
        serveRefused(deps, socket, refusal).catch((err: unknown) => {
          socket.destroy();
          crash(err);
        });
      },
    });
    // gatehouse proxy db: a local plaintext port whose bytes arrive here inside TLS with the user's certificate.
    ctx.routes.alpn(TUNNEL_ALPN, (socket, info) => {
      serveTls(deps, socket, info, { tunnel: true }).catch((err: unknown) => {
        socket.destroy();
        crash(err);
      });
    });
  }

  /** Live sessions (for tests and metrics). */
  get sessions(): number {
    return this.#live.size;
  }

  async close(): Promise<void> {
    for (const s of this.#live) s.destroy();
    this.#live.clear();
  }
}
