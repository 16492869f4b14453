import type { Duplex, Writable } from 'node:stream';
import type { SessionRecorder } from '@gatehouse/audit';
import { type SshRejectReason, SshSessionAudit } from '@gatehouse/audit';
import {
  type AdapterContext,
  GatehouseError,
  type Grant,
  type GuardHit,
  type Identity,
  type Joiner,
  type LiveSession,
  type NodeSpec,
  nodeHostPort,
  type TerminalHandle,
  type TerminalViewer,
} from '@gatehouse/core';
import type { Client as SshClient } from 'ssh2';
import { type AuthState, certAuthAttempt } from './auth.js';
import { oneLine, upstreamReason, userMessage } from './errors.js';
import { auditSshReject, closeAfterReply } from './front.js';
import type { ProxyKeys } from './keys.js';
import { SftpTracker } from './sftp-audit.js';
import {
  type AuthContext,
  authBanner,
  type ClientChannel,
  type Connection,
  exitOf,
  ForwardedAgent,
  keepExit,
  openAgentChannel,
  type PseudoTtyInfo,
  protocolErrorDisconnect,
  Server,
  type ServerChannel,
  type Session,
} from './ssh2.js';
import { connectUpstream } from './upstream.js';
import { WireError } from './wire/reader.js';
import { decodeSftp, SftpFramer } from './wire/sftp.js';

export interface ProxyDeps {
  ctx: AdapterContext;
  keys: ProxyKeys;
  handshakeTimeoutMs: number;
  upstreamTimeoutMs: number;
  /** Live inner connections, so the adapter can end them all on close. */
  live: Set<InnerConnection>;
}

/** Who is knocking, from the outer hop (the -J connection, or the TLS client certificate). */
export interface OuterContext {
  identity: Identity;
  remoteAddr: string;
  /** The name the client dialed (direct-tcpip host, or the ALPN target line). */
  requestedName: string;
  /** For the gateway's own client (the web terminal): the live session's id, once registered. */
  onSessionRegistered?: ((sessionId: string) => void) | undefined;
  /** For the gateway's own client: why authentication was refused (an SSH client gets the banner text). */
  onRefused?: ((err: unknown) => void) | undefined;
}

/** How long a terminated session's client gets to print the reason and leave by itself. */
const TERMINATE_GRACE_MS = 500;
/** How long a terminated connection may take to flush its last output and the DISCONNECT. */
const TERMINATE_FLUSH_MS = 5_000;

/**
 * Terminates a user's SSH connection to `node` on `stream` (a direct-tcpip
 * channel of the -J connection, or the TLS stream of `gatehouse proxy ssh`):
 * an ssh2 server presenting a host certificate for the node's name.
 */
export async function terminate(
  deps: ProxyDeps,
  stream: Duplex,
  node: NodeSpec,
  outer: OuterContext,
): Promise<void> {
  const { ctx } = deps;
  const host = nodeHostPort(node).host;
  const principals = [
    ...new Set([node.name, `${node.name}.${ctx.clusterName}`, host, outer.requestedName.toLowerCase()]),
  ];
  const hostKey = await deps.keys.hostKey(`gatehouse-node:${node.name}`, principals);
  const srv = new Server({ hostKeys: [hostKey as never], ident: 'Gatehouse' });
  srv.on('connection', (conn: Connection) => {
    const inner = new InnerConnection(deps, conn, stream, node, outer);
    inner.start();
  });
  srv.injectSocket(stream as never);
}

