import type {
  AuditEvent,
  AuditQuery,
  RecordingFormat,
  RecordingMeta,
  RecordingQuery,
  VerifyChainResult,
} from '@gatehouse/audit';
import type { Traits } from '../identity/types.js';
import type { NodeHostCertRequest, NodeHostCertResponse } from '../nodes/host-certs.js';
import type { JoinTokenView } from '../nodes/join-tokens.js';
import type { CaStatus } from '../pki/authority.js';
import type { Role } from '../rbac/types.js';
import type { AccessRequestView, CreateAccessRequest, ReviewAccessRequest } from '../requests/types.js';
import type { LiveSessionInfo } from '../sessions/live.js';
import type { SsoConnectorView } from '../sso/connectors.js';
import type { SsoStartResponse } from '../sso/service.js';

/** A user as the API shows it: never the password hash or TOTP secret. */
export interface UserView {
  name: string;
  roles: string[];
  traits: Traits;
  hasPassword: boolean;
  hasTotp: boolean;
  /** Second-factor devices (TOTP apps, security keys, passkeys). */
  mfaDevices: number;
  locked: boolean;
  lockedBy?: string[] | undefined;
  createdAt: string;
  updatedAt: string;
  /** Users an SSO connector made: which one, and when what their last login granted ends. */
  sso?: { connector: string; expires: string } | undefined;
}

export interface TokenView {
  token: string;
  kind: 'invite' | 'reset';
  user: string;
  expires: string;
  /** The command a user runs to accept it. */
  command?: string | undefined;
}

export interface LockView {
  id: string;
  target: { user: string } | { role: string };
  message?: string | undefined;
  expires?: string | undefined;
  createdAt: string;
  createdBy: string;
}

/** A registered database as `gatehouse db ls` shows it. */
export interface DatabaseView {
  name: string;
  protocol: 'postgres' | 'mysql';
  uri: string;
  labels: Record<string, string>;
  description?: string | undefined;
  source: 'config' | 'dynamic';
  /** For a user listing: the database users and names their roles allow (patterns as written). */
  allowed?: { db_users: string[]; db_names: string[] } | undefined;
}

export interface AddDatabaseRequest {
  name: string;
  protocol: 'postgres' | 'mysql';
  uri: string;
  labels?: Record<string, string>;
  /** PEM of the CA that signed the database server's certificate. */
  ca_pem?: string;
  server_name?: string;
  description?: string;
}

/** A registered Kubernetes cluster as `gatehouse kube ls` shows it (never its credentials). */
export interface KubeClusterView {
  name: string;
  labels: Record<string, string>;
  context?: string | undefined;
  in_cluster?: boolean | undefined;
  description?: string | undefined;
  source: 'config' | 'dynamic';
  /** For a user listing: the Kubernetes users and groups their roles allow. */
  allowed?: { kube_users: string[]; kube_groups: string[] } | undefined;
}

export interface AddKubeClusterRequest {
  name: string;
  labels?: Record<string, string>;
  /** Kubeconfig YAML text with Gatehouse's upstream credentials (stored sealed). */
  kubeconfig?: string;
  context?: string;
  in_cluster?: boolean;
  description?: string;
}

/** A registered SSH node as `gatehouse ls` shows it. */
export interface NodeView {
  name: string;
  /** host:port of its SSH server. */
  addr: string;
  labels: Record<string, string>;
  description?: string | undefined;
  source: 'config' | 'dynamic';
  /** For a user listing: the logins their roles allow there (patterns as written). */
  allowed?: { logins: string[] } | undefined;
}

export interface AddNodeRequest {
  name: string;
  addr: string;
  labels?: Record<string, string>;
  /** Extra host CA public keys (OpenSSH lines) trusted for the node's host certificate. */
  host_ca_keys?: string[];
  description?: string;
}

/** A registered RDP desktop as `gatehouse desktops ls` shows it (never its credentials). */
export interface DesktopView {
  name: string;
  /** host:port of its RDP server. */
  addr: string;
  labels: Record<string, string>;
  description?: string | undefined;
  /** How its TLS certificate is trusted. */
  tls_verify: 'ca' | 'fingerprint' | 'skipped';
  /** Windows logins the gateway holds a credential for (the passwords are never shown). */
  logins: string[];
  source: 'config' | 'dynamic';
  /** For a user listing: the Windows logins their roles allow (patterns as written). */
  allowed?: { logins: string[] } | undefined;
}

