import type { RecordingMeta } from '@gatehouse/audit';
import type { ConnectionContext, Principal } from '../authz/authorizer.js';
import { toGatehouseError } from '../errors.js';
import type { ResourceKind, Verb } from '../rbac/types.js';
import type { AccessRequestService } from '../requests/service.js';
import type { AccessRequestChange, AccessRequestView } from '../requests/types.js';
import type { AdminApi, AdminPermissions } from './types.js';

/**
 * Permission each admin call needs (resource, verb). The exceptions, all in
 * authorizedAdmin below: lists of databases, Kubernetes clusters, nodes and desktops
 * show a caller without the list rule what their roles reach; recordings and
 * live sessions show them their own; a recording's owner may read it;
 * putRole with `create` needs role:create.
 */
export const ADMIN_PERMISSIONS = {
  listUsers: ['user', 'list'],
  getUser: ['user', 'read'],
  createUser: ['user', 'create'],
  updateUser: ['user', 'update'],
  deleteUser: ['user', 'delete'],
  resetUser: ['user', 'update'],
  lockUser: ['lock', 'create'],
  unlockUser: ['lock', 'delete'],
  listRoles: ['role', 'list'],
  getRole: ['role', 'read'],
  putRole: ['role', 'update'],
  deleteRole: ['role', 'delete'],
  lintRole: ['role', 'read'],
  listLocks: ['lock', 'list'],
  createLock: ['lock', 'create'],
  deleteLock: ['lock', 'delete'],
  searchAudit: ['audit', 'list'],
  verifyAudit: ['audit', 'read'],
  listDatabases: ['db', 'list'],
  addDatabase: ['db', 'create'],
  removeDatabase: ['db', 'delete'],
  createJoinToken: ['token', 'create'],
  listRecordings: ['recording', 'list'],
  getRecording: ['recording', 'read'],
  readRecording: ['recording', 'read'],
  deleteRecording: ['recording', 'delete'],
  listKubeClusters: ['kube_cluster', 'list'],
  addKubeCluster: ['kube_cluster', 'create'],
  removeKubeCluster: ['kube_cluster', 'delete'],
  listNodes: ['node', 'list'],
  addNode: ['node', 'create'],
  removeNode: ['node', 'delete'],
  // Whoever holds a node's host certificate can pose as the node: as strong as changing it.
  signNodeHostCert: ['node', 'update'],
  listDesktops: ['desktop', 'list'],
  addDesktop: ['desktop', 'create'],
  removeDesktop: ['desktop', 'delete'],
  listSsoConnectors: ['auth_connector', 'list'],
  putSsoConnector: ['auth_connector', 'update'],
  removeSsoConnector: ['auth_connector', 'delete'],
  testSsoConnector: ['auth_connector', 'read'],
  // The CAs are the cluster's root of trust: reading their state is cluster:read, a rotation step cluster:update.
  caStatus: ['cluster', 'read'],
  rotateCa: ['cluster', 'update'],
  listSessions: ['session', 'list'],
  killSession: ['session', 'delete'],
  // For access requests these rules are the admin's view of all of them; a
  // user asks, sees, reviews and drops their own or reviewable ones by
  // their roles' request/review_requests (decided in core's AccessRequestService).
  listAccessRequests: ['access_request', 'list'],
  getAccessRequest: ['access_request', 'read'],
  createAccessRequest: ['access_request', 'create'],
  reviewAccessRequest: ['access_request', 'update'],
  dropAccessRequest: ['access_request', 'delete'],
} as const satisfies Record<keyof AdminApi, readonly [ResourceKind, Verb]>;

/**
 * What the caller's roles grant, call by call, decided by the same rules
 * authorizedAdmin checks (so the web UI's menus cannot drift from what the
 * API allows). Reading it denies nothing and audits nothing.
 */
export function adminPermissions(p: Principal): AdminPermissions {
  const may = ([resource, verb]: readonly [ResourceKind, Verb]) =>
    p.checker.checkRule(resource, verb).allowed;
  const out = { createRole: may(['role', 'create']) } as AdminPermissions;
  for (const [call, rule] of Object.entries(ADMIN_PERMISSIONS)) {
    out[call as keyof typeof ADMIN_PERMISSIONS] = may(rule);
  }
  return out;
}

export interface AuthorizedAdminDeps {
  /** Audits a denial (`access.denied`) and throws GH_ERR_ACCESS_DENIED; an Authorizer fits. */
  authorizer: {
    checkRule(p: Principal, resource: ResourceKind, verb: Verb, ctx?: ConnectionContext): Promise<void>;
  };
  /** The unchecked admin API acting as `actor` (the caller's name lands in every audit event). */
  admin: (actor: string) => AdminApi;
  /** Access requests: asking and reviewing are decided there, by the caller's roles. */
  requests: AccessRequestService;
}