/** One user connection to one node, after the proxy terminated it. */
export class InnerConnection {
  readonly #d: ProxyDeps;
  readonly #conn: Connection;
  readonly #stream: Duplex;
  readonly #node: NodeSpec;
  readonly #outer: OuterContext;
  readonly #authState: AuthState = { explained: false };
  readonly #relays = new Set<SessionRelay>();
  readonly #forwards = new Set<Duplex>();
  #grant: Grant | undefined;
  #login = '';
  #up: SshClient | undefined;
  #audit: SshSessionAudit | undefined;
  #authorizing: Promise<void> | undefined;
  #handshakeTimer: NodeJS.Timeout | undefined;
  #live: LiveSession | undefined;
  #ended = false;
  /** Why the gateway ended the connection, for a channel that asks after it did. */
  #endReason: string | undefined;
  #recordings = 0;
  /** A session of this connection was granted `ssh -A`: the node's agent channels may reach the client. */
  #agentGranted = false;
  readonly #agent = new ForwardedAgent((cb) => {
    if (!this.#agentGranted || this.#ended) {
      cb(new Error('agent forwarding was not granted on this connection'));
      return;
    }
    openAgentChannel(this.#conn, cb);
  });

  constructor(deps: ProxyDeps, conn: Connection, stream: Duplex, node: NodeSpec, outer: OuterContext) {
    this.#d = deps;
    this.#conn = conn;
    this.#stream = stream;
    this.#node = node;
    this.#outer = outer;
  }

  get grant(): Grant | undefined {
    return this.#grant;
  }

  start(): void {
    const { ctx } = this.#d;
    this.#d.live.add(this);
    this.#handshakeTimer = setTimeout(() => {
      void this.#reject('handshake_timeout', 'the client did not authenticate in time');
    }, this.#d.handshakeTimeoutMs);
    this.#conn.on('authentication', (actx: AuthContext) => this.#onAuth(actx));
    this.#conn.on('ready', () => clearTimeout(this.#handshakeTimer));
    this.#conn.on('session', (accept: () => Session) => this.#onSession(accept));
    this.#conn.on('tcpip', (accept: () => ServerChannel, reject: (desc?: string) => void, info: TcpipInfo) =>
      this.#onDirectTcpip(accept, reject as (desc?: string) => void, info),
    );
    this.#conn.on('request', (accept, reject, name, info) =>
      this.#onGlobalRequest(accept as ((port?: number) => void) | undefined, reject, name, info as never),
    );
    let refused = false;
    this.#conn.on('error', (err: Error & { level?: string; code?: unknown }) => {
      if (this.#grant) return;
      ctx.log('debug', 'ssh: inner connection error before authentication', err);
      // Bad bytes before authentication are refused and audited as on the
      // outer hop (a numeric code is the client's own DISCONNECT, a
      // client-socket error its connection going away: neither is malformed).
      if (refused || err.level === 'client-socket' || typeof err.code === 'number') return;
      refused = true;
      protocolErrorDisconnect(this.#conn, `Gatehouse: ${err.message}`);
      void this.#auditReject('malformed', err.message);
      closeAfterReply(this.#stream);
    });
    this.#conn.on('close', () => this.#finish());
  }

  #onAuth(actx: AuthContext): void {
    const { ctx } = this.#d;
    if (this.#authorizing) {
      // One authorization per connection; later attempts wait for its outcome.
      void this.#authorizing.then(() => (this.#up ? actx.accept() : actx.reject(['publickey'])));
      return;
    }
    const r = certAuthAttempt(
      actx,
      {
        userCaKeys: () => ctx.credentials.userCaSshKeys(),
        // The node login: the certificate must name it (checked before anything is authorized).
        loginIsPrincipal: true,
        now: () => ctx.clock.now(),
        remoteAddr: this.#outer.remoteAddr,
        banner: (t) => authBanner(this.#conn, t),
        onInvalid: (err) => void this.#auditReject('auth_failed', userMessage(err)),
      },
      this.#authState,
    );
    if (!r) return;
    this.#authorizing = this.#authorize(r.identity, actx.username).then(
      () => actx.accept(),
      (err: unknown) => {
        this.#outer.onRefused?.(err);
        authBanner(this.#conn, userMessage(err));
        actx.reject(['publickey']);
      },
    );
  }

  async #authorize(identity: Identity, login: string): Promise<void> {
    const { ctx } = this.#d;
    const target = { kind: 'node' as const, name: this.#node.name, labels: this.#node.labels, login };
    const cctx = { remoteAddr: this.#outer.remoteAddr, protocol: 'ssh' };
    if (identity.user !== this.#outer.identity.user) {
      await ctx.authorizer.deny(
        identity,
        target,
        `certificate of "${identity.user}" on a connection opened by "${this.#outer.identity.user}"`,
        cctx,
        {
          hint: 'use one Gatehouse login for both hops',
        },
      );
    }
    // The certificate names this login (core's verifier checked it before anything else).
    const grant = await ctx.authorizer.authorize(identity, target, cctx);
    this.#grant = grant;
    this.#login = login;
    const audit = new SshSessionAudit(
      ctx.audit,
      {
        session_id: grant.sessionId,
        user: identity.user,
        server: this.#node.name,
        login,
        addr: { remote: this.#outer.remoteAddr },
      },
      { now: () => ctx.clock.now().getTime() },
    );
    try {
      const key = await this.#d.keys.upstreamKey(grant);
      this.#up = await connectUpstream({
        dialer: ctx.dialer,
        clock: ctx.clock,
        node: this.#node,
        login,
        key,
        hostCaKeys: [...ctx.credentials.hostCaSshKeys(), ...(this.#node.hostCaKeys ?? [])],
        timeoutMs: this.#d.upstreamTimeoutMs,
        agent: this.#agent,
      });
    } catch (err) {
      await audit.onSessionStartFailed(userMessage(err).replace(/^Gatehouse: /, ''));
      const reason = upstreamReason(err);
      if (reason) await this.#auditReject(reason, (err as Error).message);
      throw err;
    }
    this.#audit = audit;
    await audit.onSessionStart();
    this.#up.on('close', () =>
      this.terminate(`the connection to node "${this.#node.name}" closed`, { quiet: true }),
    );
    this.#up.on('tcp connection', (details, accept, reject) =>
      this.#onForwardedTcpip(details, accept, reject),
    );
    // Core owns the lifecycle from here: expiry, locks, deletion, role changes and kills end it.
    this.#live = ctx.liveSessions.bind(
      grant,
      { kind: 'ssh', protocol: 'ssh', server: this.#node.name, login, remoteAddr: this.#outer.remoteAddr },
      {
        terminate: (r) => this.terminate(r.message),
        join: (joiner, viewer) => this.#join(grant.sessionId, joiner, viewer),
      },
    );
    this.#outer.onSessionRegistered?.(grant.sessionId);
  }

  /**
   * Before a new channel or forward on a connection that is already up
   * (OpenSSH ControlMaster, a second `ssh -S`): access must still hold now,
   * not only when the connection authenticated. A refusal ends the connection.
   */
  async #stillAllowed(): Promise<string | undefined> {
    const live = this.#live;
    if (!live || this.#ended) {
      // Access may have ended a moment ago (core's check as the session was bound, while
      // OpenSSH opened its channel): say why, not just that it ended.
      const why = this.#endReason ?? 'this session has ended';
      return why.startsWith('Gatehouse') ? why : `Gatehouse: ${why}`;
    }
    try {
      const r = await live.check();
      return r ? `Gatehouse: ${r.message}` : undefined;
    } catch (err) {
      // Could not tell: refuse (fail closed) and say where to look.
      this.#d.ctx.log('error', 'ssh: re-checking access for a new channel failed', err);
      return 'Gatehouse: your access could not be checked (see the gateway log)';
    }
  }

  /** Attaches a viewer to the connection's (first) terminal; core has authorized the join. */
  #join(sessionId: string, joiner: Joiner, viewer: TerminalViewer): TerminalHandle {
    const relay = this.#ended ? undefined : [...this.#relays].find((r) => r.joinable);
    if (!relay) {
      throw new GatehouseError(
        'GH_ERR_BAD_REQUEST',
        `session ${sessionId} has no terminal to join (a command or file transfer)`,
        { hint: 'only interactive sessions (a shell or command with a terminal) can be joined' },
      );
    }
    return relay.join(sessionId, joiner, viewer);
  }

  /** Ends the whole connection now, telling every open session why (on its terminal). */
  terminate(reason: string, opts: { quiet?: boolean } = {}): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#endReason = reason;
    this.#live?.end();
    for (const r of this.#relays) r.kill(opts.quiet ? undefined : reason, reason);
    void this.#audit
      ?.onSessionEnd({ reason })
      .catch((err: unknown) => this.#d.ctx.log('error', 'ssh: audit of session.end failed', err));
    // The channels are closed above, so the client prints the message and
    // leaves by itself. OpenSSH drops channel output it has not written yet
    // when a DISCONNECT arrives, so the connection is only forced down after
    // a grace period (for a client that keeps it open, e.g. with forwards).
    const grace = opts.quiet ? 0 : TERMINATE_GRACE_MS;
    // The DISCONNECT carries the reason too (OpenSSH prints it), for a
    // session whose channel had not opened yet when it was ended.
    setTimeout(() => {
      (this.#conn.end as (description?: string) => unknown).call(this.#conn, opts.quiet ? undefined : reason);
      this.#up?.end();
      // end() flushes what is queued (channel output the client has not read
      // yet, then the DISCONNECT with the reason) before the FIN; destroying
      // soon after cut that flush for a client that reads slowly (a flood on
      // its terminal), so it never saw why. Forced down only as a backstop,
      // for a client that stops reading altogether.
      if (!this.#stream.destroyed) {
        const backstop = setTimeout(() => this.#stream.destroy(), TERMINATE_FLUSH_MS).unref();
        this.#stream.once('close', () => clearTimeout(backstop));
      }
    }, grace);
  }

  async #reject(reason: 'handshake_timeout', error: string): Promise<void> {
    await this.#auditReject(reason, error);
    this.#stream.destroy();
  }

  async #auditReject(reason: SshRejectReason, error: string) {
    await auditSshReject(this.#d.ctx, {
      reason,
      error,
      user: this.#outer.identity.user,
      server: this.#node.name,
      remoteAddr: this.#outer.remoteAddr,
    });
  }

  #finish(): void {
    clearTimeout(this.#handshakeTimer);
    this.#d.live.delete(this);
    this.#live?.end();
    for (const r of this.#relays) r.kill(undefined);
    for (const f of this.#forwards) f.destroy();
    this.#up?.end();
    if (!this.#ended) {
      this.#ended = true;
      void this.#audit
        ?.onSessionEnd()
        .catch((err: unknown) => this.#d.ctx.log('error', 'ssh: audit of session.end failed', err));
    }
  }

  // ------------------------------------------------------------ sessions

  #onSession(accept: () => Session): void {
    const up = this.#up;
    const grant = this.#grant;
    const audit = this.#audit;
    if (!up || !grant || !audit || this.#ended) return;
    const relay = new SessionRelay(this.#d, {
      session: accept(),
      clientSocket: this.#stream,
      up,
      grant,
      audit,
      login: this.#login,
      node: this.#node,
      recordingId: () =>
        this.#recordings++ === 0 ? grant.sessionId : `${grant.sessionId}.${this.#recordings}`,
      onFatal: (reason) => this.terminate(reason),
      // `gatehouse sessions ls` and the web UI show which sessions have a terminal to join.
      onInteractive: (command) =>
        this.#live?.update({ interactive: true, ...(command !== undefined ? { command } : {}) }),
      stillAllowed: () => this.#stillAllowed(),
      inspect: (on, data) => this.#live?.inspect(on, data),
      agentDenied: () => this.#agentDenied(),
      onAgentGranted: () => {
        this.#agentGranted = true;
      },
    });
    this.#relays.add(relay);
    relay.onDone = () => this.#relays.delete(relay);
  }

  // ------------------------------------------------------------ forwarding

  /** Core's answer for `ssh -A` (the grant's role option agent_forwarding), worded for the user. */
  #agentDenied(): string | undefined {
    return this.#grant?.options.agentForwarding
      ? undefined
      : 'Gatehouse: agent forwarding disabled: your roles do not allow it (role option agent_forwarding)';
  }

  #forwardDenied(): string | undefined {
    return this.#grant?.options.portForwarding
      ? undefined
      : 'Gatehouse: port forwarding is not allowed by your roles (role option port_forwarding)';
  }

  #onDirectTcpip(accept: () => ServerChannel, reject: (desc?: string) => void, info: TcpipInfo): void {
    const up = this.#up;
    const audit = this.#audit;
    if (!up || !audit || this.#ended) return reject();
    const target = `${info.destIP}:${info.destPort}`;
    const origin = `${info.srcIP}:${info.srcPort}`;
    const denied = this.#forwardDenied();
    if (denied) {
      void audit.onPortForward({
        direction: 'local',
        target,
        origin,
        error: denied.replace(/^Gatehouse: /, ''),
      });
      return reject(denied);
    }
    void this.#stillAllowed().then((refused) => {
      if (refused) {
        void audit.onPortForward({
          direction: 'local',
          target,
          origin,
          error: refused.replace(/^Gatehouse: /, ''),
        });
        return reject(refused);
      }
      up.forwardOut(info.srcIP, info.srcPort, info.destIP, info.destPort, (err, upCh) => {
        if (err) {
          void audit.onPortForward({ direction: 'local', target, origin, error: err.message });
          return reject(`Gatehouse: the node could not connect to ${target}: ${err.message}`);
        }
        void audit.onPortForward({ direction: 'local', target, origin });
        this.#pipe(accept(), upCh);
      });
    });
  }

  #onGlobalRequest(
    accept: ((port?: number) => void) | undefined,
    reject: (() => void) | undefined,
    name: string,
    info: { bindAddr: string; bindPort: number },
  ): void {
    const up = this.#up;
    const audit = this.#audit;
    if (!up || !audit || this.#ended || (name !== 'tcpip-forward' && name !== 'cancel-tcpip-forward')) {
      reject?.();
      return;
    }
    const target = `${info.bindAddr}:${info.bindPort}`;
    if (name === 'cancel-tcpip-forward') {
      up.unforwardIn(info.bindAddr, info.bindPort, (err) => (err ? reject?.() : accept?.()));
      return;
    }
    const denied = this.#forwardDenied();
    if (denied) {
      void audit.onPortForward({ direction: 'remote', target, error: denied.replace(/^Gatehouse: /, '') });
      reject?.();
      return;
    }
    up.forwardIn(info.bindAddr, info.bindPort, (err, port) => {
      void audit.onPortForward({
        direction: 'remote',
        target: `${info.bindAddr}:${err ? info.bindPort : port}`,
        ...(err ? { error: err.message } : {}),
      });
      if (err) reject?.();
      else accept?.(port);
    });
  }

  #onForwardedTcpip(
    details: { destIP: string; destPort: number; srcIP: string; srcPort: number },
    acceptUp: () => ClientChannel,
    rejectUp: () => void,
  ): void {
    if (this.#ended) return rejectUp();
    this.#conn.forwardOut(details.destIP, details.destPort, details.srcIP, details.srcPort, (err, downCh) => {
      if (err) return rejectUp();
      this.#pipe(downCh, acceptUp());
    });
  }

  /**
   * Relays a forwarded connection both ways. Half-closes are passed on as
   * SSH EOF only: ssh2 closes a server channel when its writable side ends,
   * which would drop the reply of a peer that sends and then shuts down its
   * sending side (as -R clients often do). Both ends close once both sides
   * reached EOF, or at once when either closes.
   */
  #pipe(a: Duplex, b: Duplex): void {
    this.#forwards.add(a);
    this.#forwards.add(b);
    a.pipe(b, { end: false });
    b.pipe(a, { end: false });
    let ended = 0;
    const done = () => {
      this.#forwards.delete(a);
      this.#forwards.delete(b);
      a.destroy();
      b.destroy();
    };
    const halfClose = (to: Duplex) => {
      // After every byte already written to it, not before.
      to.write(Buffer.alloc(0), () => {
        const ch = to as Duplex & { eof?: () => void };
        if (typeof ch.eof === 'function') ch.eof();
        else to.end();
        if (++ended === 2) done();
      });
    };
    a.once('end', () => halfClose(b));
    b.once('end', () => halfClose(a));
    a.once('close', done);
    b.once('close', done);
    a.on('error', done);
    b.on('error', done);
  }
}

