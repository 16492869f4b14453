import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import type { AuditEmitter, DbRejectReason, DbSessionAudit } from '@gatehouse/audit';
import type {
  Clock,
  ConnectionInfo,
  DbAccess,
  DbSession,
  Identity,
  LiveSession,
  LogFn,
  TlsRefused,
} from '@gatehouse/core';
import { serialize } from 'pg-protocol';
import type { CancelKeys } from './cancel.js';
import {
  certificateRefused,
  denialToPg,
  internalError,
  SQLSTATE,
  tlsRequired,
  UpstreamError,
  wireErrorToPg,
} from './errors.js';
import { readUntil } from './io.js';
import { ClientAudit, type QueryRecord } from './query-audit.js';
import { connectUpstream, type UpstreamConnection } from './upstream.js';
import {
  authenticationOk,
  backendKeyData,
  errorResponse,
  negotiateProtocolVersion,
  type PgErrorFields,
} from './wire/backend.js';
import { PgWireError } from './wire/errors.js';
import { readStartupPacket, type StartupPacket } from './wire/frontend.js';
import { MessageReader } from './wire/reader.js';

export interface SessionOptions {
  /** How long a client may take to send its startup packet. */
  startupTimeoutMs: number;
  /** How long the database may take to accept the connection and finish startup. */
  upstreamTimeoutMs: number;
  /** Largest client message accepted after startup. */
  maxMessageBytes: number;
  /** Largest audited client message held whole in memory; a larger one streams to the database. */
  maxBufferedMessageBytes: number;
}

/** What one session needs from the adapter: nothing global. */
export interface SessionDeps {
  dbAccess: DbAccess;
  audit: AuditEmitter;
  clock: Clock;
  log: LogFn;
  cancels: CancelKeys;
  options: SessionOptions;
  /** Live sessions, so the adapter can end them on close. */
  live: Set<Duplex>;
}

interface ClientInfo {
  remoteAddr: string;
  remotePort: number;
  identity?: Identity | undefined;
}

class StartupTimeout extends Error {}

/** The one-byte answer that declines SSLRequest / GSSENCRequest. */
const NO_ENCRYPTION = Buffer.from('N');

function isEncryptionRequest(p: StartupPacket): boolean {
  return p.type === 'ssl-request' || p.type === 'gssenc-request';
}

/** Phase 1 (no upstream I/O): read the startup packet, with a deadline. */
async function readStartup(
  socket: Duplex,
  timeoutMs: number,
): Promise<{ packet: StartupPacket; rest: Buffer }> {
  const ac = new AbortController();
  const timer = setTimeout(
    () => ac.abort(new StartupTimeout(`no startup packet within ${timeoutMs} ms`)),
    timeoutMs,
  );
  let buf: Buffer = Buffer.alloc(0);
  let got: { packet: StartupPacket; rest: Buffer } | undefined;
  try {
    await readUntil(
      socket,
      (chunk) => {
        buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
        const r = readStartupPacket(buf);
        if (!r) return false;
        got = { packet: r.packet, rest: buf.subarray(r.length) };
        return true;
      },
      { signal: ac.signal, what: 'reading the startup packet' },
    );
  } finally {
    clearTimeout(timer);
  }
  if (!got) throw new Error('reading the startup packet: no packet');
  return got;
}

function sendAndClose(socket: Duplex, f: PgErrorFields): void {
  socket.end(errorResponse(f));
  // A client that never reads must not keep the socket open.
  setTimeout(() => socket.destroy(), 5_000).unref();
}

async function auditReject(
  deps: SessionDeps,
  info: ClientInfo,
  reason: DbRejectReason,
  error: string,
): Promise<void> {
  await deps.audit
    .emit({
      type: 'db.reject',
      protocol: 'postgres',
      reason,
      error,
      user: info.identity?.user ?? 'anonymous',
      addr: { remote: `${info.remoteAddr}:${info.remotePort}` },
    })
    .catch((err: unknown) =>
      deps.log('error', `audit of a refused PostgreSQL connection (${reason}) failed`, err),
    );
}

