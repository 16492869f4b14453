import type { Socket } from 'node:net';
import os from 'node:os';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import {
  type AdapterContext,
  type ConnectionInfo,
  type Identity,
  type NodeSpec,
  splitHostPort,
  type TlsConnectionInfo,
} from '@gatehouse/core';
import { type AuthState, certAuthAttempt } from './auth.js';
import { oneLine, userMessage } from './errors.js';
import { auditSshReject, closeAfterReply, resolveNode } from './front.js';
import { ProxyKeys } from './keys.js';
import { type InnerConnection, type ProxyDeps, terminate } from './session.js';
import {
  type AuthContext,
  assertSsh2Patched,
  authBanner,
  type Connection,
  protocolErrorDisconnect,
  Server,
  type ServerChannel,
} from './ssh2.js';
import { WebTerminals } from './webterm.js';
import { WireError } from './wire/reader.js';
import { encodeTargetReply, TargetRequestParser } from './wire/target.js';

export interface SshAdapterOptions {
  /** How long a client has to authenticate (each hop). Default: the listener's handshake_timeout (10 s). */
  handshakeTimeoutMs?: number;
  /** How long connecting to a node may take. Default 15 s. */
  upstreamTimeoutMs?: number;
  /** Extra names in the proxy's host certificate (the names clients use for `ssh -J`). */
  serverNames?: string[];
}

const PROXY_HELP =
  'Gatehouse: this is the Gatehouse SSH proxy, not a shell. Reach a node with `ssh -J USER@PROXY LOGIN@NODE` ' +
  'or `gatehouse ssh LOGIN@NODE`; list nodes with `gatehouse ls`.';

/**
 * The SSH proxy of one gateway: fronts SSH on the main port (sniffed banner)
 * and inside TLS (ALPN gatehouse-ssh), authenticates Gatehouse user
 * certificates, and terminates each user connection to a node so it can
 * authorize, record and audit it before re-originating to the node.
 */
export class SshProxy {
  readonly #ctx: AdapterContext;
  readonly #deps: ProxyDeps;
  readonly #opts: Required<Omit<SshAdapterOptions, 'serverNames'>> & { serverNames: string[] };
  readonly #sockets = new Set<Duplex>();
  #closed = false;