export interface AddDesktopRequest {
  name: string;
  addr: string;
  labels?: Record<string, string>;
  /** PEM of the CA that signs the desktop's TLS certificate. */
  ca_pem?: string;
  /** SHA-256 fingerprint of the desktop's TLS certificate. */
  tls_fingerprint?: string;
  server_name?: string;
  insecure_skip_verify?: boolean;
  /** Windows accounts the gateway logs in with (stored sealed). */
  credentials?: { login: string; password: string; domain?: string }[];
  description?: string;
}

/** A live session on one of the cluster's gateways (`gatehouse sessions ls`); `gateway` names it. */
export type SessionView = LiveSessionInfo;

/**
 * `gatehouse sessions ls`: the live sessions of every gateway sharing the
 * backend, and the gateways that did not answer in time (their sessions are
 * missing: a partial listing, not a failure).
 */
export interface SessionListView {
  sessions: SessionView[];
  unreachable: { gateway: string; error: string }[];
}

export interface LintMessage {
  line: number;
  column: number;
  /** Dotted path, e.g. "allow.node_labels". */
  key: string;
  message: string;
  suggestion?: string | undefined;
  severity: 'error' | 'warning';
}

/** A search over the audit log (the audit package's query, as the API takes it). */
export type { AuditQuery };

export interface RecordingReadOptions {
  format?: RecordingFormat;
  follow?: boolean;
  signal?: AbortSignal;
}

export interface AuditPage {
  events: AuditEvent[];
  next_cursor?: string | undefined;
}

/**
 * Everything an admin can do. Implemented locally on a data dir without
 * checks (api/local.ts, like Teleport's tctl on the auth server), with the
 * caller's permissions (api/authorized.ts, which the HTTP server and
 * `gw.authorizedAdmin` use) and over HTTP (api/client.ts). The CLI only
 * talks to this interface.
 */
export interface AdminApi {
  listUsers(): Promise<UserView[]>;
  getUser(name: string): Promise<UserView>;
  createUser(req: {
    name: string;
    roles: string[];
    traits?: Traits;
    password?: string;
  }): Promise<{ user: UserView; token?: TokenView | undefined }>;
  updateUser(name: string, req: { roles?: string[]; traits?: Traits }): Promise<UserView>;
  deleteUser(name: string): Promise<void>;
  resetUser(name: string): Promise<TokenView>;
  lockUser(name: string, req: { message?: string; ttl?: string }): Promise<LockView>;
  unlockUser(name: string): Promise<LockView[]>;

  listRoles(): Promise<Role[]>;
  getRole(name: string): Promise<Role>;
  /** Create or replace from YAML (or JSON) text; throws GH_ERR_ROLE_INVALID with lint messages in details. */
  putRole(text: string, opts?: { create?: boolean }): Promise<{ role: Role; created: boolean }>;
  deleteRole(name: string): Promise<void>;
  lintRole(text: string): Promise<LintMessage[]>;

  listLocks(): Promise<LockView[]>;
  createLock(req: {
    target: { user: string } | { role: string };
    message?: string;
    ttl?: string;
  }): Promise<LockView>;
  deleteLock(id: string): Promise<void>;

  searchAudit(q: AuditQuery): Promise<AuditPage>;
  /**
   * Checks the hash chain of the audit record (decision 0029): every event
   * changed, removed or reordered, with its file, line and id. `since` (ISO
   * time) starts at that day's first file, trusting its signed head.
   */
  verifyAudit(q?: { since?: string }): Promise<VerifyChainResult>;

  /** Databases the caller may reach (all of them for an admin with db:list). */
  listDatabases(): Promise<DatabaseView[]>;
  addDatabase(req: AddDatabaseRequest): Promise<DatabaseView>;
  removeDatabase(name: string): Promise<void>;

  /** A one-time token a node service joins the cluster with (`gatehouse node start --token`). */
  createJoinToken(req: { kind: 'node'; ttl?: string }): Promise<JoinTokenView>;

