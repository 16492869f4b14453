import type { X509Certificate } from 'node:crypto';
import net, { BlockList, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import type tls from 'node:tls';
import type { TLSSocket } from 'node:tls';
import type { AuditEmitter, ListenerRejectReason } from '@gatehouse/audit';
import { CLIENT_ADDRESS } from '../api/http.js';
import type { GatehouseConfig } from '../config/load.js';
import type { Identity } from '../identity/types.js';
import {
  Admission,
  type AdmissionLimits,
  type AdmissionRefusal,
  type HandshakeSlot,
  KnownSources,
} from './admission.js';
import { parseProxyHeader } from './proxy-protocol.js';
import { RejectAuditor } from './reject-audit.js';
import type { ConnectionInfo, DedicatedHandler, Routes, TlsConnectionInfo } from './routes.js';
import { sniff } from './sniff.js';
import { clientIdentity, type TlsRefused, wrapServerTls } from './tls-accept.js';

/** The most bytes we buffer before deciding what a client speaks (PROXY v2 max + a TLS record header). */
const MAX_SNIFF_BYTES = 16 + 65_535 + 16;
/**
 * The kernel's queue of connections not accepted yet (capped by
 * net.core.somaxconn, 4096 on current Linux). Node's default, 511, overflowed
 * under a 1,000-connection flood: the kernel then drops the handshake's last
 * ACK, so honest clients wait for retransmits and the flood's connections
 * sit half-open where the listener cannot even refuse them.
 */
const ACCEPT_BACKLOG = 4096;
const PG_SSL_OK = Buffer.from('S');
const PG_NO = Buffer.from('N');

export type ListenerOptions = Omit<GatehouseConfig['listener'], 'maxBodyBytes'>;

/** A connection between accept and routing, and the deadlines it has (performance.now() times). */
interface Pending {
  socket: Socket;
  info: ConnectionInfo;
  slot: HandshakeSlot;
  /** The protocol must be recognised by then (first_byte_timeout after accept). */
  firstByteBy: number;
  /** And the TLS handshake finished by then (handshake_timeout after accept). */
  handshakeBy: number;
}

export interface ListenerDeps {
  options: ListenerOptions;
  routes: Routes;
  audit: AuditEmitter;
  /** The current TLS context: server cert chain from the host CA, user CA for client certs. */
  secureContext: () => tls.SecureContext;
  /**
   * Checks a client certificate against the user CA (signature, validity) and
   * returns its Gatehouse identity; throws GH_ERR_CERT_INVALID/EXPIRED or a
   * decoding error.
   */
  verifyClientCert: (cert: X509Certificate) => Identity;
  /** HTTP API + web UI: TLS connections with ALPN http/1.1 (or none) and no SNI route. */
  http: (socket: TLSSocket) => void;
  /** Diagnostics: peers resetting (debug) and audit failures (error). */
  log: (level: 'debug' | 'error', msg: string, err?: unknown) => void;
  /** Wall-clock milliseconds (the gateway's clock): known-source expiry, audit times. Default Date.now. */
  now?: () => number;
}

/**
 * The one port. Reads just enough bytes to tell the protocol apart, unwraps
 * trusted PROXY headers, terminates TLS (client certs requested, verified
 * against the user CA, never required here), and hands the connection to the
 * route an adapter registered. Every port admits connections to its
 * handshake slots first (per source, with a share kept for sources that
 * recently authenticated: docs/decisions/0018-listener-admission.md). Every
 * refusal is audited, a flood of them as counted summaries.
 */
export class Listener {
  readonly #deps: ListenerDeps;
  readonly #trusted = new BlockList();
  readonly #servers = new Set<net.Server>();
  readonly #sockets = new Set<Socket>();
  readonly #known: KnownSources;
  readonly #limits: AdmissionLimits;
  /** The main port's slots (listen() and handle()); each dedicated port has its own. */
  readonly #main: Admission;
  readonly #rejects: RejectAuditor;
  /** Where each routed or dedicated connection came from, for vouch(). */
  readonly #infos = new WeakMap<Socket, ConnectionInfo>();
  #closed = false;

  constructor(deps: ListenerDeps) {
    this.#deps = deps;
    const o = deps.options;
    for (const cidr of o.proxyProtocolTrusted) addCidr(this.#trusted, cidr);
    const now = deps.now ?? Date.now;
    this.#known = new KnownSources(
      { ttlMs: o.knownSources.ttlMs, max: o.knownSources.max, netblock: o.perSourceNetblock },
      now,
    );
    this.#limits = {
      maxHandshakes: o.maxConcurrentHandshakes,
      perSourceMaxHandshakes: o.perSourceMaxHandshakes,
      reservedForKnown: o.knownSources.reservedHandshakes,
    };
    this.#main = new Admission(this.#limits, this.#known);
    this.#rejects = new RejectAuditor({
      audit: deps.audit,
      now,
      windowMs: o.rejectAudit.windowMs,
      maxSources: o.rejectAudit.maxSources,
    });
  }

  /** Connections on the main port still before routing (sniffing or TLS handshake). */
  get pendingHandshakes(): number {
    return this.#main.pending;
  }

  /**
   * The client on `socket` (a connection this listener routed, e.g. the
   * API's) just authenticated: its source block is known for
   * listener.known_sources.ttl. Sockets the listener did not route are ignored.
   */
  vouch(socket: Socket): void {
    const info = this.#infos.get(socket);
    if (info) this.#known.vouch(info.remoteAddr);
  }

  async listen(host: string, port: number): Promise<net.AddressInfo> {
    return this.#open(
      net.createServer({ noDelay: true }, (s) => this.handle(s)),
      host,
      port,
    );
  }

  /**
   * A dedicated port whose connections go straight to one handler (MySQL
   * speaks first, so nothing can be sniffed); closed with the others. It
   * has handshake slots of its own, held until the handler calls
   * `handshake.done()` or the connection closes. No PROXY header is read
   * here, so a trusted proxy's connections are held only to the share for
   * unattributed ones, never refused as one source.
   */
  async listenRaw(host: string, port: number, handler: DedicatedHandler): Promise<net.AddressInfo> {
    const admission = new Admission(this.#limits, this.#known);
    const server = net.createServer({ noDelay: true }, (socket) => {
      if (!this.#track(socket)) return;
      const info = connectionInfo(socket);
      const slot = this.#admit(admission, socket, info, !this.#isTrusted(info.remoteAddr));
      if (!slot) return;
      this.#infos.set(socket, info);
      this.#safely(socket, info, 'a dedicated listener', () =>
        handler(socket, info, { done: () => slot.release() }),
      );
    });
    return this.#open(server, host, port);
  }

  /**
   * Stops accepting on an address `listen`/`listenRaw` bound (a listener moved
   * by a reload); connections it accepted stay until they end.
   */
  async closeBound(bound: { address: string; port: number }): Promise<void> {
    for (const server of this.#servers) {
      const a = server.address() as net.AddressInfo | null;
      if (a?.port !== bound.port || a.address !== bound.address) continue;
      this.#servers.delete(server);
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  }

  async #open(server: net.Server, host: string, port: number): Promise<net.AddressInfo> {
    this.#servers.add(server);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host, port, backlog: ACCEPT_BACKLOG }, () => {
        server.off('error', reject);
        resolve();
      });
    });
    return server.address() as net.AddressInfo;
  }

  /** Remembers a socket so close() can end it; false (and destroyed) once closing. */
  #track(socket: Socket): boolean {
    if (this.#closed) {
      socket.destroy();
      return false;
    }
    this.#sockets.add(socket);
    socket.once('close', () => this.#sockets.delete(socket));
    // Whoever handles the socket next adds its own listeners; this one makes
    // sure an error in a moment nobody listens (a reset after a refusal, while
    // an adapter awaits core) ends that socket only, never the process.
    socket.on('error', (err) =>
      this.#deps.log('debug', `connection from ${socket.remoteAddress ?? '?'} failed`, err),
    );
    return true;
  }

  /** A slot on `admission` for the connection, given back when it closes; undefined: refused (and closed). */
  #admit(
    admission: Admission,
    socket: Socket,
    info: ConnectionInfo,
    attributed: boolean,
  ): HandshakeSlot | undefined {
    const r = admission.admit(info.remoteAddr, { attributed });
    if (!r.ok) {
      this.#refuse(socket, info, r.refusal);
      return undefined;
    }
    socket.once('close', () => r.slot.release());
    return r.slot;
  }

  /**
   * Over a limit: a reset at once. Nothing is read and no TLS is started, and
   * a reset leaves no TIME_WAIT entry on the gateway per refused connection.
   */
  #refuse(socket: Socket, info: ConnectionInfo, refusal: AdmissionRefusal): void {
    try {
      socket.resetAndDestroy();
    } catch (err) {
      // Only TCP can be reset (ERR_INVALID_HANDLE_TYPE for a Unix socket handed to handle()): close it instead.
      this.#deps.log('debug', 'a refused connection could not be reset; closing it', err);
      socket.destroy();
    }
    this.#audit(info, refusal.reason, refusal.error);
  }

  /** Serve a socket accepted elsewhere (e.g. an existing net.Server). */
  handle(socket: Socket): void {
    if (!this.#track(socket)) return;
    const info = connectionInfo(socket);
    // A trusted proxy is not a source: its connections count for the client
    // its PROXY header names, once that is read.
    const viaProxy = this.#isTrusted(info.remoteAddr);
    const slot = this.#admit(this.#main, socket, info, !viaProxy);
    if (!slot) return;
    const accepted = performance.now();
    const conn: Pending = {
      socket,
      info,
      slot,
      firstByteBy: accepted + this.#deps.options.firstByteTimeoutMs,
      handshakeBy: accepted + this.#deps.options.handshakeTimeoutMs,
    };
    this.#sniff(conn, Buffer.alloc(0), viaProxy, true);
  }

  /**
   * Reads first bytes until they name a protocol. `serverFirst`: a client
   * that stays silent (for listener.ssh_banner_after) may be an SSH client
   * waiting for the server's banner, and goes to SSH (docs/decisions/0024);
   * false once it is known to be something else (PostgreSQL after GSSENC).
   */
  #sniff(conn: Pending, initial: Buffer, allowProxy: boolean, serverFirst: boolean): void {
    const { socket } = conn;
    let buf = initial;
    const bannerAfter = this.#deps.options.sshBannerAfterMs;
    let done = false;
    const silence =
      serverFirst && buf.length === 0 && bannerAfter > 0 && this.#deps.routes.sshHandler
        ? setTimeout(() => {
            // Decided after this turn's I/O: when the event loop was busy past the
            // deadline, timers run before the reads of that turn, and bytes that
            // arrived in time must still count as the client speaking first.
            setImmediate(() => {
              if (done || buf.length > 0 || socket.readableLength > 0) return;
              cleanup();
              this.#silentToSsh(conn);
            });
          }, bannerAfter)
        : undefined;
    // One deadline from accept for every stage (PROXY header, GSSENC answer,
    // sniff): a client trickling bytes, or taking each stage slowly, gets no more.
    const timer = setTimeout(
      () => {
        cleanup();
        this.#reject(
          socket,
          conn.info,
          'first_byte_timeout',
          `no protocol recognised within ${this.#deps.options.firstByteTimeoutMs} ms of connecting`,
        );
      },
      Math.max(0, conn.firstByteBy - performance.now()),
    );
    const onError = (err: Error) => {
      cleanup();
      this.#deps.log('debug', `connection from ${conn.info.remoteAddr} failed before routing`, err);
      socket.destroy();
    };
    const onEnd = () => {
      cleanup();
      if (buf.length > 0) {
        this.#reject(
          socket,
          conn.info,
          'unknown_protocol',
          `client closed after ${buf.length} unrecognised bytes`,
        );
      } else {
        socket.destroy();
      }
    };
    // Closed without an end or an error (e.g. by close()): nothing to refuse any more.
    const onClose = () => cleanup();
    const cleanup = () => {
      done = true;
      clearTimeout(timer);
      clearTimeout(silence);
      socket.off('data', onData);
      socket.off('error', onError);
      socket.off('end', onEnd);
      socket.off('close', onClose);
    };
    const decide = (): boolean => {
      const info = conn.info;
      const kind = sniff(buf);
      if (kind === 'need-more') {
        if (buf.length > MAX_SNIFF_BYTES) {
          cleanup();
          this.#reject(socket, info, 'unknown_protocol', 'too many bytes without a recognised protocol');
          return true;
        }
        return false;
      }
      if (kind === 'proxy-v1' || kind === 'proxy-v2') {
        if (!allowProxy) {
          cleanup();
          this.#reject(
            socket,
            info,
            'proxy_protocol_untrusted',
            this.#isTrusted(info.remoteAddr) || info.proxied
              ? 'a second PROXY header'
              : `PROXY header from ${info.remoteAddr}, which is not in listener.proxy_protocol_trusted`,
          );
          return true;
        }
        const parsed = parseProxyHeader(buf);
        if (!parsed.ok && parsed.needMore) return false;
        cleanup();
        if (!parsed.ok) {
          this.#reject(socket, info, 'proxy_protocol_malformed', parsed.error);
          return true;
        }
        const h = parsed.header;
        if (h.proxied && h.source && h.destination) {
          conn.info = {
            remoteAddr: normalizeAddr(h.source.address),
            remotePort: h.source.port,
            localAddr: h.destination.address,
            localPort: h.destination.port,
            proxied: true,
          };
          // Only now is the client known: its own limits apply from here.
          const refused = conn.slot.attribute(conn.info.remoteAddr);
          if (refused) {
            this.#reject(socket, conn.info, refused.reason, refused.error);
            return true;
          }
        }
        this.#sniff(conn, buf.subarray(h.length), false, true);
        return true;
      }
      cleanup();
      // No PROXY header: the socket's own address is the client's (a no-op when already counted).
      const refused = conn.slot.attribute(info.remoteAddr);
      if (refused) {
        this.#reject(socket, info, refused.reason, refused.error);
        return true;
      }
      socket.pause();
      socket.unshift(buf);
      this.#route(conn, kind);
      return true;
    };
    const onData = (chunk: Buffer) => {
      // The client spoke: it is not waiting for a server banner.
      clearTimeout(silence);
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      decide();
    };
    if (buf.length > 0 && decide()) return;
    socket.on('data', onData);
    socket.on('error', onError);
    socket.on('end', onEnd);
    socket.on('close', onClose);
    socket.resume();
  }

  /**
   * A client that said nothing goes to SSH, whose server speaks first (its
   * identification line): ssh-keyscan and other clients that wait for it
   * then answer. Unlike a sniffed SSH client, the connection keeps its
   * handshake slot and its first_byte_timeout until the client sends a byte,
   * so a flood of silent connections is held and refused exactly as before
   * (docs/decisions/0018); only the banner is extra.
   */
  #silentToSsh(conn: Pending): void {
    const { socket, info, slot } = conn;
    const h = this.#deps.routes.sshHandler;
    const refused = slot.attribute(info.remoteAddr);
    if (refused) return this.#reject(socket, info, refused.reason, refused.error);
    if (!h) return this.#reject(socket, info, 'no_route', 'SSH is not enabled on this gateway');
    socket.pause();
    const deadline = setTimeout(
      () => {
        socket.off('data', answered);
        this.#reject(
          socket,
          info,
          'first_byte_timeout',
          `no answer to the SSH banner within ${this.#deps.options.firstByteTimeoutMs} ms of connecting`,
        );
      },
      Math.max(0, conn.firstByteBy - performance.now()),
    );
    const answered = () => {
      clearTimeout(deadline);
      slot.release();
    };
    socket.once('close', () => clearTimeout(deadline));
    // Added while paused, so it only watches: the handler decides when bytes flow.
    socket.once('data', answered);
    this.#safely(socket, info, 'routing (ssh, server first)', () => h(socket, info));
  }

  /** Runs a route handler; one that throws ends its own connection, never the listener. */
  #safely(socket: Socket, info: ConnectionInfo, what: string, fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.#deps.log('error', `${what} failed for a connection from ${info.remoteAddr}`, err);
      socket.destroy();
    }
  }

  #route(conn: Pending, kind: ReturnType<typeof sniff>): void {
    this.#safely(conn.socket, conn.info, `routing (${kind})`, () => this.#routeKind(conn, kind));
  }

  #routeKind(conn: Pending, kind: ReturnType<typeof sniff>): void {
    const { socket, info, slot } = conn;
    const routes = this.#deps.routes;
    switch (kind) {
      case 'ssh': {
        const h = routes.sshHandler;
        if (!h) return this.#reject(socket, info, 'no_route', 'SSH is not enabled on this gateway');
        slot.release();
        h(socket, info);
        return;
      }
      case 'tls':
        return this.#tls(conn, false);
      case 'pg-ssl': {
        const h = routes.postgresHandlers;
        if (!h) return this.#reject(socket, info, 'no_route', 'PostgreSQL is not enabled on this gateway');
        socket.read(8);
        socket.write(PG_SSL_OK);
        return this.#tls(conn, true);
      }
      case 'pg-gssenc': {
        // No GSSAPI: answer N; libpq then asks for SSL on the same connection.
        socket.read(8);
        socket.write(PG_NO);
        // A PostgreSQL client, whatever it does next: never handed to SSH for being slow.
        this.#sniff(conn, Buffer.alloc(0), false, false);
        return;
      }
      case 'pg-startup':
      case 'pg-cancel': {
        const h = routes.postgresHandlers;
        if (!h) return this.#reject(socket, info, 'no_route', 'PostgreSQL is not enabled on this gateway');
        slot.release();
        h.plaintext(socket, info);
        return;
      }
      case 'http-plain': {
        // A browser or curl pointed at http://: say what to do instead of a silent close.
        socket.end(
          'HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n' +
            'This port speaks TLS: use https:// (and gatehouse login --proxy HOST:PORT).\n',
        );
        this.#reject(socket, info, 'unknown_protocol', 'plain HTTP on the TLS port', false);
        return;
      }
      case 'unknown':
        return this.#reject(socket, info, 'unknown_protocol', 'unrecognised bytes on the listener');
      case 'proxy-v1':
      case 'proxy-v2':
      case 'need-more':
        // Handled in #sniff; reaching here is a bug, and a bug must not grant anything.
        return this.#reject(socket, info, 'unknown_protocol', `internal: unexpected sniff result ${kind}`);
      default: {
        const never: never = kind;
        return this.#reject(socket, info, 'unknown_protocol', `internal: ${String(never)}`);
      }
    }
  }

  #tls(conn: Pending, postgres: boolean): void {
    const { info, slot } = conn;
    const routes = this.#deps.routes;
    const tlsSocket = wrapServerTls(conn.socket, {
      secureContext: this.#deps.secureContext(),
      ALPNCallback: ({ protocols }) => {
        if (postgres) return protocols.includes('postgresql') ? 'postgresql' : undefined;
        const tunnel = protocols.find((p) => routes.alpnHandler(p));
        if (tunnel) return tunnel;
        if (protocols.includes('http/1.1')) return 'http/1.1';
        return undefined;
      },
    });
    // Counted from accept, like first_byte_timeout: a ClientHello trickled in byte by byte gets no longer.
    const timer = setTimeout(
      () => {
        this.#reject(
          tlsSocket,
          info,
          'handshake_timeout',
          `TLS handshake not finished within ${this.#deps.options.handshakeTimeoutMs} ms of connecting`,
        );
      },
      Math.max(0, conn.handshakeBy - performance.now()),
    );
    const onError = (err: Error) => {
      clearTimeout(timer);
      this.#reject(tlsSocket, info, 'tls_handshake_failed', err.message);
      // A second error from the same dying socket is not a second refusal.
      tlsSocket.off('error', onError);
      tlsSocket.on('error', (e) => this.#deps.log('debug', `TLS connection from ${info.remoteAddr}`, e));
    };
    tlsSocket.on('error', onError);
    // A client that hangs up mid-handshake (one that only wanted the certificate, like the
    // CA-pin check) was not refused: without this its deadline would still fire and say so.
    tlsSocket.once('close', () => clearTimeout(timer));
    tlsSocket.once('secure', () =>
      this.#safely(tlsSocket, info, 'routing (tls)', () => {
        clearTimeout(timer);
        tlsSocket.off('error', onError);
        slot.release();
        const alpn = tlsSocket.alpnProtocol || undefined;
        const sni = (tlsSocket as TLSSocket & { servername?: string | false }).servername || undefined;
        const tinfo: TlsConnectionInfo = { ...info, alpn, sni };
        try {
          tinfo.identity = clientIdentity(tlsSocket, this.#deps.verifyClientCert);
        } catch (err) {
          const r = err as TlsRefused;
          // PostgreSQL clients show nothing but a closed connection unless the adapter says why.
          const explain = postgres ? routes.postgresHandlers?.refused : undefined;
          this.#reject(tlsSocket, info, r.reason, r.message, !explain);
          if (explain) {
            tlsSocket.on('error', (e) =>
              this.#deps.log('debug', `TLS connection from ${info.remoteAddr}`, e),
            );
            explain(tlsSocket, tinfo, r);
          }
          return;
        }
        // A valid Gatehouse certificate: this source keeps its precedence under a flood.
        if (tinfo.identity) this.#known.vouch(info.remoteAddr);
        this.#infos.set(tlsSocket, info);
        // Swallowing errors here would hide failures; handlers attach their own.
        tlsSocket.on('error', (err) =>
          this.#deps.log('debug', `TLS connection from ${info.remoteAddr}`, err),
        );
        if (postgres) return routes.postgresHandlers?.tls(tlsSocket, tinfo);
        const tunnel = routes.alpnHandler(alpn);
        if (tunnel) return tunnel(tlsSocket, tinfo);
        const bySni = routes.sniHandler(sni);
        if (bySni) return bySni(tlsSocket, tinfo);
        if (alpn === undefined || alpn === 'http/1.1') {
          // The API rate-limits, pins and audits logins by this address, not the load balancer's.
          (tlsSocket as TLSSocket & { [CLIENT_ADDRESS]?: string })[CLIENT_ADDRESS] = info.remoteAddr;
          return this.#deps.http(tlsSocket);
        }
        return this.#reject(tlsSocket, info, 'no_route', `no route for ALPN ${alpn}`);
      }),
    );
  }

  #isTrusted(addr: string): boolean {
    const family = net.isIP(addr) === 6 ? 'ipv6' : 'ipv4';
    return this.#trusted.check(addr, family);
  }

  #reject(
    socket: Socket,
    info: ConnectionInfo,
    reason: ListenerRejectReason,
    error: string,
    destroy = true,
  ): void {
    if (destroy) socket.destroy();
    this.#audit(info, reason, error);
  }

  #audit(info: ConnectionInfo, reason: ListenerRejectReason, error: string): void {
    this.#rejects.reject(info, this.#known.blockOf(info.remoteAddr), reason, error);
  }

  /** Stops listening, ends every connection, and writes the refusals still counted. */
  async close(): Promise<void> {
    this.#closed = true;
    const closing = [...this.#servers].map((s) => new Promise<void>((resolve) => s.close(() => resolve())));
    for (const s of this.#sockets) s.destroy();
    await Promise.all(closing);
    this.#servers.clear();
    await this.#rejects.close();
  }
}

function connectionInfo(socket: Socket): ConnectionInfo {
  return {
    remoteAddr: normalizeAddr(socket.remoteAddress),
    remotePort: socket.remotePort ?? 0,
    localAddr: normalizeAddr(socket.localAddress),
    localPort: socket.localPort ?? 0,
    proxied: false,
  };
}

function normalizeAddr(a: string | undefined): string {
  if (!a) return '';
  return a.startsWith('::ffff:') && net.isIPv4(a.slice(7)) ? a.slice(7) : a;
}

function addCidr(list: BlockList, cidr: string): void {
  const [addr = '', bits] = cidr.split('/');
  const family = net.isIP(addr) === 6 ? 'ipv6' : 'ipv4';
  if (net.isIP(addr) === 0)
    throw new Error(`listener.proxy_protocol_trusted: "${cidr}" is not an IP or CIDR`);
  if (bits === undefined) list.addAddress(addr, family);
  else list.addSubnet(addr, Number(bits), family);
}
