import type { X509Certificate } from 'node:crypto';
import net, { BlockList, type Socket } from 'node:net';
import type tls from 'node:tls';
import type { TLSSocket } from 'node:tls';
import type { AuditEmitter, ListenerRejectReason } from '@gatehouse/audit';
import type { Identity } from '../identity/types.js';
import { parseProxyHeader } from './proxy-protocol.js';
import type { ConnectionInfo, RawHandler, Routes, TlsConnectionInfo } from './routes.js';
import { sniff } from './sniff.js';
import { clientIdentity, type TlsRefused, wrapServerTls } from './tls-accept.js';

/** The most bytes we buffer before deciding what a client speaks (PROXY v2 max + a TLS record header). */
const MAX_SNIFF_BYTES = 16 + 65_535 + 16;
const PG_SSL_OK = Buffer.from('S');
const PG_NO = Buffer.from('N');

export interface ListenerOptions {
  firstByteTimeoutMs: number;
  handshakeTimeoutMs: number;
  maxConcurrentHandshakes: number;
  proxyProtocolTrusted: string[];
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
}

/**
 * The one port. Reads just enough bytes to tell the protocol apart, unwraps
 * trusted PROXY headers, terminates TLS (client certs requested, verified
 * against the user CA, never required here), and hands the connection to the
 * route an adapter registered. Every refusal is audited.
 */
export class Listener {
  readonly #deps: ListenerDeps;
  readonly #trusted = new BlockList();
  readonly #servers = new Set<net.Server>();
  readonly #sockets = new Set<Socket>();
  #handshakes = 0;
  #closed = false;

