import { createHash, randomBytes } from 'node:crypto';
import type { AuditEmitter, AuditEventInput, SessionMfaFailureReason } from '@gatehouse/audit';
import type { Principal } from '../authz/authorizer.js';
import type { Backend } from '../backend/types.js';
import type { Clock } from '../clock.js';
import { GatehouseError } from '../errors.js';
import type { Identity, MfaTarget, Route } from '../identity/types.js';
import type { CertificateAuthorities } from '../pki/authority.js';
import { decodeIdentityJson, encodeIdentityJson } from '../pki/identity-codec.js';
import {
  type MfaDevice,
  type MfaMethodChallenge,
  type MfaResponse,
  MfaResponseError,
  type SecondFactorMethod,
} from './methods.js';
import { describeMfaTarget } from './target.js';

/** How long a per-session MFA certificate may be used to OPEN a session (decision 0037-session-mfa). */
export const SESSION_MFA_CERT_TTL_MS = 60_000;
/** How long a challenge waits for its answer (time to read a code off a phone, or touch a key). */
export const SESSION_MFA_CHALLENGE_TTL_MS = 5 * 60_000;

const CHALLENGES = 'mfa/session_challenges/';
const TOKENS = 'mfa/session_tokens/';
const hash = (id: string) => createHash('sha256').update(id).digest('hex');
const CHALLENGE_ID_RE = /^[A-Za-z0-9_-]{20,100}$/;
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$/;

/** POST /v1/mfa/session/challenge */
export interface SessionMfaChallengeRequest {
  target: MfaTarget;
}

export interface SessionMfaChallengeResponse {
  /** Whether the caller's roles ask for a check before a session to this target. */
  required: boolean;
  /** With `required`: the id the answer names, when it expires, and the methods that may answer. */
  challenge_id?: string | undefined;
  expires?: string | undefined;
  methods?: MfaMethodChallenge[] | undefined;
}

/** POST /v1/mfa/session/certs: the answer, and the keys to certify (none: a token for the web terminal). */
export interface SessionMfaCertsRequest {
  challenge_id: string;
  response: MfaResponse;
  /** OpenSSH public key line (node targets). */
  ssh_public_key?: string | undefined;
  /** PEM SPKI (database and Kubernetes targets). */
  tls_public_key?: string | undefined;
}

export interface SessionMfaCertsResponse {
  target: MfaTarget;
  /** Until when the certificate (or token) can open a session: one minute. */
  expires: string;
  /** Until when a session it opened may run (the login's end). */
  session_expires: string;
  device: MfaDevice;
  ssh_cert?: string | undefined;
  tls_cert?: string | undefined;
  /** Single use, for the web terminal's WebSocket (no key was sent). */
  mfa_token?: string | undefined;
  cas: { host_x509: string[] };
}

interface StoredChallenge {
  user: string;
  user_id?: string | undefined;
  target: MfaTarget;
  /** Each method's server-side state from begin(). */
  states: Record<string, Record<string, unknown> | undefined>;
}

export interface SessionMfaDeps {
  backend: Backend;
  clock: Clock;
  audit: AuditEmitter;
  authorities: Pick<CertificateAuthorities, 'issueSshUserCert' | 'issueX509UserCert' | 'get'>;
  /** The database's protocol, for the route of a database certificate (undefined: not registered). */
  databaseProtocol: (name: string) => Promise<string | undefined>;
  /** The second-factor methods in the order they are offered (TOTP, then security keys). */
  methods: SecondFactorMethod[];
}

/**
 * Per-session MFA (role option require_session_mfa): a challenge for one
 * target, the answer checked by whichever method the user's device speaks,
 * then a one-minute certificate (or a single-use token for the web
 * terminal) bound to that target. The Authorizer enforces the binding at
 * connect (mfa/target.ts). Every answer is audited as `mfa.session`.
 */
export class SessionMfa {
  readonly #d: SessionMfaDeps;

  constructor(deps: SessionMfaDeps) {
    this.#d = deps;
  }