/**
 * Who calls: a principal checked once (one HTTP request), or a function that
 * checks it again on every call (an embedder's long-lived handle, so a lock,
 * a deleted user or a removed role takes effect at once).
 */
export type AdminCaller = Principal | (() => Promise<Principal>);

type Args<K extends keyof AdminApi> = Parameters<AdminApi[K]>;
type Result<K extends keyof AdminApi> = Awaited<ReturnType<AdminApi[K]>>;

/**
 * The admin API as a user may use it, like Teleport's ServerWithRoles: every
 * permission check and visibility decision of an admin call is made here,
 * and only here, before the unchecked local admin API runs it as the caller.
 * The HTTP API and embedders (`gw.authorizedAdmin`) both go through it, so
 * they cannot answer differently. Denials are audited by the Authorizer.
 */
export function authorizedAdmin(
  d: AuthorizedAdminDeps,
  who: AdminCaller,
  ctx: ConnectionContext = {},
): AdminApi {
  const principal = typeof who === 'function' ? who : async () => who;
  const may = (p: Principal, resource: ResourceKind, verb: Verb) =>
    p.checker.checkRule(resource, verb).allowed;
  const require = (p: Principal, [resource, verb]: readonly [ResourceKind, Verb]) =>
    d.authorizer.checkRule(p, resource, verb, ctx);
  const run = <K extends keyof AdminApi>(p: Principal, name: K, args: Args<K>): Promise<Result<K>> =>
    (d.admin(p.user.name)[name] as (...a: Args<K>) => Promise<Result<K>>)(...args);

  /** The plain case: the call's rule, then the call. */
  const ruled =
    <K extends keyof AdminApi>(name: K) =>
    async (...args: Args<K>): Promise<Result<K>> => {
      const p = await principal();
      await require(p, ADMIN_PERMISSIONS[name]);
      return run(p, name, args);
    };

  /** A recording its owner may read without recording:read; a missing one is nobody's (the rule then denies). */
  const ownRecording =
    <K extends 'getRecording' | 'readRecording'>(name: K) =>
    async (...args: Args<K>): Promise<Result<K>> => {
      const p = await principal();
      if (may(p, 'recording', 'read') || !(await owns(run(p, 'getRecording', [args[0]]), p.user.name))) {
        await require(p, ADMIN_PERMISSIONS[name]);
      }
      return run(p, name, args);
    };

  return {
    listUsers: ruled('listUsers'),
    getUser: ruled('getUser'),
    createUser: ruled('createUser'),
    updateUser: ruled('updateUser'),
    deleteUser: ruled('deleteUser'),
    resetUser: ruled('resetUser'),
    lockUser: ruled('lockUser'),
    unlockUser: ruled('unlockUser'),
    listRoles: ruled('listRoles'),
    getRole: ruled('getRole'),
    async putRole(text, opts) {
      const p = await principal();
      // Creating (and failing if the role exists) is its own permission; replacing is an update.
      await require(p, opts?.create ? ['role', 'create'] : ADMIN_PERMISSIONS.putRole);
      return run(p, 'putRole', [text, opts]);
    },
    deleteRole: ruled('deleteRole'),
    lintRole: ruled('lintRole'),
    listLocks: ruled('listLocks'),
    createLock: ruled('createLock'),
    deleteLock: ruled('deleteLock'),
    searchAudit: ruled('searchAudit'),
    verifyAudit: ruled('verifyAudit'),
    async listDatabases() {
      const p = await principal();
      if (may(p, 'db', 'list')) return run(p, 'listDatabases', []);
      // Everyone may list what they can reach, with what their roles allow there.
      return (await run(p, 'listDatabases', [])).flatMap((db) => {
        const seen = p.checker.databaseVisibility(db);
        return seen.visible ? [{ ...db, allowed: { db_users: seen.dbUsers, db_names: seen.dbNames } }] : [];
      });
    },
    addDatabase: ruled('addDatabase'),
    removeDatabase: ruled('removeDatabase'),
    createJoinToken: ruled('createJoinToken'),
    async listRecordings(q) {
      const p = await principal();
      if (may(p, 'recording', 'list')) return run(p, 'listRecordings', [q]);
      return run(p, 'listRecordings', [{ ...q, user: p.user.name }]);
    },
    getRecording: ownRecording('getRecording'),
    readRecording: ownRecording('readRecording'),
    // Owners get no exception here: evidence is removed by whoever the roles allow, never by its subject.
    deleteRecording: ruled('deleteRecording'),
    async listKubeClusters() {
      const p = await principal();
      if (may(p, 'kube_cluster', 'list')) return run(p, 'listKubeClusters', []);
      return (await run(p, 'listKubeClusters', [])).flatMap((k) => {
        const seen = p.checker.kubeVisibility(k);
        return seen.visible
          ? [{ ...k, allowed: { kube_users: seen.kubeUsers, kube_groups: seen.kubeGroups } }]
          : [];
      });
    },
    addKubeCluster: ruled('addKubeCluster'),
    removeKubeCluster: ruled('removeKubeCluster'),
    async listNodes() {
      const p = await principal();
      if (may(p, 'node', 'list')) return run(p, 'listNodes', []);
      return (await run(p, 'listNodes', [])).flatMap((n) => {
        const seen = p.checker.nodeVisibility(n);
        return seen.visible ? [{ ...n, allowed: { logins: seen.logins } }] : [];
      });
    },
    addNode: ruled('addNode'),
    removeNode: ruled('removeNode'),
    signNodeHostCert: ruled('signNodeHostCert'),
    async listDesktops() {
      const p = await principal();
      if (may(p, 'desktop', 'list')) return run(p, 'listDesktops', []);
      return (await run(p, 'listDesktops', [])).flatMap((dt) => {
        const seen = p.checker.desktopVisibility(dt);
        return seen.visible ? [{ ...dt, allowed: { logins: seen.logins } }] : [];
      });
    },
    addDesktop: ruled('addDesktop'),
    removeDesktop: ruled('removeDesktop'),
    listSsoConnectors: ruled('listSsoConnectors'),
    putSsoConnector: ruled('putSsoConnector'),
    removeSsoConnector: ruled('removeSsoConnector'),
    testSsoConnector: ruled('testSsoConnector'),
    caStatus: ruled('caStatus'),
    rotateCa: ruled('rotateCa'),
    async listSessions() {
      const p = await principal();
      if (may(p, 'session', 'list')) return run(p, 'listSessions', []);
      const all = await run(p, 'listSessions', []);
      return { ...all, sessions: all.sessions.filter((s) => s.user === p.user.name) };
    },
    killSession: ruled('killSession'),
    async listAccessRequests() {
      const p = await principal();
      const all = await d.requests.list();
      if (may(p, 'access_request', 'list')) return all;
      const seen = await Promise.all(all.map((r) => sees(d.requests, p, r)));
      return all.filter((_, i) => seen[i]);
    },
    async getAccessRequest(id) {
      const p = await principal();
      const r = await d.requests.find(id);
      if (!r || !(await sees(d.requests, p, r))) await require(p, ADMIN_PERMISSIONS.getAccessRequest);
      return d.requests.get(id);
    },
    async createAccessRequest(req) {
      const p = await principal();
      // Users ask for themselves; asking for someone else is the operator's (local) power only.
      if (req.user !== undefined && req.user !== p.user.name) {
        await d.authorizer.checkRule(p, 'access_request', 'create', ctx);
        return d.requests.create(req.user, req, p.user.name);
      }
      return d.requests.create(p.user.name, req, p.user.name);
    },
    async reviewAccessRequest(id, req) {
      const p = await principal();
      return d.requests.review(
        { kind: 'user', name: p.user.name, roles: p.roles, traits: p.identity.traits },
        id,
        req,
      );
    },
    async dropAccessRequest(id, req) {
      const p = await principal();
      const r = await d.requests.find(id);
      if (!r || r.user !== p.user.name) await require(p, ADMIN_PERMISSIONS.dropAccessRequest);
      return d.requests.drop(p.user.name, id, req?.reason ?? '');
    },
  };
}

