import type { X509Certificate } from 'node:crypto';
import type { AuditEmitter } from '@gatehouse/audit';
import type { Clock } from '../clock.js';
import { GatehouseError, toGatehouseError } from '../errors.js';
import type { Identity, LockRecord, Route, UserRecord } from '../identity/types.js';
import { sessionMfaRefusal } from '../mfa/target.js';
import { AccessChecker, type AccessDecision, type EffectiveOptions } from '../rbac/checker.js';
import type { JoinMode, ResourceKind, Role, Verb } from '../rbac/types.js';
import type { RequestGrant } from '../requests/service.js';
import type { LiveSessionInfo } from '../sessions/live.js';
import { type AccessTarget, type Grant, mintGrant } from './grant.js';

export interface AuthorizerDeps {
  clock: Clock;
  audit: AuditEmitter;
  /** Trusted user CA certificates (all active keys). */
  userCaCerts: () => X509Certificate[];
  decodeIdentity: (cert: X509Certificate) => Identity;
  getUser: (name: string) => Promise<UserRecord | undefined>;
  /** Throws for an unknown role name. */
  resolveRoles: (names: string[]) => Promise<Role[]>;
  findLocks: (q: { user: string; roles: string[] }) => Promise<LockRecord[]>;
  /**
   * What the approved access requests a certificate names grant now; throws
   * (GH_ERR_ACCESS_DENIED) when one is no longer approved. Absent: a
   * certificate naming requests is refused (fail closed).
   */
  requestGrants?: (identity: Identity) => Promise<RequestGrant[]>;
}

/** The result of checking who a caller is right now. */
export interface Principal {
  identity: Identity;
  user: UserRecord;
  roles: Role[];
  checker: AccessChecker;
  /**
   * Approved requests for named resources: their roles apply to those
   * resources only (with the standing roles' denies), never through `checker`.
   */
  scoped?: { resources: string[]; checker: AccessChecker }[] | undefined;
}

/** Why a live session must end (core decides; the adapter says it in its protocol's words). */
export interface Revocation {
  cause: 'expired' | 'locked' | 'user_deleted' | 'access_revoked' | 'killed' | 'guard' | 'gateway_shutdown';
  message: string;
  /** Who ended it, for a kill. */
  by?: string | undefined;
}

/** A re-check's answer: the session ends (a Revocation), or goes on with these options. */
export type RecheckResult = Revocation | { options: EffectiveOptions };

export interface ConnectionContext {
  remoteAddr?: string | undefined;
  /** Protocol name for messages and audit (ssh, postgres, mysql, kube, http). */
  protocol?: string | undefined;
}

/**
 * Every access decision in Gatehouse goes through here. It fails closed: a
 * backend error, a deleted user, a deleted role, a lock or an expired
 * certificate all deny.
 */
export class Authorizer {
  readonly #d: AuthorizerDeps;

  constructor(deps: AuthorizerDeps) {
    this.#d = deps;
  }

  /**
   * Verifies a client X.509 certificate against the user CA by itself (a
   * mounted httpHandler may sit behind a TLS server that trusts other CAs)
   * and returns the identity it carries.
   */
  identityFromCert(cert: X509Certificate): Identity {
    const now = this.#d.clock.now().getTime();
    const issuer = this.#d.userCaCerts().find((ca) => cert.checkIssued(ca) && cert.verify(ca.publicKey));
    if (!issuer) {
      throw new GatehouseError(
        'GH_ERR_CERT_INVALID',
        "client certificate is not signed by this cluster's user CA",
        {
          hint: 'log in again with gatehouse login --proxy HOST:PORT',
        },
      );
    }
    if (now < Date.parse(cert.validFrom) || now > Date.parse(cert.validTo)) {
      throw new GatehouseError(
        'GH_ERR_CERT_EXPIRED',
        `client certificate expired at ${new Date(cert.validTo).toISOString()}`,
        {
          hint: 'log in again with gatehouse login',
        },
      );
    }
    return this.#d.decodeIdentity(cert);
  }

