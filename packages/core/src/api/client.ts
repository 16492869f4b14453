import * as https from 'node:https';
import type { RecordingMeta, RecordingQuery, VerifyChainResult } from '@gatehouse/audit';
import WebSocket from 'ws';
import { DESKTOP_WS_PATH, type DesktopTokenView } from '../desktops/protocol.js';
import { type ErrorCode, ErrorCodes, GatehouseError } from '../errors.js';
import type { Traits } from '../identity/types.js';
import type {
  BrowserMfaLoginRequest,
  BrowserMfaLoginResponse,
  BrowserMfaStartResponse,
  SessionMfaBrowserRequest,
} from '../mfa/browser.js';
import type {
  SessionMfaCertsRequest,
  SessionMfaCertsResponse,
  SessionMfaChallengeRequest,
  SessionMfaChallengeResponse,
} from '../mfa/session.js';
import type { NodeAuditRequest, NodeAuditResponse } from '../nodes/audit-ingest.js';
import type {
  NodeHostCertRenewRequest,
  NodeHostCertRequest,
  NodeHostCertResponse,
} from '../nodes/host-certs.js';
import type { JoinTokenView, NodeJoinRequest, NodeJoinResponse } from '../nodes/join-tokens.js';
import type { JoinMode, Role } from '../rbac/types.js';
import type {
  AccessRequestChange,
  AccessRequestView,
  CreateAccessRequest,
  RequestCertsRequest,
  ReviewAccessRequest,
} from '../requests/types.js';
import type { SsoConnectorButton, SsoConnectorView } from '../sso/connectors.js';
import type {
  SsoRedeemRequest,
  SsoRedeemResponse,
  SsoStartRequest,
  SsoStartResponse,
} from '../sso/service.js';
import { parseHostPort } from '../util/hostport.js';
import {
  type AcceptInviteRequest,
  type InviteInfo,
  type LoginRequest,
  type LoginResponse,
  type MfaDeviceInfo,
  type MfaTotpAddRequest,
  type MfaTotpBeginResponse,
  type PingResponse,
  PUBLIC_ROUTES,
  type RouteCertRequest,
  type RouteCertResponse,
  type WhoamiResponse,
} from './public.js';
import { TERMINAL_WS_MAX_PAYLOAD, TERMINAL_WS_PATHS } from './terminal-protocol.js';
import {
  ADMIN_ROUTES,
  type AddDatabaseRequest,
  type AddDesktopRequest,
  type AddKubeClusterRequest,
  type AddNodeRequest,
  type AdminApi,
  type AuditPage,
  type AuditQuery,
  type CaRotateRequest,
  type CaStatusView,
  type DatabaseView,
  type DesktopView,
  type KubeClusterView,
  type LintMessage,
  type LockView,
  type NodeView,
  type RecordingReadOptions,
  type SessionListView,
  type TokenView,
  type UserView,
} from './types.js';

export interface GatehouseClientOptions {
  /** `host:port` of the proxy. */
  proxy: string;
  /** PEM CA certificates that verify the proxy (from fetchPinnedCa or the stored profile). */
  caPem: string[];
  /** Client certificate + key from login: authenticates admin routes and whoami (mutual TLS). */
  certPem?: string | undefined;
  keyPem?: string | undefined;
  timeoutMs?: number | undefined;
}

export type CaExportFormat = 'sshd' | 'known_hosts' | 'x509' | 'postgres' | 'mariadb' | 'kube';

export { parseHostPort };

type Method = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

/**
 * The HTTP side of the API. Wire conventions (shared with api/server.ts):
 * path params from `:name` are URL-encoded; request bodies are the method's
 * request object as JSON; a response body is the method's return value as JSON
 * (204 for void); errors are RFC 9457 problem JSON, rebuilt here into the
 * GatehouseError the server threw.
 */
export class GatehouseClient implements AdminApi {
  readonly host: string;
  readonly port: number;
  readonly #agent: https.Agent;
  readonly #timeoutMs: number;
  readonly #hasCert: boolean;
  /** The agent's TLS material, for WebSockets (which open their own connection). */
  readonly #tls: { ca: string[]; cert?: string; key?: string };

