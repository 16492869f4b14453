import {
  type AuditEmitter,
  exportRecording,
  type RecordingStore,
  type VerifyChainResult,
} from '@gatehouse/audit';
import type { DatabaseRegistry, DatabaseSpec } from '../databases/registry.js';
import type { DesktopListing, DesktopRegistry } from '../desktops/registry.js';
import { GatehouseError } from '../errors.js';
import type { LockService } from '../identity/locks.js';
import type { LockRecord, UserRecord } from '../identity/types.js';
import type { UserService } from '../identity/users.js';
import type { KubeClusterRegistry, KubeClusterSpec } from '../kube/registry.js';
import { issueNodeHostCert, type NodeHostCertDeps } from '../nodes/host-certs.js';
import type { JoinTokenStore } from '../nodes/join-tokens.js';
import type { NodeRegistry, NodeSpec } from '../nodes/registry.js';
import type { ClusterSessions } from '../peers/sessions.js';
import { CA_NAMES, type CertificateAuthorities, type RotateRequest } from '../pki/authority.js';
import { isRotationPhase, parseGrace, ROTATION_PHASES } from '../pki/rotation.js';
import type { CaName } from '../pki/types.js';
import { lintRole } from '../rbac/lint.js';
import type { RoleService } from '../rbac/roles.js';
import type { AccessRequestService } from '../requests/service.js';
import { connectorView, type SsoConnectorRegistry } from '../sso/connectors.js';
import type { SsoService } from '../sso/service.js';
import { parseDuration } from '../util/duration.js';
import { checkAuditQuery, checkRecordingQuery } from './queries.js';
import type {
  AdminApi,
  AuditPage,
  AuditQuery,
  CaRotateRequest,
  DatabaseView,
  DesktopView,
  KubeClusterView,
  LockView,
  NodeView,
  TokenView,
  UserView,
} from './types.js';

function caNameOf(type: unknown): CaName {
  if (typeof type === 'string' && (CA_NAMES as readonly string[]).includes(type)) return type as CaName;
  throw new GatehouseError('GH_ERR_VALIDATION', `unknown CA type "${String(type)}"`, {
    hint: `Rotate one of: ${CA_NAMES.join(', ')}.`,
  });
}

/** The rotation step a request asks for, checked (unknown phase or mode, bad grace: GH_ERR_VALIDATION). */
function rotateStep(req: CaRotateRequest): Omit<RotateRequest, 'actor'> {
  const out: Omit<RotateRequest, 'actor'> = {};
  if (req.phase !== undefined) {
    if (typeof req.phase !== 'string' || !isRotationPhase(req.phase)) {
      throw new GatehouseError('GH_ERR_VALIDATION', `unknown rotation phase "${String(req.phase)}"`, {
        hint: `Phases: ${ROTATION_PHASES.join(', ')}.`,
      });
    }
    out.phase = req.phase;
  }
  if (req.mode !== undefined) {
    if (req.mode !== 'auto' && req.mode !== 'manual') {
      throw new GatehouseError('GH_ERR_VALIDATION', `unknown rotation mode "${String(req.mode)}"`, {
        hint: 'Use auto (walk the phases over the grace period) or manual.',
      });
    }
    if (req.mode === 'auto' && out.phase !== undefined && out.phase !== 'init') {
      throw new GatehouseError('GH_ERR_VALIDATION', 'automatic mode starts a rotation; it takes no phase', {
        hint: 'Leave out --phase to start an automatic rotation, or set phases by hand with --manual.',
      });
    }
    out.mode = req.mode;
  }
  if (req.grace !== undefined) out.graceMs = parseGrace(String(req.grace));
  return out;
}

export function nodeView(n: NodeSpec): NodeView {
  return {
    name: n.name,
    addr: n.addr,
    labels: n.labels,
    ...(n.description ? { description: n.description } : {}),
    source: n.source ?? 'dynamic',
  };
}

export function databaseView(d: DatabaseSpec): DatabaseView {
  return {
    name: d.name,
    protocol: d.protocol,
    uri: d.uri,
    labels: d.labels,
    ...(d.description ? { description: d.description } : {}),
    source: d.source ?? 'dynamic',
  };
}

export function kubeClusterView(k: KubeClusterSpec): KubeClusterView {
  return {
    name: k.name,
    labels: k.labels,
    ...(k.context ? { context: k.context } : {}),
    ...(k.inCluster ? { in_cluster: true } : {}),
    ...(k.description ? { description: k.description } : {}),
    source: k.source ?? 'dynamic',
  };
}