/**
 * The watch route's changes as `who` may see them: the requests
 * listAccessRequests would show them (all with access_request:list, else
 * their own and those they may review). `who` is checked again before each
 * change is told, so a bot user locked, deleted or whose certificate
 * expired stops hearing at once (the error ends the stream).
 */
export async function* watchAccessRequests(
  requests: Pick<AccessRequestService, 'watch' | 'reviewable'>,
  who: () => Promise<Principal>,
  after: number,
  signal: AbortSignal,
): AsyncGenerator<AccessRequestChange> {
  await who();
  for await (const change of requests.watch(after, signal)) {
    const p = await who();
    if (p.checker.checkRule('access_request', 'list').allowed || (await sees(requests, p, change.request)))
      yield change;
  }
}

/** Whether a user sees a request without access_request rules: their own, or one they may review. */
async function sees(
  requests: Pick<AccessRequestService, 'reviewable'>,
  p: Principal,
  r: AccessRequestView,
): Promise<boolean> {
  return (
    r.user === p.user.name || (await requests.reviewable({ roles: p.roles, traits: p.identity.traits }, r)).ok
  );
}

/** Whether `user` owns the recording; a missing one is not theirs. */
async function owns(meta: Promise<RecordingMeta>, user: string): Promise<boolean> {
  try {
    return (await meta).user === user;
  } catch (err) {
    if (toGatehouseError(err)?.code === 'GH_ERR_NOT_FOUND') return false;
    throw err;
  }
}