interface TcpipInfo {
  srcIP: string;
  srcPort: number;
  destIP: string;
  destPort: number;
}

interface RelayParts {
  session: Session;
  /** The user's connection (the socket under `session`). */
  clientSocket: Writable;
  up: SshClient;
  grant: Grant;
  audit: SshSessionAudit;
  login: string;
  node: NodeSpec;
  recordingId: () => string;
  /** The session cannot go on (recording failed): end the whole connection. */
  onFatal: (reason: string) => void;
  /** A pty shell or command starts (`command` for the latter). */
  onInteractive: (command: string | undefined) => void;
  /** Whether access still holds for something new in the session; the refusal text otherwise. */
  stillAllowed: () => Promise<string | undefined>;
  /** Content guards over the session's streams (core decides and ends the session on a match). */
  inspect: (on: 'output' | 'input', data: Buffer) => GuardHit | undefined;
  /** Why `ssh -A` is refused for this grant, or undefined when it is allowed. */
  agentDenied: () => string | undefined;
  /** A session was granted `ssh -A` (the node may now reach the client's agent). */
  onAgentGranted: () => void;
}

/** Recent terminal output a viewer who joins mid-session gets first (a screen or two, escapes included). */
const TAIL_BYTES = 32 * 1024;
/** At most this many chunks in it: each pins the buffer ssh2 decrypted it into. */
const TAIL_CHUNKS = 512;