export function desktopView(d: DesktopListing): DesktopView {
  return {
    name: d.name,
    addr: d.addr,
    labels: d.labels,
    ...(d.description ? { description: d.description } : {}),
    tls_verify: d.insecureSkipVerify ? 'skipped' : d.tlsFingerprint ? 'fingerprint' : 'ca',
    logins: d.logins,
    source: d.source ?? 'dynamic',
  };
}

function recordingNotFound(id: string): GatehouseError {
  return new GatehouseError('GH_ERR_NOT_FOUND', `no recording for session "${id}"`, {
    hint: 'list recordings with gatehouse recordings ls',
  });
}

export interface LocalAdminDeps {
  users: UserService;
  roles: RoleService;
  locks: LockService;
  audit: AuditEmitter & { search(q: AuditQuery): Promise<AuditPage> };
  /** Checks the audit record's hash chain (from `since`'s day when given). */
  verifyAudit: (since?: Date) => Promise<VerifyChainResult>;
  databases: DatabaseRegistry;
  recordings: RecordingStore;
  kubeClusters: KubeClusterRegistry;
  nodes: NodeRegistry;
  desktops: DesktopRegistry;
  /** SSO connectors and the login flows (`sso test` starts one). */
  sso: { connectors: SsoConnectorRegistry; service: SsoService };
  /** Live sessions of every gateway: this process's own and, over the peer channel, the others'. */
  clusterSessions: ClusterSessions;
  /** Ends a deleted user's browser sessions. */
  endSessions: (user: string) => Promise<unknown>;
  /** Node join tokens (`gatehouse tokens add --type node`). */
  joinTokens: JoinTokenStore;
  /** The command a node runs to join with a token. */
  joinCommand: (token: string) => string;
  /** The command a user runs to accept a token (needs the proxy address and CA pin). */
  acceptCommand: (token: string) => string;
  /** Host certificates for agentless nodes (nodes/host-certs.ts). */
  nodeHostCerts: Omit<NodeHostCertDeps, 'nodes'>;
  /** The cluster's CAs (rotation). */
  authorities: CertificateAuthorities;
  /** Access requests (core decides; the operator acts without role checks). */
  requests: AccessRequestService;
}

/**
 * The admin API over the services directly, with NO permission checks: what
 * `gatehouse users ...` runs on the server's own data dir (the operator,
 * like tctl on the auth server), and what the authorized admin API
 * (api/authorized.ts) delegates to once it has checked the caller. `actor`
 * lands in every audit event.
 */
