import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type tls from 'node:tls';
import type { TLSSocket } from 'node:tls';
import { type AuditText, type AuditTextLimits, type DbRejectReason, TextDigest } from '@gatehouse/audit';
import {
  type AdapterContext,
  BoundedMap,
  type ConnectionInfo,
  type DbSession,
  type HandshakeDone,
  type Identity,
  type LiveSession,
  type TlsConnectionInfo,
  TlsRefused,
} from '@gatehouse/core';
import type { ConnectionIds, ConnectionTarget } from './connection-ids.js';
import { denialToWire, errorMessage } from './errors.js';
import { ConnectionClosed, PacketChannel } from './packet-io.js';
import {
  connectUpstream,
  finishLogin,
  HANDSHAKE_MAX_BYTES as UPSTREAM_HANDSHAKE_MAX_BYTES,
  type Upstream,
  UpstreamRefused,
} from './upstream.js';
import {
  type ChangeUser,
  CommandReader,
  type CommandSegment,
  encodeChangeUser,
  encodeErr,
  encodeHandshakeV10,
  encodePacket,
  type HandshakeResponse,
  isSslRequest,
  MysqlWireError,
  type Packet,
  parseCommand,
  parseHandshakeResponse,
  parsePrepareOk,
} from './wire/codec.js';
import { CLIENT, COM, ER, type ErrSpec, GATEWAY_CAPABILITIES } from './wire/constants.js';
import { decodeExecuteParams, type ExecuteParams, renderMysql } from './wire/params.js';
import { inspectQuery, type KillStatement, parseKill, type QueryCheck } from './wire/sql.js';
import {
  CommandStream,
  decodeStreamed,
  isStreamedCommand,
  type StatementLookup,
  type StreamedCommand,
} from './wire/stream.js';

export interface SessionOptions {
  handshakeTimeoutMs: number;
  upstreamTimeoutMs: number;
  maxPacketBytes: number;
  /** Largest client packet held whole in memory; a larger one streams upstream. */
  maxBufferedPacketBytes: number;
}

export interface SessionDeps {
  ctx: AdapterContext;
  opts: SessionOptions;
  /** Version string for our greeting (Gatehouse's own: it is sent before anyone logged in). */
  serverVersion: string;
  /** The connection ids of our greetings and the database connections behind them (KILL). */
  ids: ConnectionIds;
  /** Registers a live session for close(); returns the unregister function. */
  track(end: () => void): () => void;
}

/** The handshake is tiny; a larger packet before authentication is hostile. */
const HANDSHAKE_MAX_BYTES = 16 * 1024;
const UTF8MB4_GENERAL_CI = 45;

class HandshakeTimeout extends Error {
  constructor(ms: number) {
    super(`no handshake response within ${ms} ms`);
    this.name = 'HandshakeTimeout';
  }
}

class Refused extends Error {
  readonly reason: DbRejectReason;
  readonly err: ErrSpec;
  constructor(reason: DbRejectReason, err: ErrSpec, message: string) {
    super(message);
    this.reason = reason;
    this.err = err;
  }
}

/** Scramble bytes: printable, never NUL (clients treat the scramble as a C string). */
function scramble(): Buffer {
  const b = randomBytes(20);
  for (let i = 0; i < b.length; i++) b[i] = 0x21 + ((b[i] as number) % 94);
  return b;
}

/** Handshake state shared with the failure path: which socket, channel and sequence id are current. */
interface Handshake {
  socket: Duplex;
  ch: PacketChannel;
  /** The sequence id our next packet (an ERR) must carry. */
  seq: number;
  timer: NodeJS.Timeout;
  onTimeout: (e: Error) => void;
}

function startHandshake(socket: Duplex, opts: SessionOptions): Handshake {
  const ch = new PacketChannel(socket, HANDSHAKE_MAX_BYTES);
  const hs: Handshake = {
    socket,
    ch,
    seq: 1,
    timer: setTimeout(
      () => hs.onTimeout(new HandshakeTimeout(opts.handshakeTimeoutMs)),
      opts.handshakeTimeoutMs,
    ),
    onTimeout: (e) => hs.ch.fail(e),
  };
  return hs;
}

async function nextPacket(hs: Handshake): Promise<Packet> {
  const p = await hs.ch.next();
  hs.seq = (p.seq + 1) & 0xff;
  return p;
}

/**
 * Phase 1 on the dedicated port: our greeting, the client's SSLRequest, TLS
 * with a Gatehouse user certificate, the handshake response. A client that
 * does not ask for TLS is refused like require_secure_transport would.
 * `handshake.done()` gives the listener's handshake slot back once the
 * handshake response is in.
 */
