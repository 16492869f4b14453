import { createHash, generateKeyPairSync, X509Certificate } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import net, { type Socket } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { Duplex } from 'node:stream';
import tls, { type TLSSocket } from 'node:tls';
import {
  type AuditIndex,
  AuditLog,
  type AuditSink,
  createExportSink,
  eventFiles,
  FileRecordingStore,
  fileKey,
  JsonlFileSink,
  PostgresAuditIndex,
  PostgresRecordingStore,
  type RecordingStore,
  removeExpiredFiles,
  SqliteAuditIndex,
  StdoutSink,
  type VerifyChainResult,
  verifyAuditChainAsync,
} from '@gatehouse/audit';
import { type AdminCaller, authorizedAdmin, watchAccessRequests } from './api/authorized.js';
import { requestBodyDeadline } from './api/http.js';
import {
  answerClientError,
  clientErrorStatus,
  clientLeft,
  HttpConnections,
  socketRemoteAddress,
  unparsedRequestError,
} from './api/http-connections.js';
import { createLocalAdmin } from './api/local.js';
import type { InviteInfo } from './api/public.js';
import { createApiHandler, isFileUpload } from './api/server.js';
import type { AdminApi, TokenView } from './api/types.js';
import { createTerminalSockets, type TerminalSockets } from './api/ws.js';
import { LoginService } from './auth/login.js';
import { WEB_SESSIONS_PREFIX, WebSessions } from './auth/sessions.js';
import { Authorizer, type ConnectionContext, type Principal } from './authz/authorizer.js';
import { EtcdBackend } from './backend/etcd.js';
import { type BackendSpec, openBackend } from './backend/index.js';
import { MemoryBackend } from './backend/memory.js';
import { PostgresBackend } from './backend/postgres.js';
import { openPostgresBackend, postgresConnection } from './backend/postgres-config.js';
import { migrateSchema } from './backend/schema.js';
import type { Backend, WatchEvent } from './backend/types.js';
import { watchPrefix } from './backend/watch.js';
import { type Clock, systemClock } from './clock.js';
import { type AuditSinkOption, isExportSinkConfig, resolveAuditSinks } from './config/audit-sinks.js';
import { type GatehouseConfig, loadConfig, splitHostPort } from './config/load.js';
import type { ConfigFile } from './config/schema.js';
import {
  AesGcmSealer,
  isUnsealFailure,
  loadOrCreateSecretsKey,
  SECRETS_KEY_ENV,
  type Sealer,
} from './crypto/seal.js';
import { DbAccess } from './databases/access.js';
import { DatabaseRegistry, type DatabaseSpec, readCaFile } from './databases/registry.js';
import { DesktopRegistry, type DesktopSpec, readPasswordFile } from './desktops/registry.js';
import { DesktopRelayRegistry } from './desktops/relay.js';
import { DesktopTokens } from './desktops/tokens.js';
import { GatehouseError, isGatehouseError } from './errors.js';
import { LockService } from './identity/locks.js';
import { SshRevocations } from './identity/revocations.js';
import type { Identity } from './identity/types.js';
import { UserRecords } from './identity/user-records.js';
import { UserService } from './identity/users.js';
import { relyingPartyFor } from './identity/webauthn.js';
import { KubeClusterRegistry, type KubeClusterSpec, readKubeconfigFile } from './kube/registry.js';
import { bindError } from './listener/bind-error.js';
import { Listener } from './listener/listener.js';
import { Routes } from './listener/routes.js';
import { acceptTls } from './listener/tls-accept.js';
import { channelLogger, type LogFn } from './log.js';
import { GatewayMetrics } from './metrics.js';
import { BrowserMfa } from './mfa/browser.js';
import { TotpMethod, WebAuthnMethod } from './mfa/methods.js';
import { SessionMfa } from './mfa/session.js';
import { type Dialer, directDialer } from './net/dialer.js';
import { NodeAuditIngest } from './nodes/audit-ingest.js';
import { renewNodeHostCert } from './nodes/host-certs.js';
import { JoinTokenStore, redeemJoinToken } from './nodes/join-tokens.js';
import { NodeRegistry, type NodeSpec } from './nodes/registry.js';
import { PeerChannel } from './peers/channel.js';
import { type GatewayRecord, GatewayRegistry } from './peers/registry.js';
import { ClusterSessions } from './peers/sessions.js';
import { type CaExportFormat, CertificateAuthorities, caBackendKey } from './pki/authority.js';
import { SessionCredentials } from './pki/credentials.js';
import { sshFingerprint } from './pki/rotation.js';
import { decodeIdentity } from './pki/x509.js';
import { RoleService } from './rbac/roles.js';
import { ACCESS_REQUESTS_PREFIX, AccessRequestService } from './requests/service.js';
import type { AccessRequestChange, AccessRequestView } from './requests/types.js';
import { LiveSessions } from './sessions/live.js';
import { TerminalRegistry } from './sessions/terminal.js';
import { connectorFromDoc, type SsoConnector, SsoConnectorRegistry } from './sso/connectors.js';
import { GithubRelyingParty } from './sso/github.js';
import { OidcRelyingParty } from './sso/oidc.js';
import { SamlRelyingParty } from './sso/saml.js';
import { protocolsByKind, SsoService } from './sso/service.js';
import { formatDuration } from './util/duration.js';
import { readSecretFile } from './util/secret-file.js';
import { VERSION } from './version.js';
import { createWebHandler, defaultWebDir, isApiPath } from './web/static.js';

/** What an adapter gets from the gateway: just what it needs, nothing global. */
export interface AdapterContext {
  readonly clusterName: string;
  readonly routes: Routes;
  readonly authorizer: Authorizer;
  readonly audit: AuditLog;
  /**
   * Certificates on core's terms: user certificates only for a Grant (or a
   * core-made ClientTicket), host certificates, the CAs' public keys. The
   * CAs themselves are not reachable from here.
   */
  readonly credentials: SessionCredentials;
  readonly clock: Clock;
  readonly log: LogFn;
  /** Databases (config, adapter options, `gatehouse db add`). */
  readonly databases: DatabaseRegistry;
  /** The one authorization path for database protocols. */
  readonly dbAccess: DbAccess;
  /** How to reach targets (direct TCP now; reverse tunnels later). */
  readonly dialer: Dialer;
  /** Resolved config, read-only (e.g. mysqlListen). */
  readonly config: GatehouseConfig;
  /** Session recordings (interactive SSH, kube exec). */
  readonly recordings: RecordingStore;
  /**
   * Server-side TLS for protocols that switch to TLS mid-stream on their own
   * port (MySQL's SSLRequest): the listener's certificate, client
   * certificates verified by core. `identity` rejects with TlsRefused.
   */
  readonly tls: { accept(raw: Socket): { socket: TLSSocket; identity: Promise<Identity | undefined> } };
  /** Kubernetes clusters (config, adapter options, `gatehouse kube add`). */
  readonly kubeClusters: KubeClusterRegistry;
  /** SSH nodes (config, `gatehouse nodes add`, node services joining). */
  readonly nodes: NodeRegistry;
  /** RDP desktops (config, `gatehouse desktops add`); credentials only for a Grant. */
  readonly desktops: DesktopRegistry;
  /** Where the RDP adapter offers its RDCleanPath relay to core's WebSocket route. */
  readonly desktopRelays: DesktopRelayRegistry;
  /** Live sessions of this gateway (list, kill, re-check on lock changes, join). */
  readonly liveSessions: LiveSessions;
  /** Where the SSH adapter offers shells and files to the web terminal. */
  readonly terminals: TerminalRegistry;
  /** Serials of login SSH certificates that are revoked (for node services that check certificates themselves). */
  readonly revokedSshSerials: () => Promise<ReadonlySet<bigint>>;
}

export interface Adapter {
  /** Unique per gateway ("ssh", "postgres", ...). */
  readonly name: string;
  register(ctx: AdapterContext): void | Promise<void>;
  close?(): Promise<void>;
}

export interface CreateGatewayOptions {
  /** A resolved config (from loadConfig). When absent, one is built from the fields below and defaults. */
  config?: GatehouseConfig;
  dataDir?: string;
  clusterName?: string;
  /** 'off' only for test setups. */
  secondFactor?: 'otp' | 'off';
  /** Config file fields to apply (as the YAML spells them). */
  values?: ConfigFile;
  /**
   * Storage: an instance, or 'sqlite' (in the data dir) or 'memory'. Default:
   * what the config's `backend` says (SQLite unless it names PostgreSQL).
   */
  backend?: Backend | 'sqlite' | 'memory';
  /**
   * How long to wait for a configured PostgreSQL backend that cannot be
   * reached at start (each attempt is logged); default: until it answers.
   * 0 fails at once (a one-shot admin command).
   */
  backendWaitMs?: number;
  clock?: Clock;
  env?: NodeJS.ProcessEnv;
  /**
   * Extra audit sinks: sink objects, or export sinks described as data
   * (`{ type: 'syslog' | 'loki' | 'elasticsearch' | 'webhook', ... }`, the
   * camelCase options of @gatehouse/audit's sinks, secrets as values). They
   * come after the config file's `audit.sinks`; each export sink spools
   * under the data dir.
   */
  auditSinks?: AuditSinkOption[];
  /** How to reach targets; default: direct TCP. */
  dialer?: Dialer;
  /** Which spool directory this process uses for audit retries ('daemon' for `gatehouse start`). */
  auditSpoolName?: string;
  /**
   * Write the audit search index from a worker thread (default true), off the
   * event loop that relays sessions. A short-lived process (a local admin
   * command) writes inline instead and saves starting the thread.
   */
  auditIndexThread?: boolean;
  /** Where session recordings go; default: files under <dataDir>/recordings. */
  recordings?: RecordingStore;
  /** The built web UI served at / (default: packages/web/dist); false serves only the API. */
  webDir?: string | false;
}