export function createLocalAdmin(d: LocalAdminDeps, actor: string): AdminApi {
  const userView = (u: UserRecord, locks: readonly LockRecord[]): UserView => d.users.toView(u, locks);
  const mustGet = async (name: string): Promise<UserRecord> => {
    const u = await d.users.get(name);
    if (!u)
      throw new GatehouseError('GH_ERR_NOT_FOUND', `user "${name}" not found`, {
        hint: 'list users with gatehouse users ls',
      });
    return u;
  };
  const tokenView = (
    t: { token: string; expires: Date | string },
    kind: 'invite' | 'reset',
    user: string,
  ): TokenView => ({
    token: t.token,
    kind,
    user,
    expires: new Date(t.expires).toISOString(),
    command: d.acceptCommand(t.token),
  });
  const lockView = (l: LockRecord): LockView => ({ ...l });
  const ttlMs = (ttl: string | undefined) => (ttl ? parseDuration(ttl) : undefined);

  return {
    async listUsers() {
      const [users, locks] = await Promise.all([d.users.list(), d.locks.list()]);
      return users.map((u) => userView(u, locks));
    },
    async getUser(name) {
      return userView(await mustGet(name), await d.locks.list());
    },
    async createUser(req) {
      const { user, token } = await d.users.create(
        {
          name: req.name,
          roles: req.roles,
          traits: req.traits ?? {},
          ...(req.password ? { password: req.password } : {}),
        },
        actor,
      );
      return { user: userView(user, []), token: token ? tokenView(token, 'invite', user.name) : undefined };
    },
    async updateUser(name, req) {
      return userView(await d.users.update(name, req, actor), await d.locks.list());
    },
    async deleteUser(name) {
      await d.users.delete(name, actor);
      await d.endSessions(name);
    },
    async resetUser(name) {
      await mustGet(name);
      return tokenView(await d.users.createToken(name, 'reset', actor), 'reset', name);
    },
    async lockUser(name, req) {
      await mustGet(name);
      return lockView(
        await d.locks.create({ target: { user: name }, message: req.message, ttlMs: ttlMs(req.ttl) }, actor),
      );
    },
    async unlockUser(name) {
      const mine = (await d.locks.list()).filter((l) => 'user' in l.target && l.target.user === name);
      if (mine.length === 0) {
        throw new GatehouseError('GH_ERR_NOT_FOUND', `user "${name}" is not locked`, {
          hint: 'see locks with gatehouse locks ls',
        });
      }
      for (const l of mine) await d.locks.delete(l.id, actor);
      return mine.map(lockView);
    },
    listRoles: () => d.roles.list(),
    async getRole(name) {
      const r = await d.roles.get(name);
      if (!r)
        throw new GatehouseError('GH_ERR_NOT_FOUND', `role "${name}" not found`, {
          hint: 'list roles with gatehouse roles ls',
        });
      return r;
    },
    putRole: (text, opts) => d.roles.put(text, actor, opts ?? {}),
    deleteRole: (name) => d.roles.delete(name, actor),
    lintRole: async (text) => lintRole(text).messages,
    async listLocks() {
      return (await d.locks.list()).map(lockView);
    },
    async createLock(req) {
      return lockView(
        await d.locks.create({ target: req.target, message: req.message, ttlMs: ttlMs(req.ttl) }, actor),
      );
    },
    deleteLock: (id) => d.locks.delete(id, actor),
    searchAudit: async (q) => d.audit.search(checkAuditQuery(q)),
    async verifyAudit(q = {}) {
      let since: Date | undefined;
      if (q.since !== undefined) {
        since = new Date(q.since);
        if (Number.isNaN(since.getTime())) {
          throw new GatehouseError('GH_ERR_VALIDATION', `since: ${JSON.stringify(q.since)} is not a date`, {
            hint: 'give an ISO date or time, e.g. 2026-01-31 or 2026-01-31T12:00:00Z',
          });
        }
      }
      return d.verifyAudit(since);
    },
    async listDatabases() {
      return (await d.databases.list()).map(databaseView);
    },
    async addDatabase(req) {
      const spec = await d.databases.add(
        {
          name: req.name,
          protocol: req.protocol,
          uri: req.uri,
          labels: req.labels ?? {},
          ...(req.ca_pem ? { caPem: req.ca_pem } : {}),
          ...(req.server_name ? { serverName: req.server_name } : {}),
          ...(req.description ? { description: req.description } : {}),
        },
        actor,
      );
      return databaseView(spec);
    },
    removeDatabase: (name) => d.databases.remove(name, actor),
    async createJoinToken(req) {
      if (req?.kind !== 'node') {
        throw new GatehouseError('GH_ERR_VALIDATION', `unknown token type "${String(req?.kind)}"`, {
          hint: 'use --type node',
        });
      }
      const t = await d.joinTokens.create({ ttlMs: ttlMs(req.ttl), actor });
      return {
        token: t.token,
        kind: 'node',
        expires: t.expires.toISOString(),
        command: d.joinCommand(t.token),
      };
    },
    listRecordings: async (q = {}) => d.recordings.list(checkRecordingQuery(q)),
    async getRecording(id) {
      const meta = await d.recordings.get(id);
      if (!meta) throw recordingNotFound(id);
      return meta;
    },
    async deleteRecording(id, req) {
      const reason = typeof req?.reason === 'string' ? req.reason.trim() : '';
      if (reason === '') {
        throw new GatehouseError('GH_ERR_VALIDATION', 'deleting a recording needs a reason', {
          hint: 'say why, e.g. gatehouse recordings rm ID --reason "GDPR request #123"; it goes into the audit log',
        });
      }
      const meta = await d.recordings.get(id);
      if (!meta) throw recordingNotFound(id);
      if (meta.ended === undefined) {
        throw new GatehouseError('GH_ERR_CONFLICT', `recording "${id}" is still being written`, {
          hint: 'end the session first (gatehouse sessions kill), then remove its recording',
        });
      }
      // Recorded before anything is removed: a deletion that cannot be audited does not happen.
      await d.audit.emit(
        {
          type: 'recording.delete',
          user: actor,
          session_id: id,
          recording_user: meta.user,
          kind: meta.kind,
          started: meta.started,
          reason,
          message: `recording ${id} of ${meta.user} deleted: ${reason}`,
        },
        { precondition: true },
      );
      if (!(await d.recordings.delete(id))) throw recordingNotFound(id);
    },
    async readRecording(id, opts = {}) {
      const meta = await d.recordings.get(id);
      if (!meta) throw recordingNotFound(id);
      await d.recordings.assertReadable?.(id);
      const events = d.recordings.read(id, {
        follow: opts.follow ?? false,
        ...(opts.signal ? { signal: opts.signal } : {}),
      });
      return exportRecording(meta, events, opts.format ?? 'json');
    },
    async listKubeClusters() {
      return (await d.kubeClusters.list()).map(kubeClusterView);
    },
    async addKubeCluster(req) {
      const spec = await d.kubeClusters.add(
        {
          name: req.name,
          labels: req.labels ?? {},
          ...(req.kubeconfig !== undefined ? { kubeconfig: req.kubeconfig } : {}),
          ...(req.context ? { context: req.context } : {}),
          ...(req.in_cluster ? { inCluster: true } : {}),
          ...(req.description ? { description: req.description } : {}),
        },
        actor,
      );
      return kubeClusterView(spec);
    },
    removeKubeCluster: (name) => d.kubeClusters.remove(name, actor),
    async listNodes() {
      return (await d.nodes.list()).map(nodeView);
    },
    async addNode(req) {
      const spec = await d.nodes.add(
        {
          name: req.name,
          addr: req.addr,
          labels: req.labels ?? {},
          ...(req.host_ca_keys?.length ? { hostCaKeys: req.host_ca_keys } : {}),
          ...(req.description ? { description: req.description } : {}),
        },
        actor,
      );
      return nodeView(spec);
    },
    removeNode: (name) => d.nodes.remove(name, actor),
    signNodeHostCert: (req) => issueNodeHostCert({ ...d.nodeHostCerts, nodes: d.nodes, actor }, req),
    async listDesktops() {
      return (await d.desktops.list()).map(desktopView);
    },
    async addDesktop(req) {
      const spec = await d.desktops.add(
        {
          name: req.name,
          addr: req.addr,
          labels: req.labels ?? {},
          ...(req.ca_pem !== undefined ? { caPem: req.ca_pem } : {}),
          ...(req.tls_fingerprint !== undefined ? { tlsFingerprint: req.tls_fingerprint } : {}),
          ...(req.server_name ? { serverName: req.server_name } : {}),
          ...(req.insecure_skip_verify ? { insecureSkipVerify: true } : {}),
          ...(req.credentials?.length ? { credentials: req.credentials } : {}),
          ...(req.description ? { description: req.description } : {}),
        },
        actor,
      );
      return desktopView(spec);
    },
    removeDesktop: (name) => d.desktops.remove(name, actor),
    async listSsoConnectors() {
      return (await d.sso.connectors.list()).map(connectorView);
    },
    async putSsoConnector(req) {
      if (typeof req?.text !== 'string') {
        throw new GatehouseError('GH_ERR_VALIDATION', 'send the connector document as text', {
          hint: 'body: {"text": "<YAML>", "client_secret": "..."}',
        });
      }
      const secret = typeof req.client_secret === 'string' ? req.client_secret : undefined;
      const metadata = typeof req.idp_metadata === 'string' ? req.idp_metadata : undefined;
      const { connector, created } = await d.sso.connectors.put(req.text, secret, actor, metadata);
      return { connector: connectorView(connector), created };
    },
    removeSsoConnector: (name) => d.sso.connectors.remove(name, actor),
    testSsoConnector: (name, req) =>
      d.sso.service.startClient(
        {
          connector: name,
          redirect_url: String(req?.redirect_url ?? ''),
          client_challenge: String(req?.client_challenge ?? ''),
        },
        'test',
        {},
      ),
    async caStatus() {
      return d.authorities.status();
    },
    async rotateCa(req) {
      return d.authorities.rotate(caNameOf(req?.type), {
        ...rotateStep(req),
        actor,
      });
    },
    async listSessions() {
      return d.clusterSessions.list();
    },
    async killSession(id) {
      if (!(await d.clusterSessions.kill(id, actor))) {
        throw new GatehouseError('GH_ERR_NOT_FOUND', `no live session "${id}" on any gateway`, {
          hint: 'list live sessions with gatehouse sessions ls',
        });
      }
    },
    // The operator's power over access requests: every one is visible, and
    // a review counts as one review by the operator (thresholds still apply).
    listAccessRequests: () => d.requests.list(),
    getAccessRequest: (id) => d.requests.get(id),
    async createAccessRequest(req) {
      if (!req.user) {
        throw new GatehouseError('GH_ERR_VALIDATION', 'say whom the access request is for', {
          hint: 'users ask for themselves (gatehouse request create, logged in); the operator passes --user NAME',
        });
      }
      return d.requests.create(req.user, req, actor);
    },
    reviewAccessRequest: (id, req) => d.requests.review({ kind: 'operator', name: actor }, id, req),
    dropAccessRequest: (id, req) => d.requests.drop(actor, id, req?.reason ?? ''),
  };
}