  /** Whether `caller` needs a check before a session to `target`, and if so a challenge for it. */
  async challenge(
    caller: Principal,
    req: SessionMfaChallengeRequest,
    ctx: { remoteAddr?: string | undefined },
  ): Promise<SessionMfaChallengeResponse> {
    const target = validTarget(req.target);
    loginCertificateOnly(caller.identity);
    if (!caller.checker.options().requireSessionMfa) return { required: false };
    const user = caller.user;
    const offers: MfaMethodChallenge[] = [];
    const states: StoredChallenge['states'] = {};
    for (const m of this.#d.methods) {
      const devices = m.devices(user);
      if (devices.length === 0) continue;
      const begun = await m.begin(user, { target });
      offers.push({
        method: m.method,
        devices: devices.map((d) => d.name),
        ...(begun.client ? { data: begun.client } : {}),
      });
      states[m.method] = begun.state;
    }
    if (offers.length === 0) {
      const err = new GatehouseError(
        'GH_ERR_SECOND_FACTOR_NOT_ENROLLED',
        'your roles require a second-factor check for every session, and you have no second-factor device',
        {
          hint: 'ask an admin for a reset link (gatehouse users reset <name>) to enroll an authenticator app',
        },
      );
      await this.#failed(caller.user.name, target, 'no_device', err, ctx);
      throw err;
    }
    const id = randomBytes(24).toString('base64url');
    const stored: StoredChallenge = { user: user.name, user_id: user.id, target, states };
    await this.#d.backend.create(CHALLENGES + hash(id), JSON.stringify(stored), {
      ttlMs: SESSION_MFA_CHALLENGE_TTL_MS,
    });
    const expires = new Date(this.#d.clock.now().getTime() + SESSION_MFA_CHALLENGE_TTL_MS);
    return { required: true, challenge_id: id, expires: expires.toISOString(), methods: offers };
  }

  /**
   * WebAuthn options for answering the caller's pending challenge `challengeId`
   * from a browser page (the CLI's security key round trip, mfa/browser.ts):
   * begun afresh for the challenge's target, so the assertion is scoped to it.
   * The challenge is not consumed; the CLI answers it with the assertion.
   */
  async browserOptions(
    caller: Principal,
    challengeId: string,
  ): Promise<{ user: string; target: MfaTarget; options: Record<string, unknown> }> {
    loginCertificateOnly(caller.identity);
    const item = CHALLENGE_ID_RE.test(challengeId)
      ? await this.#d.backend.get(CHALLENGES + hash(challengeId))
      : undefined;
    const stored = item ? (JSON.parse(item.value) as StoredChallenge) : undefined;
    const method = this.#d.methods.find((m) => m.method === 'webauthn');
    if (!stored || stored.user !== caller.user.name || stored.user_id !== caller.user.id) {
      throw new GatehouseError(
        'GH_ERR_SECOND_FACTOR_INVALID',
        'the MFA challenge is unknown, expired or already answered',
        { hint: 'start over: the command asks for a new challenge (they last 5 minutes and answer once)' },
      );
    }
    if (!method || method.devices(caller.user).length === 0) {
      throw new GatehouseError(
        'GH_ERR_SECOND_FACTOR_NOT_ENROLLED',
        'you have no security key or passkey here',
        {
          hint: 'answer with an authenticator code (--mfa-mode totp), or add a key on the account page',
        },
      );
    }
    const begun = await method.begin(caller.user, { target: stored.target });
    return { user: caller.user.name, target: stored.target, options: begun.client ?? {} };
  }

  /** Checks the answer to a challenge (used up either way) and issues what is bound to its target. */
  async complete(
    caller: Principal,
    req: SessionMfaCertsRequest,
    ctx: { remoteAddr?: string | undefined },
  ): Promise<SessionMfaCertsResponse> {
    loginCertificateOnly(caller.identity);
    const stored = await this.#take(req.challenge_id);
    if (!stored || stored.user !== caller.user.name || stored.user_id !== caller.user.id) {
      const err = new GatehouseError(
        'GH_ERR_SECOND_FACTOR_INVALID',
        'the MFA challenge is unknown, expired or already answered',
        { hint: 'start over: the command asks for a new challenge (they last 5 minutes and answer once)' },
      );
      await this.#d.audit.emit({
        type: 'mfa.session',
        success: false,
        user: caller.user.name,
        // Another user's challenge says nothing about this caller's target.
        ...(stored && stored.user === caller.user.name ? targetFields(stored.target) : {}),
        reason: 'challenge_invalid',
        error: err.message,
        method: req.response?.method,
        ...(ctx.remoteAddr ? { addr: { remote: ctx.remoteAddr } } : {}),
      });
      throw err;
    }
    const target = stored.target;
    const method = this.#d.methods.find((m) => m.method === req.response.method);
    let device: MfaDevice;
    try {
      if (!method || method.devices(caller.user).length === 0) {
        throw new MfaResponseError(
          'unsupported_method',
          `${req.response.method} is not a second factor you can use here`,
          'answer with a device the challenge offered',
        );
      }
      device = await method.finish(caller.user, stored.states[method.method], req.response, { target });
    } catch (e) {
      if (e instanceof MfaResponseError) {
        await this.#failed(caller.user.name, target, e.reason, e, ctx, req.response.method, e.device);
      }
      throw e;
    }
    const issued = await this.#issue(caller, target, req);
    await this.#d.audit.emit({
      type: 'mfa.session',
      success: true,
      user: caller.user.name,
      ...targetFields(target),
      method: device.method,
      device: device.name,
      mfa_device: device,
      ...(ctx.remoteAddr ? { addr: { remote: ctx.remoteAddr } } : {}),
    });
    return { ...issued, device };
  }

  /**
   * The identity a web terminal opens its session with: the token's, once
   * (a second redemption fails), for its user only.
   */
  async redeemToken(token: string, user: string): Promise<Identity> {
    const refused = () =>
      new GatehouseError(
        'GH_ERR_SESSION_MFA_REQUIRED',
        'the MFA check for this terminal or file transfer is unknown, used or expired',
        {
          hint: 'open the terminal (or start the transfer) again and answer a new check',
        },
      );
    if (typeof token !== 'string' || !/^[A-Za-z0-9_-]{20,100}$/.test(token)) throw refused();
    const key = TOKENS + hash(token);
    const item = await this.#d.backend.get(key);
    // Deleting is the redemption: of two concurrent ones, only one deletes.
    if (!item || !(await this.#d.backend.delete(key))) throw refused();
    const identity = decodeIdentityJson(item.value);
    if (identity.user !== user || identity.expires.getTime() <= this.#d.clock.now().getTime())
      throw refused();
    return identity;
  }

  async #take(id: string): Promise<StoredChallenge | undefined> {
    if (typeof id !== 'string' || !/^[A-Za-z0-9_-]{20,100}$/.test(id)) return undefined;
    const key = CHALLENGES + hash(id);
    const item = await this.#d.backend.get(key);
    if (!item || !(await this.#d.backend.delete(key))) return undefined;
    return JSON.parse(item.value) as StoredChallenge;
  }

  async #issue(
    caller: Principal,
    target: MfaTarget,
    req: SessionMfaCertsRequest,
  ): Promise<Omit<SessionMfaCertsResponse, 'device'>> {
    const now = this.#d.clock.now();
    const base = caller.identity;
    const sessionExpires = base.expires;
    const expires = new Date(Math.min(now.getTime() + SESSION_MFA_CERT_TTL_MS, sessionExpires.getTime()));
    const identity: Identity = {
      user: base.user,
      userId: caller.user.id,
      roles: base.roles,
      traits: base.traits,
      expires,
      mfaVerifiedAt: now,
      route: await this.#route(target),
      loginIp: base.loginIp,
      sessionMfa: { target, sessionExpires },
    };
    const out: Omit<SessionMfaCertsResponse, 'device'> = {
      target,
      expires: expires.toISOString(),
      session_expires: sessionExpires.toISOString(),
      cas: { host_x509: this.#d.authorities.get('host').map((k) => k.x509CertPem) },
    };
    const options = caller.checker.options();
    if (req.ssh_public_key !== undefined) {
      if (target.kind !== 'node') throw wrongKey('an SSH key', target);
      const pinned = base.loginIp;
      out.ssh_cert = (
        await this.#d.authorities.issueSshUserCert({
          publicKey: req.ssh_public_key,
          keyId: base.user,
          // The one login; the binding (critical option + identity) names the node.
          principals: [target.login],
          validAfter: now,
          validBefore: expires,
          permitPty: options.permitPty,
          permitPortForwarding: options.portForwarding,
          permitAgentForwarding: options.agentForwarding,
          permitX11Forwarding: options.x11Forwarding,
          sourceAddress: pinned ? `${pinned}/${pinned.includes(':') ? 128 : 32}` : undefined,
          identity,
          sessionPolicy: {
            enhancedRecording: options.enhancedRecording,
            restrictNetwork: options.restrictNetwork,
            recordingPaths: options.recordingPaths,
          },
        })
      ).cert;
    }
    if (req.tls_public_key !== undefined) {
      if (target.kind === 'node' || target.kind === 'desktop') throw wrongKey('a TLS key', target);
      out.tls_cert = (
        await this.#d.authorities.issueX509UserCert({
          publicKeyPem: req.tls_public_key,
          identity,
          notBefore: now,
          notAfter: expires,
        })
      ).cert;
    }
    if (req.ssh_public_key === undefined && req.tls_public_key === undefined) {
      const token = randomBytes(32).toString('base64url');
      await this.#d.backend.create(TOKENS + hash(token), encodeIdentityJson(identity), {
        ttlMs: Math.max(1, expires.getTime() - now.getTime()),
      });
      out.mfa_token = token;
    }
    return out;
  }

  /** Database and Kubernetes certificates are also routed (the listener and adapters find the target by route). */
  async #route(target: MfaTarget): Promise<Route | undefined> {
    if (target.kind === 'kube') return { kind: 'kube', cluster: target.cluster };
    if (target.kind !== 'db') return undefined;
    const protocol = await this.#d.databaseProtocol(target.name);
    if (!protocol) {
      throw new GatehouseError('GH_ERR_NOT_FOUND', `database "${target.name}" is not registered`, {
        hint: 'list the databases you can reach with gatehouse db ls',
      });
    }
    return { kind: 'db', name: target.name, user: target.user, protocol };
  }

  async #failed(
    user: string,
    target: MfaTarget,
    reason: SessionMfaFailureReason,
    err: GatehouseError,
    ctx: { remoteAddr?: string | undefined },
    method?: string,
    device?: MfaDevice,
  ): Promise<void> {
    const event: AuditEventInput = {
      type: 'mfa.session',
      success: false,
      user,
      ...targetFields(target),
      reason,
      error: err.message,
      ...(method ? { method } : {}),
      ...(device ? { device: device.name, mfa_device: device } : {}),
      ...(ctx.remoteAddr ? { addr: { remote: ctx.remoteAddr } } : {}),
    };
    await this.#d.audit.emit(event);
  }
}

