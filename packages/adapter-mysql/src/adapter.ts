import { type Adapter, type AdapterContext, type DatabaseSpec, dbHostPort } from '@gatehouse/core';
import { type SessionDeps, type SessionOptions, serveDedicated, serveTunnel } from './session.js';
import { probeGreeting } from './upstream.js';

export interface MysqlAdapterOptions {
  /** Databases to register (in addition to config `databases:` and `gatehouse db add`). */
  databases?: Omit<DatabaseSpec, 'protocol'>[];
  /**
   * Version string of our greeting before the target is known (dedicated
   * port). Default: the version an upstream reported, learned by reading its
   * greeting once.
   */
  serverVersion?: string;
  /** From connect to the client's handshake response (TLS included). Default: the listener's handshake_timeout (10 s). */
  handshakeTimeoutMs?: number;
  /** Dialing and logging in to the database. Default 15 s. */
  upstreamTimeoutMs?: number;
  /** Largest client packet relayed. Default 1 GiB, MySQL's own ceiling for max_allowed_packet (the server's setting applies too). */
  maxPacketBytes?: number;
  /**
   * Largest client packet held whole in memory. A larger COM_QUERY,
   * COM_STMT_PREPARE, COM_STMT_EXECUTE or COM_STMT_SEND_LONG_DATA (and any
   * packet split over 16 MiB frames) streams to the database as it arrives,
   * its last piece waiting for its checks and audit record; any other larger
   * command is refused (1153). Default 1 MiB.
   */
  maxBufferedPacketBytes?: number;
  /** How often live sessions re-check the user (locks, deletion). Default 10 s. */
  lockCheckMs?: number;
}

/** Used when no upstream could be asked: clients only display it. */
const FALLBACK_VERSION = '8.0.0-gatehouse';

export class MysqlAdapter implements Adapter {
  readonly name = 'mysql';
  readonly #opts: MysqlAdapterOptions;
  readonly #sessions = new Set<() => void>();
  readonly #versions = new Map<string, string>();
  #lastVersion: string | undefined;
  #connectionId = 0;

  constructor(opts: MysqlAdapterOptions = {}) {
    this.#opts = opts;
  }

  register(ctx: AdapterContext): void {
    for (const db of this.#opts.databases ?? []) ctx.databases.addStatic({ ...db, protocol: 'mysql' });
    const opts: SessionOptions = {
      handshakeTimeoutMs: this.#opts.handshakeTimeoutMs ?? ctx.config.listener.handshakeTimeoutMs,
      upstreamTimeoutMs: this.#opts.upstreamTimeoutMs ?? 15_000,
      maxPacketBytes: this.#opts.maxPacketBytes ?? 1024 * 1024 * 1024,
      maxBufferedPacketBytes: this.#opts.maxBufferedPacketBytes ?? 1024 * 1024,
      lockCheckMs: this.#opts.lockCheckMs ?? 10_000,
    };
    const deps: SessionDeps = {
      ctx,
      opts,
      serverVersion: (db) => this.#serverVersion(ctx, db),
      learnVersion: (db, v) => {
        this.#versions.set(db, v);
        this.#lastVersion = v;
      },
      nextConnectionId: () => {
        this.#connectionId = (this.#connectionId + 1) >>> 0;
        return this.#connectionId;
      },
      track: (end) => {
        this.#sessions.add(end);
        return () => this.#sessions.delete(end);
      },
    };
    if (ctx.config.mysqlListen) {
      ctx.routes.dedicated('mysql', ctx.config.mysqlListen, (socket, info) =>
        serveDedicated(socket, info, deps),
      );
    }
    ctx.routes.alpn('gatehouse-mysql', (socket, info) => serveTunnel(socket, info, deps));
  }

  async #serverVersion(ctx: AdapterContext, db: string | undefined): Promise<string> {
    if (this.#opts.serverVersion) return this.#opts.serverVersion;
    const known = (db && this.#versions.get(db)) || this.#lastVersion;
    if (known) return known;
    // First connection: ask one MySQL database for its greeting, once.
    const spec = db
      ? await ctx.databases.get(db)
      : (await ctx.databases.list()).find((d) => d.protocol === 'mysql');
    if (spec?.protocol !== 'mysql') return FALLBACK_VERSION;
    try {
      const hp = dbHostPort(spec);
      const g = await probeGreeting(
        { dial: (signal) => ctx.dialer.dial(hp, { ...(signal ? { signal } : {}), timeoutMs: 3_000 }) },
        AbortSignal.timeout(3_000),
      );
      this.#versions.set(spec.name, g.serverVersion);
      this.#lastVersion = g.serverVersion;
      return g.serverVersion;
    } catch (e) {
      ctx.log('debug', `could not read the greeting of database ${spec.name}`, e);
      return FALLBACK_VERSION;
    }
  }

  async close(): Promise<void> {
    for (const end of [...this.#sessions]) end();
  }
}