/** Refuses a connection whose first packet could not be read; says why when the client can still hear it. */
async function refuseStartup(
  deps: SessionDeps,
  socket: Duplex,
  info: ClientInfo,
  err: unknown,
): Promise<void> {
  if (err instanceof PgWireError) {
    sendAndClose(socket, wireErrorToPg(err));
    return auditReject(deps, info, err.reason, err.message);
  }
  if (err instanceof StartupTimeout) {
    sendAndClose(socket, {
      severity: 'FATAL',
      code: SQLSTATE.protocolViolation,
      message: `Gatehouse: ${err.message}`,
    });
    return auditReject(deps, info, 'timeout', err.message);
  }
  socket.destroy();
  return auditReject(deps, info, 'malformed', (err as Error).message);
}

/** A plaintext connection on the main port: a CancelRequest, or a startup we refuse (TLS only). */
export async function servePlaintext(deps: SessionDeps, socket: Duplex, info: ConnectionInfo): Promise<void> {
  socket.on('error', (err) =>
    deps.log('debug', `plaintext PostgreSQL connection from ${info.remoteAddr}`, err),
  );
  let packet: StartupPacket;
  try {
    ({ packet } = await readStartup(socket, deps.options.startupTimeoutMs));
  } catch (err) {
    return refuseStartup(deps, socket, info, err);
  }
  if (packet.type === 'cancel') {
    socket.destroy();
    return forwardCancel(deps, info, packet.pid, packet.secret);
  }
  sendAndClose(socket, tlsRequired());
  const user = packet.type === 'startup' ? packet.params.get('user') : undefined;
  return auditReject(
    deps,
    info,
    'plaintext',
    `plaintext ${packet.type === 'startup' ? `startup${user ? ` for database user "${user}"` : ''}` : packet.type} refused: TLS is required`,
  );
}

async function forwardCancel(
  deps: SessionDeps,
  info: ClientInfo,
  pid: number,
  secret: number,
): Promise<void> {
  const target = deps.cancels.find(pid, secret);
  const addr = { remote: `${info.remoteAddr}:${info.remotePort}` };
  if (!target) {
    await deps.audit
      .emit({
        type: 'db.cancel',
        protocol: 'postgres',
        success: false,
        error: 'no live session has this cancel key',
        user: info.identity?.user ?? 'anonymous',
        addr,
      })
      .catch((err: unknown) => deps.log('error', 'audit of an unknown PostgreSQL cancel key failed', err));
    return;
  }
  let error: string | undefined;
  try {
    // PostgreSQL reads CancelRequest before authentication, in plaintext, on a new connection.
    await target.send(serialize.cancel(target.upstreamKey.pid, target.upstreamKey.secret));
  } catch (err) {
    error = `forwarding the cancel to the database failed: ${(err as Error).message}`;
  }
  await deps.audit
    .emit({
      type: 'db.cancel',
      protocol: 'postgres',
      success: error === undefined,
      ...(error ? { error } : {}),
      session_id: target.sessionId,
      server: target.dbService,
      user: target.user,
      addr,
    })
    .catch((err: unknown) => deps.log('error', 'audit of a PostgreSQL cancel failed', err));
}

/**
 * A connection after SSLRequest + TLS whose client certificate core refused
 * (the listener audited it). libpq sends its startup packet before it reads
 * anything, so the ErrorResponse goes after that packet: closing with the
 * startup unread could reset the connection before psql reads why.
 */
export async function serveRefused(deps: SessionDeps, socket: TLSSocket, refusal: TlsRefused): Promise<void> {
  try {
    await readStartup(socket, deps.options.startupTimeoutMs);
  } catch {
    // A client that does not speak (or speaks garbage) gets nothing more; the refusal is already audited.
    socket.destroy();
    return;
  }
  sendAndClose(socket, certificateRefused(refusal));
}

