import { generateKeyPairSync } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import https from 'node:https';
import type net from 'node:net';
import type { Duplex } from 'node:stream';
import type tls from 'node:tls';
import type { AuditEmitter } from '@gatehouse/audit';
import { WebSocket, WebSocketServer } from 'ws';
import { readJson, sendJson, sendProblem, sendProblemOnSocket } from '../api/http.js';
import { validTerminalSize } from '../api/terminal-protocol.js';
import type { Clock } from '../clock.js';
import { GatehouseError, toGatehouseError } from '../errors.js';
import type { LogFn } from '../log.js';
import type { CertificateAuthorities } from '../pki/authority.js';
import { gatewayNameOf } from '../pki/x509.js';
import type { JoinMode } from '../rbac/types.js';
import type { LiveSessionInfo, LiveSessions } from '../sessions/live.js';
import type { Joiner, TerminalHandle, TerminalViewer } from '../sessions/terminal.js';
import type { GatewayRecord } from './registry.js';

/** A gateway's channel certificate lives this long and is renewed at two thirds (and on a host CA change). */
const CERT_TTL_MS = 7 * 24 * 3600 * 1000;
/** A peer that answers a listing or a kill slower than this counts as unreachable (ls stays responsive). */
export const PEER_REQUEST_TIMEOUT_MS = 2_000;
/** Longest wait for a peer to accept a join relay. */
const PEER_JOIN_TIMEOUT_MS = 5_000;
/** Bodies on the channel are small JSON (a kill's actor). */
const MAX_BODY_BYTES = 16 * 1024;
/** As the public terminal socket: one frame of terminal output or input. */
const MAX_FRAME_BYTES = 1024 * 1024;
/** A relay whose joiner side reads slower than this much buffered output is dropped (as a slow web viewer is). */
const MAX_BUFFERED_BYTES = 4 * 1024 * 1024;

export interface PeerChannelDeps {
  clusterName: string;
  authorities: CertificateAuthorities;
  liveSessions: LiveSessions;
  audit: AuditEmitter;
  clock: Clock;
  log: LogFn;
  /**
   * The certificate name of a process that uses the channel without
   * listening (an admin command on a gateway host: `gatehouse --config ...
   * sessions ls` asks every gateway); a listening gateway uses its own name.
   */
  clientName: () => string;
}

interface Credentials {
  key: string;
  cert: string;
  /** Every trusted host CA certificate (a rotation's old and new). */
  ca: string[];
}

/** Control frames on a join relay (terminal bytes go as binary frames). */
type RelayFrame =
  | { type: 'resize'; cols: number; rows: number }
  | { type: 'end'; reason?: string | undefined; exit_code?: number | undefined };

/**
 * The internal channel between the gateways of one cluster (decision
 * 0039-gateway-peers): HTTPS and WebSocket with mutual TLS, both ends
 * holding a gateway certificate from the cluster's host CA. Anything else
 * (a user or node certificate, no certificate, another cluster's gateway)
 * is refused at the handshake and again per request. The owner of a session
 * answers for it: its list, a kill, a join relay. Authorization of the
 * person asking happens on the gateway they talk to, before anything is
 * sent here; a peer trusts that decision because only gateways of the
 * cluster can connect.
 */