  /** Session recordings, newest first (a user without recording:list sees their own). */
  listRecordings(q?: RecordingQuery): Promise<RecordingMeta[]>;
  /** One recording's metadata (its owner may read it without recording:read). */
  getRecording(sessionId: string): Promise<RecordingMeta>;
  /**
   * A recording as bytes: JSON lines (default), asciicast v2, or the output
   * text. With `follow`, a live recording streams until it ends.
   */
  readRecording(sessionId: string, opts?: RecordingReadOptions): Promise<AsyncIterable<Uint8Array>>;
  /** Deletes a finished recording for good; `reason` is required and audited (`recording.delete`). */
  deleteRecording(sessionId: string, req: { reason: string }): Promise<void>;

  /** Kubernetes clusters the caller may reach (all of them for an admin with kube_cluster:list). */
  listKubeClusters(): Promise<KubeClusterView[]>;
  addKubeCluster(req: AddKubeClusterRequest): Promise<KubeClusterView>;
  removeKubeCluster(name: string): Promise<void>;

  /** SSH nodes the caller may reach (all of them for an admin with node:list). */
  listNodes(): Promise<NodeView[]>;
  addNode(req: AddNodeRequest): Promise<NodeView>;
  removeNode(name: string): Promise<void>;
  /**
   * An SSH host certificate for a registered node's host key, naming only
   * what the node owns, plus what its sshd needs to trust Gatehouse
   * (`gatehouse nodes configure`, `gatehouse ca sign --host`).
   */
  signNodeHostCert(req: NodeHostCertRequest): Promise<NodeHostCertResponse>;

  /** RDP desktops the caller may reach (all of them for an admin with desktop:list). */
  listDesktops(): Promise<DesktopView[]>;
  addDesktop(req: AddDesktopRequest): Promise<DesktopView>;
  removeDesktop(name: string): Promise<void>;

  /** SSO connectors (never their client secrets). */
  listSsoConnectors(): Promise<SsoConnectorView[]>;
  /**
   * Create or replace a connector from its YAML (or JSON) document; the
   * secret file's content comes as `client_secret`, a SAML connector's
   * idp_metadata_file as `idp_metadata`. Throws GH_ERR_VALIDATION
   * with lint messages (line, column, key) in details.messages.
   */
  putSsoConnector(req: {
    text: string;
    client_secret?: string | undefined;
    idp_metadata?: string | undefined;
  }): Promise<{ connector: SsoConnectorView; created: boolean }>;
  removeSsoConnector(name: string): Promise<void>;
  /**
   * Starts a test login (`gatehouse sso test`): the browser signs in at the
   * provider, and the one-time code sent to `redirect_url` redeems a report
   * of the claims and the roles they map to. Nobody is logged in.
   */
  testSsoConnector(
    name: string,
    req: { redirect_url: string; client_challenge: string },
  ): Promise<SsoStartResponse>;

  /** Each CA's rotation phase and the fingerprints of its trusted keys (`gatehouse ca status`). */
  caStatus(): Promise<CaStatusView[]>;
  /**
   * One CA rotation step (`gatehouse ca rotate`): a phase (manual), or no
   * phase to start an automatic rotation that walks the phases over `grace`.
   * Throws GH_ERR_CA_ROTATION for a step that does not follow from the phase.
   */
  rotateCa(req: CaRotateRequest): Promise<CaStatusView>;

  /** Live sessions on every gateway of the cluster (a user without session:list sees their own). */
  listSessions(): Promise<SessionListView>;
  /** Ends a live session on whichever gateway runs it; its user sees why, and the end is audited. */
  killSession(id: string): Promise<void>;

  /**
   * Access requests (docs/decisions/0036-access-requests.md), newest first:
   * all of them with access_request:list, otherwise one's own and those one
   * may review.
   */
  listAccessRequests(): Promise<AccessRequestView[]>;
  getAccessRequest(id: string): Promise<AccessRequestView>;
  /** Asks for roles or resources for a while, as the caller's roles allow (`allow.request`). */
  createAccessRequest(req: CreateAccessRequest): Promise<AccessRequestView>;
  /** Approves or denies (`allow.review_requests`); never one's own request, once per reviewer. */
  reviewAccessRequest(id: string, req: ReviewAccessRequest): Promise<AccessRequestView>;
  /** Withdraws a pending or approved request (one's own, or any with access_request:delete); its sessions end. */
  dropAccessRequest(id: string, req?: { reason?: string | undefined }): Promise<AccessRequestView>;
}

