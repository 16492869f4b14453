import { randomUUID } from 'node:crypto';
import type { IncomingHttpHeaders, IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import https from 'node:https';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import { KubeAudit, type KubeRequestFields } from '@gatehouse/audit';
import {
  type AdapterContext,
  GatehouseError,
  type Grant,
  type KubeClusterSpec,
  type LiveSession,
  type Revocation,
  type TlsConnectionInfo,
} from '@gatehouse/core';
import { statusFromError } from './errors.js';
import { type ExecFraming, ExecTap } from './exec.js';
import type { KubeUpstream } from './upstream.js';
import {
  execParams,
  formatCommand,
  type KubeRequestInfo,
  parseKubeRequest,
  SESSION_SUBRESOURCES,
} from './wire/apipath.js';
import { isChannelProtocol, STDERR, STDIN, STDOUT } from './wire/channel.js';
import { type KubeStatus, kubeStatus } from './wire/status.js';

/** What the adapter shares with every connection. */
export interface AdapterState {
  ctx: AdapterContext;
  upstream(spec: KubeClusterSpec): Promise<KubeUpstream>;
  upstreamTimeoutMs: number;
}

interface Authorized {
  grant: Grant;
  spec: KubeClusterSpec;
  audit: KubeAudit;
  user: string;
  groups: string[];
}

/** Hop-by-hop headers (RFC 9110 7.6.1) and everything that names a caller: never forwarded. */
const DROP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authorization',
  'proxy-authenticate',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'host',
  'authorization',
]);

export function impersonationHeaders(headers: IncomingHttpHeaders): string[] {
  return Object.keys(headers).filter((h) => h.toLowerCase().startsWith('impersonate-'));
}

/** The client's headers minus hop-by-hop, credentials and any caller identity claims. */
export function forwardHeaders(headers: IncomingHttpHeaders, keepUpgrade: boolean): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (const [k, v] of Object.entries(headers)) {
    const l = k.toLowerCase();
    if (v === undefined) continue;
    if (l.startsWith('impersonate-') || l.startsWith('x-remote-')) continue;
    if (DROP.has(l) && !(keepUpgrade && (l === 'connection' || l === 'upgrade'))) continue;
    out[l] = v;
  }
  return out;
}

/**
 * One kubectl connection (TLS, SNI <cluster>.kube.<gatehouse cluster>).
 * Access is decided by core once per connection and re-checked while it
 * lives; every request is audited; exec/attach sessions are recorded.
 */
export class KubeConnection {
  readonly #s: AdapterState;
  readonly #socket: TLSSocket;
  readonly #info: TlsConnectionInfo;
  readonly #cluster: string;
  #auth: Promise<Authorized> | undefined;
  /** Core's binding of this connection: it ends the connection on a lock, expiry, deletion or role change. */
  #live: LiveSession | undefined;
  /** Why core ended this connection's access; requests still in flight get it as their answer. */
  #revoked: Revocation | undefined;
  /** Long-lived streams (exec, attach, port-forward, watches, logs -f) to end when access ends. */
  readonly #streams = new Set<(reason: string) => void>();
  #closed = false;