const SERVER_CERT_TTL_MS = 30 * 24 * 3600 * 1000;
/** Backend key of the addresses the last gateway to listen on this backend advertised. */
const ADVERTISED_KEY = 'cluster/advertised';

/** host:port strings clients are given. */
export interface Advertised {
  publicAddr: string;
  mysqlListen?: string;
}

/** `addr` with a port of 0 replaced by the bound port (a public_addr or listen of HOST:0). */
function resolvePort(addr: string, bound: number): string {
  return addr.endsWith(':0') ? `${addr.slice(0, -2)}:${bound}` : addr;
}
/** The search index of the audit log, which retention also trims. */
type GatewayAuditIndex = AuditIndex & { deleteBefore(time: string): number | Promise<number> };

/** Why a session ended that the gateway running it could not end itself. */
const GATEWAY_RESTART = 'gateway_restart';
/** How often retention runs after the one at start. */
const RETENTION_INTERVAL_MS = 24 * 3600 * 1000;

/**
 * The composition root: one gateway owns its backend, CAs, services, routes
 * and listener. Nothing is registered globally, so several gateways can live
 * in one process.
 */
export class Gateway {
  readonly config: GatehouseConfig;
  readonly clock: Clock;
  readonly backend: Backend;
  readonly audit: AuditLog;
  readonly authorities: CertificateAuthorities;
  readonly users: UserService;
  readonly roles: RoleService;
  readonly locks: LockService;
  /** Access requests: state, reviews and expiry (core decides; CLI, API and plugins carry them). */
  readonly requests: AccessRequestService;
  readonly sessions: WebSessions;
  readonly authorizer: Authorizer;
  readonly routes = new Routes();
  readonly databases: DatabaseRegistry;
  readonly dbAccess: DbAccess;
  readonly kubeClusters: KubeClusterRegistry;
  readonly dialer: Dialer;
  readonly recordings: RecordingStore;
  readonly nodes: NodeRegistry;
  readonly desktops: DesktopRegistry;
  /** SSO connectors (config `sso_connectors:`, `gatehouse sso add`); client secrets sealed. */
  readonly ssoConnectors: SsoConnectorRegistry;
  /** Single sign-on logins (the web UI's buttons, `gatehouse login --auth`). */
  readonly sso: SsoService;
  /** Single-use tokens the browser's RDCleanPath request carries (minted after authorization). */
  readonly desktopTokens: DesktopTokens;
  /** Per-session MFA checks (role option require_session_mfa): challenges and target-bound certificates. */
  readonly sessionMfa: SessionMfa;
  /** The CLI's security key checks through the gateway page /web/mfa (mfa/browser.ts). */
  readonly browserMfa: BrowserMfa;
  /** The RDCleanPath relay (filled by the RDP adapter). */
  readonly desktopRelays = new DesktopRelayRegistry();
  readonly liveSessions: LiveSessions;
  /** The gateways sharing this backend: this one's record, renewed by a heartbeat (decision 0039-gateway-peers). */
  readonly registry: GatewayRegistry;
  /** The mTLS channel to the other gateways (session lists, kills, join relays). */
  readonly peerChannel: PeerChannel;
  /** Live sessions of every gateway sharing the backend (`sessions ls/kill/join`). */
  readonly clusterSessions: ClusterSessions;
  readonly credentials: SessionCredentials;
  /** Shells and files for the web terminal (filled by the SSH adapter). */
  readonly terminals = new TerminalRegistry();
  /** One-time tokens node services join with. */
  readonly joinTokens: JoinTokenStore;
  /** Login SSH certificates and which of them are revoked (the KRL for sshd's RevokedKeys). */
  readonly revocations: SshRevocations;
  /**
   * The admin API acting as the local operator, like tctl on the auth
   * server: full power, NO permission checks (the CLI's local mode uses it).
   * To act for a user with their roles' permissions, use authorizedAdmin().
   */
  readonly admin: AdminApi;
  readonly log: LogFn;

  readonly #adapters = new Map<string, Adapter>();
  readonly #registering: Promise<void>[] = [];
  readonly #listener: Listener;
  readonly #http: http.Server;
  readonly #api: (req: IncomingMessage, res: ServerResponse) => void;
  readonly #terminalSockets: TerminalSockets;
  #secureContext: tls.SecureContext | undefined;
  #renewTimer: NodeJS.Timeout | undefined;
  #retentionTimer: NodeJS.Timeout | undefined;
  #rotationTimer: NodeJS.Timeout | undefined;
  #unwatchCas: (() => void) | undefined;
  /** Prometheus metrics (config `metrics`), in this gateway's own registry; undefined when not configured. */
  readonly metrics: GatewayMetrics | undefined;
  readonly #auditIndex: GatewayAuditIndex | undefined;
  #closed = false;
  #accessWatch: AbortController | undefined;
  #listening = false;
  /** Addresses clients are told (port 0 resolved); set by listen(). */
  #advertised: Advertised | undefined;
  /** Where each dedicated listener is bound (reload() may move MySQL's). */
  readonly #dedicatedBound = new Map<string, net.AddressInfo>();
  /** The resources the config declared, as last loaded (reload() swaps them). */
  #configured: ConfiguredResources;
  #ready: Promise<void> | undefined;
  #orphansClosed = false;
  #readyDone = false;