export function serveDedicated(
  raw: Socket,
  info: ConnectionInfo,
  deps: SessionDeps,
  handshake: HandshakeDone,
): void {
  const { ctx } = deps;
  raw.setNoDelay(true);
  const hs = startHandshake(raw, deps.opts);
  const caps = GATEWAY_CAPABILITIES | CLIENT.SSL;
  const connectionId = deps.ids.issue();
  void (async () => {
    raw.write(greeting(deps, caps, connectionId));
    const first = await nextPacket(hs);
    if (first.seq !== 1)
      throw new Refused('malformed', ER.HANDSHAKE_ERROR, 'Bad handshake: unexpected sequence id');
    if (!isSslRequest(first.payload)) {
      // A full handshake response in plaintext: core records the unauthenticated attempt.
      await ctx.dbAccess
        .authorize({
          identity: undefined,
          protocol: 'mysql',
          dbUser: '',
          dbName: '',
          remoteAddr: info.remoteAddr,
        })
        .catch(() => undefined);
      throw new Refused(
        'plaintext',
        ER.SECURE_TRANSPORT_REQUIRED,
        'Connections using insecure transport are prohibited: Gatehouse needs TLS with your Gatehouse certificate ' +
          '(run gatehouse db login NAME and use the [client_NAME] group it writes, or gatehouse proxy db NAME)',
      );
    }
    const rest = hs.ch.detach();
    if (rest.length > 0) raw.unshift(rest);
    // TLS and the client certificate are core's business: the listener's
    // certificate, and the identity verified before any MySQL byte is read.
    const tls = ctx.tls.accept(raw);
    const secure = tls.socket;
    hs.socket = secure;
    const identity = await new Promise<Identity | undefined>((resolve, reject) => {
      hs.onTimeout = reject;
      tls.identity.then(resolve, reject);
    });
    hs.ch = new PacketChannel(secure, HANDSHAKE_MAX_BYTES);
    hs.onTimeout = (e) => hs.ch.fail(e);
    const resp = await nextPacket(hs);
    clearTimeout(hs.timer);
    handshake.done();
    const clientRest = hs.ch.detach();
    await runSession(secure, info, deps, identity, caps, resp, clientRest, connectionId);
  })().catch((e: unknown) => handshakeFailed(hs, info, deps, e));
}

/** Phase 1 inside a `gatehouse-mysql` ALPN tunnel: TLS and identity came from the listener. */
export function serveTunnel(socket: TLSSocket, info: TlsConnectionInfo, deps: SessionDeps): void {
  const hs = startHandshake(socket, deps.opts);
  const connectionId = deps.ids.issue();
  void (async () => {
    socket.write(greeting(deps, GATEWAY_CAPABILITIES, connectionId));
    const resp = await nextPacket(hs);
    clearTimeout(hs.timer);
    if (isSslRequest(resp.payload)) {
      throw new Refused(
        'unsupported',
        ER.HANDSHAKE_ERROR,
        'the local tunnel is already TLS: connect to it without SSL (--skip-ssl, or ssl off in the client)',
      );
    }
    const rest = hs.ch.detach();
    await runSession(socket, info, deps, info.identity, GATEWAY_CAPABILITIES, resp, rest, connectionId);
  })().catch((e: unknown) => handshakeFailed(hs, info, deps, e));
}

/**
 * Our greeting. `connectionId` is the gateway's (ConnectionIds): the greeting
 * goes out before the client said who it is or which database it wants, so
 * the database's id is not known yet; a KILL naming it is translated.
 */
function greeting(deps: SessionDeps, caps: number, connectionId: number): Buffer {
  return encodePacket(
    0,
    encodeHandshakeV10({
      serverVersion: deps.serverVersion,
      connectionId,
      authData: scramble(),
      capabilities: caps,
      charset: UTF8MB4_GENERAL_CI,
      status: 2,
      authPlugin: 'mysql_native_password',
    }),
  );
}

function handshakeFailed(hs: Handshake, info: ConnectionInfo, deps: SessionDeps, e: unknown): void {
  clearTimeout(hs.timer);
  hs.ch.detach();
  const socket = hs.socket;
  const addr = {
    remote: `${info.remoteAddr}:${info.remotePort}`,
    local: `${info.localAddr}:${info.localPort}`,
  };
  const audit = deps.ctx.audit;
  const log = (p: Promise<unknown>) =>
    p.catch((err: unknown) => deps.ctx.log('error', 'audit of a MySQL handshake failure failed', err));
  const sendErr = (err: ErrSpec, msg: string, seq = hs.seq) => {
    if (socket.writable) socket.end(encodeErr(seq, err, msg));
    setTimeout(() => socket.destroy(), 1000).unref();
  };
  if (e instanceof ConnectionClosed) {
    socket.destroy();
    return;
  }
  if (e instanceof Refused) {
    sendErr(e.err, e.message);
    log(
      audit.emit({
        type: 'db.reject',
        protocol: 'mysql',
        reason: e.reason,
        error: e.message,
        user: 'anonymous',
        addr,
      }),
    );
    return;
  }
  if (e instanceof HandshakeTimeout) {
    sendErr(ER.NET_READ_INTERRUPTED, `Gatehouse: ${e.message}`);
    log(
      audit.emit({
        type: 'db.reject',
        protocol: 'mysql',
        reason: 'timeout',
        error: e.message,
        user: 'anonymous',
        addr,
      }),
    );
    return;
  }
  if (e instanceof MysqlWireError) {
    const too = e.reason === 'too_large';
    sendErr(too ? ER.NET_PACKET_TOO_LARGE : ER.HANDSHAKE_ERROR, `Gatehouse: bad handshake: ${e.message}`);
    log(
      audit.emit({
        type: 'db.reject',
        protocol: 'mysql',
        reason: too ? 'oversized' : 'malformed',
        error: e.message,
        user: 'anonymous',
        addr,
      }),
    );
    return;
  }
  if (e instanceof TlsRefused) {
    if (e.reason === 'tls_handshake_failed') socket.destroy();
    else sendErr(ER.ACCESS_DENIED, `Gatehouse: ${e.message}`);
    log(audit.emit({ type: 'listener.reject', reason: e.reason, error: e.message, user: 'system', addr }));
    return;
  }
  deps.ctx.log('error', `MySQL handshake from ${info.remoteAddr} failed`, e);
  sendErr(ER.UNKNOWN_ERROR, `Gatehouse: ${errorMessage(e)}`);
}