/**
 * Which admin calls the caller's roles grant (`GET /v1/whoami`): true when
 * the call's rule (api/authorized.ts ADMIN_PERMISSIONS) allows it, plus
 * `createRole` (putRole with `create`). A hint for a UI deciding what to
 * show; core still checks every call. Calls that answer everyone filtered
 * (the lists of nodes, databases, Kubernetes clusters, recordings and live
 * sessions, one's own recordings) work even where this says false: false
 * there means "only what is yours or what your roles reach".
 */
export type AdminPermissions = Record<keyof AdminApi | 'createRole', boolean>;

/** POST /v1/ca/rotate */
export interface CaRotateRequest {
  /** user, host or db. */
  type: string;
  /** init, update_clients, update_servers, standby or rollback; absent: start an automatic rotation. */
  phase?: string | undefined;
  /** Default: auto without a phase, manual with one. */
  mode?: 'auto' | 'manual' | undefined;
  /** Automatic mode: how long the old key stays trusted, like 24h (default 24h). */
  grace?: string | undefined;
}

/** GET /v1/ca/status: one CA (pki/authority.ts CaStatus). */
export type CaStatusView = CaStatus;

/** One table for the HTTP client and server, so paths cannot drift. */
export const ADMIN_ROUTES = {
  listUsers: ['GET', '/v1/users'],
  getUser: ['GET', '/v1/users/:name'],
  createUser: ['POST', '/v1/users'],
  updateUser: ['PATCH', '/v1/users/:name'],
  deleteUser: ['DELETE', '/v1/users/:name'],
  resetUser: ['POST', '/v1/users/:name/reset'],
  lockUser: ['POST', '/v1/users/:name/lock'],
  unlockUser: ['POST', '/v1/users/:name/unlock'],
  listRoles: ['GET', '/v1/roles'],
  getRole: ['GET', '/v1/roles/:name'],
  putRole: ['PUT', '/v1/roles'],
  deleteRole: ['DELETE', '/v1/roles/:name'],
  lintRole: ['POST', '/v1/roles/lint'],
  listLocks: ['GET', '/v1/locks'],
  createLock: ['POST', '/v1/locks'],
  deleteLock: ['DELETE', '/v1/locks/:id'],
  searchAudit: ['GET', '/v1/audit/events'],
  verifyAudit: ['GET', '/v1/audit/verify'],
  listDatabases: ['GET', '/v1/databases'],
  addDatabase: ['POST', '/v1/databases'],
  removeDatabase: ['DELETE', '/v1/databases/:name'],
  createJoinToken: ['POST', '/v1/tokens'],
  listRecordings: ['GET', '/v1/recordings'],
  getRecording: ['GET', '/v1/recordings/:id'],
  readRecording: ['GET', '/v1/recordings/:id/events'],
  deleteRecording: ['POST', '/v1/recordings/:id/delete'],
  listKubeClusters: ['GET', '/v1/kube/clusters'],
  addKubeCluster: ['POST', '/v1/kube/clusters'],
  removeKubeCluster: ['DELETE', '/v1/kube/clusters/:name'],
  listNodes: ['GET', '/v1/nodes'],
  addNode: ['POST', '/v1/nodes'],
  removeNode: ['DELETE', '/v1/nodes/:name'],
  signNodeHostCert: ['POST', '/v1/nodes/:name/host-cert'],
  listDesktops: ['GET', '/v1/desktops'],
  addDesktop: ['POST', '/v1/desktops'],
  removeDesktop: ['DELETE', '/v1/desktops/:name'],
  listSsoConnectors: ['GET', '/v1/sso/connectors/all'],
  putSsoConnector: ['PUT', '/v1/sso/connectors'],
  removeSsoConnector: ['DELETE', '/v1/sso/connectors/:name'],
  testSsoConnector: ['POST', '/v1/sso/connectors/:name/test'],
  caStatus: ['GET', '/v1/ca/status'],
  rotateCa: ['POST', '/v1/ca/rotate'],
  listSessions: ['GET', '/v1/sessions'],
  killSession: ['DELETE', '/v1/sessions/:id'],
  listAccessRequests: ['GET', '/v1/requests'],
  getAccessRequest: ['GET', '/v1/requests/:id'],
  createAccessRequest: ['POST', '/v1/requests'],
  reviewAccessRequest: ['POST', '/v1/requests/:id/reviews'],
  dropAccessRequest: ['POST', '/v1/requests/:id/drop'],
} as const satisfies Record<keyof AdminApi, readonly [string, string]>;
