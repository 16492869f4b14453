import { randomBytes } from 'node:crypto';
import type { LoginRequest, LoginResponse, PasswordlessLoginRequest } from '../api/public.js';
import type { Clock } from '../clock.js';
import type { GatehouseConfig } from '../config/load.js';
import { GatehouseError } from '../errors.js';
import type { PasswordLoginRequest } from '../identity/login.js';
import type { Identity, Route, UserRecord } from '../identity/types.js';
import type { AuthenticationResponseJSON } from '../identity/webauthn.js';
import type { CertificateAuthorities } from '../pki/authority.js';
import { AccessChecker } from '../rbac/checker.js';
import type { Role } from '../rbac/types.js';
import type { RequestGrant } from '../requests/service.js';
import { parseDuration } from '../util/duration.js';
import type { WebSessions } from './sessions.js';

export interface LoginDeps {
  clock: Clock;
  config: Pick<GatehouseConfig, 'clusterName' | 'auth'>;
  authenticate: (req: PasswordLoginRequest) => Promise<UserRecord>;
  /** A passkey alone (user verification required): the user is whose passkey it is. */
  authenticatePasswordless: (req: {
    webauthn: AuthenticationResponseJSON;
    remoteAddr?: string | undefined;
  }) => Promise<UserRecord>;
  resolveRoles: (names: string[]) => Promise<Role[]>;
  authorities: CertificateAuthorities;
  sessions: WebSessions;
  /** Remembers an SSH certificate handed to the user, so a deletion or lock can revoke it (KRL). */
  recordSshCert: (c: {
    serial: string;
    user: string;
    userId?: string | undefined;
    roles: string[];
    expires: Date;
  }) => Promise<void>;
}

/** Clock skew allowance: certificates start a minute in the past. */
const BACKDATE_MS = 60_000;

/**
 * Password (+ TOTP) in, short-lived certificates out. The TTL is the
 * smallest of what the client asked for and every role's max_session_ttl.
 */
export class LoginService {
  readonly #d: LoginDeps;

  constructor(deps: LoginDeps) {
    this.#d = deps;
  }