/**
 * Phase 2 and 3: authorize through core (the same DbAccess path Postgres
 * uses), log in upstream with the db-CA certificate, then relay.
 */
async function runSession(
  client: Duplex,
  info: ConnectionInfo,
  deps: SessionDeps,
  identity: Identity | undefined,
  offered: number,
  respPacket: Packet,
  clientRest: Buffer,
  connectionId: number,
): Promise<void> {
  const { ctx, opts } = deps;
  let resp: HandshakeResponse;
  try {
    resp = parseHandshakeResponse(respPacket.payload);
  } catch (e) {
    if (e instanceof MysqlWireError)
      throw new Refused('malformed', ER.HANDSHAKE_ERROR, `Bad handshake: ${e.message}`);
    throw e;
  }
  const seq = (respPacket.seq + 1) & 0xff;
  const fail = (err: ErrSpec, message: string) => {
    if (client.writable) client.end(encodeErr(seq, err, message));
    setTimeout(() => client.destroy(), 1000).unref();
  };
  const route = identity?.route;
  const dbName = resp.database || (route?.kind === 'db' ? (route.database ?? '') : '');
  let session: DbSession;
  try {
    session = await ctx.dbAccess.authorize({
      identity,
      protocol: 'mysql',
      dbUser: resp.user,
      dbName,
      remoteAddr: info.remoteAddr,
    });
  } catch (e) {
    const w = denialToWire(e);
    fail(w.err, w.message);
    return;
  }
  const capabilities = resp.capabilities & offered;
  const abort = new AbortController();
  const t = setTimeout(() => abort.abort(), opts.upstreamTimeoutMs);
  let upstream: Awaited<ReturnType<typeof connectUpstream>>;
  try {
    upstream = await connectUpstream(
      session,
      { capabilities, charset: resp.charset, user: resp.user, database: dbName, attrs: resp.attrs },
      abort.signal,
    );
  } catch (e) {
    const msg = errorMessage(e);
    await session.audit
      .onSessionStartFailed(msg)
      .catch((err: unknown) => ctx.log('error', 'audit failed', err));
    fail(upstreamFailure(e), `Gatehouse: ${msg}`);
    return;
  } finally {
    clearTimeout(t);
  }
  try {
    await session.audit.onSessionStart();
  } catch (e) {
    upstream.socket.destroy();
    fail(
      ER.UNKNOWN_ERROR,
      `Gatehouse: the audit log is unavailable, so the session cannot start (${errorMessage(e)})`,
    );
    return;
  }
  new Relay(client, upstream.socket, session, capabilities, resp.user, resp.charset, deps).start(
    clientRest,
    upstream.leftover,
    encodePacket(seq, upstream.ok),
    seq,
    { gateway: connectionId, upstream: upstream.greeting.connectionId },
  );
}

/** The ERR for a failed database login: the database's refusal of the user, or an unreachable database. */
function upstreamFailure(e: unknown): ErrSpec {
  return e instanceof UpstreamRefused && (e.code === 1045 || e.code === 1044)
    ? ER.ACCESS_DENIED
    : ER.UPSTREAM_UNREACHABLE;
}

interface Statement {
  sql: AuditText;
  numParams: number;
  types: number[] | undefined;
  /** What COM_STMT_SEND_LONG_DATA sent, per parameter, since the last execute or reset. */
  longData: Map<number, TextDigest>;
}

/** Prepared statements a session remembers (as the server's max_prepared_stmt_count does)... */
const MAX_STATEMENTS = 16_382;
/** ...and the characters of their text together; the oldest goes first, its executes then audited as unknown. */
const MAX_STATEMENT_CHARS = 16 * 1024 * 1024;
const NO_LONG_DATA: ReadonlyMap<number, AuditText> = new Map();

/** A statement's long data as the audit keeps it (each digest read once: the execute consumes it). */
function longDataTexts(st: Statement): ReadonlyMap<number, AuditText> {
  if (st.longData.size === 0) return NO_LONG_DATA;
  return new Map([...st.longData].map(([i, d]) => [i, d.result(renderMysql)]));
}

/**
 * Phase 4: the pass-through relay. After authentication each command
 * restarts sequence ids at 0 on both sides, so client commands are forwarded
 * byte for byte once checked and audited, and server replies flow back
 * unparsed (except the first packet of a COM_STMT_PREPARE reply, for the
 * statement id and parameter count).
 *
 * A command over `maxBufferedPacketBytes` (or split over 16 MiB frames) is
 * never held whole: COM_QUERY, COM_STMT_PREPARE, COM_STMT_EXECUTE and
 * COM_STMT_SEND_LONG_DATA go upstream piece by piece as they arrive, decoded
 * on the way into what the checks and the audit need, and the piece that
 * completes one waits for its checks and record. The server cannot run a
 * packet it has not fully received, so "no audit, no statement" holds; but
 * once some of it went upstream, a refusal can only end the session.
 */
