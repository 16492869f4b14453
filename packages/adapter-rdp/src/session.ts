import type { Duplex } from 'node:stream';
import { Transform, type TransformCallback } from 'node:stream';
import { auditDesktopReject, DesktopAudit, type SessionRecorder } from '@gatehouse/audit';
import type {
  AdapterContext,
  DesktopConnection,
  DesktopCredential,
  DesktopListing,
  Grant,
  LiveSession,
  Revocation,
} from '@gatehouse/core';
import { GatehouseError, toGatehouseError } from '@gatehouse/core';
import { answerFor, DesktopError, httpError } from './errors.js';
import { InputLog } from './input-log.js';
import { type FrameError, readFrame } from './io.js';
import { connectDesktop, type DesktopUpstream } from './upstream.js';
import {
  type ClientInfo,
  decodeClientInfoPdu,
  encodeClientInfoPdu,
  withCredentials,
} from './wire/client-info.js';
import { isConnectInitial, withServerSelectedProtocol } from './wire/mcs.js';
import {
  decodeRequest,
  derMessageLength,
  encodeResponse,
  MAX_RDCLEANPATH_REQUEST,
  type RDCleanPathError,
  type RDCleanPathRequest,
} from './wire/rdcleanpath.js';
import { RdpWireError, readTpkt, TPKT_VERSION } from './wire/tpkt.js';
import {
  type ConnectionRequest,
  decodeConnectionRequest,
  encodeConnectionRequest,
  PROTOCOL,
  protocolName,
} from './wire/x224.js';

export interface SessionOptions {
  /** How long the browser may take to send its RDCleanPath request. */
  requestTimeoutMs: number;
  /** Dial, X.224 and TLS with the desktop together. */
  upstreamTimeoutMs: number;
}

/** Client-to-desktop TPKT frames inspected for the Client Info PDU before the relay stops looking. */
const MAX_SETUP_FRAMES = 64;

/**
 * One browser desktop session on the RDCleanPath route:
 * 1. read one RDCleanPath request (bounded in size and time);
 * 2. core redeems its token for a Grant and the session binds to core's
 *    lifecycle (locks, expiry, kill end it through `terminate`);
 * 3. dial the desktop, relay the X.224 exchange, TLS as the client;
 * 4. answer with the confirm and the certificate chain, then relay
 *    plaintext RDP, putting the stored Windows credential into the Client
 *    Info PDU when one is stored (the browser never holds it).
 * Bad input gets an RDCleanPath error and an audit event, never a crash.
 */
export class DesktopSession {
  readonly #ctx: AdapterContext;
  readonly #conn: DesktopConnection;
  readonly #opts: SessionOptions;
  readonly #ws: Duplex;
  #up: DesktopUpstream | undefined;
  #live: LiveSession | undefined;
  #audit: DesktopAudit | undefined;
  /** What the browser was sent (the RDCleanPath answer, then the desktop's PDUs), when the roles record desktops. */
  #recorder: SessionRecorder | undefined;
  /** The client's input, summarised for the recording (no key identities). */
  #inputLog: InputLog | undefined;
  #bytesIn = 0;
  #bytesOut = 0;
  #ended = false;
  /** Why the gateway ended it (lock, expiry, kill), when it did. */
  #revoked: string | undefined;

  constructor(ctx: AdapterContext, conn: DesktopConnection, opts: SessionOptions) {
    this.#ctx = ctx;
    this.#conn = conn;
    this.#opts = opts;
    this.#ws = conn.socket;
    this.#ws.on('error', (err) => this.#ctx.log('debug', 'desktop WebSocket stream error', err));
  }

  /** Runs the session; resolves when it is over. Never rejects. */
  async run(): Promise<void> {
    let req: RDCleanPathRequest | undefined;
    try {
      req = await this.#readRequest();
      await this.#start(req);
    } catch (err) {
      await this.#refuse(err, req);
    }
  }