  /**
   * Who the holder of `identity` is now: user still there, not locked, cert
   * not expired. A certificate carries the traits it was issued with; a web
   * session carries none (`traitsFromUser`), so they come from the user record.
   */
  async principal(
    identity: Identity,
    opts: { traitsFromUser?: boolean; established?: boolean } = {},
  ): Promise<Principal> {
    const now = this.#d.clock.now();
    // A per-session MFA certificate opens a session within its minute; the
    // session it opened then runs until the login it came from ends.
    const end =
      opts.established && identity.sessionMfa ? identity.sessionMfa.sessionExpires : identity.expires;
    if (end.getTime() <= now.getTime()) {
      throw new GatehouseError(
        'GH_ERR_CERT_EXPIRED',
        `certificate of ${identity.user} expired at ${end.toISOString()}`,
        {
          hint: 'log in again with gatehouse login',
        },
      );
    }
    const user = await this.#d.getUser(identity.user);
    if (!user) {
      throw new GatehouseError('GH_ERR_ACCESS_DENIED', `user "${identity.user}" no longer exists`, {
        hint: 'ask an admin to recreate the user',
        details: { reason: 'user deleted' },
      });
    }
    // Deleting a user revokes everything, even if the name is given to someone again later.
    if (identity.userId !== undefined && identity.userId !== user.id) {
      throw new GatehouseError(
        'GH_ERR_ACCESS_DENIED',
        `this certificate was issued to an earlier user named "${identity.user}", which was deleted`,
        { hint: 'log in again with gatehouse login', details: { reason: 'user re-created' } },
      );
    }
    // Roles: those in the certificate that the user still has. Removing a role
    // from a user takes effect at once; a role added later needs a new login.
    // Roles from access requests count while each request is still approved.
    const current = new Set(user.roles);
    const grants = identity.accessRequests?.length ? await this.#requestGrants(identity) : [];
    const requested = new Set(grants.filter((g) => !g.resources?.length).flatMap((g) => g.roles));
    const roleNames = identity.roles.filter((r) => current.has(r) || requested.has(r));
    const scopedRoles = grants.filter((g) => g.resources?.length).flatMap((g) => g.roles);
    const locks = await this.#d.findLocks({ user: identity.user, roles: [...roleNames, ...scopedRoles] });
    if (locks.length > 0) {
      const lock = locks[0]!;
      const target = 'user' in lock.target ? `user ${lock.target.user}` : `role ${lock.target.role}`;
      throw new GatehouseError(
        'GH_ERR_USER_LOCKED',
        `access locked (${target})${lock.message ? `: ${lock.message}` : ''}`,
        {
          hint: 'ask an admin to remove the lock (gatehouse locks ls / locks rm ID)',
          details: { lock_id: lock.id },
        },
      );
    }
    const roles = await this.#d.resolveRoles(roleNames);
    const id = opts.traitsFromUser ? { ...identity, traits: user.traits } : identity;
    const scoped: NonNullable<Principal['scoped']> = [];
    for (const g of grants) {
      if (!g.resources?.length) continue;
      const extra = await this.#d.resolveRoles(g.roles);
      scoped.push({
        resources: g.resources.map((r) => `${r.kind}/${r.name}`),
        checker: AccessChecker.from([...roles, ...extra], id.traits),
      });
    }
    return {
      identity: id,
      user,
      roles,
      checker: AccessChecker.from(roles, id.traits),
      ...(scoped.length ? { scoped } : {}),
    };
  }