function targetName(t: MfaTarget): string {
  if (t.kind === 'node') return t.node;
  if (t.kind === 'db') return t.name;
  if (t.kind === 'desktop') return t.desktop;
  return t.cluster;
}

/** A target as mfa.session audit events name it. */
export function targetFields(t: MfaTarget) {
  return {
    target_kind: t.kind,
    target: targetName(t),
    ...(t.kind === 'node' ? { server: t.node, login: t.login } : {}),
    ...(t.kind === 'db' ? { server: t.name, db_user: t.user } : {}),
    ...(t.kind === 'kube' ? { server: t.cluster } : {}),
    ...(t.kind === 'desktop' ? { server: t.desktop, login: t.login } : {}),
  };
}

function wrongKey(what: string, target: MfaTarget): GatehouseError {
  return new GatehouseError(
    'GH_ERR_VALIDATION',
    `${what} cannot be certified for ${describeMfaTarget(target)}`,
    {
      hint: 'send ssh_public_key for nodes, tls_public_key for databases and Kubernetes clusters, no key for desktops (a web token)',
    },
  );
}

/**
 * Checks start from the login certificate (or web session): a certificate
 * an MFA check issued, or one scoped to a route, cannot be turned into
 * another target's.
 */
function loginCertificateOnly(identity: Identity): void {
  if (identity.sessionMfa || identity.route) {
    throw new GatehouseError(
      'GH_ERR_ACCESS_DENIED',
      'a per-session MFA check starts from your login certificate, not a certificate scoped to one target',
      { hint: 'use the certificate from gatehouse login (the current profile)' },
    );
  }
}

function validTarget(t: unknown): MfaTarget {
  const bad = () =>
    new GatehouseError(
      'GH_ERR_VALIDATION',
      'the MFA target must name a node and login, a database and user, a Kubernetes cluster, or a desktop and login',
      {
        hint: 'names are letters, digits, dots, dashes, underscores and @',
      },
    );
  if (typeof t !== 'object' || t === null) throw bad();
  const o = t as Record<string, unknown>;
  const ok = (v: unknown): v is string => typeof v === 'string' && NAME_RE.test(v);
  if (o.kind === 'node' && ok(o.node) && ok(o.login)) return { kind: 'node', node: o.node, login: o.login };
  if (o.kind === 'db' && ok(o.name) && ok(o.user)) return { kind: 'db', name: o.name, user: o.user };
  if (o.kind === 'kube' && ok(o.cluster)) return { kind: 'kube', cluster: o.cluster };
  if (o.kind === 'desktop' && ok(o.desktop) && ok(o.login))
    return { kind: 'desktop', desktop: o.desktop, login: o.login };
  throw bad();
}