  /** @internal use createGateway() */
  constructor(parts: {
    config: GatehouseConfig;
    clock: Clock;
    backend: Backend;
    audit: AuditLog;
    authorities: CertificateAuthorities;
    sealer: Sealer;
    log: LogFn;
    databases?: DatabaseSpec[];
    kubeClusters?: KubeClusterSpec[];
    nodes?: NodeSpec[];
    desktops?: DesktopSpec[];
    ssoConnectors?: SsoConnector[];
    dialer?: Dialer;
    recordings: RecordingStore;
    webDir?: string | false;
    /** The search index, so retention removes what it deletes from the files from search too. */
    auditIndex?: GatewayAuditIndex;
    metrics?: GatewayMetrics;
  }) {
    const { config, clock, backend, audit, authorities } = parts;
    this.#auditIndex = parts.auditIndex;
    this.config = config;
    this.clock = clock;
    this.backend = backend;
    this.audit = audit;
    this.authorities = authorities;
    this.log = parts.log;
    this.locks = new LockService({ backend, clock, audit });
    this.roles = new RoleService({ backend, clock, audit });
    this.users = new UserService({
      backend,
      clock,
      audit,
      sealer: parts.sealer,
      clusterName: config.clusterName,
      roles: this.roles,
      locks: this.locks,
      // The RP id and origin are the gateway's public web address (public_addr), port 0 resolved once listening.
      relyingParty: () => relyingPartyFor(this.advertised().publicAddr, config.clusterName),
      policy: {
        secondFactor: config.auth.secondFactor,
        maxLoginAttempts: config.auth.maxLoginAttempts,
        lockoutBaseMs: config.auth.lockoutMs,
        lockoutMaxMs: config.auth.maxLockoutMs,
        inviteTtlMs: config.auth.inviteTtlMs,
        resetTtlMs: config.auth.resetTtlMs,
        minPasswordLength: config.auth.minPasswordLength,
      },
    });
    this.sessions = new WebSessions({ backend, clock, ttlMs: config.auth.webSessionTtlMs });
    this.dialer = parts.dialer ?? directDialer;
    this.recordings = parts.recordings;
    this.databases = new DatabaseRegistry({ backend, audit });
    for (const db of parts.databases ?? []) this.databases.addStatic(db);
    this.nodes = new NodeRegistry({ backend, audit });
    for (const n of parts.nodes ?? []) this.nodes.addStatic(n);
    this.kubeClusters = new KubeClusterRegistry({ backend, audit, sealer: parts.sealer });
    for (const k of parts.kubeClusters ?? []) this.kubeClusters.addStatic(k);
    this.desktops = new DesktopRegistry({ backend, audit, sealer: parts.sealer });
    for (const d of parts.desktops ?? []) this.desktops.addStatic(d);
    this.#configured = {
      databases: parts.databases ?? [],
      nodes: parts.nodes ?? [],
      kubeClusters: parts.kubeClusters ?? [],
      desktops: parts.desktops ?? [],
    };
    this.requests = new AccessRequestService({
      backend,
      clock,
      audit,
      log: parts.log,
      getUser: (name) => this.users.get(name),
      resolveRoles: (names) => this.roles.resolve(names),
      findResource: async (r) => {
        switch (r.kind) {
          case 'db':
            return this.databases.get(r.name);
          case 'node':
            return this.nodes.get(r.name);
          case 'kube':
            return this.kubeClusters.get(r.name);
          case 'desktop':
            return this.desktops.get(r.name);
          default: {
            const never: never = r.kind;
            throw new GatehouseError('GH_ERR_VALIDATION', `unknown resource kind ${String(never)}`);
          }
        }
      },
    });
    this.authorizer = new Authorizer({
      clock,
      audit,
      userCaCerts: () => authorities.get('user').map((k) => parsedCert(k.x509CertPem)),
      decodeIdentity: (cert) => decodeIdentity(cert),
      getUser: (name) => this.users.get(name),
      resolveRoles: (names) => this.roles.resolve(names),
      findLocks: (q) => this.locks.find(q),
      requestGrants: (identity) => this.requests.grants(identity),
    });
    this.metrics = parts.metrics;
    const metrics = parts.metrics;
    this.liveSessions = new LiveSessions({
      authorizer: this.authorizer,
      audit,
      clock,
      log: this.log,
      ...(metrics ? { onBound: (protocol: string, s: number) => metrics.sessionBound(protocol, s) } : {}),
    });
    this.registry = new GatewayRegistry({ backend, clock, log: this.log });
    this.peerChannel = new PeerChannel({
      clusterName: config.clusterName,
      authorities,
      liveSessions: this.liveSessions,
      audit,
      clock,
      log: this.log,
      clientName: () => `${config.gateway.name ?? os.hostname()}.admin-${process.pid}`,
    });
    this.clusterSessions = new ClusterSessions({
      local: this.liveSessions,
      channel: this.peerChannel,
      registry: this.registry,
      self: () => this.registry.self?.name,
      log: this.log,
    });
    this.desktopTokens = new DesktopTokens({
      authorizer: this.authorizer,
      clock,
      audit,
      desktops: this.desktops,
    });
    this.credentials = new SessionCredentials({ authorities, clock });
    this.dbAccess = new DbAccess({
      registry: this.databases,
      authorizer: this.authorizer,
      liveSessions: this.liveSessions,
      authorities,
      audit,
      clock,
      dialer: this.dialer,
      auditLimits: {
        maxQueryBytes: config.audit.maxQueryBytes,
        maxParameterBytes: config.audit.maxParameterBytes,
      },
    });
    this.joinTokens = new JoinTokenStore({ backend, clock, audit });
    this.revocations = new SshRevocations({
      backend,
      clock,
      getUser: (name) => this.users.get(name),
      findLocks: (q) => this.locks.find(q),
      userCaKeys: () => authorities.get('user').map((k) => k.sshPublicKey),
    });
    this.ssoConnectors = new SsoConnectorRegistry({ backend, audit, sealer: parts.sealer });
    for (const c of parts.ssoConnectors ?? []) this.ssoConnectors.addStatic(c);
    const login = new LoginService({
      clock,
      config,
      authenticate: (req) => this.users.authenticate(req),
      authenticatePasswordless: (req) => this.users.logins.authenticatePasswordless(req),
      resolveRoles: (names) => this.roles.resolve(names),
      authorities,
      sessions: this.sessions,
      recordSshCert: (c) => this.revocations.recordIssued(c),
    });
    this.sso = new SsoService({
      connectors: this.ssoConnectors,
      rp: protocolsByKind({
        oidc: new OidcRelyingParty(),
        github: new GithubRelyingParty(),
        saml: new SamlRelyingParty({ backend, clock }),
      }),
      backend,
      sealer: parts.sealer,
      clock,
      audit,
      users: this.users,
      roleExists: (name) => this.roles.exists(name),
      findLocks: (q) => this.locks.find(q),
      issue: (user, req, ctx) => login.issue(user, req, ctx),
    });
    this.sessionMfa = new SessionMfa({
      backend,
      clock,
      audit,
      authorities,
      databaseProtocol: async (name) => (await this.databases.get(name))?.protocol,
      // The methods a session check offers, in order (mfa/methods.ts).
      methods: [
        new TotpMethod({ records: new UserRecords(backend), sealer: parts.sealer, clock }),
        new WebAuthnMethod(this.users.webauthn),
      ],
    });
    this.admin = this.adminAs(`local:${safeUsername()}`);
    const nodeAudit = new NodeAuditIngest({
      backend,
      clock,
      audit,
      hostCaKeys: () => authorities.get('host').map((k) => k.sshPublicKey),
      nodeRegistered: async (name) => (await this.nodes.get(name)) !== undefined,
    });
    this.browserMfa = new BrowserMfa({
      backend,
      clock,
      audit,
      // The page must be on the relying party's origin: a key signs for that origin only.
      webOrigin: () => this.users.webauthn.relyingParty().origins[0]!,
    });
    this.#api = createApiHandler({
      sso: this.sso,
      mfa: {
        devices: this.users.mfa,
        webauthn: this.users.webauthn,
        beginLogin: (req) => this.users.logins.beginWebAuthn(req),
      },
      sessionMfa: this.sessionMfa,
      browserMfa: this.browserMfa,
      config,
      advertised: () => this.advertised(),
      hostCaSigner: () => sshFingerprint(authorities.signingKey('host').sshPublicKey),
      gateways: () => {
        const self = this.registry.self;
        if (!self) return undefined;
        const view = (g: GatewayRecord) => ({ name: g.name, version: g.version, started: g.started });
        return { self: view(self), peers: this.registry.peers.map(view) };
      },
      clock,
      version: VERSION,
      audit,
      authorizer: this.authorizer,
      sessions: this.sessions,
      login,
      invites: {
        inspect: async (token) => {
          const t = await this.users.inspectToken(token);
          const info: InviteInfo = {
            user: t.user,
            kind: t.kind,
            expires: new Date(t.expires).toISOString(),
            second_factor: config.auth.secondFactor,
            totp: t.totp,
          };
          return info;
        },
        accept: async (token, req, remoteAddr) => {
          const user = await this.users.acceptToken(token, {
            password: req.password,
            otp: req.otp,
            remoteAddr,
          });
          // A reset ends every browser session of the user.
          await this.sessions.deleteForUser(user.name);
        },
      },
      exportCa: (format, opts) => this.exportCa(format, opts),
      krl: () => this.revocations.krl(),
      admin: (caller, ctx) => this.#authorizedAdmin(caller, ctx),
      watchAccessRequests: (who, after, signal) => watchAccessRequests(this.requests, who, after, signal),
      nodeJoin: (req, remoteAddr) =>
        redeemJoinToken(
          {
            tokens: this.joinTokens,
            authorities,
            clock,
            audit,
            clusterName: config.clusterName,
            registerNode: async (n) => {
              // A node joining again under its name (new key, new address) replaces its old registration.
              await this.nodes.add({ name: n.name, addr: n.addr, labels: n.labels }, 'system:node-join', {
                replace: true,
              });
            },
          },
          req,
          remoteAddr,
        ),
      nodeRenewHostCert: (req, remoteAddr) =>
        renewNodeHostCert(
          { nodes: this.nodes, authorities, clusterName: config.clusterName, now: () => clock.now(), audit },
          req,
          remoteAddr,
        ),
      nodeAudit: (req, remoteAddr) => nodeAudit.ingest(req, remoteAddr),
      routeCerts: { databases: this.databases, authorities },
      assumeAccessRequest: async (p, session, id, remoteAddr) => {
        // The same check as a certificate re-issue: every request the session
        // carries, and this one, approved, unexpired and the caller's own.
        const ids = [...new Set([...(session.accessRequests ?? []), id])];
        const grants = await this.requests.grants({ user: p.user.name, accessRequests: ids });
        const now = clock.now().getTime();
        const ttl = Math.min(Date.parse(session.expires), ...grants.map((g) => g.expires.getTime())) - now;
        if (ttl <= 0) {
          throw new GatehouseError('GH_ERR_CERT_EXPIRED', 'the session or the access has already ended', {
            hint: 'sign in again',
          });
        }
        const roles = [...new Set([...session.roles, ...grants.flatMap((g) => g.roles)])];
        const web = await this.sessions.create(p.user.name, roles, ttl, p.user.id, ids);
        const g = grants.find((x) => x.id === id)!;
        await audit.record({
          type: 'access_request.assume',
          user: p.user.name,
          addr: { remote: remoteAddr },
          request_id: id,
          requester: p.user.name,
          roles: g.roles,
          ...(g.resources?.length ? { resources: g.resources.map((r) => `${r.kind}/${r.name}`) } : {}),
          expires: web.session.expires,
        });
        return {
          sessionId: web.id,
          response: {
            roles,
            access_requests: ids,
            expires: web.session.expires,
            csrf_token: web.session.csrf,
          },
        };
      },
      requestCerts: async (p, req, remoteAddr) => {
        if (p.identity.route) {
          return this.authorizer.deny(
            p.identity,
            { kind: 'access_request', name: req.request_ids.join(',') },
            'a route-scoped certificate cannot be re-issued with access requests',
            { remoteAddr, protocol: 'http' },
            { hint: 'use the certificate from gatehouse login (the current profile)' },
          );
        }
        const grants = await this.requests.grants({ user: p.user.name, accessRequests: req.request_ids });
        const out = await login.issue(
          p.user,
          {
            ...(req.ssh_public_key ? { ssh_public_key: req.ssh_public_key } : {}),
            ...(req.tls_public_key ? { tls_public_key: req.tls_public_key } : {}),
          },
          { remoteAddr, mfa: false, requests: grants, from: p.identity },
        );
        return out.response;
      },
      log: this.log,
      terminals: this.terminals,
      desktopTokens: this.desktopTokens,
      authenticated: (socket) => this.#listener.vouch(socket),
    });
    const api = this.#api;
    const web =
      parts.webDir === false ? undefined : createWebHandler({ dir: parts.webDir ?? defaultWebDir() });
    this.#http = http.createServer(
      // requestTimeout is off: a file upload may take longer than any fixed
      // limit. Every other request body must arrive within
      // listener.request_timeout; an upload gets an idle limit instead
      // (api/server.ts). Headers are due within listener.handshake_timeout
      // (HttpConnections: node checks headersTimeout only on servers that listen).
      { requestTimeout: 0, keepAliveTimeout: 5_000, maxHeaderSize: 16_384 },
      (req, res) => {
        if (!isFileUpload(req)) requestBodyDeadline(req, res, config.listener.requestTimeoutMs);
        if (web && !isApiPath(req.url)) web(req, res);
        else api(req, res);
      },
    );
    const connections = new HttpConnections(this.#http, {
      headersTimeoutMs: config.listener.handshakeTimeoutMs,
    });
    this.#terminalSockets = createTerminalSockets({
      authorizer: this.authorizer,
      sessionMfa: this.sessionMfa,
      sessions: this.sessions,
      audit,
      clock,
      terminals: this.terminals,
      clusterSessions: this.clusterSessions,
      desktopRelays: this.desktopRelays,
      desktopTokens: this.desktopTokens,
      recordings: this.recordings,
      readRecording: (p, id, remoteAddr) => this.#authorizedAdmin(p, { remoteAddr }).getRecording(id),
      log: this.log,
    });
    // WebSockets (the web terminal, gatehouse join) share the API's listener.
    this.#http.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) =>
      this.#terminalSockets.handleUpgrade(req, socket, head),
    );
    // Requests node:http cannot parse (or whose headers come too slowly):
    // answered in HTTP (400, 408, 431) and audited like the API's own refusals.
    this.#http.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
      if (clientLeft(err)) {
        socket.destroy();
        return;
      }
      const status = clientErrorStatus(err);
      const error = unparsedRequestError(status, err);
      if (
        !answerClientError(socket, status, { contentType: 'text/plain; charset=utf-8', body: `${error}\n` })
      )
        return;
      this.log('debug', 'malformed HTTP request', err);
      audit
        .emit({
          type: 'http.reject',
          method: '',
          path: '',
          status,
          error,
          addr: { remote: socketRemoteAddress(socket) },
        })
        .catch((e: unknown) => this.log('error', 'audit of an HTTP rejection failed', e));
    });
    this.#listener = new Listener({
      options: config.listener,
      routes: this.routes,
      audit,
      secureContext: () => this.#currentSecureContext(),
      verifyClientCert: (cert) => this.authorizer.identityFromCert(cert),
      http: (socket) => connections.serve(socket),
      log: this.log,
      now: () => clock.now().getTime(),
    });
  }

  /**
   * The admin API for a user, with the same permission checks, visibility
   * filters and audited denials as the HTTP API (both go through
   * api/authorized.ts). `who` is an identity (e.g. from a client certificate:
   * `gw.authorizer.identityFromCert(cert)`) or a user name, to act as that
   * user with their current roles and traits. Who they are is checked again
   * on every call, as the HTTP API does on every request: a lock, a deleted
   * user or a removed role applies at once.
   */
  authorizedAdmin(
    who: Identity | string,
    opts: { remoteAddr?: string | undefined; traitsFromUser?: boolean | undefined } = {},
  ): AdminApi {
    return this.#authorizedAdmin(this.#principalOf(who, opts), { remoteAddr: opts.remoteAddr });
  }

  /**
   * The access request changes `user` may see after `after` (the watch
   * route's stream, for plugins run in this process): `user` is checked
   * again before each change, as the route checks its caller.
   */
  watchAccessRequests(user: string, after: number, signal: AbortSignal): AsyncIterable<AccessRequestChange> {
    return watchAccessRequests(this.requests, this.#principalOf(user, {}), after, signal);
  }

  #principalOf(
    who: Identity | string,
    opts: { traitsFromUser?: boolean | undefined },
  ): () => Promise<Principal> {
    return async () => {
      if (typeof who !== 'string') {
        return this.authorizer.principal(who, { traitsFromUser: opts.traitsFromUser ?? false });
      }
      // No certificate: the user's current roles, checked like any identity
      // (a missing user, a lock). It is valid for this one call.
      const user = await this.users.get(who);
      const identity: Identity = {
        user: who,
        roles: user?.roles ?? [],
        traits: {},
        expires: new Date(this.clock.now().getTime() + 60_000),
      };
      return this.authorizer.principal(identity, { traitsFromUser: true });
    };
  }

  #authorizedAdmin(caller: AdminCaller, ctx: ConnectionContext): AdminApi {
    return authorizedAdmin(
      { authorizer: this.authorizer, admin: (actor) => this.adminAs(actor), requests: this.requests },
      caller,
      ctx,
    );
  }

  /**
   * The admin API acting as `actor` with NO permission checks (the local
   * operator's power; `actor` only names them in audit events). Code acting
   * for a user calls authorizedAdmin() instead.
   */
  adminAs(actor: string): AdminApi {
    return createLocalAdmin(
      {
        users: this.users,
        roles: this.roles,
        locks: this.locks,
        audit: this.audit,
        verifyAudit: (since) => this.verifyAudit(since),
        databases: this.databases,
        recordings: this.recordings,
        kubeClusters: this.kubeClusters,
        desktops: this.desktops,
        nodes: this.nodes,
        sso: { connectors: this.ssoConnectors, service: this.sso },
        clusterSessions: this.clusterSessions,
        requests: this.requests,
        endSessions: (user) => this.sessions.deleteForUser(user),
        joinTokens: this.joinTokens,
        joinCommand: (token) =>
          `gatehouse node start --proxy ${this.advertised().publicAddr} --ca-pin ${this.caPin()} --token ${token} --name NAME`,
        nodeHostCerts: {
          authorities: this.authorities,
          clusterName: this.config.clusterName,
          now: () => this.clock.now(),
        },
        acceptCommand: (token) =>
          `gatehouse accept-invite --proxy ${this.advertised().publicAddr} --ca-pin ${this.caPin()} ${token}`,
        authorities: this.authorities,
      },
      actor,
    );
  }

  /**
   * Checks the hash chain of this gateway's audit record (decision 0029)
   * with the CA store's audit keys; offline, reading the files only.
   */
  verifyAudit(since?: Date): Promise<VerifyChainResult> {
    return verifyAuditChainAsync({
      dir: path.join(this.config.dataDir, 'audit'),
      keys: this.authorities.auditPublicKeys(),
      ...(since ? { since } : {}),
    });
  }

  /** Adds an adapter; a second adapter with the same name throws. Chainable. */
  use(adapter: Adapter): this {
    if (this.#adapters.has(adapter.name)) {
      throw new GatehouseError(
        'GH_ERR_ALREADY_EXISTS',
        `an adapter named "${adapter.name}" is already in use on this gateway`,
        {
          hint: 'call gw.use() once per adapter',
        },
      );
    }
    this.#adapters.set(adapter.name, adapter);
    const ctx: AdapterContext = {
      clusterName: this.config.clusterName,
      routes: this.routes,
      authorizer: this.authorizer,
      audit: this.audit,
      credentials: this.credentials,
      clock: this.clock,
      log: this.log,
      databases: this.databases,
      dbAccess: this.dbAccess,
      dialer: this.dialer,
      config: this.config,
      recordings: this.recordings,
      kubeClusters: this.kubeClusters,
      desktops: this.desktops,
      desktopRelays: this.desktopRelays,
      nodes: this.nodes,
      liveSessions: this.liveSessions,
      terminals: this.terminals,
      revokedSshSerials: () => this.revocations.revokedSerialSet(),
      tls: {
        accept: (raw) => {
          const accepted = acceptTls(raw, {
            secureContext: this.#currentSecureContext(),
            verifyClientCert: (cert) => this.authorizer.identityFromCert(cert),
            onLateError: (err) => this.log('debug', 'TLS connection failed', err),
          });
          // A valid Gatehouse certificate on a dedicated port: the source keeps its precedence under a flood.
          // (A refusal is the adapter's to report; here it only means nothing to vouch for.)
          accepted.identity.then(
            (id) => id && this.#listener.vouch(raw),
            () => undefined,
          );
          return accepted;
        },
      },
    };
    this.#registering.push(Promise.resolve(adapter.register(ctx)));
    // An adapter added after ready(): the next listen()/handle() waits for its registration too.
    this.#ready = undefined;
    this.#readyDone = false;
    return this;
  }

  #currentSecureContext(): tls.SecureContext {
    if (!this.#secureContext)
      throw new GatehouseError('GH_ERR_INTERNAL', 'TLS is not ready: call listen() first');
    return this.#secureContext;
  }

  /**
   * Where clients reach this gateway: once listening, the bound addresses
   * (port 0 resolved); before, the config's. MySQL's only when it is on.
   */
  advertised(): Advertised {
    if (this.#advertised) return this.#advertised;
    const m = this.config.mysqlListen;
    return {
      publicAddr: this.config.publicAddr,
      ...(m ? { mysqlListen: `${m.host.includes(':') ? `[${m.host}]` : m.host}:${m.port}` } : {}),
    };
  }

  /**
   * The address the gateway serving this data dir last listened on (it may
   * be another process: admin verbs on the data dir use this for the
   * addresses they print); undefined when none has listened yet.
   */
  async lastListening(): Promise<Advertised | undefined> {
    if (this.#advertised) return this.#advertised;
    const item = await this.backend.get(ADVERTISED_KEY);
    if (!item) return undefined;
    try {
      const v = JSON.parse(item.value) as Partial<Advertised>;
      return typeof v.publicAddr === 'string' ? (v as Advertised) : undefined;
    } catch {
      // Written by this code only; a damaged record is as good as none (the config's address is used).
      return undefined;
    }
  }

  /**
   * Reads the config again (SIGHUP): the databases, nodes, Kubernetes
   * clusters and desktops it declares are swapped in at once, live sessions
   * untouched; every other changed key is reported as needing a restart.
   * A config that cannot be loaded, or whose resources are invalid, changes
   * nothing. Audited as gateway.reload either way.
   */
  async reload(load: () => Promise<GatehouseConfig>): Promise<ReloadReport> {
    const source = this.config.source;
    let report: ReloadReport;
    try {
      const next = await load();
      const resources = await configuredResources(next);
      // MySQL's listener moves first (the new port opens before the old one
      // closes), so a bad address refuses the reload with nothing changed.
      const mysql = await this.#prepareMysqlMove(next);
      let applied: string[];
      try {
        applied = this.#swapConfigured(resources);
      } catch (err) {
        await mysql?.undo();
        throw err;
      }
      if (mysql) applied.push(...(await mysql.commit()));
      // The running object is shared with the API and adapters: its resource lists follow the registries.
      Object.assign(this.config, {
        databases: next.databases,
        nodes: next.nodes,
        kubeClusters: next.kubeClusters,
        desktops: next.desktops,
        ...(mysql ? { mysqlListen: next.mysqlListen } : {}),
      });
      report = { ok: true, source, applied, restartRequired: restartRequired(this.config, next) };
    } catch (err) {
      const error =
        err instanceof GatehouseError
          ? err
          : new GatehouseError('GH_ERR_CONFIG_INVALID', (err as Error)?.message ?? String(err), {
              cause: err,
            });
      report = { ok: false, source, error };
    }
    await this.audit.emit(
      report.ok
        ? {
            type: 'gateway.reload',
            user: 'system',
            success: true,
            source,
            applied: report.applied,
            restart_required: report.restartRequired,
          }
        : { type: 'gateway.reload', user: 'system', success: false, source, error: report.error.message },
    );
    return report;
  }

  /**
   * A changed mysql_listen on a running gateway whose MySQL listener is on:
   * the new address is bound now (undo closes it), commit closes the old one
   * (connections it accepted go on) and advertises the new. Undefined when
   * nothing can move: unchanged, not listening, or MySQL was off at start
   * (its handler is registered only then: that change needs a restart).
   */
  async #prepareMysqlMove(
    next: GatehouseConfig,
  ): Promise<{ undo(): Promise<void>; commit(): Promise<string[]> } | undefined> {
    const route = this.routes.dedicatedListeners().find(([name]) => name === 'mysql')?.[1];
    const old = this.#dedicatedBound.get('mysql');
    if (!route || !this.#listening) return undefined;
    if (JSON.stringify(next.mysqlListen) === JSON.stringify(this.config.mysqlListen)) return undefined;
    let opened: net.AddressInfo | undefined;
    const to = next.mysqlListen;
    if (to) {
      opened = await this.#listener.listenRaw(to.host, to.port, route.handler).catch((err: unknown) => {
        throw bindError(err, route.setting, to.host, to.port);
      });
    }
    return {
      undo: async () => {
        if (opened) await this.#listener.closeBound(opened);
      },
      commit: async () => {
        if (old) await this.#listener.closeBound(old);
        const { mysqlListen: _old, ...rest } = this.advertised();
        if (opened) {
          this.#dedicatedBound.set('mysql', opened);
          const host = opened.family === 'IPv6' ? `[${opened.address}]` : opened.address;
          this.#advertised = { ...rest, mysqlListen: `${host}:${opened.port}` };
        } else {
          this.#dedicatedBound.delete('mysql');
          this.#advertised = rest;
        }
        await this.backend.put(ADVERTISED_KEY, JSON.stringify(this.#advertised)).catch((err: unknown) => {
          this.log('error', 'could not record the listening address in the backend', err);
        });
        return ['mysql_listen'];
      },
    };
  }

  /** Puts `next` in the registries' configured entries, all or none; returns the kinds that changed. */
  #swapConfigured(next: ConfiguredResources): string[] {
    const prev = this.#configured;
    const done: (() => void)[] = [];
    const applied: string[] = [];
    const names = (specs: readonly { name: string }[]) => specs.map((x) => x.name);
    const swap = <T extends { name: string }>(
      key: string,
      registry: { replaceStatic(previous: readonly string[], next: readonly T[]): void },
      before: readonly T[],
      after: readonly T[],
    ) => {
      if (JSON.stringify(before) === JSON.stringify(after)) return;
      registry.replaceStatic(names(before), after);
      done.push(() => registry.replaceStatic(names(after), before));
      applied.push(key);
    };
    try {
      swap('databases', this.databases, prev.databases, next.databases);
      swap('nodes', this.nodes, prev.nodes, next.nodes);
      swap('kube_clusters', this.kubeClusters, prev.kubeClusters, next.kubeClusters);
      swap('desktops', this.desktops, prev.desktops, next.desktops);
    } catch (err) {
      for (const undo of done.reverse()) undo();
      throw err;
    }
    this.#configured = next;
    return applied;
  }

  /**
   * This gateway's name among those sharing the backend: config
   * `gateway.name`, else `<hostname>:<listen port>` (unique per machine
   * without configuration).
   */
  gatewayName(boundPort?: number): string {
    return (
      this.registry.self?.name ??
      this.config.gateway.name ??
      `${os.hostname()}:${boundPort ?? this.config.listen.port}`
    );
  }

  /** SHA-256 pin of the host CA that clients pass as --ca-pin. */
  caPin(): string {
    return this.authorities.caPin();
  }

  exportCa(format: CaExportFormat, opts: { type?: 'user' | 'host' | 'db'; hosts?: string } = {}): string {
    return this.authorities.export(format, opts);
  }

  /**
   * Opens the listener (default: config.listen). Port 0 picks a free port;
   * clients are then told the bound one (GET /v1/ping, invites printed by
   * admin verbs on the data dir). An address that cannot be bound fails with
   * GH_ERR_LISTEN_FAILED naming the setting to change.
   */
  async listen(opts: { host?: string; port?: number } = {}): Promise<{
    address: string;
    port: number;
    dedicated: Record<string, { address: string; port: number }>;
    /** Where GET /metrics answers, when `metrics.listen` is configured. */
    metrics?: { address: string; port: number };
  }> {
    await this.ready();
    const host = opts.host ?? this.config.listen.host;
    const port = opts.port ?? this.config.listen.port;
    const bind = <T>(setting: string, h: string, p: number, open: () => Promise<T>): Promise<T> =>
      open().catch((err: unknown) => {
        throw bindError(err, setting, h, p);
      });
    const addr = await bind('listen', host, port, () => this.#listener.listen(host, port));
    const fmt = (a: net.AddressInfo) => `${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`;
    const address = fmt(addr);
    const extra: Record<string, { address: string; port: number }> = {};
    // A failure here leaves the main port open until close(), as any failed listen() does.
    for (const [name, d] of this.routes.dedicatedListeners()) {
      const a = await bind(d.setting, d.host, d.port, () =>
        this.#listener.listenRaw(d.host, d.port, d.handler),
      );
      extra[name] = { address: fmt(a), port: a.port };
      this.#dedicatedBound.set(name, a);
    }
    this.#advertised = {
      publicAddr: resolvePort(this.config.publicAddr, addr.port),
      ...(extra.mysql ? { mysqlListen: extra.mysql.address } : {}),
    };
    await this.backend.put(ADVERTISED_KEY, JSON.stringify(this.#advertised)).catch((err: unknown) => {
      // Only admin verbs on the data dir read it (for the address in invites): not worth failing a start.
      this.log('error', 'could not record the listening address in the backend', err);
    });
    let metricsAt: { address: string; port: number } | undefined;
    const ml = this.config.metrics?.listen;
    if (this.metrics && ml) {
      const a = await this.metrics.listen(ml.host, ml.port);
      metricsAt = { address: fmt(a), port: a.port };
    }
    const name = this.gatewayName(addr.port);
    const pl = this.config.gateway.peerListen;
    // The channel's certificate is issued (and audited) first: a failure there is not an address problem.
    const peerAt = await this.peerChannel.listen(name, pl.host, pl.port).catch((err: unknown) => {
      throw isGatehouseError(err) ? err : bindError(err, 'gateway.peer_listen', pl.host, pl.port);
    });
    await this.registry.register({
      name,
      peer_addr: this.config.gateway.peerAddr ?? fmt(peerAt),
      public_addr: this.#advertised.publicAddr,
      version: VERSION,
      started: this.clock.now().toISOString(),
    });
    this.#listening = true;
    await this.audit.emit({
      type: 'gateway.start',
      version: VERSION,
      listen: [address, ...Object.values(extra).map((e) => e.address)],
      user: 'system',
    });
    await this.#retentionRound();
    return { address, port: addr.port, dedicated: extra, ...(metricsAt ? { metrics: metricsAt } : {}) };
  }

  /** Retention at start, then once a day (decision 0029). */
  async #retentionRound(): Promise<void> {
    if (this.config.audit.retentionMs === undefined && this.config.recordings?.retentionMs === undefined)
      return;
    try {
      await this.enforceRetention();
    } catch (err) {
      // Nothing was deleted unrecorded (each deletion is audited first); the next round tries again.
      this.log('error', 'retention failed', err);
    }
    if (this.#closed) return;
    clearTimeout(this.#retentionTimer);
    this.#retentionTimer = setTimeout(() => void this.#retentionRound(), RETENTION_INTERVAL_MS);
    this.#retentionTimer.unref();
  }

  /**
   * Applies `audit.retention` and `recordings.retention` now: deletes the
   * audit files of days older than the audit retention (never the newest
   * file; the kept chain's start is recorded in a signed anchor, so `audit
   * verify` still passes) and their rows in the search index, and the
   * recordings that ended longer ago than the recordings retention. Every
   * deletion is audited before it happens (`audit.retention.delete`,
   * `recording.delete`); one that cannot be audited does not happen.
   */
  async enforceRetention(): Promise<{ auditFiles: string[]; recordings: string[] }> {
    const now = this.clock.now().getTime();
    const out = { auditFiles: [] as string[], recordings: [] as string[] };
    const auditMs = this.config.audit.retentionMs;
    if (auditMs !== undefined) {
      const dir = path.join(this.config.dataDir, 'audit');
      const before = new Date(now - auditMs).toISOString().slice(0, 10);
      const files = eventFiles(dir);
      const expired: string[] = [];
      // Oldest first, never the newest file (the chain goes on there).
      for (const f of files.slice(0, -1)) {
        if ((fileKey(f)?.day ?? before) >= before) break;
        expired.push(f);
      }
      if (expired.length > 0) {
        await this.audit.emit(
          {
            type: 'audit.retention.delete',
            user: 'system',
            files: expired,
            before,
            reason: `audit.retention ${formatDuration(auditMs)}`,
            anchor: files[expired.length] as string,
            message: `retention deletes ${expired.length} audit files of days before ${before}`,
          },
          { precondition: true },
        );
        out.auditFiles = removeExpiredFiles(dir, (f) => expired.includes(f), this.authorities.auditSigner());
        await this.#auditIndex?.deleteBefore(`${before}T00:00:00.000Z`);
      }
    }
    const recMs = this.config.recordings?.retentionMs;
    if (recMs !== undefined) {
      const cutoff = now - recMs;
      for (;;) {
        const batch = (await this.recordings.list({ to: new Date(cutoff).toISOString(), limit: 500 })).filter(
          (m) =>
            m.ended !== undefined && Date.parse(m.ended) < cutoff && !out.recordings.includes(m.session_id),
        );
        if (batch.length === 0) break;
        for (const m of batch) {
          await this.audit.emit(
            {
              type: 'recording.delete',
              user: 'system',
              session_id: m.session_id,
              recording_user: m.user,
              kind: m.kind,
              started: m.started,
              reason: `recordings.retention ${formatDuration(recMs)}`,
              message: `retention deletes recording ${m.session_id} of ${m.user} (ended ${m.ended})`,
            },
            { precondition: true },
          );
          await this.recordings.delete(m.session_id);
          out.recordings.push(m.session_id);
        }
      }
    }
    return out;
  }

  /**
   * Serve a socket accepted by someone else's net.Server. Works without
   * listen(): the first socket waits for ready() (adapters registered, TLS
   * certificate issued). A failure there ends that socket only.
   */
  handle(socket: Socket): void {
    if (this.#readyDone) {
      this.#listener.handle(socket);
      return;
    }
    // Until the listener owns it, an error on the socket is ours to catch.
    const early = (err: Error) => this.log('debug', 'a socket handed to handle() failed before routing', err);
    socket.on('error', early);
    this.ready().then(
      () => {
        socket.off('error', early);
        this.#listener.handle(socket);
      },
      (err: unknown) => {
        this.log('error', 'the gateway could not get ready for a socket handed to handle()', err);
        socket.destroy();
      },
    );
  }

  /** Waits for adapters to register and the listener's TLS certificate; listen() and handle() call it. */
  ready(): Promise<void> {
    this.#ready ??= this.#prepare().then(
      () => {
        this.#readyDone = true;
      },
      (err: unknown) => {
        // A later call tries again (e.g. the backend was briefly unavailable).
        this.#ready = undefined;
        throw err;
      },
    );
    return this.#ready;
  }

  async #prepare(): Promise<void> {
    if (this.#closed) throw new GatehouseError('GH_ERR_INTERNAL', 'the gateway is closed');
    await Promise.all(this.#registering);
    await this.#closeOrphans();
    this.#watchAccess();
    this.#watchCas();
    // A gateway restarted mid-rotation resumes it: an automatic step that fell due while it was down runs now.
    // A step that fails (audit down) leaves the phase as it is, which is safe: the gateway starts and retries.
    await this.#advanceRotations().catch((err: unknown) => this.#rotationFailed(err));
    await this.requests.start();
    if (!this.#secureContext) await this.#renewServerCert();
  }

  /**
   * CA rotation (docs/decisions/0035-ca-rotation.md): a step taken here, by
   * another gateway on the backend or by `gatehouse ca rotate --data-dir`
   * reaches this process through the watch on `cas/`; the listener's TLS
   * certificate (host CA) and its client-certificate trust (user CA) are
   * renewed at once, open connections keep theirs.
   */
  #watchCas(): void {
    if (this.#unwatchCas || this.#closed || !this.#accessWatch) return;
    this.#unwatchCas = this.authorities.onChange((name) => {
      if (name === 'host' && this.registry.self) {
        this.peerChannel
          .renewCertificate()
          .catch((err: unknown) =>
            this.log('error', 'renewing the peer channel certificate after a CA rotation step failed', err),
          );
      }
      if (this.#secureContext && (name === 'host' || name === 'user')) {
        this.#renewServerCert().catch((err: unknown) =>
          this.log('error', 'renewing the listener certificate after a CA rotation step failed', err),
        );
      }
      this.#scheduleRotation();
    });
    const reload = () => {
      this.authorities.reload().catch((err: unknown) => this.log('error', 'reloading the CAs failed', err));
    };
    this.#watchPrefix('cas/', this.#accessWatch.signal, reload, reload);
  }

  async #advanceRotations(): Promise<void> {
    await this.authorities.advanceDue();
    this.#scheduleRotation();
  }

  /** Arms a timer for the next automatic rotation step, if a CA is rotating in automatic mode. */
  #scheduleRotation(): void {
    clearTimeout(this.#rotationTimer);
    const due = this.authorities.nextDue();
    if (due === undefined || this.#closed) return;
    // Timers hold at most ~24.8 days; a longer wait re-arms when it fires.
    const wait = Math.min(Math.max(due - this.clock.now().getTime(), 1000), 2 ** 31 - 1);
    this.#rotationTimer = setTimeout(() => {
      this.#advanceRotations().catch((err: unknown) => this.#rotationFailed(err));
    }, wait);
    this.#rotationTimer.unref();
  }

  #rotationFailed(err: unknown): void {
    this.log('error', 'an automatic CA rotation step failed; retrying in a minute', err);
    clearTimeout(this.#rotationTimer);
    if (this.#closed) return;
    this.#rotationTimer = setTimeout(() => this.#scheduleRotation(), 60_000);
    this.#rotationTimer.unref();
  }

  /**
   * A gateway that was killed mid-session (kill -9, a crash) left sessions
   * open in the record and recordings that look live forever. The next start
   * ends them: recordings get their end, each session its end event, with
   * the reason gateway_restart.
   */
  async #closeOrphans(): Promise<void> {
    if (this.#orphansClosed) return;
    const finalized = (await this.recordings.recover?.(GATEWAY_RESTART)) ?? [];
    // An SSH connection's later recordings are <session id>.<n>.
    const recorded = new Set(finalized.map((id) => id.replace(/\.\d+$/, '')));
    const n = await this.audit.closeOrphanedSessions({ reason: GATEWAY_RESTART, recorded });
    if (n > 0 || finalized.length > 0) {
      this.log(
        'debug',
        `ended ${n} sessions and ${finalized.length} recordings left open by a stopped gateway`,
      );
    }
    this.#orphansClosed = true;
  }

  /**
   * Changes that take access away must reach what is open within a second,
   * whether this process or another sharing the backend made them:
   * - a new lock: every live session and terminal socket re-checks its principal;
   * - a web session deleted (logout, user deleted, expiry): terminal sockets
   *   opened with a session cookie check that theirs still exists.
   * A watch that fails restarts, and what it guards re-checks then too, in
   * case a change was missed.
   */
  #watchAccess(): void {
    if (this.#accessWatch || this.#closed) return;
    const ac = new AbortController();
    this.#accessWatch = ac;
    const everything = () => {
      this.liveSessions.recheck();
      this.#terminalSockets.recheckAll();
    };
    // A lock (on a user or a role) and a role change may reach any session.
    this.#watchPrefix('locks/', ac.signal, everything, everything);
    this.#watchPrefix('roles/', ac.signal, everything, everything);
    // A user deleted, re-created or changed (roles, traits): only that user's sessions.
    const onUserChange = (ev: WatchEvent) => {
      const key = ev.type === 'delete' ? ev.key : ev.item.key;
      const user = key.slice('users/'.length);
      this.liveSessions.recheck({ user });
      this.#terminalSockets.recheckAll();
    };
    this.#watchPrefix('users/', ac.signal, onUserChange, everything);
    const sockets = () => this.#terminalSockets.recheckAll();
    const onSessionChange = (ev: WatchEvent) => {
      // A new web session takes nothing away; only a deleted one ends sockets.
      if (ev.type === 'delete') sockets();
    };
    this.#watchPrefix(WEB_SESSIONS_PREFIX, ac.signal, onSessionChange, sockets);
    // An access request denied, dropped or expired (here or by another gateway):
    // its requester's sessions re-check (like a lock), and its expiry is armed here too.
    const onRequestChange = (ev: WatchEvent) => {
      if (ev.type === 'delete') {
        everything();
        return;
      }
      let user: string | undefined;
      try {
        const r = JSON.parse(ev.item.value) as AccessRequestView;
        user = typeof r.user === 'string' ? r.user : undefined;
        if (user) this.requests.track(r);
      } catch (err) {
        this.log('error', `unreadable access request ${ev.item.key}; re-checking every session`, err);
      }
      if (user === undefined) everything();
      else {
        this.liveSessions.recheck({ user });
        this.#terminalSockets.recheckAll();
      }
    };
    this.#watchPrefix(ACCESS_REQUESTS_PREFIX, ac.signal, onRequestChange, everything);
  }

  #watchPrefix(
    prefix: string,
    signal: AbortSignal,
    onChange: (ev: WatchEvent) => void,
    onRestart: () => void,
  ): void {
    watchPrefix(this.backend, prefix, signal, onChange, onRestart, this.log);
  }

  /** The HTTP API as a request handler, to mount in an existing Node HTTP app. */
  httpHandler(): (req: IncomingMessage, res: ServerResponse) => void {
    return this.#api;
  }

  /**
   * First start: creates the `admin` user (roles admin + access, login = the
   * OS user running the daemon) and returns its invite. While no user has a
   * password yet, each call returns a fresh invite for it (the old one stops
   * working), except with `keepPending` while an earlier invite can still be
   * accepted (then undefined; `pendingAdminInvite` says whose and until when).
   * Gateways on a shared backend keep it, so that starting gateway B does not
   * cancel the invite gateway A printed.
   */
  async bootstrapAdmin(name = 'admin', opts: { keepPending?: boolean } = {}): Promise<TokenView | undefined> {
    const users = await this.users.list();
    if (users.some((u) => u.passwordHash)) return undefined;
    if (users.length === 0) {
      const { token } = await this.admin.createUser({
        name,
        roles: ['admin', 'access'],
        traits: { logins: [safeUsername()] },
      });
      return token;
    }
    const admin = users.find((u) => u.roles.includes('admin'));
    if (!admin || (opts.keepPending && (await this.users.tokens.pendingOf(admin.name)))) return undefined;
    return this.admin.resetUser(admin.name).then((t) => ({ ...t, kind: 'invite' as const }));
  }

  /** The first admin's invite that can still be accepted, while no user has a password yet. */
  async pendingAdminInvite(): Promise<{ user: string; expires: string } | undefined> {
    const users = await this.users.list();
    if (users.some((u) => u.passwordHash)) return undefined;
    const admin = users.find((u) => u.roles.includes('admin'));
    const open = admin ? await this.users.tokens.pendingOf(admin.name) : undefined;
    return admin && open ? { user: admin.name, expires: open.expires } : undefined;
  }

  async #renewServerCert(): Promise<void> {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const names = serverNames(this.config);
    const now = this.clock.now();
    const issued = await this.authorities.issueX509ServerCert({
      publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
      commonName: names.dns[0] ?? 'localhost',
      dnsNames: names.dns,
      ipAddresses: names.ips,
      notBefore: new Date(now.getTime() - 60_000),
      notAfter: new Date(now.getTime() + SERVER_CERT_TTL_MS),
    });
    this.#secureContext = tls.createSecureContext({
      key: privateKey.export({ type: 'pkcs8', format: 'pem' }),
      // The chain includes the host CA key that signed it, so `gatehouse login --ca-pin` can check it.
      cert: [issued.cert, issued.caCertPem ?? this.authorities.signingKey('host', 'server').x509CertPem].join(
        '\n',
      ),
      ca: this.authorities.get('user').map((k) => k.x509CertPem),
      minVersion: 'TLSv1.2',
      // Session resumption with client certificates needs a context id
      // (tls.Server sets one; our own TLSSocket wrapping must too).
      sessionIdContext: createHash('sha256')
        .update(`gatehouse:${this.config.clusterName}`)
        .digest('hex')
        .slice(0, 32),
    });
    clearTimeout(this.#renewTimer);
    this.#renewTimer = setTimeout(
      () => {
        this.#renewServerCert().catch((err: unknown) =>
          this.log('error', 'renewing the listener certificate failed', err),
        );
      },
      (SERVER_CERT_TTL_MS * 2) / 3,
    );
    this.#renewTimer.unref();
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#renewTimer);
    clearTimeout(this.#retentionTimer);
    clearTimeout(this.#rotationTimer);
    this.#unwatchCas?.();
    this.#accessWatch?.abort();
    this.requests.close();
    // The others stop listing (and forwarding to) this gateway now rather than when its record expires.
    if (this.#listening) {
      await this.registry
        .deregister()
        .catch((err: unknown) => this.log('error', 'removing this gateway from the registry failed', err));
    }
    // Every kind of session ends with the same reason, in its client's words, before the adapters close.
    this.liveSessions.shutdown();
    this.#terminalSockets.close();
    await this.peerChannel.close();
    await this.#listener.close();
    await this.metrics?.close();
    this.#http.close();
    this.#http.closeAllConnections();
    for (const a of this.#adapters.values()) await a.close?.();
    await this.recordings.close();
    if (this.#listening) {
      await this.audit
        .emit({ type: 'gateway.stop', user: 'system' })
        .catch((err: unknown) => this.log('error', 'audit of gateway.stop failed', err));
    }
    await this.audit.close();
    await this.backend.close();
  }
}

function safeUsername(): string {
  try {
    return os.userInfo().username;
  } catch {
    // Containers may run as a uid with no passwd entry.
    return String(process.getuid?.() ?? 'unknown');
  }
}

function serverNames(config: GatehouseConfig): { dns: string[]; ips: string[] } {
  const dns = new Set<string>();
  const ips = new Set<string>(['127.0.0.1', '::1']);
  const add = (n: string) => {
    if (!n || n === '0.0.0.0' || n === '::') return;
    if (net.isIP(n)) ips.add(n);
    else dns.add(n);
  };
  add(splitHostPort(config.publicAddr).host);
  add(config.listen.host);
  for (const n of config.tls.serverNames) add(n);
  // kubectl cannot set ALPN, so Kubernetes clusters are reached by SNI
  // <kube cluster>.kube.<cluster name>; one wildcard covers every kube cluster.
  dns.add(`*.kube.${config.clusterName}`);
  dns.add('localhost');
  dns.add(os.hostname());
  return { dns: [...dns], ips: [...ips] };
}

/** Builds a gateway: config, data dir, secrets key, backend, audit log, CAs. Does not listen. */
export async function createGateway(opts: CreateGatewayOptions = {}): Promise<Gateway> {
  const env = opts.env ?? process.env;
  const values: ConfigFile = { ...(opts.values ?? {}) };
  if (opts.clusterName) values.cluster_name = opts.clusterName;
  if (opts.dataDir) values.data_dir = opts.dataDir;
  if (opts.secondFactor) values.auth = { ...(values.auth ?? {}), second_factor: opts.secondFactor };
  let config = opts.config ?? (await loadConfig({ values, env }));
  // Read the sinks' secret and CA files before anything is opened: a wrong path fails here, cleanly.
  const exportSinks = [...(await resolveAuditSinks(config.audit.sinks)), ...(opts.auditSinks ?? [])];
  const clock = opts.clock ?? systemClock;
  await mkdir(config.dataDir, { recursive: true, mode: 0o700 });
  const sealer = new AesGcmSealer(await loadOrCreateSecretsKey({ dataDir: config.dataDir, env }));
  // The configured PostgreSQL (when no backend is passed in) holds the shared state and the audit index.
  const pgConnection =
    opts.backend === undefined && config.backend.type === 'postgres'
      ? await postgresConnection(config.backend, env)
      : undefined;
  const backend =
    typeof opts.backend === 'object'
      ? opts.backend
      : opts.backend === 'memory'
        ? new MemoryBackend({ clock })
        : await openConfiguredBackend(config, clock, channelLogger(config.clusterName), {
            pgConnection,
            backendWaitMs: opts.backendWaitMs,
          });
  try {
    await migrateSchema(backend, { where: describeBackend(backend, config.dataDir) });
  } catch (e) {
    // A backend the caller passed in stays theirs to close.
    if (typeof opts.backend !== 'object') await backend.close();
    throw e;
  }
  if (!config.clusterNameSet) {
    // No config named the cluster: an existing data dir keeps the name it was created with.
    const existing = await backend.get(caBackendKey('user'));
    const name = existing ? (JSON.parse(existing.value) as { clusterName?: unknown }).clusterName : undefined;
    if (typeof name === 'string' && name !== config.clusterName) config = { ...config, clusterName: name };
  }
  const auditDir = path.join(config.dataDir, 'audit');
  // Gateways sharing PostgreSQL share its audit index, so a search on any finds every gateway's
  // events; otherwise SQLite in the data dir, indexing on its own thread (the per-query path only
  // waits for the JSON-lines write).
  let index: GatewayAuditIndex;
  try {
    index = pgConnection
      ? await PostgresAuditIndex.open({ connection: pgConnection })
      : new SqliteAuditIndex({
          path: path.join(auditDir, 'index.db'),
          worker: opts.auditIndexThread ?? true,
        });
  } catch (e) {
    if (typeof opts.backend !== 'object') await backend.close();
    throw e;
  }
  // The record is hash-chained; its file heads are signed once the CA store has the audit key.
  const record = new JsonlFileSink({ dir: auditDir, maxBytes: config.audit.maxFileBytes, chain: true });
  const sinks: AuditSink[] = [record, index];
  if (config.audit.stdout) sinks.push(new StdoutSink());
  // Counters come from the audit events; gauges read the gateway (set below) when scraped.
  let gateway: Gateway | undefined;
  const metrics: GatewayMetrics | undefined = config.metrics
    ? new GatewayMetrics({
        liveSessions: () => gateway?.liveSessions.list() ?? [],
        auditBacklog: (): Record<string, number> => audit.backlog(),
        auditAvailable: (): boolean => audit.available(),
      })
    : undefined;
  if (metrics) sinks.push(metrics.sink());
  const spoolDir = path.join(auditDir, 'spool', opts.auditSpoolName ?? `process-${safeUsername()}`);
  // Export sinks keep their own bounded spools next to the log's (decision 0026-audit-sinks).
  const exportDir = path.join(spoolDir, 'export');
  for (const s of exportSinks) {
    try {
      sinks.push(isExportSinkConfig(s) ? createExportSink(s, exportDir) : s);
    } catch (cause) {
      await Promise.allSettled(sinks.map((k) => k.close?.()));
      throw new GatehouseError('GH_ERR_CONFIG_INVALID', `audit sink: ${(cause as Error).message}`, {
        cause,
        hint: 'fix the audit.sinks entry (or auditSinks option) named above',
      });
    }
  }
  const audit: AuditLog = new AuditLog({
    cluster: config.clusterName,
    sinks,
    index,
    spoolDir,
    // Sessions this process has open, so the next start can end them if it is killed.
    sessionJournal: path.join(spoolDir, 'open-sessions.jsonl'),
    clock: () => clock.now(),
    // The JSON-lines files are the record an action waits for; the search
    // index is derived from them and is written right after, off the
    // per-query path (search still reads its own writes). Metrics likewise.
    background: metrics ? [index.name, 'metrics'] : [index.name],
  });
  const authorities = new CertificateAuthorities({
    backend,
    sealer,
    clock,
    clusterName: config.clusterName,
    audit,
  });
  try {
    await authorities.init();
  } catch (e) {
    if (typeof opts.backend !== 'object') await backend.close();
    if (backend instanceof EtcdBackend && isUnsealFailure(e)) {
      // The usual cause on a shared backend: this gateway has a secrets key of its own.
      throw new GatehouseError(
        'GH_ERR_CONFIG_INVALID',
        `the CAs in the shared backend (${describeBackend(backend, config.dataDir)}) are sealed with another secrets key than this gateway's`,
        {
          hint: `Every gateway sharing a backend needs the same secrets key: set ${SECRETS_KEY_ENV} to the one the other gateways use (or copy their secrets.key into ${config.dataDir}).`,
          cause: e,
        },
      );
    }
    throw e;
  }
  record.setHeadSigner(authorities.auditSigner());
  const { databases, kubeClusters, desktops, nodes } = await configuredResources(config);
  const ssoConnectors: SsoConnector[] = [];
  for (const doc of config.ssoConnectors) {
    if (doc.kind === 'saml') {
      const sources = [doc.idp_metadata_url, doc.idp_metadata_file, doc.idp_metadata].filter(
        (v) => v !== undefined,
      );
      if (sources.length !== 1) {
        throw new GatehouseError(
          'GH_ERR_CONFIG_INVALID',
          `sso_connectors: ${doc.name} needs exactly one of idp_metadata_url, idp_metadata_file and idp_metadata`,
          { hint: "give the IdP's metadata URL, or a file that holds it" },
        );
      }
      let metadata = doc.idp_metadata;
      if (doc.idp_metadata_file !== undefined) {
        try {
          metadata = await readFile(doc.idp_metadata_file, 'utf8');
        } catch (cause) {
          throw new GatehouseError('GH_ERR_CONFIG_INVALID', `cannot read ${doc.idp_metadata_file}`, {
            cause,
            hint: 'check the path in sso_connectors[].idp_metadata_file',
          });
        }
      }
      ssoConnectors.push(connectorFromDoc({ ...doc, idp_metadata: metadata }, 'config'));
      continue;
    }
    if (doc.client_secret !== undefined && doc.client_secret_file !== undefined) {
      throw new GatehouseError(
        'GH_ERR_CONFIG_INVALID',
        `sso_connectors: ${doc.name} has both client_secret and client_secret_file`,
        { hint: 'keep client_secret_file and remove client_secret' },
      );
    }
    const secret =
      doc.client_secret_file !== undefined
        ? await readSecretFile(doc.client_secret_file, 'sso_connectors[].client_secret_file')
        : undefined;
    ssoConnectors.push(connectorFromDoc(doc, 'config', secret));
  }
  const recordingsDir = path.join(config.dataDir, 'recordings');
  // With PostgreSQL every gateway uploads its ended recordings there, so any gateway plays any
  // recording; the local files stay the record until the upload is done (decision 0038-shared-recordings).
  const recordings =
    opts.recordings ??
    (pgConnection
      ? await PostgresRecordingStore.open({
          dir: recordingsDir,
          connection: pgConnection,
          gateway: `${os.hostname()}:${config.dataDir}`,
        })
      : new FileRecordingStore({ dir: recordingsDir }));
  gateway = new Gateway({
    config,
    clock,
    backend,
    audit,
    ssoConnectors,
    authorities,
    sealer,
    databases,
    kubeClusters,
    desktops,
    nodes,
    ...(opts.dialer ? { dialer: opts.dialer } : {}),
    recordings,
    auditIndex: index,
    ...(metrics ? { metrics } : {}),
    ...(opts.webDir !== undefined ? { webDir: opts.webDir } : {}),
    log: channelLogger(config.clusterName),
  });
  return gateway;
}

/** The backend the config names (`backend:`), its files read; SQLite in the data dir by default. */
async function openConfiguredBackend(
  config: GatehouseConfig,
  clock: Clock,
  log: LogFn,
  pg: {
    pgConnection: Awaited<ReturnType<typeof postgresConnection>> | undefined;
    backendWaitMs: number | undefined;
  },
): Promise<Backend> {
  const b = config.backend;
  switch (b.type) {
    case 'sqlite':
      return openBackend({ type: 'sqlite', path: path.join(config.dataDir, 'gatehouse.db') }, clock);
    case 'postgres':
      if (!pg.pgConnection) throw new Error('the PostgreSQL connection was not resolved');
      return openPostgresBackend(pg.pgConnection, {
        clock,
        poolSize: b.poolSize,
        log,
        ...(pg.backendWaitMs !== undefined ? { waitMs: pg.backendWaitMs } : {}),
      });
    case 'etcd': {
      const spec: BackendSpec = {
        type: 'etcd',
        endpoints: b.endpoints,
        prefix: b.prefix,
        log,
        requestTimeoutMs: b.requestTimeoutMs,
        ...(b.startupTimeoutMs !== undefined ? { startupTimeoutMs: b.startupTimeoutMs } : {}),
      };
      if (b.auth) {
        const password = await readSecretFile(b.auth.passwordFile, 'backend.auth.password_file');
        spec.auth = { username: b.auth.username, password };
      }
      if (b.tls) {
        spec.tls = {
          caPem: await readBackendFile(b.tls.caFile, 'backend.tls.ca_file'),
          ...(b.tls.certFile
            ? { certPem: await readBackendFile(b.tls.certFile, 'backend.tls.cert_file') }
            : {}),
          ...(b.tls.keyFile ? { keyPem: await readBackendFile(b.tls.keyFile, 'backend.tls.key_file') } : {}),
        };
      }
      return openBackend(spec, clock);
    }
    default: {
      const _: never = b;
      throw new GatehouseError('GH_ERR_CONFIG_INVALID', `unknown backend ${JSON.stringify(_)}`, {
        hint: 'Set backend.type to sqlite, postgres or etcd.',
      });
    }
  }
}

async function readBackendFile(file: string, key: string): Promise<Buffer> {
  try {
    return await readFile(file);
  } catch (cause) {
    throw new GatehouseError('GH_ERR_CONFIG_INVALID', `cannot read ${file} (${key})`, {
      cause,
      hint: `Check the path in ${key}.`,
    });
  }
}

/** How messages about the store name it (schema upgrades). */
function describeBackend(backend: Backend, dataDir: string): string {
  if (backend instanceof EtcdBackend) return `etcd ${backend.endpoints.join(',')} prefix ${backend.prefix}`;
  if (backend instanceof PostgresBackend) return `the PostgreSQL backend ${backend.where}`;
  return dataDir;
}

/** What the config file declares (databases, Kubernetes clusters, desktops, nodes), with their files read. */
async function configuredResources(config: GatehouseConfig): Promise<ConfiguredResources> {
  const databases: DatabaseSpec[] = [];
  for (const d of config.databases) {
    databases.push({
      name: d.name,
      protocol: d.protocol,
      uri: d.uri,
      labels: d.labels,
      ...(d.caFile ? { caPem: await readCaFile(d.caFile) } : {}),
      ...(d.serverName ? { serverName: d.serverName } : {}),
      ...(d.description ? { description: d.description } : {}),
    });
  }
  const kubeClusters: KubeClusterSpec[] = [];
  for (const k of config.kubeClusters) {
    kubeClusters.push({
      name: k.name,
      labels: k.labels,
      ...(k.kubeconfig ? { kubeconfig: await readKubeconfigFile(k.kubeconfig) } : {}),
      ...(k.context ? { context: k.context } : {}),
      ...(k.inCluster ? { inCluster: true } : {}),
      ...(k.description ? { description: k.description } : {}),
    });
  }
  const desktops: DesktopSpec[] = [];
  for (const d of config.desktops) {
    desktops.push({
      name: d.name,
      addr: d.addr,
      labels: d.labels,
      ...(d.caFile ? { caPem: await readCaFile(d.caFile) } : {}),
      ...(d.tlsFingerprint ? { tlsFingerprint: d.tlsFingerprint } : {}),
      ...(d.serverName ? { serverName: d.serverName } : {}),
      ...(d.insecureSkipVerify ? { insecureSkipVerify: true } : {}),
      ...(d.credentials
        ? {
            credentials: await Promise.all(
              d.credentials.map(async (c) => ({
                login: c.login,
                password: await readPasswordFile(c.passwordFile),
                ...(c.domain ? { domain: c.domain } : {}),
              })),
            ),
          }
        : {}),
      ...(d.description ? { description: d.description } : {}),
    });
  }
  const nodes: NodeSpec[] = config.nodes.map((n) => ({
    name: n.name,
    addr: n.addr,
    labels: n.labels,
    ...(n.hostCaKeys ? { hostCaKeys: n.hostCaKeys } : {}),
    ...(n.description ? { description: n.description } : {}),
  }));
  return { databases, kubeClusters, desktops, nodes };
}

export type ReloadReport =
  | { ok: true; source: string; applied: string[]; restartRequired: string[] }
  | { ok: false; source: string; error: GatehouseError };

/** Keys reload() swaps in; every other changed key waits for a restart. */
const RELOADED_KEYS = new Set(['databases', 'nodes', 'kubeClusters', 'desktops', 'source', 'clusterNameSet']);

/** The config keys (as the file spells them) whose value differs and that reload() cannot apply. */
function restartRequired(running: GatehouseConfig, next: GatehouseConfig): string[] {
  const changed: string[] = [];
  for (const k of Object.keys({ ...running, ...next }) as (keyof GatehouseConfig)[]) {
    if (RELOADED_KEYS.has(k)) continue;
    // A config without cluster_name keeps the data dir's name (createGateway), so it changes nothing.
    if (k === 'clusterName' && !next.clusterNameSet) continue;
    if (JSON.stringify(running[k]) !== JSON.stringify(next[k])) {
      changed.push(k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`));
    }
  }
  return changed;
}

interface ConfiguredResources {
  databases: DatabaseSpec[];
  kubeClusters: KubeClusterSpec[];
  desktops: DesktopSpec[];
  nodes: NodeSpec[];
}

/**
 * The user CA certificates, parsed once per PEM: every client certificate is
 * checked against them, and parsing them again for each connection cost
 * ~40 us of the gateway's CPU per kube exec (issue 22). Keyed by the PEM
 * itself, so a rotated CA is a new entry; stale ones are dropped when the
 * map outgrows what any rotation keeps.
 */
const parsedCerts = new Map<string, X509Certificate>();
function parsedCert(pem: string): X509Certificate {
  let cert = parsedCerts.get(pem);
  if (!cert) {
    if (parsedCerts.size >= 16) parsedCerts.clear();
    cert = new X509Certificate(pem);
    parsedCerts.set(pem, cert);
  }
  return cert;
}