/**
 * A connection after SSLRequest + TLS (core verified the client certificate,
 * if any), or through `gatehouse proxy db`'s local tunnel (ALPN
 * gatehouse-postgres): there the client spoke plaintext to the tunnel on
 * 127.0.0.1, which carries its bytes inside TLS with the user's
 * certificate, so an SSLRequest or GSSENCRequest from it is answered N (the
 * tunnel is the encryption) and the startup that follows is read instead.
 */
export async function serveTls(
  deps: SessionDeps,
  socket: TLSSocket,
  info: ConnectionInfo & { identity?: Identity | undefined },
  opts: { tunnel?: boolean } = {},
): Promise<void> {
  let startup: { packet: StartupPacket; rest: Buffer };
  try {
    startup = await readStartup(socket, deps.options.startupTimeoutMs);
    // libpq asks for GSS encryption, then SSL, at most once each before its startup.
    for (let asked = 0; opts.tunnel && asked < 2 && isEncryptionRequest(startup.packet); asked++) {
      if (startup.rest.length > 0) throw new PgWireError('data after an encryption request');
      socket.write(NO_ENCRYPTION);
      startup = await readStartup(socket, deps.options.startupTimeoutMs);
    }
  } catch (err) {
    return refuseStartup(deps, socket, info, err);
  }
  const { packet } = startup;
  if (packet.type === 'cancel') {
    socket.destroy();
    return forwardCancel(deps, info, packet.pid, packet.secret);
  }
  if (packet.type !== 'startup') {
    const msg = `${packet.type === 'ssl-request' ? 'SSLRequest' : 'GSSENCRequest'} inside TLS`;
    sendAndClose(socket, { severity: 'FATAL', code: SQLSTATE.protocolViolation, message: msg });
    return auditReject(deps, info, 'malformed', msg);
  }
  const params = packet.params;
  const dbUser = params.get('user');
  if (!dbUser) {
    const msg = 'no PostgreSQL user name specified in startup packet';
    sendAndClose(socket, { severity: 'FATAL', code: SQLSTATE.invalidAuthorization, message: msg });
    return auditReject(deps, info, 'malformed', msg);
  }
  const replication = params.get('replication');
  if (replication !== undefined && !['false', 'off', 'no', '0'].includes(replication.toLowerCase())) {
    const msg = 'replication connections are not supported through Gatehouse';
    sendAndClose(socket, { severity: 'FATAL', code: SQLSTATE.featureNotSupported, message: msg });
    return auditReject(deps, info, 'unsupported', msg);
  }
  const dbName = params.get('database') || dbUser;

  // Phase 2: core decides.
  let session: DbSession;
  try {
    session = await deps.dbAccess.authorize({
      identity: info.identity,
      protocol: 'postgres',
      dbUser,
      dbName,
      remoteAddr: info.remoteAddr,
    });
  } catch (err) {
    sendAndClose(socket, denialToPg(err));
    return;
  }

  // Phase 3: connect.
  const upstreamParams = new Map<string, string>();
  for (const [k, v] of params) if (!k.startsWith('_pq_.')) upstreamParams.set(k, v);
  upstreamParams.set('user', dbUser);
  upstreamParams.set('database', dbName);
  const ac = new AbortController();
  const timer = setTimeout(
    () => ac.abort(new Error(`no answer within ${deps.options.upstreamTimeoutMs} ms`)),
    deps.options.upstreamTimeoutMs,
  );
  const onClientGone = () => ac.abort(new Error('the client went away'));
  socket.once('close', onClientGone);
  let up: UpstreamConnection;
  try {
    up = await connectUpstream(session, upstreamParams, ac.signal);
  } catch (err) {
    const pg =
      err instanceof UpstreamError
        ? err.pg
        : { severity: 'FATAL' as const, code: SQLSTATE.connectionFailure, message: (err as Error).message };
    sendAndClose(socket, pg);
    await session.audit
      .onSessionStartFailed(pg.message)
      .catch((e: unknown) => deps.log('error', 'audit of a failed PostgreSQL session start failed', e));
    return;
  } finally {
    clearTimeout(timer);
    socket.off('close', onClientGone);
  }
  if (socket.destroyed) {
    up.socket.destroy();
    await session.audit
      .onSessionStartFailed('the client went away during startup')
      .catch((e: unknown) => deps.log('error', 'audit of a failed PostgreSQL session start failed', e));
    return;
  }
  const key = up.backendKey
    ? deps.cancels.issue({
        sessionId: session.audit.sessionId,
        user: session.grant.identity.user,
        dbService: session.service.name,
        upstreamKey: up.backendKey,
        send: async (bytes) => {
          const s = await session.dial(AbortSignal.timeout(deps.options.upstreamTimeoutMs));
          await new Promise<void>((resolve, reject) => {
            s.once('error', reject);
            s.end(bytes, () => resolve());
          });
          // The server closes a cancel connection without answering.
          s.destroySoon();
        },
      })
    : undefined;
  try {
    await session.audit.onSessionStart();
  } catch (err) {
    if (key) deps.cancels.remove(key.pid);
    up.socket.destroy();
    sendAndClose(socket, internalError(err));
    return;
  }

  const hello: Buffer[] = [];
  const pqOptions = [...params.keys()].filter((k) => k.startsWith('_pq_.'));
  if (packet.minor > 0 || pqOptions.length > 0) hello.push(negotiateProtocolVersion(0, pqOptions));
  hello.push(authenticationOk());
  const ready = up.startupReply.pop();
  hello.push(...up.startupReply);
  if (key) hello.push(backendKeyData(key.pid, key.secret));
  if (ready) hello.push(ready);

  // Phase 4: relay (once core confirms access still holds, the client hears it is in).
  await new Relay(deps, socket, up.socket, session, key?.pid).run(startup.rest, Buffer.concat(hello));
}

