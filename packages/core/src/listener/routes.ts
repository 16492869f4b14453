import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { GatehouseError } from '../errors.js';
import type { Identity } from '../identity/types.js';
import type { TlsRefused } from './tls-accept.js';

/** Where a connection came from, after any trusted PROXY header. */
export interface ConnectionInfo {
  remoteAddr: string;
  remotePort: number;
  localAddr: string;
  localPort: number;
  /** True when the addresses come from a trusted PROXY protocol header. */
  proxied: boolean;
}

export interface TlsConnectionInfo extends ConnectionInfo {
  alpn?: string | undefined;
  sni?: string | undefined;
  /**
   * The identity in a client certificate that chained to the user CA and
   * decoded cleanly. Absent when the client sent no certificate. It says who
   * the client is, not what they may do: adapters pass it to `authorize`.
   */
  identity?: Identity | undefined;
}

export type RawHandler = (socket: Socket, info: ConnectionInfo) => void;

/**
 * What a dedicated port's handler tells the listener: the client is through
 * its handshake (its credentials are in), so the connection stops counting
 * against the port's handshake limits (listener.max_concurrent_handshakes,
 * per_source_max_handshakes). Until then, or until it closes, it holds a
 * slot; the handler owns the handshake deadline (listener.handshake_timeout).
 */
export interface HandshakeDone {
  done(): void;
}

export type DedicatedHandler = (socket: Socket, info: ConnectionInfo, handshake: HandshakeDone) => void;
export type TlsHandler = (socket: TLSSocket, info: TlsConnectionInfo) => void;

/** Postgres connections arrive either after SSLRequest + TLS, or in plaintext (startup or cancel). */
export interface PostgresHandlers {
  tls: TlsHandler;
  plaintext: RawHandler;
  /**
   * A TLS connection whose client certificate core refused (already audited
   * as listener.reject): the adapter may tell the client why in its own
   * protocol, then must close. Without it the connection is just closed.
   */
  refused?: (socket: TLSSocket, info: TlsConnectionInfo, refusal: TlsRefused) => void;
}

/**
 * Protocol routes of ONE gateway instance (no process-wide registry).
 * Adapters register here from `register(ctx)`; a second registration of the
 * same route throws, like a duplicate adapter name.
 */
export class Routes {
  #ssh: RawHandler | undefined;
  readonly #dedicated = new Map<
    string,
    { host: string; port: number; handler: DedicatedHandler; setting: string }
  >();
  #postgres: PostgresHandlers | undefined;
  readonly #alpn = new Map<string, TlsHandler>();
  readonly #sni = new Map<string, TlsHandler>();
  readonly #sniSuffix = new Map<string, TlsHandler>();

  ssh(handler: RawHandler): void {
    if (this.#ssh) throw duplicate('the SSH route');
    this.#ssh = handler;
  }

  postgres(handlers: PostgresHandlers): void {
    if (this.#postgres) throw duplicate('the PostgreSQL route');
    this.#postgres = handlers;
  }

  /** TLS connections that negotiate this ALPN protocol (e.g. "gatehouse-ssh"). */
  alpn(protocol: string, handler: TlsHandler): void {
    if (!/^gatehouse-[a-z0-9-]+$/.test(protocol)) {
      throw new GatehouseError(
        'GH_ERR_VALIDATION',
        `ALPN route "${protocol}" must be named gatehouse-<name>`,
      );
    }
    if (this.#alpn.has(protocol)) throw duplicate(`the ALPN route ${protocol}`);
    this.#alpn.set(protocol, handler);
  }

  /** TLS connections whose SNI is `<prefix>.<anything>` (e.g. "kube" for kube.<cluster>). */
  sni(prefix: string, handler: TlsHandler): void {
    if (!/^[a-z0-9-]+$/.test(prefix)) {
      throw new GatehouseError('GH_ERR_VALIDATION', `SNI route prefix "${prefix}" must be a DNS label`);
    }
    if (this.#sni.has(prefix)) throw duplicate(`the SNI route ${prefix}.*`);
    this.#sni.set(prefix, handler);
  }

  /**
   * TLS connections whose SNI is `<name>.<suffix>` (e.g. suffix "kube.acme"
   * for <kube cluster>.kube.acme): one wildcard certificate name
   * (*.<suffix>) then covers every name, which a `<prefix>.<name>` scheme
   * cannot (wildcards only stand for the leftmost label).
   */
  sniSuffix(suffix: string, handler: TlsHandler): void {
    if (!/^[a-z0-9-]+(\.[a-z0-9-]+)*$/.test(suffix)) {
      throw new GatehouseError('GH_ERR_VALIDATION', `SNI route suffix "${suffix}" must be a DNS name`);
    }
    if (this.#sniSuffix.has(suffix)) throw duplicate(`the SNI route *.${suffix}`);
    this.#sniSuffix.set(suffix, handler);
  }

  /**
   * A protocol that cannot share the main port (MySQL speaks first) gets its
   * own listener, opened and closed with the gateway's. `setting` is the
   * config key that sets its address (default `<name>_listen`), named by the
   * error when the address cannot be bound.
   */
  dedicated(
    name: string,
    addr: { host: string; port: number },
    handler: DedicatedHandler,
    setting = `${name}_listen`,
  ): void {
    if (this.#dedicated.has(name)) throw duplicate(`the dedicated listener ${name}`);
    this.#dedicated.set(name, { ...addr, handler, setting });
  }

  dedicatedListeners(): [
    string,
    { host: string; port: number; handler: DedicatedHandler; setting: string },
  ][] {
    return [...this.#dedicated.entries()];
  }

  get sshHandler(): RawHandler | undefined {
    return this.#ssh;
  }
  get postgresHandlers(): PostgresHandlers | undefined {
    return this.#postgres;
  }
  alpnHandler(protocol: string | undefined): TlsHandler | undefined {
    return protocol === undefined ? undefined : this.#alpn.get(protocol);
  }
  alpnProtocols(): string[] {
    return [...this.#alpn.keys()];
  }
  sniHandler(servername: string | undefined): TlsHandler | undefined {
    if (!servername) return undefined;
    const dot = servername.indexOf('.');
    if (dot <= 0) return undefined;
    return (
      this.#sni.get(servername.slice(0, dot)) ?? this.#sniSuffix.get(servername.slice(dot + 1).toLowerCase())
    );
  }
}

function duplicate(what: string): GatehouseError {
  return new GatehouseError('GH_ERR_ALREADY_EXISTS', `${what} is already registered on this gateway`, {
    hint: 'each protocol can be served by one adapter per gateway; remove the duplicate gw.use(...)',
  });
}