/**
 * The last TAIL_BYTES of a terminal's output, as references to the chunks
 * already relayed (no copy until someone joins), so a joiner sees roughly
 * the current screen rather than a blank one.
 */
class OutputTail {
  readonly #chunks: Buffer[] = [];
  #bytes = 0;
  /** Whether older output was dropped (the first chunk may start mid-line). */
  #cut = false;

  push(d: Buffer): void {
    if (d.length === 0) return;
    // A chunk that is a small view into a larger buffer (a decrypted packet,
    // Node's 8 KiB pool) is kept as its own copy, so an idle session's tail
    // does not pin that whole buffer.
    if (d.length * 2 < d.buffer.byteLength) {
      const own = Buffer.allocUnsafeSlow(d.length);
      d.copy(own);
      d = own;
    }
    this.#chunks.push(d);
    this.#bytes += d.length;
    while (
      this.#chunks.length > 1 &&
      (this.#bytes - this.#chunks[0]!.length >= TAIL_BYTES || this.#chunks.length > TAIL_CHUNKS)
    ) {
      this.#bytes -= this.#chunks.shift()!.length;
      this.#cut = true;
    }
  }

  /** A copy of the tail; when it was cut, from the first line start on (not in the middle of an escape). */
  snapshot(): Buffer {
    let all = Buffer.concat(this.#chunks);
    if (all.length > TAIL_BYTES) {
      all = all.subarray(all.length - TAIL_BYTES);
      this.#cut = true;
    }
    const nl = this.#cut ? all.indexOf(0x0a) : -1;
    return nl >= 0 ? all.subarray(nl + 1) : all;
  }
}

/**
 * One session channel: collects env and pty requests, then opens the same
 * kind of channel on the node (shell, exec, or the sftp subsystem) and
 * relays data, window changes, signals and the exit status. Records pty
 * output and audits commands and file transfers.
 */
class SessionRelay {
  readonly #d: ProxyDeps;
  readonly #p: RelayParts;
  readonly #env: Record<string, string> = {};
  #pty: PseudoTtyInfo | undefined;
  #down: ServerChannel | undefined;
  #upCh: ClientChannel | undefined;
  #recorder: SessionRecorder | undefined;
  /** Recent output for joiners; only on a terminal (a pty shell or command). */
  #tail: OutputTail | undefined;
  /** Viewers attached with join (core's web terminal, `gatehouse join`), and how they joined. */
  readonly #viewers = new Map<TerminalViewer, Joiner>();
  #started = false;
  #closed = false;
  /** The client asked for `ssh -A` and core allowed it. */
  #agentForward = false;
  /** Why the client's `ssh -A` did not happen, for its stderr once the session runs. */
  #agentNotice: string | undefined;
  onDone: () => void = () => {};

  constructor(deps: ProxyDeps, parts: RelayParts) {
    this.#d = deps;
    this.#p = parts;
    const s = parts.session;
    s.on('env', (accept, reject, info) => {
      if (this.#started || Object.keys(this.#env).length > 64) return reject?.();
      this.#env[info.key] = info.val;
      accept?.();
    });
    s.on('pty', (accept, reject, info) => {
      if (!parts.grant.options.permitPty || this.#started) return reject?.();
      this.#pty = info;
      accept?.();
    });
    s.on('window-change', (accept, _reject, info) => {
      if (this.#pty)
        Object.assign(this.#pty, {
          cols: info.cols,
          rows: info.rows,
          width: info.width,
          height: info.height,
        });
      this.#upCh?.setWindow(info.rows, info.cols, info.height, info.width);
      this.#recorder?.resize(info.cols, info.rows);
      for (const v of this.#viewers.keys()) this.#toViewer(v, (x) => x.resize(info.cols, info.rows));
      accept?.();
    });
    s.on('signal', (accept, _reject, info) => {
      this.#upCh?.signal(info.name);
      accept?.();
    });
    s.on('auth-agent', (accept, reject) => this.#onAgentRequest(accept, reject));
    s.on('x11', (_accept, reject) => reject?.());
    s.on('shell', (accept, reject) => this.#start(accept, reject, { kind: 'shell' }));
    s.on('exec', (accept, reject, info) =>
      this.#start(accept, reject, { kind: 'exec', command: info.command }),
    );
    s.on('subsystem', (accept, reject, info) => {
      if (info.name !== 'sftp') return reject?.();
      this.#start(accept, reject, { kind: 'sftp' });
    });
    s.on('close', () => this.#cleanup());
  }

  /**
   * `ssh -A` (auth-agent-req@openssh.com). OpenSSH sends it without asking
   * for a reply, so a refusal is silent in the protocol: the reason goes to
   * the session's stderr once it runs, and to the audit log.
   */
  #onAgentRequest(accept: (() => void) | undefined, reject: (() => void) | undefined): void {
    if (this.#started || this.#agentForward || this.#agentNotice) return reject?.();
    const denied = this.#p.agentDenied();
    if (denied) {
      this.#agentNotice = denied;
      void this.#p.audit.onAgentForward({ error: denied.replace(/^Gatehouse: /, '') });
      return reject?.();
    }
    this.#agentForward = true;
    this.#p.onAgentGranted();
    accept?.();
  }

  /**
   * Accepts at once: ssh2 drops data and EOF that arrive for a session
   * channel before it is accepted, and a client may send both right after
   * its request. The accepted channel stays paused (its window closes, so
   * the client waits) until the node's channel is open.
   */
  #start(
    accept: (() => ServerChannel) | undefined,
    reject: (() => void) | undefined,
    what: { kind: 'shell' } | { kind: 'exec'; command: string } | { kind: 'sftp' },
  ): void {
    if (this.#started || !accept) return reject?.();
    this.#started = true;
    const down = accept();
    if (!down) return;
    down.pause();
    this.#down = down;
    void this.#open(down, what);
  }

  async #open(
    down: ServerChannel,
    what: { kind: 'shell' } | { kind: 'exec'; command: string } | { kind: 'sftp' },
  ): Promise<void> {
    const { grant, audit, up, node, login } = this.#p;
    const command = what.kind === 'exec' ? what.command : undefined;
    const interactive = this.#pty !== undefined && what.kind !== 'sftp';
    const record = interactive && grant.options.recordSession.ssh;
    let upCh: ClientChannel;
    let opened: { cols: number; rows: number } | undefined;
    try {
      // A new shell, command or transfer on a connection that is already up:
      // refused while the audit log cannot write (it would go unrecorded), and
      // when access ended since the connection authenticated.
      audit.assertAvailable();
      // Listed as interactive at once (UIs offer a join); the checks below may still end it.
      if (interactive) this.#p.onInteractive(command);
      const refused = await this.#p.stillAllowed();
      if (refused) throw new GatehouseError('GH_ERR_ACCESS_DENIED', refused.replace(/^Gatehouse: /, ''));
      if (record) {
        const pty = this.#pty!;
        this.#recorder = await this.#d.ctx.recordings.create(
          {
            session_id: this.#p.recordingId(),
            kind: 'ssh',
            user: grant.identity.user,
            login,
            server: node.name,
            ...(command !== undefined ? { command } : {}),
            cols: pty.cols,
            rows: pty.rows,
          },
          {
            onError: (err) =>
              this.#p.onFatal(
                `the session recording failed (${err.message}); an interactive session may not run unrecorded`,
              ),
          },
        );
      }
      if (interactive) audit.markInteractive(record);
      opened = this.#pty && { cols: this.#pty.cols, rows: this.#pty.rows };
      upCh = await this.#openUpstream(up, what);
    } catch (err) {
      down.stderr.write(`${userMessage(err).replace(/\n/g, '\r\n')}\r\n`);
      if (command !== undefined) void audit.onExec({ command, error: (err as Error).message });
      down.exit(255);
      down.end();
      this.#cleanup();
      return;
    }
    if (this.#closed) {
      upCh.close();
      return;
    }
    this.#upCh = upCh;
    if (this.#agentNotice) down.stderr.write(`${this.#agentNotice}${this.#pty ? '\r\n' : '\n'}`);
    // A window change that came while the node's channel was opening (the owner resized at once).
    const pty = this.#pty;
    if (pty && opened && (pty.cols !== opened.cols || pty.rows !== opened.rows)) {
      upCh.setWindow(pty.rows, pty.cols, pty.height, pty.width);
    }
    this.#relay(down, upCh, what.kind === 'sftp', command);
    down.resume();
  }

  /**
   * Opens the node's channel, asking it to forward the agent when core
   * allowed `ssh -A`. A node that refuses (sshd AllowAgentForwarding no)
   * makes ssh2 fail the whole channel; the session then runs without the
   * agent, and the user reads why, as with a refusal by role.
   */
  async #openUpstream(
    up: SshClient,
    what: { kind: 'shell' } | { kind: 'exec'; command: string } | { kind: 'sftp' },
  ): Promise<ClientChannel> {
    const withAgent = this.#agentForward && what.kind !== 'sftp';
    try {
      const ch = await this.#openUpstreamOnce(up, what, withAgent);
      if (withAgent) void this.#p.audit.onAgentForward();
      return ch;
    } catch (err) {
      if (!withAgent || !AGENT_REFUSED.test((err as Error).message)) throw wrapUpstream(err as Error);
      const why = `node "${this.#p.node.name}" refused agent forwarding (its sshd_config: AllowAgentForwarding)`;
      this.#agentNotice = `Gatehouse: agent forwarding disabled: ${why}`;
      void this.#p.audit.onAgentForward({ error: why });
      try {
        return await this.#openUpstreamOnce(up, what, false);
      } catch (err2) {
        throw wrapUpstream(err2 as Error);
      }
    }
  }

  #openUpstreamOnce(
    up: SshClient,
    what: { kind: 'shell' } | { kind: 'exec'; command: string } | { kind: 'sftp' },
    agentForward: boolean,
  ): Promise<ClientChannel> {
    const pty = this.#pty
      ? {
          term: this.#pty.term,
          cols: this.#pty.cols,
          rows: this.#pty.rows,
          width: this.#pty.width,
          height: this.#pty.height,
          modes: this.#pty.modes as never,
        }
      : undefined;
    return new Promise((resolve, reject) => {
      const cb = (err: Error | undefined, ch: ClientChannel) => (err ? reject(err) : resolve(keepExit(ch)));
      const agent = agentForward ? { agentForward: true } : {};
      if (what.kind === 'shell') up.shell(pty ?? false, { env: this.#env, ...agent }, cb);
      else if (what.kind === 'exec')
        up.exec(what.command, { env: this.#env, ...(pty ? { pty } : {}), ...agent }, cb);
      else up.subsys('sftp', cb);
    });
  }

  #relay(down: ServerChannel, upCh: ClientChannel, sftp: boolean, command: string | undefined): void {
    const rec = this.#recorder;
    const audit = this.#p.audit;
    const tracker = sftp ? new SftpTracker() : undefined;
    const toNode = sftp ? new SftpFramer() : undefined;
    const fromNode = sftp ? new SftpFramer() : undefined;
    const parse = (framer: SftpFramer | undefined, chunk: Buffer, fromClient: boolean) => {
      if (!framer || !tracker) return;
      try {
        for (const p of framer.push(chunk)) {
          const m = decodeSftp(p);
          for (const r of fromClient ? tracker.fromClient(m) : tracker.fromServer(m)) void audit.onSftp(r);
        }
      } catch (err) {
        if (!(err instanceof WireError)) throw err;
        // Unparseable SFTP: the transfer still runs (the node enforces permissions) but is no longer itemised.
        void audit.onSftp({ action: 'read', path: '(unparseable sftp stream)', error: err.message });
        if (fromClient) this.#sftpBroken.client = true;
        else this.#sftpBroken.server = true;
      }
    };

    if (this.#pty && !sftp) this.#tail = new OutputTail();
    // Terminal output goes to the recording, the tail and every joined viewer
    // (and to the owner through `down` below).
    const fanOut = (d: Buffer) => {
      rec?.output(d);
      this.#tail?.push(d);
      for (const v of this.#viewers.keys()) this.#toViewer(v, (x) => x.output(d));
    };

    // Content guards: a terminating match ends the session (core does), and the piece goes nowhere.
    const guarded = (on: 'output' | 'input', d: Buffer) => this.#p.inspect(on, d)?.action === 'terminate';
    upCh.on('data', (d: Buffer) => {
      if (guarded('output', d)) return;
      corkTick(this.#p.clientSocket);
      fanOut(d);
      if (!this.#sftpBroken.server) parse(fromNode, d, false);
      if (!down.write(d)) {
        upCh.pause();
        down.once('drain', () => upCh.resume());
      }
    });
    upCh.stderr.on('data', (d: Buffer) => {
      if (guarded('output', d)) return;
      fanOut(d);
      down.stderr.write(d);
    });
    down.on('data', (d: Buffer) => {
      if (guarded('input', d)) return;
      if (!this.#sftpBroken.client) parse(toNode, d, true);
      if (!upCh.write(d)) {
        down.pause();
        upCh.once('drain', () => down.resume());
      }
    });
    down.on('end', () => upCh.end());
    down.on('close', () => {
      upCh.close();
      this.#cleanup();
    });
    upCh.on('close', () => {
      const exit = exitOf(upCh);
      // Exit status after the last data: a zero-length write completes after every earlier one.
      down.write(Buffer.alloc(0), () => {
        if (exit && 'code' in exit) down.exit(exit.code);
        else if (exit) down.exit(exit.signal, exit.dump, exit.desc);
        down.end();
      });
      if (command !== undefined) {
        void audit.onExec({
          command,
          ...(exit && 'code' in exit ? { exitCode: exit.code } : {}),
          ...(exit && 'signal' in exit ? { signal: exit.signal } : {}),
        });
      }
      for (const r of tracker?.finish() ?? []) void audit.onSftp(r);
      this.#endViewers(exit && 'code' in exit ? { exitCode: exit.code } : {});
      this.#cleanup();
    });
  }

  readonly #sftpBroken = { client: false, server: false };

  /** Whether a viewer can join: a terminal whose node channel is open. */
  get joinable(): boolean {
    return this.#tail !== undefined && this.#upCh !== undefined && !this.#closed;
  }

  /**
   * Attaches a viewer: it gets the recent output and the terminal size, then
   * everything the node sends. A peer's keystrokes go to the node like the
   * owner's; an observer's are dropped.
   */
  join(sessionId: string, joiner: Joiner, viewer: TerminalViewer): TerminalHandle {
    const tail = this.#tail;
    const pty = this.#pty;
    if (!tail || !pty) throw new Error('join on a session without a terminal');
    this.#viewers.set(viewer, joiner);
    this.#recorder?.marker(`${joiner.user} joined as ${joiner.mode}`);
    const screen = tail.snapshot();
    this.#toViewer(viewer, (v) => {
      if (screen.length > 0) v.output(screen);
      v.resize(pty.cols, pty.rows);
    });
    return {
      sessionId,
      input: (data) => {
        if (joiner.mode !== 'peer' || !this.#viewers.has(viewer) || this.#closed) return;
        // A peer's keys pass the same guards as the owner's.
        if (this.#p.inspect('input', Buffer.from(data))?.action === 'terminate') return;
        this.#upCh?.write(data);
      },
      // The pty follows its owner's window only.
      resize: () => {},
      detach: () => {
        if (this.#viewers.delete(viewer)) this.#recorder?.marker(`${joiner.user} left`);
      },
    };
  }

  /** Calls a joined viewer; one that throws is detached rather than breaking the session. */
  #toViewer(viewer: TerminalViewer, call: (v: TerminalViewer) => void): void {
    try {
      call(viewer);
    } catch (err) {
      this.#viewers.delete(viewer);
      this.#d.ctx.log('error', 'ssh: a joined viewer failed and was detached', err);
    }
  }

  #endViewers(info: { reason?: string; exitCode?: number }): void {
    const viewers = [...this.#viewers.keys()];
    this.#viewers.clear();
    for (const v of viewers) this.#toViewer(v, (x) => x.end(info));
  }

  /**
   * Ends this session now; `message` goes to the user's terminal (and the
   * joined viewers') first. Joined viewers get `reason` with their end.
   */
  kill(message: string | undefined, reason: string | undefined = message): void {
    const down = this.#down;
    if (down && message) {
      const line = `\r\n${message.startsWith('Gatehouse') ? message : `Gatehouse: ${message}`}\r\n`;
      this.#recorder?.marker(message);
      if (this.#pty) down.write(line);
      else down.stderr.write(line);
      for (const v of this.#viewers.keys()) this.#toViewer(v, (x) => x.output(Buffer.from(line)));
      down.exit('TERM', false, message);
    }
    this.#endViewers(reason ? { reason } : {});
    down?.end();
    if (reason !== undefined && this.#upCh) {
      // The gateway ended the session (not the client leaving): a Gatehouse node kills
      // everything the session started, `nohup` jobs included (OpenSSH signals the shell).
      try {
        signalChannel(this.#upCh, 'KILL');
      } catch (err) {
        this.#d.ctx.log('debug', 'ssh: could not send the end-of-session signal to the node', err);
      }
    }
    this.#upCh?.close();
    this.#cleanup();
  }

  #cleanup(): void {
    if (this.#closed) return;
    this.#closed = true;
    // The owner left without the node's channel closing first.
    this.#endViewers({});
    const rec = this.#recorder;
    if (rec) {
      rec.close().catch((err: unknown) => this.#d.ctx.log('error', 'ssh: closing a recording failed', err));
    }
    this.onDone();
  }
}

/**
 * Sends a `signal` request on an open session channel. ssh2's
 * `Channel.signal()` sends nothing once this side has sent EOF (`ssh node cmd
 * </dev/null` does at once), but SSH allows channel requests after EOF
 * (RFC 4254 5.3), and the end-of-session KILL must reach the node then too.
 */
function signalChannel(ch: ClientChannel, name: string): void {
  const c = ch as unknown as {
    outgoing?: { id: number; state: string };
    _client?: { _protocol?: { signal(id: number, name: string): void } };
  };
  // 'eof': ssh2's state once this side sent EOF; the channel is still open for requests.
  const state = c.outgoing?.state;
  if ((state !== 'open' && state !== 'eof') || !c.outgoing || !c._client?._protocol) return;
  c._client._protocol.signal(c.outgoing.id, name);
}

/** ssh2's error when the node answers auth-agent-req with a failure. */
const AGENT_REFUSED = /^Unable to request agent forwarding$/;

function wrapUpstream(err: Error): GatehouseError {
  return new GatehouseError('GH_ERR_UPSTREAM_UNAVAILABLE', `the node refused the request: ${err.message}`, {
    hint: 'check the node (its sshd log says why)',
    cause: err,
  });
}

export { oneLine };

const corked = new WeakSet<Writable>();
/**
 * Holds `stream`'s writes until the end of this tick, so the packets made
 * from one upstream read leave in one write (one TLS flush, one syscall, one
 * wake-up of the reader) instead of one each.
 */
function corkTick(stream: Writable): void {
  if (corked.has(stream)) return;
  corked.add(stream);
  stream.cork();
  process.nextTick(() => {
    corked.delete(stream);
    stream.uncork();
  });
}