export class PeerChannel {
  readonly #d: PeerChannelDeps;
  #name = '';
  #creds: Credentials | undefined;
  #server: https.Server | undefined;
  readonly #wss = new WebSocketServer({
    noServer: true,
    maxPayload: MAX_FRAME_BYTES,
    perMessageDeflate: false,
  });
  #renew: NodeJS.Timeout | undefined;

  constructor(deps: PeerChannelDeps) {
    this.#d = deps;
  }

  /** Issues this gateway's certificate and listens for peers. */
  async listen(name: string, host: string, port: number): Promise<net.AddressInfo> {
    this.#name = name;
    await this.renewCertificate();
    const creds = this.#creds!;
    const server = https.createServer({
      key: creds.key,
      cert: creds.cert,
      ca: creds.ca,
      requestCert: true,
      rejectUnauthorized: true,
      minVersion: 'TLSv1.3',
    });
    this.#server = server;
    server.on('secureConnection', (socket: tls.TLSSocket) => {
      socket.on('error', (err) => this.#d.log('debug', 'peer channel connection', err));
      if (!this.#peerOf(socket)) socket.destroy();
    });
    server.on('tlsClientError', (err) => this.#d.log('debug', 'peer channel: refused a TLS handshake', err));
    server.on('request', (req: IncomingMessage, res: ServerResponse) => {
      this.#request(req, res).catch((err: unknown) => this.#answerError(res, err));
    });
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      socket.on('error', (err) => this.#d.log('debug', 'peer channel upgrade', err));
      try {
        this.#upgrade(req, socket, head);
      } catch (err) {
        sendProblemOnSocket(socket, this.#problem(err));
      }
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    return server.address() as net.AddressInfo;
  }

  /** A new key and certificate (at listen, on a timer, and when the host CA changes). */
  async renewCertificate(): Promise<void> {
    if (!this.#name) this.#name = this.#d.clientName();
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const now = this.#d.clock.now();
    const issued = await this.#d.authorities.issueGatewayCert({
      publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
      name: this.#name,
      notBefore: new Date(now.getTime() - 60_000),
      notAfter: new Date(now.getTime() + CERT_TTL_MS),
    });
    this.#creds = {
      key: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
      cert: issued.cert,
      ca: this.#d.authorities.trustedX509Pems('host'),
    };
    this.#server?.setSecureContext({
      key: this.#creds.key,
      cert: this.#creds.cert,
      ca: this.#creds.ca,
      minVersion: 'TLSv1.3',
    });
    clearTimeout(this.#renew);
    this.#renew = setTimeout(
      () => {
        this.renewCertificate().catch((err: unknown) =>
          this.#d.log('error', 'renewing the peer channel certificate failed', err),
        );
      },
      (CERT_TTL_MS * 2) / 3,
    );
    this.#renew.unref();
  }

  async close(): Promise<void> {
    clearTimeout(this.#renew);
    for (const ws of this.#wss.clients) ws.terminate();
    const server = this.#server;
    if (!server) return;
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  }

  // ---- client side -------------------------------------------------------

  /** The live sessions of `peer` (bounded by PEER_REQUEST_TIMEOUT_MS). */
  async sessions(peer: GatewayRecord): Promise<LiveSessionInfo[]> {
    if (!this.#creds) await this.renewCertificate();
    const body = await this.#call(peer, 'GET', '/peer/v1/sessions');
    if (!Array.isArray(body))
      throw new GatehouseError('GH_ERR_INTERNAL', `gateway ${peer.name} sent no session list`);
    return body as LiveSessionInfo[];
  }

  /** Ends a session that runs on `peer`; false when it does not run there (any more). */
  async kill(peer: GatewayRecord, id: string, actor: string): Promise<boolean> {
    if (!this.#creds) await this.renewCertificate();
    const body = (await this.#call(peer, 'POST', `/peer/v1/sessions/${encodeURIComponent(id)}/kill`, {
      actor,
    })) as { killed?: unknown };
    return body?.killed === true;
  }

  /**
   * Relays a join of a session that runs on `peer`: the joiner was
   * authorized (and audited) here; the owner audits the join too and
   * attaches the relay as a viewer. Returns at once; input sent before the
   * relay is open is queued, and a relay that fails ends the viewer with why.
   */
  join(peer: GatewayRecord, id: string, joiner: Joiner, viewer: TerminalViewer): TerminalHandle {
    const creds = this.#requireCreds();
    const q = new URLSearchParams({ user: joiner.user, mode: joiner.mode, remote: joiner.remoteAddr });
    // ws hands these to tls.connect, whose checkServerIdentity returns an Error to refuse (ws's typings say boolean).
    const tlsOptions: tls.ConnectionOptions = {
      key: creds.key,
      cert: creds.cert,
      ca: creds.ca,
      minVersion: 'TLSv1.3',
      checkServerIdentity: (_host, cert) => this.#checkPeer(cert, peer.name),
    };
    const ws = new WebSocket(`wss://${peer.peer_addr}/peer/v1/sessions/${encodeURIComponent(id)}/join?${q}`, {
      ...(tlsOptions as object),
      handshakeTimeout: PEER_JOIN_TIMEOUT_MS,
      maxPayload: MAX_FRAME_BYTES,
      perMessageDeflate: false,
    });
    let ended = false;
    const end = (info: { reason?: string | undefined; exitCode?: number | undefined }) => {
      if (ended) return;
      ended = true;
      viewer.end(info);
    };
    const queued: (Buffer | string)[] = [];
    const send = (data: Buffer | string) => {
      if (ws.readyState === WebSocket.OPEN) ws.send(data);
      else if (ws.readyState === WebSocket.CONNECTING) queued.push(data);
    };
    ws.on('open', () => {
      for (const m of queued.splice(0)) ws.send(m);
    });
    ws.on('message', (data, isBinary) => {
      const bytes = Array.isArray(data)
        ? Buffer.concat(data)
        : Buffer.isBuffer(data)
          ? data
          : Buffer.from(data);
      if (isBinary) {
        viewer.output(bytes);
        return;
      }
      const f = parseRelayFrame(bytes.toString('utf8'));
      if (f?.type === 'resize') viewer.resize(f.cols, f.rows);
      else if (f?.type === 'end') end({ reason: f.reason, exitCode: f.exit_code });
    });
    ws.on('unexpected-response', (_req, res) => {
      // The owner refused (the session ended meanwhile, or it has no terminal): say so and stop.
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        let detail = `status ${res.statusCode}`;
        try {
          const p = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { detail?: string; title?: string };
          detail = p.detail ?? p.title ?? detail;
        } catch {
          // Not problem JSON: the status is all there is to say.
        }
        end({ reason: `gateway ${peer.name} refused the join: ${detail}` });
      });
      ws.terminate();
    });
    ws.on('error', (err) => {
      this.#d.log('debug', `join relay to gateway ${peer.name}`, err);
      end({ reason: `the gateway running the session (${peer.name}) cannot be reached: ${err.message}` });
    });
    ws.on('close', () => end({ reason: `the gateway running the session (${peer.name}) went away` }));
    return {
      sessionId: id,
      input: (data) => send(Buffer.from(data)),
      resize: (cols, rows) => send(JSON.stringify({ type: 'resize', cols, rows } satisfies RelayFrame)),
      detach: () => {
        ended = true;
        if (ws.readyState === WebSocket.CONNECTING) ws.terminate();
        else ws.close(1000, 'left');
      },
    };
  }

  #requireCreds(): Credentials {
    if (!this.#creds) {
      throw new GatehouseError(
        'GH_ERR_INTERNAL',
        'the peer channel is not ready: the gateway has not listened yet',
      );
    }
    return this.#creds;
  }

  /** The server's certificate must be the gateway `expected` of this cluster (not merely any host-CA certificate). */
  #checkPeer(cert: { subjectaltname?: string | undefined }, expected: string): Error | undefined {
    const name = gatewayNameOf({ subjectAltName: cert.subjectaltname }, this.#d.clusterName);
    if (name === expected) return undefined;
    return new Error(
      `the peer at this address is not gateway ${expected} of cluster ${this.#d.clusterName} (it is ${name ?? 'no gateway of this cluster'})`,
    );
  }

  #call(peer: GatewayRecord, method: string, path: string, body?: unknown): Promise<unknown> {
    const creds = this.#requireCreds();
    const [host, port] = splitAddr(peer.peer_addr);
    const payload = body === undefined ? undefined : JSON.stringify(body);
    return new Promise((resolve, reject) => {
      const req = https.request({
        host,
        port,
        method,
        path,
        key: creds.key,
        cert: creds.cert,
        ca: creds.ca,
        minVersion: 'TLSv1.3',
        agent: false,
        checkServerIdentity: (_h, cert) => this.#checkPeer(cert, peer.name),
        headers: payload
          ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) }
          : {},
      });
      // One deadline for the whole exchange (connect, TLS, answer): a peer that hangs is reported, not waited for.
      const timer = setTimeout(
        () => req.destroy(new Error(`no answer within ${PEER_REQUEST_TIMEOUT_MS} ms`)),
        PEER_REQUEST_TIMEOUT_MS,
      );
      req.on('error', (err) => {
        clearTimeout(timer);
        reject(
          new GatehouseError(
            'GH_ERR_PEER_UNAVAILABLE',
            `gateway ${peer.name} (${peer.peer_addr}) is unreachable: ${err.message}`,
            {
              hint: 'check that it runs and that its gateway.peer_addr is reachable from this gateway',
            },
          ),
        );
      });
      req.on('response', (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > 16 * 1024 * 1024) req.destroy(new Error('answer too large'));
          else chunks.push(c);
        });
        res.on('end', () => {
          clearTimeout(timer);
          let parsed: unknown;
          try {
            parsed = JSON.parse(Buffer.concat(chunks).toString('utf8'));
          } catch {
            reject(
              new GatehouseError('GH_ERR_INTERNAL', `gateway ${peer.name} sent an answer that is not JSON`),
            );
            return;
          }
          if ((res.statusCode ?? 500) >= 300) {
            const p = parsed as { detail?: string };
            reject(
              new GatehouseError(
                'GH_ERR_INTERNAL',
                `gateway ${peer.name}: ${p.detail ?? `status ${res.statusCode}`}`,
              ),
            );
            return;
          }
          resolve(parsed);
        });
      });
      req.end(payload);
    });
  }

  // ---- server side -------------------------------------------------------

  /** The gateway name a connection's certificate proves, or undefined (then nothing is answered). */
  #peerOf(socket: unknown): string | undefined {
    const s = socket as tls.TLSSocket;
    if (typeof s.getPeerX509Certificate !== 'function' || !s.authorized) return undefined;
    const name = gatewayNameOf(s.getPeerX509Certificate(), this.#d.clusterName);
    if (!name)
      this.#d.log(
        'error',
        'peer channel: refused a connection whose certificate is no gateway of this cluster',
      );
    return name;
  }

  async #request(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const peer = this.#peerOf(req.socket);
    if (!peer) {
      req.socket.destroy();
      return;
    }
    const url = new URL(req.url ?? '/', 'https://peer.invalid');
    if (req.method === 'GET' && url.pathname === '/peer/v1/sessions') {
      sendJson(
        res,
        200,
        this.#d.liveSessions.list().map((s) => ({ ...s, gateway: this.#name })),
      );
      return;
    }
    const kill = /^\/peer\/v1\/sessions\/([^/]+)\/kill$/.exec(url.pathname);
    if (req.method === 'POST' && kill) {
      const body = (await readJson(req, MAX_BODY_BYTES)) as { actor?: unknown };
      const actor = typeof body?.actor === 'string' && body.actor ? body.actor : `gateway ${peer}`;
      const id = decodeURIComponent(kill[1]!);
      const killed = this.#d.liveSessions.kill(id, actor);
      if (killed) this.#d.log('debug', `session ${id} ended by ${actor} through gateway ${peer}`);
      sendJson(res, 200, { killed });
      return;
    }
    throw new GatehouseError('GH_ERR_NOT_FOUND', `no peer route ${req.method} ${url.pathname}`);
  }

  #upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const peer = this.#peerOf(socket);
    if (!peer) {
      socket.destroy();
      return;
    }
    const url = new URL(req.url ?? '/', 'https://peer.invalid');
    const m = /^\/peer\/v1\/sessions\/([^/]+)\/join$/.exec(url.pathname);
    if (!m) throw new GatehouseError('GH_ERR_NOT_FOUND', `no peer route ${url.pathname}`);
    const id = decodeURIComponent(m[1]!);
    const mode = url.searchParams.get('mode');
    const user = url.searchParams.get('user');
    const remoteAddr = url.searchParams.get('remote') ?? '';
    if ((mode !== 'observer' && mode !== 'peer') || !user) {
      throw new GatehouseError('GH_ERR_BAD_REQUEST', 'a join relay needs user and mode=observer|peer');
    }
    const info = this.#d.liveSessions.get(id);
    const join = this.#d.liveSessions.joinable(id);
    if (!info)
      throw new GatehouseError('GH_ERR_NOT_FOUND', `no live session "${id}" on gateway ${this.#name}`);
    if (!join) {
      throw new GatehouseError('GH_ERR_BAD_REQUEST', `session "${id}" has no terminal to join`, {
        hint: 'only interactive shells can be joined (not commands, file transfers or forwards)',
      });
    }
    this.#wss.handleUpgrade(req, socket, head, (ws) =>
      this.#relay(ws, peer, info, join, { user, mode, remoteAddr }),
    );
  }

  /** The owner's end of a join relay: the session's terminal, seen by a joiner on gateway `peer`. */
  #relay(
    ws: WebSocket,
    peer: string,
    info: LiveSessionInfo,
    join: NonNullable<ReturnType<LiveSessions['joinable']>>,
    joiner: { user: string; mode: JoinMode; remoteAddr: string },
  ): void {
    const joinedAt = this.#d.clock.now().getTime();
    const common = {
      user: joiner.user,
      session_id: info.id,
      session_kind: info.kind,
      owner: info.user,
      server: info.server,
      mode: joiner.mode,
      via_gateway: peer,
      ...(joiner.remoteAddr ? { addr: { remote: joiner.remoteAddr } } : {}),
    };
    // The joiner's gateway authorized and audited the join; the owner records that it relayed it.
    this.#d.audit
      .emit({ type: 'session.join', success: true, ...common })
      .catch((err: unknown) => this.#d.log('error', 'audit of a relayed session.join failed', err));
    let done = false;
    const sendFrame = (f: RelayFrame) => {
      if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(f));
    };
    let handle: TerminalHandle | undefined;
    const finish = () => {
      if (done) return;
      done = true;
      handle?.detach();
      this.#d.audit
        .emit({ type: 'session.leave', duration_ms: this.#d.clock.now().getTime() - joinedAt, ...common })
        .catch((err: unknown) => this.#d.log('error', 'audit of a relayed session.leave failed', err));
    };
    const viewer: TerminalViewer = {
      output: (data) => {
        if (ws.readyState !== WebSocket.OPEN) return;
        if (ws.bufferedAmount > MAX_BUFFERED_BYTES) {
          ws.close(1011, 'the joiner fell too far behind');
          return;
        }
        ws.send(data, { binary: true });
      },
      resize: (cols, rows) => sendFrame({ type: 'resize', cols, rows }),
      end: (e) => {
        sendFrame({ type: 'end', reason: e.reason, exit_code: e.exitCode });
        ws.close(1000, 'session ended');
        finish();
      },
    };
    ws.on('close', finish);
    ws.on('error', (err) => this.#d.log('debug', 'join relay', err));
    ws.on('message', (data, isBinary) => {
      if (done || !handle) return;
      const bytes = Array.isArray(data)
        ? Buffer.concat(data)
        : Buffer.isBuffer(data)
          ? data
          : Buffer.from(data);
      if (isBinary) {
        // The session drops an observer's keystrokes too; the relay does not even pass them.
        if (joiner.mode === 'peer') handle.input(bytes);
        return;
      }
      const f = parseRelayFrame(bytes.toString('utf8'));
      if (f?.type === 'resize') handle.resize(f.cols, f.rows);
    });
    try {
      handle = join(joiner, viewer);
    } catch (err) {
      const ge = toGatehouseError(err);
      sendFrame({ type: 'end', reason: ge?.message ?? 'the session cannot be joined' });
      ws.close(1011, 'join failed');
      finish();
    }
  }

  #problem(err: unknown): GatehouseError {
    const ge = toGatehouseError(err);
    if (!ge) this.#d.log('error', 'peer channel request failed', err);
    return ge ?? new GatehouseError('GH_ERR_INTERNAL', 'internal error', { hint: 'see the gateway log' });
  }

  #answerError(res: ServerResponse, err: unknown): void {
    if (res.headersSent) {
      res.destroy();
      return;
    }
    sendProblem(res, this.#problem(err));
  }
}

function parseRelayFrame(text: string): RelayFrame | undefined {
  try {
    const f = JSON.parse(text) as Partial<RelayFrame> & Record<string, unknown>;
    if (f.type === 'resize' && validTerminalSize(f.cols) && validTerminalSize(f.rows)) {
      return { type: 'resize', cols: f.cols as number, rows: f.rows as number };
    }
    if (f.type === 'end') {
      return {
        type: 'end',
        reason: typeof f.reason === 'string' ? f.reason : undefined,
        exit_code: typeof f.exit_code === 'number' ? f.exit_code : undefined,
      };
    }
  } catch {
    // Not JSON: ignored, as an unknown frame is.
  }
  return undefined;
}

function splitAddr(addr: string): [string, number] {
  const i = addr.lastIndexOf(':');
  const host = addr.slice(0, i).replace(/^\[(.*)\]$/, '$1');
  return [host, Number(addr.slice(i + 1))];
}