/**
 * Bytes both ways with backpressure. Client messages are framed so queries
 * are audited (and durable) before they reach the database; database bytes
 * are only framed to know message boundaries, so the gateway can end a
 * session with an ErrorResponse without cutting a message in half.
 *
 * An audited message over `maxBufferedMessageBytes` is never held whole: its
 * pieces go to the database as they arrive, decoded on the way into what the
 * audit keeps, and the chunk that completes it waits for its record like any
 * other. The database cannot run a message it has not fully received, so
 * "no audit, no statement" holds; if the record cannot be written, the
 * session ends with the message still incomplete upstream.
 */
class Relay {
  readonly #deps: SessionDeps;
  readonly #client: TLSSocket;
  readonly #db: TLSSocket;
  readonly #session: DbSession;
  readonly #audit: DbSessionAudit;
  readonly #cancelPid: number | undefined;
  readonly #front: ClientAudit;
  readonly #back = new MessageReader({ inspect: () => false, peer: 'the database' });
  #ended = false;
  /** A client chunk is waiting (for its records or a drain); chunks that arrive meanwhile queue. */
  #waiting = false;
  readonly #queue: Buffer[] = [];
  #queuedBytes = 0;
  #live: LiveSession | undefined;
  #done!: () => void;

  constructor(
    deps: SessionDeps,
    client: TLSSocket,
    db: TLSSocket,
    session: DbSession,
    cancelPid: number | undefined,
  ) {
    this.#deps = deps;
    this.#client = client;
    this.#db = db;
    this.#session = session;
    this.#audit = session.audit;
    this.#cancelPid = cancelPid;
    this.#front = new ClientAudit({
      // Core's decision (role option db_audit): without statement audit nothing is decoded.
      statements: session.audit.auditsStatements,
      limits: session.audit.limits,
      maxMessageBytes: deps.options.maxMessageBytes,
      maxBufferedBytes: deps.options.maxBufferedMessageBytes,
    });
  }

  /** Binds the session to core; once core's check at binding passes, sends `hello` and relays. */
  run(pending: Buffer, hello: Buffer): Promise<void> {
    const finished = new Promise<void>((resolve) => {
      this.#done = resolve;
    });
    this.#deps.live.add(this.#client);
    // Core ends the session on expiry, a lock, the user's deletion, a role change or a kill.
    const live = this.#session.bind({
      terminate: (r) => {
        this.#cancelUpstream();
        this.#end({
          reason: r.message,
          notify: {
            severity: 'FATAL',
            code: SQLSTATE.adminShutdown,
            message: `terminating connection: Gatehouse: ${r.message}`,
            ...(r.cause === 'expired'
              ? { hint: 'log in again (gatehouse login, then gatehouse db login NAME) and reconnect' }
              : {}),
          },
        });
      },
    });
    this.#live = live;
    this.#db.on('error', (err) =>
      this.#end({ error: `database connection failed: ${err.message}`, notify: false }),
    );
    this.#db.on('close', () => this.#end({ notify: false, from: 'db' }));
    this.#client.on('error', (err) =>
      this.#end({ error: `client connection failed: ${err.message}`, notify: false }),
    );
    this.#client.on('close', () => this.#end({ notify: false, from: 'client' }));
    // Access may have ended while the database was dialed (a lock mid-handshake): then the
    // client gets core's FATAL 57P01 instead of ReadyForQuery, and nothing runs.
    void live.ready.then((revoked) => {
      if (revoked || this.#ended) return;
      this.#client.write(hello);
      this.#relay(pending);
    });
    return finished;
  }

  /**
   * Core ended the session: a statement it is running must not go on on the
   * database (closing the connection does not stop it: PostgreSQL notices a
   * vanished client only when it next writes, after e.g. pg_sleep or a long
   * UPDATE). A CancelRequest with the database's own key stops it; an idle
   * backend ignores it and exits when the connection closes.
   */
  #cancelUpstream(): void {
    const target = this.#cancelPid === undefined ? undefined : this.#deps.cancels.get(this.#cancelPid);
    if (!target) return;
    target
      .send(serialize.cancel(target.upstreamKey.pid, target.upstreamKey.secret))
      .catch((err: unknown) =>
        this.#deps.log('error', 'cancelling the statement of an ended PostgreSQL session failed', err),
      );
  }

  #relay(pending: Buffer): void {
    this.#db.on('data', (chunk: Buffer) => {
      if (this.#ended) return;
      // Content guards on results: a match ends the session (core, through terminate) before
      // this chunk reaches the client; an ErrorResponse goes out if the client is between messages.
      if (this.#live?.inspect('result', chunk)?.action === 'terminate') return;
      try {
        this.#back.push(chunk);
      } catch (err) {
        // The database broke framing: nothing safe can be said to the client.
        this.#end({ error: (err as Error).message, notify: false });
        return;
      }
      if (!this.#client.write(chunk)) {
        this.#db.pause();
        this.#client.once('drain', () => this.#db.resume());
      }
    });
    this.#db.resume();
    this.#pumpClient(pending);
  }

  #pumpClient(pending: Buffer): void {
    // One chunk at a time, in order: while a chunk waits (for its audit records or for the
    // database to drain), what the client sends meanwhile is queued, and the client is paused
    // only once that queue holds a read buffer's worth (a client that waits for each answer,
    // as most do, is never paused). A chunk with nothing to wait for goes on at once, without
    // a promise.
    this.#client.on('data', (chunk: Buffer) => {
      if (this.#waiting) {
        this.#queue.push(chunk);
        this.#queuedBytes += chunk.length;
        if (this.#queuedBytes >= this.#client.readableHighWaterMark) this.#client.pause();
        return;
      }
      this.#take(chunk);
    });
    if (pending.length > 0) this.#take(pending);
    this.#client.resume();
  }

  /** Forwards one chunk; if it must wait, later chunks queue until it has gone. */
  #take(chunk: Buffer): void {
    let r: boolean | Promise<boolean>;
    try {
      r = this.#forward(chunk);
    } catch (err) {
      this.#end({ error: (err as Error).message, notify: internalError(err) });
      return;
    }
    if (typeof r === 'boolean') return;
    this.#waiting = true;
    r.then(
      (ok) => {
        this.#waiting = false;
        if (ok) this.#takeQueued();
      },
      (err: unknown) => this.#end({ error: (err as Error).message, notify: internalError(err) }),
    );
  }

  #takeQueued(): void {
    while (this.#queue.length > 0 && !this.#waiting && !this.#ended) {
      const chunk = this.#queue.shift() as Buffer;
      this.#queuedBytes -= chunk.length;
      this.#take(chunk);
    }
    if (!this.#waiting && !this.#ended && this.#client.isPaused()) this.#client.resume();
  }

  /**
   * Audits what must be audited in this chunk, then sends it on. False when
   * the session ended; a promise only when the chunk had to wait (for its
   * audit records or for the database to drain).
   */
  #forward(chunk: Buffer): boolean | Promise<boolean> {
    if (this.#ended) return false;
    // Content guards on what the client sends (statements, parameters): a match ends the session here.
    if (this.#live?.inspect('query', chunk)?.action === 'terminate') return false;
    let out: Buffer;
    let records: QueryRecord[];
    let unaudited: number;
    try {
      ({ out, records, unaudited } = this.#front.push(chunk));
    } catch (err) {
      const pg = err instanceof PgWireError ? wireErrorToPg(err) : internalError(err);
      this.#end({ error: pg.message, notify: pg });
      return false;
    }
    if (unaudited > 0) this.#audit.countQuery(unaudited);
    if (records.length === 0) return this.#send(out);
    // The database sees a query only once its audit record is durable.
    const durable =
      records.length === 1
        ? this.#audit.onQuery(records[0] as QueryRecord)
        : Promise.all(records.map((r) => this.#audit.onQuery(r)));
    return durable.then(
      () => !this.#ended && this.#send(out),
      (err: unknown) => {
        const pg = internalError(err);
        this.#end({ error: pg.message, notify: pg });
        return false;
      },
    );
  }

  /** Writes to the database; a promise only when it must drain first. */
  #send(out: Buffer): boolean | Promise<boolean> {
    if (out.length === 0 || this.#db.write(out)) return !this.#ended;
    return new Promise<boolean>((resolve) => {
      const go = () => {
        this.#db.off('drain', go);
        this.#db.off('close', go);
        resolve(!this.#ended);
      };
      this.#db.on('drain', go);
      this.#db.on('close', go);
    });
  }

  #end(opts: {
    error?: string | undefined;
    reason?: string | undefined;
    notify: PgErrorFields | false;
    from?: 'db' | 'client';
  }): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#live?.end();
    if (this.#cancelPid !== undefined) this.#deps.cancels.remove(this.#cancelPid);
    this.#deps.live.delete(this.#client);
    this.#db.pause();
    this.#db.removeAllListeners('data');
    if (opts.notify && !this.#client.destroyed && this.#back.atBoundary) {
      this.#client.end(errorResponse(opts.notify));
      setTimeout(() => this.#client.destroy(), 5_000).unref();
    } else if (opts.from === 'db') {
      // The database said goodbye (e.g. after Terminate or a FATAL it sent): let the client read it all.
      this.#client.end();
      setTimeout(() => this.#client.destroy(), 5_000).unref();
    } else {
      this.#client.destroy();
    }
    if (opts.from === 'client') this.#db.end();
    else this.#db.destroy();
    setTimeout(() => this.#db.destroy(), 5_000).unref();
    this.#audit
      .onSessionEnd({ error: opts.error, reason: opts.reason })
      .catch((err: unknown) => this.#deps.log('error', 'audit of a PostgreSQL session end failed', err))
      .finally(() => this.#done());
  }
}