class Relay {
  readonly #client: Duplex;
  /** The database connection; another one after a COM_CHANGE_USER to another database user. */
  #up: TLSSocket;
  readonly #session: DbSession;
  readonly #caps: number;
  readonly #deps: SessionDeps;
  readonly #reader: CommandReader;
  readonly #limits: AuditTextLimits;
  readonly #statements = new BoundedMap<number, Statement>({
    maxEntries: MAX_STATEMENTS,
    maxSize: MAX_STATEMENT_CHARS,
    sizeOf: (st) => (typeof st.sql === 'string' ? st.sql.length : st.sql.text.length + 80),
  });
  readonly #lookup: StatementLookup;
  readonly #queue: CommandSegment[] = [];
  /** The command streaming through: its decoder, and whether some of it already went upstream. */
  #streaming: { cmd: CommandStream; forwarded: boolean } | undefined;
  #dbUser: string;
  /** The character set of the client's login, for a new database login after COM_CHANGE_USER. */
  readonly #charset: number;
  #busy = false;
  #ended = false;
  #awaitPrepare: AuditText | undefined;
  #prepHead: Buffer | undefined;
  #live: LiveSession | undefined;
  /** The id of our greeting, while the session is in ConnectionIds. */
  #connectionId: number | undefined;
  #untrack: () => void = () => undefined;

  constructor(
    client: Duplex,
    up: TLSSocket,
    session: DbSession,
    caps: number,
    dbUser: string,
    charset: number,
    deps: SessionDeps,
  ) {
    this.#client = client;
    this.#up = up;
    this.#session = session;
    this.#caps = caps;
    this.#dbUser = dbUser;
    this.#charset = charset;
    this.#deps = deps;
    this.#limits = session.audit.limits;
    this.#reader = new CommandReader({
      maxPacketBytes: deps.opts.maxPacketBytes,
      maxBufferedBytes: deps.opts.maxBufferedPacketBytes,
    });
    this.#lookup = {
      execute: (id) => {
        const st = this.#statements.get(id);
        return st && { numParams: st.numParams, types: st.types, longData: longDataTexts(st) };
      },
      longData: (id, param) => this.#longData(id, param),
    };
  }

  /**
   * Binds the session to core; once core's check at binding passes, sends the
   * client `ok` (the server's OK to its handshake response, sequence id
   * `okSeq`) and relays.
   */
  start(
    clientRest: Buffer,
    upRest: Buffer,
    ok: Buffer,
    okSeq: number,
    ids: { gateway: number; upstream: number },
  ): void {
    const c = this.#client;
    const u = this.#up;
    // Nothing flows (and nothing is lost) until the relay's data handlers are on.
    c.pause();
    u.pause();
    this.#untrack = this.#deps.track(() => this.end('the gateway is shutting down'));
    c.on('error', (e) => this.end(`client connection failed: ${e.message}`));
    c.on('close', () => this.end());
    u.on('error', this.#onUpError);
    u.on('close', this.#onUpClose);
    // Until the OK the client waits for the answer to its handshake response; after it an
    // unasked-for packet is read as the answer to the next command (sequence id 1).
    let errSeq = okSeq;
    // Core ends the session on expiry, a lock, the user's deletion, a role change or a kill.
    const live = this.#session.bind({
      terminate: (r) => {
        // Unasked-for, it waits in the client's buffer: the next command reads it as its answer.
        if (this.#client.writable)
          this.#client.write(encodeErr(errSeq, ER.CONNECTION_KILLED, `Gatehouse: ${r.message}`));
        this.end(undefined, r.message);
      },
    });
    this.#live = live;
    this.#connectionId = ids.gateway;
    this.#deps.ids.bind(ids.gateway, {
      sessionId: this.#session.audit.sessionId,
      user: this.#session.grant.identity.user,
      service: this.#session.service.name,
      upstreamId: ids.upstream,
    });
    // Access may have ended while the database was dialed (a lock mid-handshake): then the
    // client gets core's ERR 1927 instead of the OK, and nothing runs.
    void live.ready.then((revoked) => {
      if (revoked || this.#ended) return;
      errSeq = 1;
      c.write(ok);
      c.on('data', (chunk: Buffer) => this.#onClientData(chunk));
      u.on('data', this.#onUpData);
      if (upRest.length > 0) this.#onUpstreamData(upRest);
      if (clientRest.length > 0) this.#onClientData(clientRest);
      c.resume();
      u.resume();
    });
  }

  readonly #onUpData = (chunk: Buffer) => this.#onUpstreamData(chunk);
  readonly #onUpError = (e: Error) => this.end(`database connection failed: ${e.message}`);
  readonly #onUpClose = () => this.end();

  #onClientData(chunk: Buffer): void {
    if (this.#ended) return;
    // Content guards on what the client sends (statements, parameters): a match ends the session here.
    if (this.#live?.inspect('query', chunk)?.action === 'terminate') return;
    let segs: CommandSegment[];
    try {
      segs = this.#reader.push(chunk);
    } catch (e) {
      const we = e as MysqlWireError;
      const too = we instanceof MysqlWireError && we.reason === 'too_large';
      this.#refuseAndEnd(1, too ? ER.NET_PACKET_TOO_LARGE : ER.UNKNOWN_COM, `Gatehouse: ${errorMessage(e)}`);
      return;
    }
    if (segs.length === 0) return;
    for (const s of segs) this.#queue.push(s);
    if (!this.#busy) void this.#drain();
  }

  async #drain(): Promise<void> {
    this.#busy = true;
    // Paused while commands are checked and audited, and while the database cannot take more.
    this.#client.pause();
    try {
      while (this.#queue.length > 0 && !this.#ended) {
        await this.#segment(this.#queue.shift() as CommandSegment);
      }
    } catch (e) {
      this.#deps.ctx.log('error', 'MySQL relay failed', e);
      this.#refuseAndEnd(1, ER.UNKNOWN_ERROR, `Gatehouse: ${errorMessage(e)}`);
    } finally {
      this.#busy = false;
      if (!this.#ended) this.#client.resume();
    }
  }

  /** Writes upstream; the promise (when the database's buffer is full) resolves on drain. */
  #send(raw: Buffer): Promise<void> | undefined {
    const up = this.#up;
    if (up.write(raw)) return undefined;
    return new Promise<void>((resolve) => {
      const go = () => {
        up.off('drain', go);
        up.off('close', go);
        resolve();
      };
      up.on('drain', go);
      up.on('close', go);
    });
  }

  async #forward(p: Packet): Promise<void> {
    const w = this.#send(p.raw);
    if (w) await w;
  }

  async #segment(seg: CommandSegment): Promise<void> {
    if (seg.kind === 'packet') {
      const p = seg.packet;
      const command = p.payload[0];
      if (
        p.payload.length > this.#limits.maxQueryBytes &&
        command !== undefined &&
        isStreamedCommand(command)
      ) {
        // The streaming decoder, so a long text gets the same prefix and hash as if it had streamed.
        const seq = (p.seq + 1) & 0xff;
        let cmd: StreamedCommand;
        try {
          cmd = decodeStreamed(p.payload, this.#limits, this.#lookup, this.#deps.opts.maxBufferedPacketBytes);
        } catch (e) {
          this.#refuseAndEnd(seq, ER.UNKNOWN_COM, `Gatehouse: malformed command: ${errorMessage(e)}`);
          return;
        }
        return this.#complete(cmd, p.raw, seq, false);
      }
      return this.#handle(p);
    }
    if (seg.first) {
      this.#streaming = {
        cmd: new CommandStream(this.#limits, this.#lookup, this.#deps.opts.maxBufferedPacketBytes),
        forwarded: false,
      };
    }
    const s = this.#streaming as { cmd: CommandStream; forwarded: boolean };
    const seq = (seg.seq + 1) & 0xff;
    let cmd: StreamedCommand | undefined;
    try {
      s.cmd.push(seg.payload);
      if (seg.end) cmd = s.cmd.end();
    } catch (e) {
      const too = e instanceof MysqlWireError && e.reason === 'too_large';
      this.#refuseAndEnd(
        seq,
        too ? ER.NET_PACKET_TOO_LARGE : ER.UNKNOWN_COM,
        `Gatehouse: ${errorMessage(e)}`,
      );
      return;
    }
    if (!cmd) {
      s.forwarded = true;
      const w = this.#send(seg.raw);
      if (w) await w;
      return;
    }
    this.#streaming = undefined;
    return this.#complete(cmd, seg.raw, seq, s.forwarded);
  }

  /**
   * A command decoded by the streaming decoder: checked and audited, then its
   * last bytes (`raw`) go upstream. When `partial`, earlier bytes already
   * went: a refusal then ends the session, and the server, left with an
   * incomplete packet, runs nothing.
   */
  async #complete(cmd: StreamedCommand, raw: Buffer, seq: number, partial: boolean): Promise<void> {
    const refuse = (err: ErrSpec, message: string) =>
      partial ? this.#refuseAndEnd(seq, err, message) : this.#reply(seq, err, message);
    switch (cmd.type) {
      case 'query':
        if (!(await this.#checkQuery(cmd.check, cmd.sql, seq, refuse))) return;
        break;
      case 'prepare':
        if (!(await this.#audit({ query: cmd.sql, statement: 'prepare' }, seq))) return;
        this.#expectPrepare(cmd.sql);
        break;
      case 'execute':
        if (!(await this.#auditExecute(cmd.stmtId, cmd.params, cmd.undecodable, seq))) return;
        break;
      case 'send_long_data':
        break;
      default: {
        const never: never = cmd;
        throw new Error(`unhandled streamed command ${String(never)}`);
      }
    }
    const w = this.#send(raw);
    if (w) await w;
  }

  /**
   * Every audit write is awaited before the statement runs: no audit, no
   * statement. A session that core audits at session level only (role option
   * db_audit: sessions) writes nothing here: the statement is only counted.
   */
  #audit(
    q: { query: AuditText; parameters?: AuditText[]; statement?: string },
    seq: number,
  ): boolean | Promise<boolean> {
    const audit = this.#session.audit;
    if (!audit.auditsStatements) {
      audit.countQuery();
      return true;
    }
    return this.#auditWrite(q, seq);
  }

  async #auditWrite(
    q: { query: AuditText; parameters?: AuditText[]; statement?: string },
    seq: number,
  ): Promise<boolean> {
    try {
      await this.#session.audit.onQuery(q);
      return true;
    } catch (e) {
      this.#refuseAndEnd(
        seq,
        ER.UNKNOWN_ERROR,
        `Gatehouse: the audit log is unavailable, the session ends (${errorMessage(e)})`,
      );
      return false;
    }
  }

  /**
   * What a COM_QUERY must pass before it runs: a text the gateway can check,
   * no LOAD DATA LOCAL (refused, and audited), every USE target allowed by
   * core, and its audit record written. False when it must not run (`refuse`
   * has answered).
   */
  async #checkQuery(
    check: QueryCheck,
    query: AuditText,
    seq: number,
    refuse: (err: ErrSpec, message: string) => void,
  ): Promise<boolean> {
    if (check.unchecked) {
      if (await this.#audit({ query }, seq)) {
        refuse(ER.NOT_ALLOWED_COMMAND, `Gatehouse: ${check.unchecked}; send it as separate, shorter queries`);
      }
      return false;
    }
    if (check.loadDataLocal) {
      if (await this.#audit({ query }, seq)) {
        refuse(ER.NOT_ALLOWED_COMMAND, 'Gatehouse: LOAD DATA LOCAL is not allowed through Gatehouse');
      }
      return false;
    }
    for (const db of check.useDatabases) {
      if (!(await this.#reauthorize(this.#dbUser, db, seq, refuse))) return false;
    }
    return this.#audit({ query }, seq);
  }

  async #auditExecute(
    stmtId: number,
    params: ExecuteParams | undefined,
    undecodable: string | undefined,
    seq: number,
  ): Promise<boolean> {
    const st = this.#statements.get(stmtId);
    let parameters: AuditText[] = [];
    if (st) {
      if (params) {
        st.types = params.types;
        parameters = params.values;
      } else if (undecodable !== undefined) {
        // The server will judge the packet; the audit record says what we could not read.
        parameters = [`<undecodable: ${undecodable}>`];
      }
      st.longData.clear();
    }
    const query = st ? st.sql : `<unknown statement ${stmtId}>`;
    return this.#audit({ query, parameters, statement: String(stmtId) }, seq);
  }

  /** Where a parameter's long data goes: the first few keep a prefix, the rest their length and hash. */
  #longData(stmtId: number, paramId: number): TextDigest | undefined {
    const st = this.#statements.get(stmtId);
    // The server refuses a parameter the statement does not have.
    if (!st || paramId >= st.numParams) return undefined;
    let d = st.longData.get(paramId);
    if (!d) {
      const withPrefix = Math.floor(this.#limits.maxQueryBytes / this.#limits.maxParameterBytes);
      d = new TextDigest(st.longData.size < withPrefix ? this.#limits.maxParameterBytes : 0);
      st.longData.set(paramId, d);
    }
    return d;
  }

  #expectPrepare(sql: AuditText): void {
    this.#awaitPrepare = sql;
    this.#prepHead = undefined;
  }

  /** Answers one command ourselves (the upstream never sees it). */
  #reply(seq: number, err: ErrSpec, message: string): void {
    this.#client.write(encodeErr(seq, err, message));
  }

  async #reauthorize(
    dbUser: string,
    dbName: string,
    seq: number,
    refuse: (err: ErrSpec, message: string) => void = (err, message) => this.#reply(seq, err, message),
  ): Promise<boolean> {
    try {
      await this.#session.reauthorize({ dbUser, dbName });
      return true;
    } catch (e) {
      const w = denialToWire(e);
      refuse(w.err, w.message);
      return false;
    }
  }

  async #handle(p: Packet): Promise<void> {
    const seq = (p.seq + 1) & 0xff;
    let cmd: ReturnType<typeof parseCommand>;
    try {
      cmd = parseCommand(p.payload, this.#caps);
    } catch (e) {
      this.#refuseAndEnd(seq, ER.UNKNOWN_COM, `Gatehouse: malformed command: ${errorMessage(e)}`);
      return;
    }
    switch (cmd.type) {
      case 'quit':
        this.#up.write(p.raw);
        this.end();
        return;
      case 'query': {
        const kill = parseKill(cmd.sql);
        const target = kill && this.#deps.ids.get(kill.id);
        if (kill && target) return this.#kill(kill, target, cmd.sql, p, seq);
        const reply = (err: ErrSpec, message: string) => this.#reply(seq, err, message);
        if (!(await this.#checkQuery(inspectQuery(cmd.sql), cmd.sql, seq, reply))) return;
        return this.#forward(p);
      }
      case 'init_db': {
        if (!(await this.#reauthorize(this.#dbUser, cmd.database, seq))) return;
        if (!(await this.#audit({ query: `USE \`${cmd.database.replace(/`/g, '``')}\`` }, seq))) return;
        return this.#forward(p);
      }
      case 'prepare': {
        if (!(await this.#audit({ query: cmd.sql, statement: 'prepare' }, seq))) return;
        this.#expectPrepare(cmd.sql);
        return this.#forward(p);
      }
      case 'execute': {
        const st = this.#statements.get(cmd.stmtId);
        let params: ExecuteParams | undefined;
        let undecodable: string | undefined;
        if (st) {
          try {
            params = decodeExecuteParams(
              cmd.payload,
              st.numParams,
              st.types,
              longDataTexts(st),
              this.#limits,
            );
          } catch (e) {
            undecodable = errorMessage(e);
          }
        }
        if (!(await this.#auditExecute(cmd.stmtId, params, undecodable, seq))) return;
        return this.#forward(p);
      }
      case 'send_long_data':
        // The value follows the command byte, statement id and parameter id.
        this.#longData(cmd.stmtId, cmd.paramId)?.update(p.payload.subarray(7));
        return this.#forward(p);
      case 'stmt_close':
        this.#statements.delete(cmd.stmtId);
        return this.#forward(p);
      case 'stmt_reset':
        this.#statements.get(cmd.stmtId)?.longData.clear();
        return this.#forward(p);
      case 'change_user':
        return this.#changeUser(cmd.change, seq);
      case 'process_kill': {
        const target = this.#deps.ids.get(cmd.id);
        if (target) return this.#kill({ prefix: 'KILL ', id: cmd.id }, target, undefined, p, seq);
        return this.#forward(p);
      }
      case 'other':
        return this.#forward(p);
      default: {
        const never: never = cmd;
        throw new Error(`unhandled command ${String(never)}`);
      }
    }
  }

  /**
   * A KILL of an id from one of our greetings (`sql`: the COM_QUERY text;
   * undefined for COM_PROCESS_KILL): it becomes that session's database id,
   * so a client's cancel (which kills the id its greeting carried) reaches
   * the right connection. A KILL of any other id is an ordinary statement
   * and reaches the database as it is. Whether
   * the kill is allowed is the database's rule for this session's database
   * user, as it is for a KILL of the database's own ids. An id of a session
   * on another database is refused here: that server knows nothing of it.
   */
  async #kill(
    kill: KillStatement,
    target: ConnectionTarget,
    sql: string | undefined,
    p: Packet,
    seq: number,
  ): Promise<void> {
    const text = sql ?? `${kill.prefix}${kill.id}`;
    if (!(await this.#audit({ query: text }, seq))) return;
    const here = this.#session.service.name;
    const user = this.#session.grant.identity.user;
    const sent = `${kill.prefix}${target.upstreamId}`;
    const onOther = target.service !== here;
    await this.#deps.ctx.audit
      .emit({
        type: 'db.cancel',
        protocol: 'mysql',
        success: !onOther,
        ...(onOther
          ? { error: `connection ${kill.id} runs on database "${target.service}", not "${here}"` }
          : {}),
        user,
        session_id: target.sessionId,
        server: target.service,
        message: onOther
          ? `${text} (from session ${this.#session.audit.sessionId}) not sent`
          : `${text} sent to ${here} as ${sent} by session ${this.#session.audit.sessionId} (connection of ${target.user})`,
      })
      .catch((e: unknown) => this.#deps.ctx.log('error', 'audit of a MySQL KILL failed', e));
    if (onOther) {
      this.#reply(
        seq,
        ER.NO_SUCH_THREAD,
        `Gatehouse: connection ${kill.id} runs on database "${target.service}", not "${here}": send the KILL through a connection to "${target.service}"`,
      );
      return;
    }
    const id = Buffer.alloc(4);
    id.writeUInt32LE(target.upstreamId >>> 0);
    const payload =
      sql === undefined
        ? Buffer.concat([Buffer.from([COM.PROCESS_KILL]), id])
        : Buffer.concat([Buffer.from([COM.QUERY]), Buffer.from(sent, 'utf8')]);
    const w = this.#send(encodePacket(p.seq, payload));
    if (w) await w;
  }

  /**
   * COM_CHANGE_USER. Core decides, with the checks of a connect: the same
   * database user (a pool resetting its connection) is re-checked for the
   * database and the server resets the session on the same connection;
   * another database user gets its own db-CA certificate from core, and the
   * gateway logs in as that user on a new database connection (the TLS
   * certificate of the old one names the old user) and closes the old one.
   * The gateway does the database's authentication exchange itself and
   * answers the client with the database's OK: the client never authenticates
   * upstream and holds no credential for it.
   *
   * A refused change (core, the database, or its audit record) ends the
   * session, as a server closes the connection after a failed COM_CHANGE_USER:
   * the client is never left connected as a user it did not ask for.
   */
  async #changeUser(c: ChangeUser, seq: number): Promise<void> {
    const next = { dbUser: c.user, dbName: c.database };
    const other = c.user !== this.#dbUser;
    const failed = async (err: ErrSpec, message: string) => {
      await this.#session.audit
        .onChangeUser(next, message)
        .catch((e: unknown) => this.#deps.ctx.log('error', 'audit of a refused COM_CHANGE_USER failed', e));
      this.#refuseAndEnd(
        seq,
        err,
        `${message}; this connection is closed (a refused change of user ends it): reconnect, or change to a database user your roles allow (gatehouse db ls shows them)`,
      );
    };
    let tlsOptions: tls.ConnectionOptions | undefined;
    try {
      if (other) tlsOptions = (await this.#session.changeUser(next)).tls;
      else await this.#session.reauthorize(next);
    } catch (e) {
      const w = denialToWire(e);
      return failed(w.err, w.message);
    }
    let ok: Buffer;
    try {
      ok = tlsOptions ? await this.#loginAs(c, tlsOptions) : await this.#resetUpstream(c);
    } catch (e) {
      if (this.#ended) return;
      return failed(upstreamFailure(e), `Gatehouse: ${errorMessage(e)}`);
    }
    // Before the client hears OK: nothing runs as the new user unrecorded.
    try {
      await this.#session.audit.onChangeUser(next);
    } catch (e) {
      this.#refuseAndEnd(
        seq,
        ER.UNKNOWN_ERROR,
        `Gatehouse: the audit log is unavailable, the session ends (${errorMessage(e)})`,
      );
      return;
    }
    this.#dbUser = c.user;
    // The server forgot the session's prepared statements (or this is a new connection).
    this.#statements.clear();
    this.#client.write(encodePacket(seq, ok));
  }

  /** Same database user: COM_CHANGE_USER on the same connection (the server resets the session). */
  #resetUpstream(c: ChangeUser): Promise<Buffer> {
    const up = this.#up;
    this.#detachUpstream(up);
    const ch = new PacketChannel(up, UPSTREAM_HANDSHAKE_MAX_BYTES);
    up.resume();
    const t = setTimeout(
      () => ch.fail(new UpstreamRefused('the database did not answer COM_CHANGE_USER in time')),
      this.#deps.opts.upstreamTimeoutMs,
    );
    // The certificate is the credential: the proof the client computed for the gateway is not sent.
    up.write(encodePacket(0, encodeChangeUser({ ...c, authResponse: Buffer.alloc(0) }, this.#caps)));
    return finishLogin(ch, c.user).finally(() => {
      clearTimeout(t);
      const rest = ch.detach();
      if (this.#ended) return;
      this.#attachUpstream(up);
      if (rest.length > 0) this.#onUpstreamData(rest);
    });
  }

  /** Another database user: a new database login with core's certificate for it, replacing the old connection. */
  async #loginAs(c: ChangeUser, tlsOptions: tls.ConnectionOptions): Promise<Buffer> {
    const abort = new AbortController();
    const t = setTimeout(() => abort.abort(), this.#deps.opts.upstreamTimeoutMs);
    let up: Upstream;
    try {
      up = await connectUpstream(
        this.#session,
        {
          capabilities: this.#caps,
          charset: (c.charset ?? this.#charset) & 0xff,
          user: c.user,
          database: c.database,
          attrs: c.attrs,
        },
        abort.signal,
        tlsOptions,
      );
    } finally {
      clearTimeout(t);
    }
    if (this.#ended) {
      up.socket.destroy();
      throw new UpstreamRefused('the session ended during COM_CHANGE_USER');
    }
    const old = this.#up;
    this.#detachUpstream(old, true);
    // The old login is over: a polite COM_QUIT, and its errors no longer concern the session.
    old.on('error', (e) => this.#deps.ctx.log('debug', 'closing the previous MySQL login failed', e));
    old.end(encodePacket(0, Buffer.from([COM.QUIT])));
    this.#up = up.socket;
    if (this.#connectionId !== undefined) this.#deps.ids.move(this.#connectionId, up.greeting.connectionId);
    up.socket.on('error', this.#onUpError);
    up.socket.on('close', this.#onUpClose);
    this.#attachUpstream(up.socket);
    if (up.leftover.length > 0) this.#onUpstreamData(up.leftover);
    return up.ok;
  }

  /** Stops relaying the database's bytes (the gateway reads them itself meanwhile); `done`: it no longer ends the session either. */
  #detachUpstream(up: TLSSocket, done = false): void {
    up.off('data', this.#onUpData);
    if (done) {
      up.off('error', this.#onUpError);
      up.off('close', this.#onUpClose);
    }
  }

  #attachUpstream(up: TLSSocket): void {
    up.on('data', this.#onUpData);
    up.resume();
  }

  #onUpstreamData(chunk: Buffer): void {
    if (this.#ended) return;
    // Content guards on results: a match ends the session before this chunk reaches the client.
    if (this.#live?.inspect('result', chunk)?.action === 'terminate') return;
    if (this.#awaitPrepare !== undefined) this.#watchPrepare(chunk);
    if (!this.#client.write(chunk)) {
      this.#up.pause();
      this.#client.once('drain', () => this.#up.resume());
    }
  }

  /**
   * The client waits for each reply before its next command, so the first
   * bytes after a forwarded COM_STMT_PREPARE start its reply.
   */
  #watchPrepare(chunk: Buffer): void {
    const head = this.#prepHead ? Buffer.concat([this.#prepHead, chunk]) : chunk;
    if (head.length < 16) {
      this.#prepHead = Buffer.from(head);
      return;
    }
    const sql = this.#awaitPrepare as AuditText;
    this.#awaitPrepare = undefined;
    this.#prepHead = undefined;
    const len = head.readUIntLE(0, 3);
    if (head[3] !== 1 || head[4] !== 0x00 || len < 12) return; // ERR or not a prepare reply
    try {
      const ok = parsePrepareOk(head.subarray(4, 4 + Math.min(len, 12)));
      this.#statements.set(ok.stmtId, {
        sql,
        numParams: ok.numParams,
        types: undefined,
        longData: new Map(),
      });
    } catch (e) {
      this.#deps.ctx.log('debug', 'unreadable COM_STMT_PREPARE reply', e);
    }
  }

  #refuseAndEnd(seq: number, err: ErrSpec, message: string): void {
    if (this.#ended) return;
    if (this.#client.writable) this.#client.write(encodeErr(seq, err, message));
    this.end(message);
  }

  end(error?: string, reason?: string): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#live?.end();
    if (this.#connectionId !== undefined) this.#deps.ids.release(this.#connectionId);
    this.#untrack();
    this.#up.destroy();
    if (this.#client.writable) this.#client.end();
    setTimeout(() => this.#client.destroy(), 1000).unref();
    this.#session.audit
      .onSessionEnd({ error, reason })
      .catch((e: unknown) => this.#deps.ctx.log('error', 'audit of db.session.end failed', e));
  }
}