  #requestGrants(identity: Identity): Promise<RequestGrant[]> {
    if (!this.#d.requestGrants) {
      throw new GatehouseError('GH_ERR_ACCESS_DENIED', 'this gateway cannot check access requests', {
        hint: 'log in again without --request-id',
      });
    }
    return this.#d.requestGrants(identity);
  }

  /** Admin API permission: throws GH_ERR_ACCESS_DENIED (audited) unless a role rule allows it. */
  async checkRule(
    p: Principal,
    resource: ResourceKind,
    verb: Verb,
    ctx: ConnectionContext = {},
  ): Promise<void> {
    const d = p.checker.checkRule(resource, verb);
    if (!d.allowed)
      await this.deny(p.identity, { kind: resource, name: verb }, d.reason, ctx, {
        role: d.role,
        field: d.field,
      });
  }

  /**
   * Joining a live session (`gatehouse join`, the web UI) in `mode`. The
   * owner may join their own session in any mode; anyone else needs a role
   * whose join_sessions allows the mode (a deny wins). Audits `session.join`
   * either way; a denial also audits `access.denied` and throws
   * GH_ERR_ACCESS_DENIED.
   */
  async authorizeJoin(
    p: Principal,
    session: LiveSessionInfo,
    mode: JoinMode,
    ctx: ConnectionContext = {},
  ): Promise<void> {
    const event = {
      type: 'session.join' as const,
      user: p.user.name,
      session_id: session.id,
      session_kind: session.kind,
      owner: session.user,
      server: session.server,
      mode,
      ...(ctx.remoteAddr ? { addr: { remote: ctx.remoteAddr } } : {}),
    };
    const d = session.user === p.user.name ? undefined : p.checker.checkJoin(mode);
    if (d && !d.allowed) {
      await this.#d.audit.emit({ ...event, success: false, error: d.reason });
      await this.deny(p.identity, { kind: 'session', name: session.id }, d.reason, ctx, {
        role: d.role,
        field: d.field,
      });
    }
    await this.#d.audit.emit({ ...event, success: true });
  }

  /**
   * The one entry point adapters call after reading the client's request and
   * before dialing anything. Returns a Grant or throws GH_ERR_ACCESS_DENIED /
   * GH_ERR_USER_LOCKED / GH_ERR_CERT_EXPIRED with a reason the adapter relays
   * in its own protocol. Every denial is audited.
   */
  async authorize(
    identity: Identity | undefined,
    target: AccessTarget,
    ctx: ConnectionContext = {},
  ): Promise<Grant> {
    if (!identity) {
      return this.deny(undefined, target, 'no Gatehouse client certificate was presented', ctx, {
        code: 'GH_ERR_UNAUTHENTICATED',
        field: 'unauthenticated',
      });
    }
    if (!this.#d.audit.available()) {
      // No audit, no access: while events cannot be written (a full or
      // read-only disk, or an export sink whose spool is full with policy
      // block) nothing new starts. The refusal is recorded as soon as the
      // disk takes it again.
      const why = this.#d.audit.unavailableReason?.() ?? {
        message: 'the gateway cannot write its audit log, so new sessions are refused',
        hint: 'ask an admin to free disk space on the gateway; it resumes by itself',
      };
      void this.#d.audit.record({
        type: 'access.denied',
        user: identity.user,
        resource_kind: target.kind,
        resource: target.name,
        reason: why.message,
        ...('login' in target && typeof target.login === 'string' ? { login: target.login } : {}),
        ...(ctx.remoteAddr ? { addr: { remote: ctx.remoteAddr } } : {}),
      });
      throw new GatehouseError('GH_ERR_AUDIT_UNAVAILABLE', why.message, { hint: why.hint });
    }
    let p: Principal;
    try {
      p = await this.principal(identity);
    } catch (err) {
      const msg = err instanceof Error ? err.message : String(err);
      await this.#audit(identity, target, msg, ctx);
      throw err instanceof GatehouseError
        ? err
        : new GatehouseError('GH_ERR_ACCESS_DENIED', 'access check failed', { cause: err });
    }
    const d = this.#decide(p, identity, target, ctx);
    if (!d.allowed) {
      return this.deny(identity, target, d.reason, ctx, {
        ...(d.role ? { role: d.role } : {}),
        ...(d.field ? { field: d.field } : {}),
        ...(d.hint ? { hint: d.hint } : {}),
        ...(d.code ? { code: d.code } : {}),
      });
    }
    const options = p.checker.options();
    const now = this.#d.clock.now().getTime();
    // A session opened with a per-session MFA certificate outlives that
    // certificate's minute, up to the end of the login it was issued from.
    const end = identity.sessionMfa ? identity.sessionMfa.sessionExpires : identity.expires;
    const expires = new Date(Math.min(end.getTime(), now + options.maxSessionTtlMs));
    return mintGrant({
      identity,
      target,
      expires,
      options,
      roles: d.roles,
      kube: d.kube,
      remoteAddr: ctx.remoteAddr,
    });
  }

  /**
   * Whether a live session may go on: the same checks as `authorize` (user,
   * locks, certificate, route, roles for its target) against what is stored
   * now, without the audit availability gate (a session already running is
   * not ended by a full disk: what it does next is refused on its own). A
   * refusal is audited as access.denied and comes back as a Revocation: the
   * session ends with it.
   */
  async recheck(grant: Grant): Promise<RecheckResult> {
    const now = this.#d.clock.now();
    if (grant.expires.getTime() <= now.getTime()) {
      return {
        cause: 'expired',
        message: `your access expired at ${grant.expires.toISOString()}; run gatehouse login again`,
      };
    }
    const ctx = { remoteAddr: grant.remoteAddr };
    let p: Principal;
    try {
      p = await this.principal(grant.identity, { established: true });
    } catch (err) {
      const ge = toGatehouseError(err);
      const message = err instanceof Error ? err.message : String(err);
      await this.#audit(grant.identity, grant.target, message, ctx, 'record');
      if (ge?.code === 'GH_ERR_USER_LOCKED') return { cause: 'locked', message };
      const reason = ge?.details?.reason;
      if (ge?.code === 'GH_ERR_CERT_EXPIRED' || reason === 'access request expired')
        return { cause: 'expired', message };
      if (reason === 'user deleted' || reason === 'user re-created')
        return { cause: 'user_deleted', message };
      return { cause: 'access_revoked', message };
    }
    // The MFA check was made when the session opened: a live session is not asked again.
    const d = this.#decide(p, grant.identity, grant.target, ctx, { established: true });
    if (d.allowed) {
      const options = p.checker.options();
      // The node enforces the policy its certificate carried when the session began and
      // cannot learn a new one: a session whose policy changed ends (fail closed).
      const changed = grant.target.kind === 'node' ? sessionPolicyChange(grant.options, options) : undefined;
      if (changed) {
        const message = `your roles' ${changed} changed; reconnect to run under the new policy`;
        await this.#audit(grant.identity, grant.target, message, ctx, 'record');
        return { cause: 'access_revoked', message };
      }
      // Still allowed: with the options the roles give now (a guard added at run time applies).
      return { options };
    }
    await this.#audit(grant.identity, grant.target, d.reason, ctx, 'record');
    return { cause: 'access_revoked', message: `access denied: ${d.reason}` };
  }

  /** The role decision for one target (route, source address, the checker). */
  #decide(
    p: Principal,
    identity: Identity,
    target: AccessTarget,
    ctx: ConnectionContext,
    opts: { established?: boolean } = {},
  ):
    | { allowed: true; roles: string[]; kube: { users: string[]; groups: string[] } | undefined }
    | {
        allowed: false;
        reason: string;
        role?: string | undefined;
        field?: string | undefined;
        hint?: string | undefined;
        code?: 'GH_ERR_SESSION_MFA_REQUIRED' | undefined;
      } {
    // A target-bound MFA certificate opens its one target; a role with
    // require_session_mfa refuses a new session without one (the roles as they are now).
    const mfa = sessionMfaRefusal(identity, target, p.checker.options().requireSessionMfa, opts);
    if (mfa) return { allowed: false, ...mfa, field: 'session_mfa' };
    const route = identity.route;
    if (route) {
      const refused = routeMismatch(route, target);
      if (refused) return { allowed: false, ...refused, field: 'route' };
    }
    if (identity.loginIp && ctx.remoteAddr && identity.loginIp !== ctx.remoteAddr) {
      return {
        allowed: false,
        reason: `certificate is pinned to ${identity.loginIp}, connection is from ${ctx.remoteAddr}`,
        field: 'source_ip',
      };
    }
    let { decision, kube } = checkTarget(p.checker, target);
    if (!decision.allowed) {
      // An approved request for this very resource (its roles reach nothing else).
      const key = `${target.kind}/${target.name}`;
      for (const s of p.scoped ?? []) {
        if (!s.resources.includes(key)) continue;
        const scoped = checkTarget(s.checker, target);
        if (scoped.decision.allowed) {
          ({ decision, kube } = scoped);
          break;
        }
      }
    }
    if (!decision.allowed) {
      return {
        allowed: false,
        reason: decision.reason,
        role: decision.role,
        field: decision.field,
        hint:
          target.kind === 'db' && decision.field === 'db_names' && decision.kind === 'not-allowed'
            ? `connect to one of the allowed database names, or ask an admin for a role with db_names: ["${target.dbName}"] on database "${target.name}"`
            : undefined,
      };
    }
    return { allowed: true, roles: decision.roles, kube };
  }

  /**
   * Refuses access: audits `access.denied` and throws. Core code that makes
   * a decision the role checker cannot (unknown resource, wrong route) calls
   * this so every denial looks and is audited the same.
   */
  async deny(
    identity: Identity | undefined,
    target: { kind: string; name: string },
    reason: string,
    ctx: ConnectionContext,
    opts: {
      code?: 'GH_ERR_ACCESS_DENIED' | 'GH_ERR_UNAUTHENTICATED' | 'GH_ERR_SESSION_MFA_REQUIRED';
      role?: string;
      field?: string;
      hint?: string;
    } = {},
  ): Promise<never> {
    await this.#audit(identity, target, reason, ctx);
    const code = opts.code ?? 'GH_ERR_ACCESS_DENIED';
    throw new GatehouseError(code, `access denied: ${reason}`, {
      hint:
        opts.hint ??
        (code === 'GH_ERR_UNAUTHENTICATED'
          ? 'log in first: gatehouse login --proxy HOST:PORT'
          : 'ask an admin for a role that allows this (gatehouse status shows your roles)'),
      details: {
        reason,
        ...(opts.role ? { role: opts.role } : {}),
        ...(opts.field ? { field: opts.field } : {}),
      },
    });
  }

  async #audit(
    identity: Identity | undefined,
    target: { kind: string; name: string },
    reason: string,
    ctx: ConnectionContext,
    how: 'emit' | 'record' = 'emit',
  ) {
    // If the denial cannot be audited the caller still gets a denial: emit's
    // rejection propagates and the adapter closes the connection. A live
    // session's end (record) is kept and written once the log recovers.
    await this.#d.audit[how]({
      type: 'access.denied',
      user: identity?.user ?? 'anonymous',
      resource_kind: target.kind,
      resource: target.name,
      reason,
      ...('login' in target && typeof target.login === 'string' ? { login: target.login } : {}),
      ...(ctx.remoteAddr ? { addr: { remote: ctx.remoteAddr } } : {}),
    });
  }
}