  constructor(deps: ListenerDeps) {
    this.#deps = deps;
    for (const cidr of deps.options.proxyProtocolTrusted) addCidr(this.#trusted, cidr);
  }

  /** Connections still before routing (sniffing or TLS handshake). */
  get pendingHandshakes(): number {
    return this.#handshakes;
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
   * speaks first, so nothing can be sniffed); closed with the others.
   */
  async listenRaw(host: string, port: number, handler: RawHandler): Promise<net.AddressInfo> {
    const server = net.createServer({ noDelay: true }, (socket) => {
      if (!this.#track(socket)) return;
      const info = connectionInfo(socket);
      this.#safely(socket, info, 'a dedicated listener', () => handler(socket, info));
    });
    return this.#open(server, host, port);
  }

  async #open(server: net.Server, host: string, port: number): Promise<net.AddressInfo> {
    this.#servers.add(server);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host, port }, () => {
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

  /** Serve a socket accepted elsewhere (e.g. an existing net.Server). */
  handle(socket: Socket): void {
    if (!this.#track(socket)) return;
    const info = connectionInfo(socket);
    if (this.#handshakes >= this.#deps.options.maxConcurrentHandshakes) {
      this.#reject(
        socket,
        info,
        'too_many_handshakes',
        `more than ${this.#deps.options.maxConcurrentHandshakes} connections are handshaking`,
      );
      return;
    }
    this.#handshakes++;
    let released = false;
    const release = () => {
      if (!released) {
        released = true;
        this.#handshakes--;
      }
    };
    socket.once('close', release);
    this.#sniff(socket, info, release, Buffer.alloc(0), true);
  }

  #sniff(
    socket: Socket,
    info: ConnectionInfo,
    release: () => void,
    initial: Buffer,
    allowProxy: boolean,
  ): void {
    let buf = initial;
    const timer = setTimeout(() => {
      cleanup();
      this.#reject(
        socket,
        info,
        'first_byte_timeout',
        `no protocol recognised within ${this.#deps.options.firstByteTimeoutMs} ms`,
      );
    }, this.#deps.options.firstByteTimeoutMs);
    const onError = (err: Error) => {
      cleanup();
      this.#deps.log('debug', `connection from ${info.remoteAddr} failed before routing`, err);
      socket.destroy();
    };
    const onEnd = () => {
      cleanup();
      if (buf.length > 0) {
        this.#reject(
          socket,
          info,
          'unknown_protocol',
          `client closed after ${buf.length} unrecognised bytes`,
        );
      } else {
        socket.destroy();
      }
    };
    const cleanup = () => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('error', onError);
      socket.off('end', onEnd);
    };
    const decide = (): boolean => {
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
        if (!allowProxy || !this.#isTrusted(info.remoteAddr)) {
          cleanup();
          this.#reject(
            socket,
            info,
            'proxy_protocol_untrusted',
            allowProxy
              ? `PROXY header from ${info.remoteAddr}, which is not in listener.proxy_protocol_trusted`
              : 'a second PROXY header',
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
        const next: ConnectionInfo =
          h.proxied && h.source && h.destination
            ? {
                remoteAddr: h.source.address,
                remotePort: h.source.port,
                localAddr: h.destination.address,
                localPort: h.destination.port,
                proxied: true,
              }
            : info;
        this.#sniff(socket, next, release, buf.subarray(h.length), false);
        return true;
      }
      cleanup();
      socket.pause();
      socket.unshift(buf);
      this.#route(socket, info, release, kind);
      return true;
    };
    const onData = (chunk: Buffer) => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      decide();
    };
    if (buf.length > 0 && decide()) return;
    socket.on('data', onData);
    socket.on('error', onError);
    socket.on('end', onEnd);
    socket.resume();
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

  #route(socket: Socket, info: ConnectionInfo, release: () => void, kind: ReturnType<typeof sniff>): void {
    this.#safely(socket, info, `routing (${kind})`, () => this.#routeKind(socket, info, release, kind));
  }

  #routeKind(
    socket: Socket,
    info: ConnectionInfo,
    release: () => void,
    kind: ReturnType<typeof sniff>,
  ): void {
    const routes = this.#deps.routes;
    switch (kind) {
      case 'ssh': {
        const h = routes.sshHandler;
        if (!h) return this.#reject(socket, info, 'no_route', 'SSH is not enabled on this gateway');
        release();
        h(socket, info);
        return;
      }
      case 'tls':
        return this.#tls(socket, info, release, false);
      case 'pg-ssl': {
        const h = routes.postgresHandlers;
        if (!h) return this.#reject(socket, info, 'no_route', 'PostgreSQL is not enabled on this gateway');
        socket.read(8);
        socket.write(PG_SSL_OK);
        return this.#tls(socket, info, release, true);
      }
      case 'pg-gssenc': {
        // No GSSAPI: answer N; libpq then asks for SSL on the same connection.
        socket.read(8);
        socket.write(PG_NO);
        this.#sniff(socket, info, release, Buffer.alloc(0), false);
        return;
      }
      case 'pg-startup':
      case 'pg-cancel': {
        const h = routes.postgresHandlers;
        if (!h) return this.#reject(socket, info, 'no_route', 'PostgreSQL is not enabled on this gateway');
        release();
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

  #tls(socket: Socket, info: ConnectionInfo, release: () => void, postgres: boolean): void {
    const routes = this.#deps.routes;
    const tlsSocket = wrapServerTls(socket, {
      secureContext: this.#deps.secureContext(),
      ALPNCallback: ({ protocols }) => {
        if (postgres) return protocols.includes('postgresql') ? 'postgresql' : undefined;
        const tunnel = protocols.find((p) => routes.alpnHandler(p));
        if (tunnel) return tunnel;
        if (protocols.includes('http/1.1')) return 'http/1.1';
        return undefined;
      },
    });
    const timer = setTimeout(() => {
      this.#reject(
        tlsSocket,
        info,
        'handshake_timeout',
        `TLS handshake not finished within ${this.#deps.options.handshakeTimeoutMs} ms`,
      );
    }, this.#deps.options.handshakeTimeoutMs);
    const onError = (err: Error) => {
      clearTimeout(timer);
      this.#reject(tlsSocket, info, 'tls_handshake_failed', err.message);
      // A second error from the same dying socket is not a second refusal.
      tlsSocket.off('error', onError);
      tlsSocket.on('error', (e) => this.#deps.log('debug', `TLS connection from ${info.remoteAddr}`, e));
    };
    tlsSocket.on('error', onError);
    tlsSocket.once('secure', () =>
      this.#safely(tlsSocket, info, 'routing (tls)', () => {
        clearTimeout(timer);
        tlsSocket.off('error', onError);
        release();
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
        // Swallowing errors here would hide failures; handlers attach their own.
        tlsSocket.on('error', (err) =>
          this.#deps.log('debug', `TLS connection from ${info.remoteAddr}`, err),
        );
        if (postgres) return routes.postgresHandlers?.tls(tlsSocket, tinfo);
        const tunnel = routes.alpnHandler(alpn);
        if (tunnel) return tunnel(tlsSocket, tinfo);
        const bySni = routes.sniHandler(sni);
        if (bySni) return bySni(tlsSocket, tinfo);
        if (alpn === undefined || alpn === 'http/1.1') return this.#deps.http(tlsSocket);
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
    this.#deps.audit
      .emit({
        type: 'listener.reject',
        reason,
        error,
        user: 'system',
        addr: {
          remote: `${info.remoteAddr}:${info.remotePort}`,
          local: `${info.localAddr}:${info.localPort}`,
        },
      })
      .catch((err: unknown) =>
        this.#deps.log('error', `audit of a listener rejection (${reason}) failed`, err),
      );
  }

  async close(): Promise<void> {
    this.#closed = true;
    const closing = [...this.#servers].map((s) => new Promise<void>((resolve) => s.close(() => resolve())));
    for (const s of this.#sockets) s.destroy();
    await Promise.all(closing);
    this.#servers.clear();
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