  constructor(ctx: AdapterContext, opts: SshAdapterOptions = {}) {
    assertSsh2Patched();
    this.#ctx = ctx;
    this.#opts = {
      // The deadline the operator configured for every protocol's handshake
      // (listener.handshake_timeout), not a fixed one a stalled client could outlast.
      handshakeTimeoutMs: opts.handshakeTimeoutMs ?? ctx.config.listener.handshakeTimeoutMs,
      upstreamTimeoutMs: opts.upstreamTimeoutMs ?? 15_000,
      serverNames: opts.serverNames ?? [],
    };
    this.#deps = {
      ctx,
      keys: new ProxyKeys({ credentials: ctx.credentials, clock: ctx.clock }),
      handshakeTimeoutMs: this.#opts.handshakeTimeoutMs,
      upstreamTimeoutMs: this.#opts.upstreamTimeoutMs,
      live: new Set<InnerConnection>(),
    };
  }

  register(): void {
    this.#ctx.terminals.provide(new WebTerminals(this.#deps));
    this.#ctx.routes.ssh((socket, info) =>
      this.#track(socket, () => this.#front(socket, info.remoteAddr, info)),
    );
    this.#ctx.routes.alpn('gatehouse-ssh', (socket, info) =>
      this.#track(socket, () => this.#alpn(socket, info)),
    );
  }

  async close(): Promise<void> {
    this.#closed = true;
    for (const c of this.#deps.live) c.terminate('the gateway is shutting down');
    for (const s of this.#sockets) s.destroy();
  }

  #track(socket: Duplex, run: () => Promise<void>): void {
    if (this.#closed) {
      socket.destroy();
      return;
    }
    this.#sockets.add(socket);
    socket.once('close', () => this.#sockets.delete(socket));
    socket.on('error', (err) => this.#ctx.log('debug', 'ssh: client socket error', err));
    run().catch((err: unknown) => {
      this.#ctx.log('error', 'ssh: connection setup failed', err);
      socket.destroy();
    });
  }

  #proxyPrincipals(): string[] {
    const c = this.#ctx.config;
    const names = new Set<string>(['localhost', '127.0.0.1', '::1', this.#ctx.clusterName, os.hostname()]);
    const add = (n: string | undefined) => {
      if (n && n !== '0.0.0.0' && n !== '::') names.add(n.toLowerCase());
    };
    add(splitHostPort(c.publicAddr).host);
    add(c.listen.host);
    for (const n of c.tls.serverNames) add(n);
    for (const n of this.#opts.serverNames) add(n);
    return [...names];
  }

  /** The outer hop: the connection `ssh -J USER@PROXY` opens to the proxy itself. */
  async #front(socket: Socket, remoteAddr: string, _info: ConnectionInfo): Promise<void> {
    socket.pause();
    const hs = { connected: false, ready: false, rejected: false };
    const reject = (reason: 'malformed' | 'handshake_timeout', error: string) => {
      if (hs.ready || hs.rejected) return;
      hs.rejected = true;
      void this.#auditReject(reason, error, remoteAddr);
      // ssh2 told a malformed client why (DISCONNECT) before reporting it: let that reach it.
      if (reason === 'malformed') closeAfterReply(socket);
      else socket.destroy();
    };
    const timer = setTimeout(
      () => reject('handshake_timeout', 'the client did not authenticate in time'),
      this.#opts.handshakeTimeoutMs,
    );
    socket.once('close', () => clearTimeout(timer));
    // ssh2 only half-closes on a broken identification line; finish the job.
    socket.once('finish', () => {
      // A client that never sent a byte (the listener handed it over for its
      // silence, docs/decisions/0024) and hung up sent nothing malformed.
      if (!hs.connected && socket.bytesRead === 0) socket.destroy();
      else if (!hs.connected) reject('malformed', 'invalid SSH identification');
      else if (!hs.ready) closeAfterReply(socket);
    });
    const hostKey = await this.#deps.keys.hostKey('gatehouse-proxy', this.#proxyPrincipals());
    const srv = new Server({ hostKeys: [hostKey as never], ident: 'Gatehouse' });
    srv.on('connection', (conn: Connection) => {
      hs.connected = true;
      this.#outer(conn, socket, remoteAddr, hs, reject);
    });
    srv.injectSocket(socket);
    socket.resume();
  }

  #outer(
    conn: Connection,
    socket: Socket,
    remoteAddr: string,
    hs: { ready: boolean },
    reject: (reason: 'malformed' | 'handshake_timeout', error: string) => void,
  ): void {
    const ctx = this.#ctx;
    let identity: Identity | undefined;
    const state: AuthState = { explained: false };
    conn.on('authentication', (actx: AuthContext) => {
      const r = certAuthAttempt(
        actx,
        {
          userCaKeys: () => ctx.credentials.userCaSshKeys(),
          // The outer hop: its user name names no node login.
          loginIsPrincipal: false,
          now: () => ctx.clock.now(),
          remoteAddr,
          banner: (t) => authBanner(conn, t),
          onInvalid: (err) => void this.#auditReject('auth_failed', userMessage(err), remoteAddr),
        },
        state,
      );
      if (!r) return;
      // Fail early on a locked or deleted user; the node decision comes on the inner hop.
      ctx.authorizer.principal(r.identity).then(
        () => {
          identity = r.identity;
          actx.accept();
        },
        (err: unknown) => {
          authBanner(conn, userMessage(err));
          void this.#auditReject('auth_failed', userMessage(err), remoteAddr, r.identity.user);
          actx.reject(['publickey']);
        },
      );
    });
    conn.on('ready', () => {
      hs.ready = true;
    });
    conn.on('tcpip', (accept, rejectChannel, info) => {
      if (!identity) return rejectChannel();
      void this.#directTcpip(identity, remoteAddr, accept, rejectChannel as (desc?: string) => void, info);
    });
    conn.on('session', (_accept, rejectChannel) => (rejectChannel as (desc?: string) => void)(PROXY_HELP));
    conn.on('request', (_accept, rejectRequest) => rejectRequest?.());
    conn.on('error', (err: Error & { level?: string; code?: unknown }) => {
      // A numeric code is the client's own DISCONNECT (e.g. after a refused login): nothing malformed.
      if (err.level !== 'client-socket' && typeof err.code !== 'number') {
        if (!hs.ready) protocolErrorDisconnect(conn, `Gatehouse: ${err.message}`);
        reject('malformed', err.message);
      } else if (!hs.ready) socket.destroy();
    });
  }

  async #directTcpip(
    identity: Identity,
    remoteAddr: string,
    accept: () => ServerChannel,
    reject: (desc?: string) => void,
    info: { destIP: string; destPort: number },
  ): Promise<void> {
    let node: NodeSpec | undefined;
    try {
      node = await resolveNode(this.#ctx, identity, info.destIP, info.destPort, remoteAddr);
    } catch (err) {
      reject(oneLine(err));
      return;
    }
    await terminate(this.#deps, accept(), node, { identity, remoteAddr, requestedName: info.destIP });
  }

  /** `gatehouse proxy ssh`: SSH inside TLS, after one line naming the node. */
  async #alpn(socket: TLSSocket, info: TlsConnectionInfo): Promise<void> {
    const parser = new TargetRequestParser();
    const timer = setTimeout(() => {
      void this.#auditReject('handshake_timeout', 'no target line', info.remoteAddr);
      socket.destroy();
    }, this.#opts.handshakeTimeoutMs);
    const onData = (chunk: Buffer) => {
      let got: ReturnType<TargetRequestParser['push']>;
      try {
        got = parser.push(chunk);
      } catch (err) {
        clearTimeout(timer);
        socket.off('data', onData);
        const msg = err instanceof WireError ? err.message : String(err);
        void this.#auditReject('malformed', msg, info.remoteAddr);
        socket.end(encodeTargetReply({ ok: false, error: `Gatehouse: ${msg}` }));
        return;
      }
      if (!got) return;
      clearTimeout(timer);
      socket.off('data', onData);
      socket.pause();
      if (got.rest.length) socket.unshift(got.rest);
      void this.#alpnTarget(socket, info, got.request.host, got.request.port);
    };
    socket.on('data', onData);
  }

  async #alpnTarget(socket: TLSSocket, info: TlsConnectionInfo, host: string, port: number): Promise<void> {
    const identity = info.identity;
    if (!identity) {
      socket.end(
        encodeTargetReply({
          ok: false,
          error: 'Gatehouse: no client certificate: run gatehouse login first',
        }),
      );
      return;
    }
    let node: NodeSpec;
    try {
      await this.#ctx.authorizer.principal(identity);
      node = await resolveNode(this.#ctx, identity, host, port, info.remoteAddr);
    } catch (err) {
      socket.end(encodeTargetReply({ ok: false, error: oneLine(err) }));
      return;
    }
    socket.write(encodeTargetReply({ ok: true }));
    await terminate(this.#deps, socket, node, { identity, remoteAddr: info.remoteAddr, requestedName: host });
    socket.resume();
  }

  async #auditReject(
    reason: 'malformed' | 'handshake_timeout' | 'auth_failed',
    error: string,
    remoteAddr: string,
    user?: string,
  ): Promise<void> {
    await auditSshReject(this.#ctx, { reason, error, remoteAddr, ...(user ? { user } : {}) });
  }
}