/** One role checker's decision for a target (and whom to impersonate in Kubernetes). */
function checkTarget(
  c: AccessChecker,
  target: AccessTarget,
): { decision: AccessDecision; kube: { users: string[]; groups: string[] } | undefined } {
  if (target.kind === 'kube') {
    const k = c.checkKube(target);
    return { decision: k, kube: k.allowed ? { users: k.users, groups: k.groups } : undefined };
  }
  if (target.kind === 'node') return { decision: c.checkNode(target, target.login), kube: undefined };
  if (target.kind === 'db') {
    return {
      decision: c.checkDatabase(target, { dbUser: target.dbUser, dbName: target.dbName }),
      kube: undefined,
    };
  }
  return { decision: c.checkDesktop(target, target.login), kube: undefined };
}

/**
 * Whether a route-scoped certificate may be used for `target`. The route
 * names the resource (and the database user it was issued for); it does not
 * limit the database NAME: one `gatehouse db login` covers every name the
 * roles allow, checked against db_names like any session (route.database is
 * only the default for clients that name none).
 */
function routeMismatch(route: Route, target: AccessTarget): { reason: string; hint: string } | undefined {
  if (route.kind === 'kube') {
    if (target.kind === 'kube' && route.cluster === target.name) return undefined;
    return {
      reason: `certificate is for Kubernetes cluster "${route.cluster}", not ${target.kind} "${target.name}"`,
      hint:
        target.kind === 'kube'
          ? `run gatehouse kube login ${target.name}`
          : 'use the certificate from gatehouse login (the current profile)',
    };
  }
  if (target.kind !== 'db' || route.name !== target.name) {
    return {
      reason: `certificate is for database "${route.name}", not ${target.kind === 'db' ? 'database' : target.kind} "${target.name}"`,
      hint:
        target.kind === 'db'
          ? `run gatehouse db login ${target.name}`
          : 'use the certificate from gatehouse login (the current profile)',
    };
  }
  if (route.user !== undefined && route.user !== target.dbUser) {
    return {
      reason: `certificate is for database user "${route.user}" on database "${route.name}", not "${target.dbUser}"`,
      hint: `run gatehouse db login ${route.name} --db-user ${target.dbUser}`,
    };
  }
  return undefined;
}

/** Which part of the node-enforced session policy differs (order does not matter), if any. */
function sessionPolicyChange(
  before: Pick<EffectiveOptions, 'enhancedRecording' | 'restrictNetwork' | 'recordingPaths'>,
  now: Pick<EffectiveOptions, 'enhancedRecording' | 'restrictNetwork' | 'recordingPaths'>,
): string | undefined {
  const same = (a: readonly string[], b: readonly string[]) =>
    JSON.stringify([...new Set(a)].sort()) === JSON.stringify([...new Set(b)].sort());
  if (!same(before.enhancedRecording, now.enhancedRecording)) return 'enhanced_recording';
  if (
    !same(before.restrictNetwork.deny, now.restrictNetwork.deny) ||
    !same(before.restrictNetwork.allow, now.restrictNetwork.allow)
  )
    return 'restrict_network';
  // Older grants (before the option) compare as empty lists.
  const paths = (o: Partial<Pick<EffectiveOptions, 'recordingPaths'>>) =>
    o.recordingPaths ?? { include: [], exclude: [] };
  if (!same(paths(before).include, paths(now).include) || !same(paths(before).exclude, paths(now).exclude))
    return 'enhanced_recording_paths';
  return undefined;
}