  constructor(s: AdapterState, socket: TLSSocket, info: TlsConnectionInfo, cluster: string) {
    this.#s = s;
    this.#socket = socket;
    this.#info = info;
    this.#cluster = cluster;
    socket.once('close', () => {
      this.#closed = true;
      this.#live?.end();
      for (const end of [...this.#streams]) end('client disconnected');
    });
  }

  async #authorize(): Promise<Authorized> {
    const { ctx } = this.#s;
    const spec = await ctx.kubeClusters.get(this.#cluster);
    const labels = spec?.labels ?? {};
    // An unknown cluster is still asked of core, so the denial is audited the same way.
    const grant = await ctx.authorizer.authorize(
      this.#info.identity,
      { kind: 'kube', name: this.#cluster, labels },
      { remoteAddr: this.#info.remoteAddr, protocol: 'kube' },
    );
    if (!spec) {
      throw new GatehouseError(
        'GH_ERR_NOT_FOUND',
        `Kubernetes cluster "${this.#cluster}" is not registered`,
        {
          hint: 'list clusters with gatehouse kube ls',
        },
      );
    }
    const users = grant.kube?.users ?? [];
    if (users.length > 1) {
      return ctx.authorizer.deny(
        grant.identity,
        { kind: 'kube', name: this.#cluster },
        `your roles allow several Kubernetes users (${users.join(', ')}); Gatehouse cannot pick one`,
        { remoteAddr: this.#info.remoteAddr, protocol: 'kube' },
        { field: 'kube_users', hint: 'ask an admin to grant a single kube_users value' },
      );
    }
    const user = users[0] ?? grant.identity.user;
    const groups = grant.kube?.groups ?? [];
    const audit = new KubeAudit(
      ctx.audit,
      {
        user: grant.identity.user,
        server: this.#cluster,
        addr: { remote: this.#info.remoteAddr },
        kube_cluster: this.#cluster,
        kube_user: user,
        kube_groups: groups,
      },
      { now: () => ctx.clock.now().getTime() },
    );
    // Core owns this connection's access from here (not listed: its exec and
    // port-forward streams are the sessions people look for).
    this.#live = ctx.liveSessions.bind(
      grant,
      {
        kind: 'kube',
        protocol: 'kube-api',
        server: this.#cluster,
        login: user,
        remoteAddr: this.#info.remoteAddr,
        hidden: true,
      },
      { terminate: (r) => this.#revoke(r) },
    );
    if (this.#closed) this.#live.end();
    return { grant, spec, audit, user, groups };
  }

  /** The authorized session of this connection, while core lets it go on. */
  async session(): Promise<Authorized> {
    if (!this.#auth) {
      this.#auth = this.#authorize();
      // A denial is not cached as a grant, but it is final for this connection.
    }
    const a = await this.#auth;
    if (this.#revoked) throw endedError(this.#revoked.message, this.#revoked.cause);
    return a;
  }

  /** Core ended this connection's access: every stream ends with the reason, then the connection. */
  #revoke(r: Revocation): void {
    this.#revoked = r;
    for (const end of [...this.#streams]) end(r.message);
    // A connection between requests is just closed; an upgraded one ended with its stream.
    if (this.#streams.size === 0) this.#socket.end();
    setTimeout(() => this.#socket.destroy(), 1_000).unref();
  }

  /**
   * Who is asking, for a request that forges no impersonation headers; or
   * undefined once `fail` has answered (a forgery is audited).
   */
  async #authorized(
    req: IncomingMessage,
    info: KubeRequestInfo,
    fail: (st: KubeStatus) => void,
  ): Promise<Authorized | undefined> {
    let a: Authorized;
    try {
      a = await this.session();
    } catch (err) {
      fail(statusFromError(err));
      return undefined;
    }
    const forged = impersonationHeaders(req.headers);
    if (forged.length > 0) {
      const st = forgedStatus(forged);
      await this.#auditRequest(a, info, st.code, st.message);
      fail(st);
      return undefined;
    }
    return a;
  }

  /** The cluster's API server; or undefined once `fail` has answered why not (audited). */
  async #upstreamOf(
    a: Authorized,
    info: KubeRequestInfo,
    fail: (st: KubeStatus) => void,
  ): Promise<KubeUpstream | undefined> {
    try {
      return await this.#s.upstream(a.spec);
    } catch (err) {
      const st = statusFromError(err);
      await this.#auditRequest(a, info, st.code, st.message);
      fail(st);
      return undefined;
    }
  }

  /**
   * The request to the API server, as the impersonated user (`upgrade`: exec, attach,
   * port-forward). `fresh` sends it on a new connection instead of a pooled one.
   */
  #upstreamRequest(
    a: Authorized,
    up: KubeUpstream,
    req: IncomingMessage,
    path: string,
    upgrade: boolean,
    fresh = upgrade,
  ) {
    return https.request({
      protocol: 'https:',
      hostname: up.hostname,
      port: up.port,
      method: req.method,
      path: joinPath(up.pathPrefix, path),
      headers: this.#upstreamHeaders(a, up, req.headers, upgrade),
      agent: fresh ? up.upgradeAgent : up.agent,
      ...(up.servername ? { servername: up.servername } : {}),
    });
  }

  async handleRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const info = parseKubeRequest(req.method ?? 'GET', req.url ?? '/');
    const fail = (st: KubeStatus) => sendStatus(res, st);
    const a = await this.#authorized(req, info, fail);
    if (!a) return;
    const up = await this.#upstreamOf(a, info, fail);
    if (!up) return;
    this.#relayRequest(a, up, info, req, res, false);
  }

  /**
   * One attempt at a plain request. A pooled keep-alive connection can be
   * closed by the API server (or a load balancer before it) just as the
   * request goes out on it; then a request that is safe to repeat (GET,
   * HEAD, OPTIONS without a body) is sent once more on a new connection, as
   * Go's HTTP client (kubectl's own) does, instead of failing with 503.
   */
  #relayRequest(
    a: Authorized,
    up: KubeUpstream,
    info: KubeRequestInfo,
    req: IncomingMessage,
    res: ServerResponse,
    retry: boolean,
  ): void {
    const upReq = this.#upstreamRequest(a, up, req, req.url ?? '/', false, retry);
    let answered = false;
    const timer = setTimeout(() => {
      upReq.destroy(
        new GatehouseError(
          'GH_ERR_UPSTREAM_UNAVAILABLE',
          `the API server of "${a.spec.name}" did not answer in time`,
        ),
      );
    }, this.#s.upstreamTimeoutMs);
    let endStream: ((reason: string) => void) | undefined;
    const done = () => {
      clearTimeout(timer);
      if (endStream) this.#streams.delete(endStream);
    };
    upReq.on('response', (upRes) => {
      answered = true;
      clearTimeout(timer);
      const code = upRes.statusCode ?? 502;
      void this.#auditRequest(a, info, code);
      res.writeHead(code, upRes.statusMessage, responseHeaders(upRes.headers));
      const streaming = info.verb === 'watch' || isFollow(req.url);
      // Watches and `logs -f` stream for as long as they run, and a chunked body may come
      // slowly: their headers go now. A body of known length follows at once, so its
      // first chunk carries the headers (one TLS record and one write instead of two).
      if (streaming || upRes.headers['content-length'] === undefined) res.flushHeaders();
      if (streaming) {
        endStream = () => {
          upRes.destroy();
          res.destroy();
        };
        this.#streams.add(endStream);
      }
      upRes.on('data', (c: Buffer) => {
        res.write(c);
      });
      upRes.on('end', () => {
        done();
        res.end();
      });
      upRes.on('error', () => {
        done();
        res.destroy();
      });
    });
    upReq.on('error', (err: NodeJS.ErrnoException) => {
      done();
      if (
        !retry &&
        !answered &&
        upReq.reusedSocket &&
        err.code === 'ECONNRESET' &&
        REPEATABLE_METHODS.has(req.method ?? '') &&
        !hasBody(req.headers) &&
        !res.destroyed
      ) {
        this.#relayRequest(a, up, info, req, res, true);
        return;
      }
      if (res.headersSent) {
        res.destroy();
        return;
      }
      const st = upstreamDown(a.spec.name, err);
      void this.#auditRequest(a, info, st.code, st.message);
      sendStatus(res, st);
    });
    res.on('close', () => {
      done();
      if (!res.writableFinished) upReq.destroy();
    });
    // A request without a body (most: GET, a repeat) goes out at once, without a pipe to set
    // up; its (empty) body is still read, so the client's connection can carry the next one.
    if (retry || !hasBody(req.headers)) {
      upReq.end();
      if (!retry) req.resume();
    } else req.pipe(upReq);
  }

  /** exec, attach, port-forward: HTTP upgrades to WebSocket or SPDY, relayed byte for byte. */
  async handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    socket.pause();
    const url = req.url ?? '/';
    const info = parseKubeRequest(req.method ?? 'GET', url);
    // An upgrade is "connect" in Kubernetes' own authorization terms.
    if (info.resourceRequest) info.verb = 'connect';
    const fail = (st: KubeStatus) => writeRawStatus(socket, st);
    const a = await this.#authorized(req, info, fail);
    if (!a) return;
    const isSession = info.resource === 'pods' && SESSION_SUBRESOURCES.has(info.subresource ?? '');
    const ep = execParams(url);
    const command =
      info.subresource === 'attach' ? `attach ${ep.container ?? ''}`.trim() : formatCommand(ep.command);
    const sessionId = randomUUID();
    const record = isSession && a.grant.options.recordSession.kube;
    const up = await this.#upstreamOf(a, info, fail);
    if (!up) return;
    const upReq = this.#upstreamRequest(a, up, req, url, true);
    const timer = setTimeout(() => {
      upReq.destroy(
        new GatehouseError(
          'GH_ERR_UPSTREAM_UNAVAILABLE',
          `the API server of "${a.spec.name}" did not answer in time`,
        ),
      );
    }, this.#s.upstreamTimeoutMs);
    // Until its stream is set up, an upgrade core ends (a lock while the API server answers)
    // gets a Status saying why instead of a bare EOF; once the upgrade arrived, #startStream
    // ends it the same way.
    let upgraded = false;
    let refused = false;
    const pending = (reason: string) => {
      if (upgraded || refused) return;
      refused = true;
      this.#streams.delete(pending);
      clearTimeout(timer);
      upReq.destroy();
      writeRawStatus(socket, statusFromError(endedError(reason, this.#revoked?.cause)));
    };
    this.#streams.add(pending);
    socket.on('error', () => upReq.destroy());
    upReq.on('response', (upRes) => {
      this.#streams.delete(pending);
      // Refused upstream (e.g. the impersonated user may not exec): relay the Status as it is.
      clearTimeout(timer);
      const code = upRes.statusCode ?? 502;
      void this.#auditRequest(a, info, code);
      if (isSession)
        void a.audit.onExecStartFailed(fields(info), {
          sessionId,
          command,
          error: `upstream answered ${code}`,
        });
      const lines = [`HTTP/1.1 ${code} ${upRes.statusMessage ?? ''}`];
      for (const [k, v] of Object.entries(responseHeaders(upRes.headers))) {
        for (const one of Array.isArray(v) ? v : [v]) lines.push(`${k}: ${one}`);
      }
      lines.push('connection: close', '', '');
      socket.write(lines.join('\r\n'));
      upRes.pipe(socket);
    });
    upReq.on('error', (err) => {
      this.#streams.delete(pending);
      clearTimeout(timer);
      if (refused) return;
      const st = upstreamDown(a.spec.name, err);
      void this.#auditRequest(a, info, st.code, st.message);
      if (isSession) void a.audit.onExecStartFailed(fields(info), { sessionId, command, error: st.message });
      writeRawStatus(socket, st);
    });
    upReq.on('upgrade', (upRes, upSocket, upHead) => {
      clearTimeout(timer);
      upgraded = true;
      void this.#startStream(a, info, {
        pending,
        socket,
        head,
        upRes,
        upSocket,
        upHead,
        isSession,
        record,
        sessionId,
        command,
        tty: ep.tty,
        container: ep.container,
        ports: ep.ports,
      }).catch((err: unknown) => {
        this.#streams.delete(pending);
        this.#s.ctx.log('error', 'kube stream failed to start', err);
        upSocket.destroy();
        socket.destroy();
      });
    });
    upReq.end();
  }

  async #startStream(
    a: Authorized,
    info: KubeRequestInfo,
    o: {
      /** Stands for the upgrade in #streams until the stream's own stop does. */
      pending: (reason: string) => void;
      socket: Duplex;
      head: Buffer;
      upRes: IncomingMessage;
      upSocket: Duplex;
      upHead: Buffer;
      isSession: boolean;
      record: boolean;
      sessionId: string;
      command: string;
      tty: boolean;
      container: string | undefined;
      ports: string | undefined;
    },
  ): Promise<void> {
    const { socket, upSocket } = o;
    const counted = { in: 0, out: 0 };
    /** A content guard ended the session: nothing more is relayed either way. */
    let guardStopped = false;
    /** Whether kubectl got the 101: before it, an end is told as a Status (after it, on the stream). */
    let answered = false;
    const refuse = (reason: string) => {
      if (socket.writable) writeRawStatus(socket, statusFromError(endedError(reason, this.#revoked?.cause)));
      else socket.destroy();
    };
    let stop!: (reason: string | undefined) => void;
    /** From the upgrade's pending entry to the stream's own: core's end now reaches `stop`. */
    const tracked = () => {
      this.#streams.add(stop);
      this.#streams.delete(o.pending);
      // Core ended the connection while the stream was set up.
      if (this.#revoked) stop(this.#revoked.message);
    };
    // The remote-command protocol: the WebSocket subprotocol, or SPDY's X-Stream-Protocol-Version.
    const framing: ExecFraming =
      String(o.upRes.headers.upgrade ?? '').toLowerCase() === 'spdy/3.1' ? 'spdy' : 'websocket';
    const protocol = header(
      o.upRes.headers,
      framing === 'spdy' ? 'x-stream-protocol-version' : 'sec-websocket-protocol',
    );
    await this.#auditRequest(a, info, 101);
    let tap: ExecTap | undefined;
    if (o.isSession) {
      if (o.record && !isChannelProtocol(protocol)) {
        throw new GatehouseError(
          'GH_ERR_ACCESS_DENIED',
          `cannot record the stream protocol "${protocol ?? 'none'}"`,
        );
      }
      const execAudit = await a.audit.onExecStart(fields(info), {
        sessionId: o.sessionId,
        command: o.command,
        container: o.container,
        tty: o.tty,
        recorded: o.record,
      });
      const end = (reason: string | undefined, error?: string) => {
        void execAudit
          .onEnd({ exitCode: tap?.exitCode, reason, error })
          .catch((e: unknown) => this.#s.ctx.log('error', 'audit of kube.exec.end failed', e));
      };
      tap = o.record
        ? await ExecTap.create({
            recordings: this.#s.ctx.recordings,
            framing,
            protocol: protocol ?? '',
            meta: {
              session_id: o.sessionId,
              kind: 'kube',
              user: a.grant.identity.user,
              login: a.user,
              server: a.spec.name,
              command: o.command,
              cols: 80,
              rows: 24,
            },
            onError: (err) => {
              this.#s.ctx.log('error', `recording of kube session ${o.sessionId} failed; ending it`, err);
              stop('recording failed');
            },
          })
        : ExecTap.unrecorded(framing, protocol ?? '');
      let stopped = false;
      stop = (reason: string | undefined) => {
        if (stopped) return;
        stopped = true;
        this.#streams.delete(stop);
        live.end();
        if (reason) tap?.marker(`session ended: ${reason}`);
        upSocket.destroy();
        // kubectl prints a Failure Status from the error channel: the reason in its own words.
        const bye = answered && reason ? tap?.farewell(`Gatehouse: ${reason}`) : undefined;
        if (bye && socket.writable) {
          socket.end(bye);
          setTimeout(() => socket.destroy(), 1_000).unref();
        } else if (!answered && reason) refuse(reason);
        else socket.destroy();
        void tap?.close().finally(() => end(reason));
      };
      // Listed by `sessions ls`; ended by core like every other session (lock, expiry, kill).
      const live = this.#s.ctx.liveSessions.bind(
        a.grant,
        {
          id: o.sessionId,
          kind: 'kube',
          protocol: info.subresource === 'attach' ? 'kube-attach' : 'kube-exec',
          server: a.spec.name,
          login: a.user,
          command: o.command,
          interactive: o.tty,
          remoteAddr: this.#info.remoteAddr,
        },
        { terminate: (r) => stop(r.message) },
      );
      tracked();
      // Content guards see the decoded channels: stdout and stderr as output, stdin as input.
      if (tap && (live.watches('output') || live.watches('input'))) {
        tap.onData = (fromClient, channel, data) => {
          const on = fromClient
            ? channel === STDIN
              ? 'input'
              : undefined
            : channel === STDOUT || channel === STDERR
              ? 'output'
              : undefined;
          if (on && live.inspect(on, data)?.action === 'terminate') guardStopped = true;
        };
      }
      socket.once('close', () => stop(undefined));
      upSocket.once('close', () => stop(undefined));
      if (this.#closed) stop('client disconnected');
      // Core's check at binding: access that ended while the API server answered starts nothing.
      if ((await live.ready) || stopped) return;
    } else {
      // port-forward: relayed, not recorded; its end is audited with what it carried.
      const startedAt = this.#s.ctx.clock.now().getTime();
      let stopped = false;
      stop = (reason: string | undefined) => {
        if (stopped) return;
        stopped = true;
        this.#streams.delete(stop);
        live?.end();
        if (!answered && reason) refuse(reason);
        else socket.destroy();
        upSocket.destroy();
        if (info.subresource !== 'portforward') return;
        void a.audit
          .onPortForwardEnd(fields(info), {
            sessionId: o.sessionId,
            ports: o.ports,
            startedAt,
            bytesIn: counted.in,
            bytesOut: counted.out,
            reason,
          })
          .catch((e: unknown) => this.#s.ctx.log('error', 'audit of kube.portforward.end failed', e));
      };
      const live =
        info.subresource === 'portforward'
          ? this.#s.ctx.liveSessions.bind(
              a.grant,
              {
                id: o.sessionId,
                kind: 'kube',
                protocol: 'kube-portforward',
                server: a.spec.name,
                login: a.user,
                ...(o.ports ? { command: `port-forward ${o.ports}` } : {}),
                remoteAddr: this.#info.remoteAddr,
              },
              { terminate: (r) => stop(r.message) },
            )
          : undefined;
      tracked();
      socket.once('close', () => stop(undefined));
      upSocket.once('close', () => stop(undefined));
      if (live && ((await live.ready) || stopped)) return;
    }
    if (!socket.writable) return stop('client disconnected');
    answered = true;
    const lines = [`HTTP/1.1 101 ${o.upRes.statusMessage || 'Switching Protocols'}`];
    for (let i = 0; i < o.upRes.rawHeaders.length; i += 2)
      lines.push(`${o.upRes.rawHeaders[i]}: ${o.upRes.rawHeaders[i + 1]}`);
    lines.push('', '');
    socket.write(lines.join('\r\n'));
    const fromUp = (c: Buffer) => {
      counted.out += c.length;
      tap?.fromServer(c);
      // A content guard ended the session on something in this chunk: it goes nowhere.
      if (guardStopped) {
        tap?.withheld();
        return;
      }
      if (!socket.write(c)) {
        upSocket.pause();
        socket.once('drain', () => upSocket.resume());
      }
    };
    const fromClient = (c: Buffer) => {
      counted.in += c.length;
      tap?.fromClient(c);
      if (guardStopped) return;
      if (!upSocket.write(c)) {
        socket.pause();
        upSocket.once('drain', () => socket.resume());
      }
    };
    if (o.upHead.length > 0) fromUp(o.upHead);
    if (o.head.length > 0) fromClient(o.head);
    upSocket.on('data', fromUp);
    socket.on('data', fromClient);
    upSocket.on('error', () => socket.destroy());
    socket.on('error', () => upSocket.destroy());
    upSocket.on('end', () => socket.end());
    socket.on('end', () => upSocket.end());
    socket.resume();
  }

  #upstreamHeaders(
    a: Authorized,
    up: KubeUpstream,
    h: IncomingHttpHeaders,
    upgrade: boolean,
  ): OutgoingHttpHeaders {
    const headers = forwardHeaders(h, upgrade);
    Object.assign(headers, up.headers);
    headers.host = up.host;
    headers['impersonate-user'] = a.user;
    if (a.groups.length > 0) headers['impersonate-group'] = a.groups;
    return headers;
  }

  async #auditRequest(a: Authorized, info: KubeRequestInfo, code: number, error?: string): Promise<void> {
    await a.audit
      .onRequest(fields(info), { code, ...(error ? { error } : {}) })
      .catch((err: unknown) => this.#s.ctx.log('error', 'audit of kube.request failed', err));
  }
}

function fields(info: KubeRequestInfo): KubeRequestFields {
  const resource = info.resource
    ? info.subresource
      ? `${info.resource}/${info.subresource}`
      : info.resource
    : undefined;
  return {
    verb: info.verb,
    method: info.method,
    path: info.path,
    ...(resource ? { resource } : {}),
    ...(info.apiGroup ? { api_group: info.apiGroup } : {}),
    ...(info.namespace ? { namespace: info.namespace } : {}),
    ...(info.name ? { name: info.name } : {}),
  };
}

/** What a request or upgrade gets once core ended the access it needs (kubectl prints the message). */
function endedError(message: string, cause?: Revocation['cause']): GatehouseError {
  return new GatehouseError(cause === 'expired' ? 'GH_ERR_CERT_EXPIRED' : 'GH_ERR_ACCESS_DENIED', message, {
    hint: 'log in again with gatehouse login (or ask an admin why access ended)',
  });
}

/** Methods Go's HTTP client sends again when a reused connection fails before any answer. */
const REPEATABLE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

function hasBody(h: IncomingHttpHeaders): boolean {
  return h['transfer-encoding'] !== undefined || (h['content-length'] ?? '0') !== '0';
}

function forgedStatus(names: string[]): KubeStatus {
  return kubeStatus(
    403,
    `gatehouse: impersonation headers are not accepted (${names.join(', ')}): Gatehouse impersonates the user and groups ` +
      'your roles grant; drop --as, --as-group and --as-uid, or ask an admin for a role with the kube_users/kube_groups you need',
  );
}

function upstreamDown(cluster: string, err: Error): KubeStatus {
  const slow = err instanceof GatehouseError;
  return kubeStatus(
    slow ? 504 : 503,
    slow
      ? `gatehouse: ${err.message}`
      : `gatehouse: the API server of cluster "${cluster}" is unreachable (${err.message}); try again later or tell an admin`,
  );
}

function isFollow(url: string | undefined): boolean {
  return /[?&]follow=(true|1)\b/.test(url ?? '');
}

function header(h: IncomingHttpHeaders, name: string): string | undefined {
  const v = h[name];
  return Array.isArray(v) ? v[0] : v;
}

function joinPath(prefix: string, reqUrl: string): string {
  return `${prefix}${reqUrl.startsWith('/') ? reqUrl : `/${reqUrl}`}`;
}

function responseHeaders(h: IncomingHttpHeaders): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (const [k, v] of Object.entries(h)) {
    if (v === undefined || DROP.has(k)) continue;
    out[k] = v;
  }
  return out;
}

export function sendStatus(res: ServerResponse, st: KubeStatus): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = JSON.stringify(st);
  res.writeHead(st.code, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
  });
  res.end(body);
}

export function writeRawStatus(socket: Duplex, st: KubeStatus): void {
  const body = JSON.stringify(st);
  socket.end(
    `HTTP/1.1 ${st.code} ${st.reason}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n` +
      `connection: close\r\n\r\n${body}`,
  );
}