  async #readRequest(): Promise<RDCleanPathRequest> {
    let der: Buffer;
    try {
      der = await readFrame(
        this.#ws,
        (b) => derMessageLength(b, MAX_RDCLEANPATH_REQUEST),
        'RDCleanPath request',
        this.#opts.requestTimeoutMs,
      );
    } catch (err) {
      const e = err as FrameError;
      const oversized = e.cause instanceof RdpWireError && /is over/.test(e.cause.message);
      if (e.kind === 'timeout') throw new DesktopError(e.message, httpError(408), 'timeout');
      throw new DesktopError(
        e.message,
        httpError(oversized ? 413 : 400),
        oversized ? 'oversized' : 'malformed',
      );
    }
    try {
      return decodeRequest(der);
    } catch (err) {
      throw new DesktopError((err as Error).message, httpError(400), 'malformed');
    }
  }

  async #start(req: RDCleanPathRequest): Promise<void> {
    let clientCr: ConnectionRequest;
    try {
      clientCr = decodeConnectionRequest(req.x224);
    } catch (err) {
      throw new DesktopError(
        `the X.224 Connection Request is malformed: ${(err as Error).message}`,
        httpError(400),
        'malformed',
      );
    }
    // Core decides: the token must be this user's, for this desktop, and access must still hold.
    const grant = await this.#conn.redeem(req.proxyAuth, req.destination);
    const target = grant.target;
    if (target.kind !== 'desktop')
      throw new GatehouseError('GH_ERR_INTERNAL', 'a desktop token redeemed for another kind');
    const desktop = await this.#ctx.desktops.get(target.name);
    if (!desktop) {
      throw new GatehouseError('GH_ERR_NOT_FOUND', `desktop "${target.name}" was removed`, {
        hint: 'reload the Resources page',
      });
    }
    this.#audit = new DesktopAudit(
      this.#ctx.audit,
      {
        user: grant.identity.user,
        session_id: grant.sessionId,
        server: desktop.name,
        login: target.login,
        addr: { remote: this.#conn.remoteAddr },
      },
      { now: () => this.#ctx.clock.now().getTime() },
    );
    this.#live = this.#ctx.liveSessions.bind(
      grant,
      {
        kind: 'desktop',
        protocol: 'rdp',
        server: desktop.name,
        login: target.login,
        remoteAddr: this.#conn.remoteAddr,
        interactive: true,
      },
      { terminate: (r) => this.#terminate(r) },
    );
    const revoked = await this.#live.ready;
    if (revoked) throw new GatehouseError('GH_ERR_ACCESS_DENIED', revoked.message);

    const credential = await this.#ctx.desktops.credentialFor(grant);
    // With a stored credential the gateway logs in itself: it offers the desktop TLS or NLA;
    // with NLA it runs CredSSP (upstream.ts), with TLS it rewrites the Client Info PDU. Either
    // way the client is told TLS was selected, so it never runs CredSSP nor needs the password.
    // HYBRID_EX is not offered: a client told SSL expects no Early User Authorization Result.
    const cr = credential
      ? encodeConnectionRequest({
          ...clientCr,
          negotiation: {
            flags: clientCr.negotiation?.flags ?? 0,
            requestedProtocols: PROTOCOL.SSL | PROTOCOL.HYBRID,
          },
        })
      : req.x224;
    let up: DesktopUpstream;
    try {
      up = await connectDesktop(desktop, cr, {
        dialer: this.#ctx.dialer,
        timeoutMs: this.#opts.upstreamTimeoutMs,
        credential,
      });
    } catch (err) {
      await this.#audit.onStartFailed(err instanceof Error ? err.message : String(err));
      throw err;
    }
    this.#up = up;
    if (this.#ended) {
      up.socket.destroy();
      return;
    }
    if (grant.options.recordSession.desktop) {
      // The desktop's bytes are recorded; of the client's direction only input events,
      // summarised (InputLog): its bytes carry the Client Info PDU (and, with NLA,
      // CredSSP), which must never reach a recording.
      this.#recorder = await this.#ctx.recordings.create(
        {
          session_id: grant.sessionId,
          kind: 'desktop',
          user: grant.identity.user,
          login: target.login,
          server: desktop.name,
          cols: 0,
          rows: 0,
        },
        {
          onError: (err) =>
            this.#terminate({
              cause: 'guard',
              message: `the session recording failed (${err.message}); a desktop session may not run unrecorded`,
            }),
        },
      );
    }
    await this.#audit.onStart({
      tlsVerify: up.tlsVerify,
      security: protocolName(up.confirm.selectedProtocol),
    });
    // The CredSSP exchange (when the gateway ran it) is over before this point, so neither
    // the answer nor the relayed stream, nor the recording, carries any of it.
    const answer = encodeResponse({
      type: 'response',
      x224: up.clientConfirmFrame,
      serverCertChain: up.chain,
      serverAddr: up.serverAddr,
    });
    // The recording starts with the answer itself: replayed byte for byte, it is exactly
    // what a client on the playback socket must see first.
    this.#recorder?.output(answer);
    this.#ws.write(answer);
    this.#relay(up, credential, desktop);
  }

  #relay(up: DesktopUpstream, credential: DesktopCredential | undefined, desktop: DesktopListing): void {
    const ws = this.#ws;
    const tlsSock = up.socket;
    const count = (dir: 'in' | 'out') =>
      new Transform({
        transform: (chunk: Buffer, _e, cb) => {
          if (dir === 'in') this.#bytesIn += chunk.length;
          else {
            this.#bytesOut += chunk.length;
            this.#recorder?.output(chunk);
          }
          cb(null, chunk);
        },
      });
    const toDesktop = credential
      ? new ClientInfoRewriter(credential, this.#ctx.log, {
          ...(up.gatewayNla ? { serverSelectedProtocol: up.confirm.selectedProtocol } : {}),
        })
      : count('in');
    if (credential) toDesktop.on('data', (c: Buffer) => (this.#bytesIn += c.length));
    ws.pipe(toDesktop).pipe(tlsSock);
    tlsSock.pipe(count('out')).pipe(ws);
    const rec = this.#recorder;
    if (rec) {
      // A tap beside the relay: it reads the client's input PDUs for the recording and never
      // changes or holds back the bytes (the Client Info PDU and CredSSP are stepped over).
      const log = new InputLog({
        record: (input) => rec.desktopInput(input),
        onGiveUp: (why) => rec.marker(`client input is not recorded from here on: ${why}`),
      });
      this.#inputLog = log;
      ws.on('data', (chunk: Buffer) => log.push(chunk));
    }
    ws.resume();
    const end = (reason: string, err?: Error) => void this.#finish(reason, err?.message);
    ws.once('close', () => end('client_closed'));
    ws.once('end', () => end('client_closed'));
    tlsSock.once('end', () => end('server_closed'));
    tlsSock.once('close', () => end('server_closed'));
    tlsSock.on('error', (err) => end('server_closed', err));
    toDesktop.on('error', (err) => end('client_protocol_error', err));
    this.#ctx.log('debug', `desktop session to ${desktop.name} relaying`);
  }

  #terminate(r: Revocation): void {
    this.#revoked = r.message;
    void this.#finish(r.message);
  }

  async #finish(reason: string, error?: string): Promise<void> {
    if (this.#ended) return;
    this.#ended = true;
    this.#up?.socket.destroy();
    this.#conn.close(this.#revoked ?? reason);
    this.#live?.end();
    this.#inputLog?.close();
    await this.#recorder
      ?.close()
      .catch((e: unknown) => this.#ctx.log('error', 'closing a desktop recording failed', e));
    await this.#audit
      ?.onEnd({ bytesIn: this.#bytesIn, bytesOut: this.#bytesOut, reason: this.#revoked ?? reason, error })
      .catch((e: unknown) => this.#ctx.log('error', 'audit of desktop.session.end failed', e));
  }

  /** Answers a failure before the relay in RDCleanPath and audits it; then closes. */
  async #refuse(err: unknown, req: RDCleanPathRequest | undefined): Promise<void> {
    if (this.#ended && this.#revoked) return;
    const answer: RDCleanPathError = answerFor(err);
    const message = err instanceof Error ? err.message : String(err);
    if (!(err instanceof DesktopError) && !toGatehouseError(err))
      this.#ctx.log('error', 'desktop session failed', err);
    try {
      if (err instanceof DesktopError && err.reason !== 'upstream') {
        // Bad input from the browser (not a role decision: those are audited by core).
        await auditDesktopReject(this.#ctx.audit, {
          user: this.#conn.user,
          remoteAddr: this.#conn.remoteAddr,
          ...(req ? { server: req.destination.slice(0, 253) } : {}),
          reason: err.reason === 'unsupported' ? 'unsupported' : err.reason,
          error: message,
        });
      }
    } catch (e) {
      this.#ctx.log('error', 'audit of a desktop refusal failed', e);
    }
    this.#ended = true;
    this.#live?.end();
    if (!this.#ws.destroyed) {
      this.#ws.write(
        encodeResponse({
          type: 'error',
          error: answer,
          ...(err instanceof DesktopError && err.x224 ? { x224: err.x224 } : {}),
        }),
      );
    }
    this.#conn.close(message);
  }
}

/**
 * Client-to-desktop bytes with the Client Info PDU's credentials replaced by
 * the stored ones. It reads TPKT frames until it has seen that PDU (the
 * connection sequence sends it within the first few frames), then passes
 * everything through untouched. A first byte that is not TPKT (a fast-path
 * PDU) also ends the search: the PDU it looks for cannot follow.
 * With `serverSelectedProtocol` (the gateway ran CredSSP and told the client
 * TLS was selected) the MCS Connect Initial before it gets that protocol
 * back in its client core data, as the desktop expects.
 */
export class ClientInfoRewriter extends Transform {
  readonly #cred: DesktopCredential;
  readonly #log: AdapterContext['log'];
  #selected: number | undefined;
  #buf = Buffer.alloc(0);
  #frames = 0;
  #done = false;

  constructor(
    cred: DesktopCredential,
    log: AdapterContext['log'],
    opts: { serverSelectedProtocol?: number } = {},
  ) {
    super();
    this.#cred = cred;
    this.#log = log;
    this.#selected = opts.serverSelectedProtocol;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    if (this.#done) {
      cb(null, chunk);
      return;
    }
    this.#buf = Buffer.concat([this.#buf, chunk]);
    try {
      while (!this.#done && this.#buf.length > 0) {
        if (this.#buf[0] !== TPKT_VERSION || this.#frames >= MAX_SETUP_FRAMES) {
          this.#giveUp();
          break;
        }
        const t = readTpkt(this.#buf);
        if (!t) break;
        const frame = this.#buf.subarray(0, t.length);
        this.#buf = this.#buf.subarray(t.length);
        this.#frames++;
        this.push(this.#rewrite(frame));
      }
      cb();
    } catch (err) {
      cb(err as Error);
    }
  }

  #rewrite(frame: Buffer): Buffer {
    if (this.#selected !== undefined && isConnectInitial(frame)) {
      const protocol = this.#selected;
      this.#selected = undefined;
      try {
        return withServerSelectedProtocol(frame, protocol);
      } catch (err) {
        if (!(err instanceof RdpWireError)) throw err;
        // The desktop judges a Connect Initial it cannot match; nothing secret is at stake here.
        this.#log('error', `MCS Connect Initial left as the client sent it: ${err.message}`);
        return frame;
      }
    }
    let info: ClientInfo;
    try {
      info = decodeClientInfoPdu(frame);
    } catch (err) {
      if (err instanceof RdpWireError) return frame;
      throw err;
    }
    this.#done = true;
    const rest = this.#buf;
    this.#buf = Buffer.alloc(0);
    const out = encodeClientInfoPdu(
      withCredentials(info, {
        userName: this.#cred.login,
        password: this.#cred.password,
        domain: this.#cred.domain,
      }),
    );
    return rest.length > 0 ? Buffer.concat([out, rest]) : out;
  }

  #giveUp(): void {
    this.#log('debug', 'no Client Info PDU in the first frames; relaying without a credential rewrite');
    this.#done = true;
    this.push(this.#buf);
    this.#buf = Buffer.alloc(0);
  }

  override _flush(cb: TransformCallback): void {
    if (this.#buf.length > 0) this.push(this.#buf);
    cb();
  }
}

export type { Grant };