  constructor(opts: GatehouseClientOptions) {
    const { host, port } = parseHostPort(opts.proxy);
    this.host = host;
    this.port = port;
    this.#timeoutMs = opts.timeoutMs ?? 15_000;
    this.#hasCert = Boolean(opts.certPem && opts.keyPem);
    // https derives SNI from the host (and skips it for IP addresses, where
    // Node then checks IP SANs), so servername is not set by hand.
    this.#tls = {
      ca: opts.caPem,
      ...(opts.certPem && opts.keyPem ? { cert: opts.certPem, key: opts.keyPem } : {}),
    };
    this.#agent = new https.Agent({ keepAlive: true, ...this.#tls });
  }

  close(): void {
    this.#agent.destroy();
  }

  // --- public routes -------------------------------------------------------

  ping(): Promise<PingResponse> {
    return this.#json(PUBLIC_ROUTES.ping, {});
  }

  login(req: LoginRequest): Promise<LoginResponse> {
    return this.#json(PUBLIC_ROUTES.login, {}, req);
  }

  inspectInvite(token: string): Promise<InviteInfo> {
    return this.#json(PUBLIC_ROUTES.inspectInvite, { token });
  }

  acceptInvite(token: string, req: AcceptInviteRequest): Promise<void> {
    return this.#json(PUBLIC_ROUTES.acceptInvite, { token }, req);
  }

  /** SSO connectors the login page offers (public). */
  ssoConnectors(): Promise<SsoConnectorButton[]> {
    return this.#json(PUBLIC_ROUTES.ssoConnectors, {});
  }

  /** Starts an SSO login for the CLI: the browser is to open auth_url. */
  ssoStart(req: SsoStartRequest): Promise<SsoStartResponse> {
    return this.#json(PUBLIC_ROUTES.ssoStart, {}, req);
  }

  /** Redeems the one-time code the browser brought to the CLI's listener. */
  ssoRedeem(req: SsoRedeemRequest): Promise<SsoRedeemResponse> {
    return this.#json(PUBLIC_ROUTES.ssoRedeem, {}, req);
  }

  whoami(): Promise<WhoamiResponse> {
    return this.#json(PUBLIC_ROUTES.whoami, {});
  }

  /** The caller's own second-factor devices. */
  mfaDevices(): Promise<MfaDeviceInfo[]> {
    return this.#json(PUBLIC_ROUTES.mfaDevices, {});
  }

  /** A new TOTP secret for the caller to scan; confirm it with mfaTotpAdd. */
  mfaTotpBegin(): Promise<MfaTotpBeginResponse> {
    return this.#json(PUBLIC_ROUTES.mfaTotpBegin, {}, {});
  }

  mfaTotpAdd(req: MfaTotpAddRequest): Promise<MfaDeviceInfo> {
    return this.#json(PUBLIC_ROUTES.mfaTotpAdd, {}, req);
  }

  /** Removes one of the caller's devices by id or name. */
  mfaRemove(id: string): Promise<MfaDeviceInfo> {
    return this.#json(PUBLIC_ROUTES.mfaRemove, { id });
  }

  /** A node service joins the cluster with a one-time token (no client certificate needed). */
  joinNode(req: NodeJoinRequest): Promise<NodeJoinResponse> {
    return this.#json(PUBLIC_ROUTES.nodeJoin, {}, req);
  }

  /** An agentless node renews its host certificate (no client certificate: the request carries its proof). */
  renewNodeHostCert(req: NodeHostCertRenewRequest): Promise<NodeHostCertResponse> {
    return this.#json(PUBLIC_ROUTES.nodeRenewHostCert, {}, req);
  }

  /** A joined node delivers a signed batch of its audit events. */
  nodeAudit(req: NodeAuditRequest): Promise<NodeAuditResponse> {
    return this.#json(PUBLIC_ROUTES.nodeAudit, {}, req);
  }

  /** Whether a session to `target` needs a per-session MFA check (require_session_mfa), and its challenge. */
  sessionMfaChallenge(req: SessionMfaChallengeRequest): Promise<SessionMfaChallengeResponse> {
    return this.#json(PUBLIC_ROUTES.sessionMfaChallenge, {}, req);
  }

  /** The answer to a challenge: a one-minute certificate bound to its target, for the keys sent. */
  sessionMfaCerts(req: SessionMfaCertsRequest): Promise<SessionMfaCertsResponse> {
    return this.#json(PUBLIC_ROUTES.sessionMfaCerts, {}, req);
  }

  /** A gateway page for answering a session challenge with a security key (the CLI's browser round trip). */
  sessionMfaBrowser(req: SessionMfaBrowserRequest): Promise<BrowserMfaStartResponse> {
    return this.#json(PUBLIC_ROUTES.sessionMfaBrowser, {}, req);
  }

  /** The password checked; then a gateway page for the user's security key, and whether they have an app. */
  browserMfaLogin(req: BrowserMfaLoginRequest): Promise<BrowserMfaLoginResponse> {
    return this.#json(PUBLIC_ROUTES.browserMfaLogin, {}, req);
  }

  /** The client certificate this client authenticates with, re-issued for one route (same key). */
  routeCert(req: RouteCertRequest): Promise<RouteCertResponse> {
    return this.#json(PUBLIC_ROUTES.routeCert, {}, req);
  }

  async caExport(format: CaExportFormat, type?: 'user' | 'host' | 'db'): Promise<string> {
    const q = new URLSearchParams({ format, ...(type ? { type } : {}) });
    const res = await this.#request(PUBLIC_ROUTES.caExport[0], `${PUBLIC_ROUTES.caExport[1]}?${q}`);
    return res.body.toString('utf8');
  }

  /** The OpenSSH KRL (binary) of revoked login certificates, for sshd's RevokedKeys. */
  async caKrl(): Promise<Buffer> {
    return (await this.#request(PUBLIC_ROUTES.caKrl[0], PUBLIC_ROUTES.caKrl[1])).body;
  }

  // --- AdminApi ------------------------------------------------------------

  listUsers(): Promise<UserView[]> {
    return this.#json(ADMIN_ROUTES.listUsers, {});
  }
  getUser(name: string): Promise<UserView> {
    return this.#json(ADMIN_ROUTES.getUser, { name });
  }
  createUser(req: {
    name: string;
    roles: string[];
    traits?: Traits;
    password?: string;
  }): Promise<{ user: UserView; token?: TokenView | undefined }> {
    return this.#json(ADMIN_ROUTES.createUser, {}, req);
  }
  updateUser(name: string, req: { roles?: string[]; traits?: Traits }): Promise<UserView> {
    return this.#json(ADMIN_ROUTES.updateUser, { name }, req);
  }
  deleteUser(name: string): Promise<void> {
    return this.#json(ADMIN_ROUTES.deleteUser, { name });
  }
  resetUser(name: string): Promise<TokenView> {
    return this.#json(ADMIN_ROUTES.resetUser, { name }, {});
  }
  lockUser(name: string, req: { message?: string; ttl?: string }): Promise<LockView> {
    return this.#json(ADMIN_ROUTES.lockUser, { name }, req);
  }
  unlockUser(name: string): Promise<LockView[]> {
    return this.#json(ADMIN_ROUTES.unlockUser, { name }, {});
  }
  listRoles(): Promise<Role[]> {
    return this.#json(ADMIN_ROUTES.listRoles, {});
  }
  getRole(name: string): Promise<Role> {
    return this.#json(ADMIN_ROUTES.getRole, { name });
  }
  putRole(text: string, opts?: { create?: boolean }): Promise<{ role: Role; created: boolean }> {
    return this.#json(
      ADMIN_ROUTES.putRole,
      {},
      { text, ...(opts?.create !== undefined ? { create: opts.create } : {}) },
    );
  }
  deleteRole(name: string): Promise<void> {
    return this.#json(ADMIN_ROUTES.deleteRole, { name });
  }
  lintRole(text: string): Promise<LintMessage[]> {
    return this.#json(ADMIN_ROUTES.lintRole, {}, { text });
  }
  listLocks(): Promise<LockView[]> {
    return this.#json(ADMIN_ROUTES.listLocks, {});
  }
  createLock(req: {
    target: { user: string } | { role: string };
    message?: string;
    ttl?: string;
  }): Promise<LockView> {
    return this.#json(ADMIN_ROUTES.createLock, {}, req);
  }
  deleteLock(id: string): Promise<void> {
    return this.#json(ADMIN_ROUTES.deleteLock, { id });
  }
  searchAudit(q: AuditQuery): Promise<AuditPage> {
    return this.#json(ADMIN_ROUTES.searchAudit, {}, undefined, auditQueryString(q));
  }
  verifyAudit(q: { since?: string } = {}): Promise<VerifyChainResult> {
    const s = new URLSearchParams();
    if (q.since !== undefined) s.set('since', q.since);
    return this.#json(ADMIN_ROUTES.verifyAudit, {}, undefined, s.toString());
  }
  listDatabases(): Promise<DatabaseView[]> {
    return this.#json(ADMIN_ROUTES.listDatabases, {});
  }
  addDatabase(req: AddDatabaseRequest): Promise<DatabaseView> {
    return this.#json(ADMIN_ROUTES.addDatabase, {}, req);
  }
  removeDatabase(name: string): Promise<void> {
    return this.#json(ADMIN_ROUTES.removeDatabase, { name });
  }
  createJoinToken(req: { kind: 'node'; ttl?: string }): Promise<JoinTokenView> {
    return this.#json(ADMIN_ROUTES.createJoinToken, {}, req);
  }
  listRecordings(q: RecordingQuery = {}): Promise<RecordingMeta[]> {
    const s = new URLSearchParams();
    for (const k of ['user', 'kind', 'from', 'to', 'limit'] as const) {
      if (q[k] !== undefined) s.set(k, String(q[k]));
    }
    return this.#json(ADMIN_ROUTES.listRecordings, {}, undefined, s.toString());
  }
  getRecording(sessionId: string): Promise<RecordingMeta> {
    return this.#json(ADMIN_ROUTES.getRecording, { id: sessionId });
  }
  readRecording(sessionId: string, opts: RecordingReadOptions = {}): Promise<AsyncIterable<Uint8Array>> {
    const s = new URLSearchParams({ format: opts.format ?? 'json' });
    if (opts.follow) s.set('follow', '1');
    const path = `${fillPath(ADMIN_ROUTES.readRecording[1], { id: sessionId })}?${s}`;
    return this.#stream(ADMIN_ROUTES.readRecording[0], path, opts.signal);
  }
  deleteRecording(sessionId: string, req: { reason: string }): Promise<void> {
    return this.#json(ADMIN_ROUTES.deleteRecording, { id: sessionId }, req);
  }
  listDesktops(): Promise<DesktopView[]> {
    return this.#json(ADMIN_ROUTES.listDesktops, {});
  }
  addDesktop(req: AddDesktopRequest): Promise<DesktopView> {
    return this.#json(ADMIN_ROUTES.addDesktop, {}, req);
  }
  removeDesktop(name: string): Promise<void> {
    return this.#json(ADMIN_ROUTES.removeDesktop, { name });
  }
  listSsoConnectors(): Promise<SsoConnectorView[]> {
    return this.#json(ADMIN_ROUTES.listSsoConnectors, {});
  }
  putSsoConnector(req: {
    text: string;
    client_secret?: string | undefined;
    idp_metadata?: string | undefined;
  }): Promise<{ connector: SsoConnectorView; created: boolean }> {
    return this.#json(ADMIN_ROUTES.putSsoConnector, {}, req);
  }
  removeSsoConnector(name: string): Promise<void> {
    return this.#json(ADMIN_ROUTES.removeSsoConnector, { name });
  }
  testSsoConnector(
    name: string,
    req: { redirect_url: string; client_challenge: string },
  ): Promise<SsoStartResponse> {
    return this.#json(ADMIN_ROUTES.testSsoConnector, { name }, req);
  }
  listKubeClusters(): Promise<KubeClusterView[]> {
    return this.#json(ADMIN_ROUTES.listKubeClusters, {});
  }
  addKubeCluster(req: AddKubeClusterRequest): Promise<KubeClusterView> {
    return this.#json(ADMIN_ROUTES.addKubeCluster, {}, req);
  }
  removeKubeCluster(name: string): Promise<void> {
    return this.#json(ADMIN_ROUTES.removeKubeCluster, { name });
  }
  listNodes(): Promise<NodeView[]> {
    return this.#json(ADMIN_ROUTES.listNodes, {});
  }
  addNode(req: AddNodeRequest): Promise<NodeView> {
    return this.#json(ADMIN_ROUTES.addNode, {}, req);
  }
  removeNode(name: string): Promise<void> {
    return this.#json(ADMIN_ROUTES.removeNode, { name });
  }
  signNodeHostCert(req: NodeHostCertRequest): Promise<NodeHostCertResponse> {
    const { node, ...body } = req;
    return this.#json(ADMIN_ROUTES.signNodeHostCert, { name: node }, body);
  }
  caStatus(): Promise<CaStatusView[]> {
    return this.#json(ADMIN_ROUTES.caStatus, {});
  }
  rotateCa(req: CaRotateRequest): Promise<CaStatusView> {
    return this.#json(ADMIN_ROUTES.rotateCa, {}, req);
  }
  listSessions(): Promise<SessionListView> {
    return this.#json(ADMIN_ROUTES.listSessions, {});
  }
  killSession(id: string): Promise<void> {
    return this.#json(ADMIN_ROUTES.killSession, { id });
  }
  listAccessRequests(): Promise<AccessRequestView[]> {
    return this.#json(ADMIN_ROUTES.listAccessRequests, {});
  }
  getAccessRequest(id: string): Promise<AccessRequestView> {
    return this.#json(ADMIN_ROUTES.getAccessRequest, { id });
  }
  createAccessRequest(req: CreateAccessRequest): Promise<AccessRequestView> {
    return this.#json(ADMIN_ROUTES.createAccessRequest, {}, req);
  }
  reviewAccessRequest(id: string, req: ReviewAccessRequest): Promise<AccessRequestView> {
    return this.#json(ADMIN_ROUTES.reviewAccessRequest, { id }, req);
  }
  dropAccessRequest(id: string, req: { reason?: string | undefined } = {}): Promise<AccessRequestView> {
    return this.#json(ADMIN_ROUTES.dropAccessRequest, { id }, req);
  }

  /** The caller's login certificate re-issued with the roles of approved access requests (new keys). */
  requestCerts(req: RequestCertsRequest): Promise<LoginResponse> {
    return this.#json(PUBLIC_ROUTES.requestCerts, {}, req);
  }

  /**
   * The access request changes the caller sees after `after` (a cursor from
   * an earlier change; 0 for everything stored), then live, until `signal`
   * aborts or the connection ends (the iteration then ends; resume from the
   * last cursor). A refusal during the stream (the caller locked, the
   * certificate expired) is thrown as the server's GatehouseError.
   */
  async *watchAccessRequests(after: number, signal?: AbortSignal): AsyncGenerator<AccessRequestChange> {
    const body = await this.#stream(
      PUBLIC_ROUTES.watchAccessRequests[0],
      `${PUBLIC_ROUTES.watchAccessRequests[1]}?after=${after}`,
      signal,
    );
    const events = parseEventStream(body)[Symbol.asyncIterator]();
    for (;;) {
      let next: IteratorResult<{ event: string; data: string }>;
      try {
        next = await events.next();
      } catch (e) {
        if (signal?.aborted) return; // the caller stopped watching: not a failure
        throw this.#connError(e as Error);
      }
      if (next.done) return;
      const ev = next.value;
      if (ev.event === 'access_request') yield JSON.parse(ev.data) as AccessRequestChange;
      else if (ev.event === 'error') {
        // The problem JSON an HTTP answer would have carried, had the refusal come before the 200.
        const status = Number((JSON.parse(ev.data) as { status?: unknown }).status) || 500;
        throw errorFromResponse(
          status,
          'application/problem+json',
          Buffer.from(ev.data),
          'GET',
          PUBLIC_ROUTES.watchAccessRequests[1],
        );
      }
    }
  }

  // --- WebSockets (docs/web-terminal-protocol.md) --------------------------

  /**
   * Opens a WebSocket to `pathAndQuery` (e.g. `/v1/ws/terminal?node=a&...`)
   * with the same TLS material as the HTTP calls: the pinned CA, the client
   * certificate, and SNI from the host (none for an IP address; `ws` does
   * what https does). Every 'error' event carries a GatehouseError: a refused
   * upgrade is the server's problem JSON rebuilt (GH_ERR_ACCESS_DENIED, ...),
   * a connection failure the same error the HTTP calls give.
   */
  openWebSocket(pathAndQuery: string): WebSocket {
    const host = this.host.includes(':') ? `[${this.host}]` : this.host;
    const ws = new WebSocket(`wss://${host}:${this.port}${pathAndQuery}`, {
      ...this.#tls,
      maxPayload: TERMINAL_WS_MAX_PAYLOAD,
      handshakeTimeout: this.#timeoutMs,
      perMessageDeflate: false,
    });
    let refused: GatehouseError | undefined;
    // A non-101 answer: read its problem JSON, then abort the handshake; the
    // 'error' that follows carries the server's error instead of ws's own.
    ws.on('unexpected-response', (_req, res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', () => ws.terminate());
      res.on('end', () => {
        refused = errorFromResponse(
          res.statusCode ?? 0,
          String(res.headers['content-type'] ?? ''),
          Buffer.concat(chunks),
          'GET',
          pathAndQuery,
        );
        ws.terminate();
      });
    });
    const emit = ws.emit.bind(ws);
    ws.emit = ((event: string | symbol, ...args: unknown[]) => {
      if (event !== 'error') return emit(event, ...args);
      return emit('error', refused ?? this.#wsError(args[0]));
    }) as typeof ws.emit;
    return ws;
  }

  /** A single-use token for a desktop's RDCleanPath WebSocket (core authorizes `login` on `name` now). */
  /** `mfaToken`: a per-session MFA check's token for this desktop and login (require_session_mfa). */
  desktopToken(name: string, login: string, mfaToken?: string): Promise<DesktopTokenView> {
    return this.#json(
      PUBLIC_ROUTES.desktopToken,
      { name },
      { login, ...(mfaToken ? { mfa_token: mfaToken } : {}) },
    );
  }

  /** The RDCleanPath WebSocket (what IronRDP in the browser opens; `gatehouse desktops connect` too). */
  openDesktopSocket(): WebSocket {
    return this.openWebSocket(DESKTOP_WS_PATH);
  }

  /** Attaches to a live session (`gatehouse join`); observer watches, peer types too. */
  joinSession(id: string, mode: JoinMode = 'observer'): WebSocket {
    const q = new URLSearchParams({ mode });
    return this.openWebSocket(`${fillPath(TERMINAL_WS_PATHS.join, { id })}?${q}`);
  }

  /** A new interactive shell on a node (what the web terminal opens). */
  openTerminal(req: { node: string; login: string; cols: number; rows: number }): WebSocket {
    const q = new URLSearchParams({
      node: req.node,
      login: req.login,
      cols: String(req.cols),
      rows: String(req.rows),
    });
    return this.openWebSocket(`${TERMINAL_WS_PATHS.terminal}?${q}`);
  }

  #wsError(e: unknown): GatehouseError {
    if (e instanceof GatehouseError) return e;
    const err: Error & { code?: string } = e instanceof Error ? e : new Error(String(e));
    // ws's own protocol errors (a bad frame, a frame above maxPayload) are not connection failures.
    if (err.code?.startsWith('WS_ERR_')) {
      return new GatehouseError('GH_ERR_UPSTREAM_UNAVAILABLE', `WebSocket protocol error: ${err.message}`, {
        hint: 'check that --proxy points at a Gatehouse proxy of a matching version',
        cause: err,
      });
    }
    return this.#connError(err);
  }

  // --- plumbing ------------------------------------------------------------

  async #json<T>(
    route: readonly [string, string],
    params: Record<string, string>,
    body?: unknown,
    query?: string,
  ): Promise<T> {
    const path = fillPath(route[1], params) + (query ? `?${query}` : '');
    const res = await this.#request(route[0] as Method, path, body);
    if (res.body.length === 0) return undefined as T;
    try {
      return JSON.parse(res.body.toString('utf8')) as T;
    } catch (cause) {
      throw new GatehouseError(
        'GH_ERR_UPSTREAM_UNAVAILABLE',
        `the proxy sent a response that is not JSON (${route[0]} ${route[1]})`,
        {
          hint: 'check that --proxy points at a Gatehouse proxy of a matching version',
          cause,
        },
      );
    }
  }

  #request(method: string, path: string, body?: unknown): Promise<{ status: number; body: Buffer }> {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    return new Promise((resolve, reject) => {
      const req = https.request(
        {
          host: this.host,
          port: this.port,
          method,
          path,
          agent: this.#agent,
          headers: {
            accept: 'application/json',
            ...(payload ? { 'content-type': 'application/json', 'content-length': payload.length } : {}),
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('error', (e) => reject(this.#connError(e)));
          res.on('end', () => {
            const status = res.statusCode ?? 0;
            const data = Buffer.concat(chunks);
            if (status >= 200 && status < 300) resolve({ status, body: data });
            else
              reject(
                errorFromResponse(status, String(res.headers['content-type'] ?? ''), data, method, path),
              );
          });
        },
      );
      req.setTimeout(this.#timeoutMs, () =>
        req.destroy(new Error(`no answer within ${this.#timeoutMs} ms`, { cause: 'timeout' })),
      );
      req.on('error', (e) => reject(this.#connError(e)));
      req.end(payload);
    });
  }

  /** A GET whose 2xx body is handed over as a stream (no idle timeout once it flows: a live recording may pause). */
  #stream(method: string, path: string, signal?: AbortSignal): Promise<AsyncIterable<Uint8Array>> {
    return new Promise((resolve, reject) => {
      const req = https.request(
        {
          host: this.host,
          port: this.port,
          method,
          path,
          agent: this.#agent,
          ...(signal ? { signal } : {}),
        },
        (res) => {
          const status = res.statusCode ?? 0;
          if (status >= 200 && status < 300) {
            req.setTimeout(0);
            resolve(res);
            return;
          }
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('error', (e) => reject(this.#connError(e)));
          res.on('end', () =>
            reject(
              errorFromResponse(
                status,
                String(res.headers['content-type'] ?? ''),
                Buffer.concat(chunks),
                method,
                path,
              ),
            ),
          );
        },
      );
      req.setTimeout(this.#timeoutMs, () =>
        req.destroy(new Error(`no answer within ${this.#timeoutMs} ms`, { cause: 'timeout' })),
      );
      req.on('error', (e) => reject(this.#connError(e)));
      req.end();
    });
  }

  #connError(e: Error & { code?: string }): GatehouseError {
    const addr = `${this.host}:${this.port}`;
    if (e.code && TLS_VERIFY_CODES.has(e.code)) {
      return new GatehouseError('GH_ERR_CERT_INVALID', `cannot verify the proxy at ${addr}: ${e.message}`, {
        hint:
          'the proxy certificate is not signed by the CA stored at login (or does not name this host); ' +
          'if the cluster CA was rotated, log in again with --ca-pin',
        cause: e,
      });
    }
    if (this.#hasCert && e.code === 'ECONNRESET') {
      // The listener drops a connection right after the handshake when it
      // refuses the client certificate (expired, or from another cluster).
      return new GatehouseError(
        'GH_ERR_UPSTREAM_UNAVAILABLE',
        `the proxy at ${addr} closed the connection: ${e.message}`,
        {
          hint: 'it may have refused your certificate (expired, or from another cluster): run `gatehouse login` again',
          cause: e,
        },
      );
    }
    return new GatehouseError(
      'GH_ERR_UPSTREAM_UNAVAILABLE',
      `cannot reach the proxy at ${addr}: ${e.message}`,
      {
        hint: 'is `gatehouse start` running there, and is --proxy the right host:port?',
        cause: e,
      },
    );
  }
}

/**
 * Server-sent events (the WHATWG event stream format, the fields used):
 * `event:` and `data:` lines up to a blank line make one event; comment
 * lines (`: ping`) and `id:` are skipped (the cursor is in the data). A
 * line longer than 1 MiB ends the stream with an error: no event is that big.
 */
export async function* parseEventStream(
  body: AsyncIterable<Uint8Array>,
): AsyncGenerator<{ event: string; data: string }> {
  const MAX_LINE = 1024 * 1024;
  const decoder = new TextDecoder();
  let buf = '';
  let event = 'message';
  let data: string[] = [];
  for await (const chunk of body) {
    buf += decoder.decode(chunk, { stream: true });
    let nl = buf.indexOf('\n');
    while (nl >= 0) {
      const line = buf.slice(0, nl).replace(/\r$/, '');
      buf = buf.slice(nl + 1);
      nl = buf.indexOf('\n');
      if (line === '') {
        if (data.length > 0) yield { event, data: data.join('\n') };
        event = 'message';
        data = [];
        continue;
      }
      const i = line.indexOf(':');
      const field = i < 0 ? line : line.slice(0, i);
      const value = i < 0 ? '' : line.slice(i + 1).replace(/^ /, '');
      if (field === 'event') event = value;
      else if (field === 'data') data.push(value);
    }
    if (buf.length > MAX_LINE) {
      throw new GatehouseError('GH_ERR_UPSTREAM_UNAVAILABLE', 'the proxy sent an event line over 1 MiB', {
        hint: 'check that --proxy points at a Gatehouse proxy of a matching version',
      });
    }
  }
}

const TLS_VERIFY_CODES = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_SIGNATURE_FAILURE',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_UNTRUSTED',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

export function fillPath(template: string, params: Record<string, string>): string {
  return template.replace(/:([a-z]+)/gi, (_, k: string) => {
    const v = params[k];
    if (v === undefined || v === '') {
      throw new GatehouseError('GH_ERR_VALIDATION', `missing ${k} for ${template}`, { hint: `give a ${k}` });
    }
    return encodeURIComponent(v);
  });
}

export function auditQueryString(q: AuditQuery): string {
  const p = new URLSearchParams();
  if (q.from) p.set('from', q.from);
  if (q.to) p.set('to', q.to);
  if (q.types?.length) p.set('types', q.types.join(','));
  if (q.user) p.set('user', q.user);
  if (q.session_id) p.set('session_id', q.session_id);
  if (q.q) p.set('q', q.q);
  if (q.limit !== undefined) p.set('limit', String(q.limit));
  if (q.cursor) p.set('cursor', q.cursor);
  return p.toString();
}

function isErrorCode(c: unknown): c is ErrorCode {
  return typeof c === 'string' && Object.hasOwn(ErrorCodes, c);
}

/** Rebuilds the server's GatehouseError from problem JSON; anything else means we did not reach Gatehouse. */
export function errorFromResponse(
  status: number,
  contentType: string,
  body: Buffer,
  method: string,
  path: string,
): GatehouseError {
  let problem: Record<string, unknown> | undefined;
  if (/json/i.test(contentType)) {
    try {
      const parsed: unknown = JSON.parse(body.toString('utf8'));
      if (parsed && typeof parsed === 'object' && !Array.isArray(parsed))
        problem = parsed as Record<string, unknown>;
    } catch {
      problem = undefined; // falls through to the "not a Gatehouse answer" error below
    }
  }
  if (!problem) {
    return new GatehouseError(
      'GH_ERR_UPSTREAM_UNAVAILABLE',
      `the proxy answered ${method} ${path.split('?')[0]} with HTTP ${status} and no problem JSON`,
      {
        hint: 'is --proxy pointing at a Gatehouse proxy (not another web server or load balancer)?',
        details: { status },
      },
    );
  }
  const { type: _type, title, status: _status, code, hint, ...details } = problem;
  return new GatehouseError(
    isErrorCode(code) ? code : status >= 500 ? 'GH_ERR_INTERNAL' : 'GH_ERR_BAD_REQUEST',
    typeof title === 'string' ? title : `HTTP ${status}`,
    {
      ...(typeof hint === 'string' ? { hint } : {}),
      ...(Object.keys(details).length ? { details } : {}),
    },
  );
}