  async login(
    req: LoginRequest,
    ctx: { remoteAddr?: string | undefined },
  ): Promise<{ response: LoginResponse; sessionId: string }> {
    const user = await this.#d.authenticate({
      user: req.user,
      password: req.password,
      otp: req.otp,
      webauthn: req.webauthn as unknown as AuthenticationResponseJSON | undefined,
      remoteAddr: ctx.remoteAddr,
    });
    return this.issue(user, req, {
      remoteAddr: ctx.remoteAddr,
      mfa: this.#d.config.auth.secondFactor === 'otp',
    });
  }

  /** A passkey login (no password): the passkey verified the user, so it counts as MFA. */
  async passwordless(
    req: PasswordlessLoginRequest,
    ctx: { remoteAddr?: string | undefined },
  ): Promise<{ response: LoginResponse; sessionId: string }> {
    const user = await this.#d.authenticatePasswordless({
      webauthn: req.webauthn as unknown as AuthenticationResponseJSON,
      remoteAddr: ctx.remoteAddr,
    });
    return this.issue(user, req, { remoteAddr: ctx.remoteAddr, mfa: true });
  }

  /**
   * Certificates (for the keys in `req`, if any) and a web session for a
   * user who has authenticated, by password or through an SSO connector.
   * `maxTtlMs` caps the TTL further (an SSO connector's max_session_ttl).
   */
  async issue(
    user: UserRecord,
    req: Pick<LoginRequest, 'ssh_public_key' | 'tls_public_key' | 'ttl' | 'route'>,
    ctx: {
      remoteAddr?: string | undefined;
      mfa: boolean;
      maxTtlMs?: number | undefined;
      /**
       * Approved access requests whose roles the certificates carry (`gatehouse
       * login --request-id`, checked by the caller); the TTL ends with the
       * earliest. Such an issue makes no web session.
       */
      requests?: readonly RequestGrant[] | undefined;
      /** The certificate the caller re-issues from, which the new one never outlives. */
      from?: Identity | undefined;
    },
  ): Promise<{ response: LoginResponse; sessionId: string }> {
    const requests = ctx.requests ?? [];
    const roleNames = [...new Set([...user.roles, ...requests.flatMap((r) => r.roles)])];
    // Roles of resource requests reach only those resources (the Authorizer scopes them):
    // they are not the certificate's general roles for logins or options here.
    const general = [
      ...new Set([...user.roles, ...requests.filter((r) => !r.resources?.length).flatMap((r) => r.roles)]),
    ];
    const roles = await this.#d.resolveRoles(general);
    const checker = AccessChecker.from(roles, user.traits);
    const options = checker.options();
    const now = this.#d.clock.now();
    let ttl = options.maxSessionTtlMs;
    if (req.ttl) ttl = Math.min(ttl, parseDuration(req.ttl));
    if (ctx.maxTtlMs !== undefined) ttl = Math.min(ttl, ctx.maxTtlMs);
    for (const r of requests) ttl = Math.min(ttl, r.expires.getTime() - now.getTime());
    if (ctx.from) ttl = Math.min(ttl, ctx.from.expires.getTime() - now.getTime());
    if (ttl <= 0) {
      throw new GatehouseError('GH_ERR_CERT_EXPIRED', 'the access to re-issue for has already ended', {
        hint: 'log in again: gatehouse login',
      });
    }
    const expires = new Date(now.getTime() + ttl);
    const pinnedIp = options.pinSourceIp ? ctx.remoteAddr : undefined;
    const identity: Identity = {
      user: user.name,
      userId: user.id,
      roles: roleNames,
      traits: user.traits,
      expires,
      mfaVerifiedAt: ctx.from ? ctx.from.mfaVerifiedAt : ctx.mfa ? now : undefined,
      route: validRoute(req.route),
      loginIp: ctx.from ? ctx.from.loginIp : pinnedIp,
      ...(requests.length ? { accessRequests: requests.map((r) => r.id) } : {}),
    };
    // An SSH certificate with no principals is valid for EVERY login in
    // OpenSSH; a user allowed no logins gets a principal that matches none.
    let logins = checker.sshLogins();
    if (logins.length === 0) logins = [`-gatehouse-nologin-${randomBytes(8).toString('hex')}`];
    const a = this.#d.authorities;
    const sshCert = req.ssh_public_key
      ? await a.issueSshUserCert({
          publicKey: req.ssh_public_key,
          keyId: user.name,
          principals: logins,
          validAfter: new Date(now.getTime() - BACKDATE_MS),
          validBefore: expires,
          permitPty: options.permitPty,
          permitPortForwarding: options.portForwarding,
          permitAgentForwarding: options.agentForwarding,
          permitX11Forwarding: options.x11Forwarding,
          sourceAddress: pinnedIp ? `${pinnedIp}/${pinnedIp.includes(':') ? 128 : 32}` : undefined,
          // Marks it as needing a per-session MFA check: no server but the proxy accepts it then.
          sessionMfaRequired: options.requireSessionMfa,
          identity,
          // A login certificate also reaches nodes directly (ssh -i, no proxy): it carries
          // what the roles say a node must record and restrict, like the proxy's upstream one.
          sessionPolicy: {
            enhancedRecording: options.enhancedRecording,
            restrictNetwork: options.restrictNetwork,
            recordingPaths: options.recordingPaths,
          },
        })
      : undefined;
    if (sshCert) {
      await this.#d.recordSshCert({
        serial: sshCert.serial,
        user: user.name,
        userId: user.id,
        roles: roleNames,
        expires: sshCert.expires,
      });
    }
    const tlsCert = req.tls_public_key
      ? await a.issueX509UserCert({
          publicKeyPem: req.tls_public_key,
          identity,
          notBefore: new Date(now.getTime() - BACKDATE_MS),
          notAfter: expires,
        })
      : undefined;
    // A browser session carries standing roles only; a re-issue for requests makes none.
    const web = ctx.requests ? undefined : await this.#d.sessions.create(user.name, user.roles, ttl, user.id);
    return {
      sessionId: web?.id ?? '',
      response: {
        user: user.name,
        roles: roleNames,
        traits: user.traits,
        logins: checker.sshLogins(),
        expires: expires.toISOString(),
        cluster_name: this.#d.config.clusterName,
        ssh_cert: sshCert?.cert,
        tls_cert: tlsCert?.cert,
        cas: {
          host_ssh: a.get('host').map((k) => k.sshPublicKey),
          host_x509: a.get('host').map((k) => k.x509CertPem),
          user_x509: a.get('user').map((k) => k.x509CertPem),
        },
        csrf_token: web?.session.csrf ?? '',
        ...(requests.length ? { access_requests: requests.map((r) => r.id) } : {}),
      },
    };
  }
}

function validRoute(route: Route | undefined): Route | undefined {
  if (!route) return undefined;
  const name = route.kind === 'db' ? route.name : route.cluster;
  if (typeof name !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/.test(name)) {
    throw new GatehouseError('GH_ERR_VALIDATION', 'route names an invalid resource', {
      hint: 'resource names are letters, digits, dots, dashes and underscores',
    });
  }
  return route;
}
