import { type Adapter, type AdapterContext, type DatabaseSpec, VERSION } from '@gatehouse/core';
import { ConnectionIds } from './connection-ids.js';
import { type SessionDeps, type SessionOptions, serveDedicated, serveTunnel } from './session.js';

export interface MysqlAdapterOptions {
  /** Databases to register (in addition to config `databases:` and `gatehouse db add`). */
  databases?: Omit<DatabaseSpec, 'protocol'>[];
  /**
   * Version string of our greeting, sent before anyone logged in. Default:
   * config `mysql_server_version`, else `8.0.0-Gatehouse-<version>`:
   * Gatehouse's own, never a database's (which would tell anyone who
   * connects what to attack), with the MySQL-style `major.minor.patch`
   * prefix clients parse to pick features.
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
}

/**
 * MySQL 8.0.0 as the baseline clients see: what they may use is negotiated by
 * capability flags (GATEWAY_CAPABILITIES), which every supported server shares.
 */
export const GREETING_VERSION = `8.0.0-Gatehouse-${VERSION}`;

export class MysqlAdapter implements Adapter {
  readonly name = 'mysql';
  readonly #opts: MysqlAdapterOptions;
  readonly #sessions = new Set<() => void>();
  readonly #ids = new ConnectionIds();

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
    };
    const deps: SessionDeps = {
      ctx,
      opts,
      serverVersion: this.#opts.serverVersion ?? ctx.config.mysqlServerVersion ?? GREETING_VERSION,
      ids: this.#ids,
      track: (end) => {
        this.#sessions.add(end);
        return () => this.#sessions.delete(end);
      },
    };
    if (ctx.config.mysqlListen) {
      ctx.routes.dedicated('mysql', ctx.config.mysqlListen, (socket, info, handshake) =>
        serveDedicated(socket, info, deps, handshake),
      );
    }
    ctx.routes.alpn('gatehouse-mysql', (socket, info) => serveTunnel(socket, info, deps));
  }

  async close(): Promise<void> {
    for (const end of [...this.#sessions]) end();
  }
}
