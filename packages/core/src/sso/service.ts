import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { AuditEmitter, LoginFailureReason } from '@gatehouse/audit';
import type { LoginRequest, LoginResponse } from '../api/public.js';
import type { Backend } from '../backend/types.js';
import type { Clock } from '../clock.js';
import type { Sealer } from '../crypto/seal.js';
import { GatehouseError, toGatehouseError } from '../errors.js';
import type { LockRecord, SsoUserInfo, Traits, UserRecord } from '../identity/types.js';
import { USER_NAME_RE } from '../identity/user-records.js';
import {
  cliRedirectUrl,
  type SsoConnector,
  type SsoConnectorButton,
  type SsoConnectorRegistry,
} from './connectors.js';
import type { Claims } from './oidc.js';

/** How long a login attempt (state, nonce, PKCE verifier) may wait for its callback. */
export const SSO_ATTEMPT_TTL_MS = 10 * 60_000;
/** How long the CLI has to redeem the one-time code it was redirected with. */
export const SSO_CODE_TTL_MS = 2 * 60_000;

const ATTEMPTS = 'sso_attempts/';
const CODES = 'sso_codes/';
const ERRORS = 'sso_errors/';
const sha256 = (s: string) => createHash('sha256').update(s).digest('base64url');
const random = () => randomBytes(32).toString('base64url');
const TOKEN_RE = /^[A-Za-z0-9_-]{43}$/;

/** What `gatehouse sso test` prints: the claims and what they map to, nobody logged in. */
export interface SsoTestReport {
  connector: string;
  claims: Claims;
  /** The user name the login would have. */
  user?: string | undefined;
  roles: string[];
  /** Mapped roles that do not exist (ignored by a login). */
  missing_roles: string[];
  traits: Traits;
  /** Why a login with these claims would be refused. */
  error?: { code: string; message: string } | undefined;
}

/** POST /v1/sso/login: the CLI starts a login (or an admin's `sso test`). */
export interface SsoStartRequest {
  connector: string;
  /** The CLI's loopback listener: http://127.0.0.1:PORT/PATH. */
  redirect_url: string;
  /** base64url SHA-256 of the verifier the CLI will redeem the code with. */
  client_challenge: string;
  ssh_public_key?: string | undefined;
  tls_public_key?: string | undefined;
  ttl?: string | undefined;
}

export interface SsoStartResponse {
  auth_url: string;
  /** When the attempt expires. */
  expires: string;
}

/** POST /v1/sso/redeem */
export interface SsoRedeemRequest {
  code: string;
  verifier: string;
}

export type SsoRedeemResponse =
  | { kind: 'login'; login: LoginResponse }
  | { kind: 'test'; report: SsoTestReport };

interface Attempt {
  connector: string;
  mode: 'cli' | 'web' | 'test';
  /** Nonce and PKCE verifier, sealed (bound to this record's key). */
  sealed: string;
  /** cli/test: the loopback URL the browser is sent back to with the one-time code. */
  clientRedirect?: string | undefined;
  clientChallenge?: string | undefined;
  /** web: SHA-256 of the cookie the browser that started the login holds. */
  browserBinding?: string | undefined;
  request?: Pick<LoginRequest, 'ssh_public_key' | 'tls_public_key' | 'ttl'> | undefined;
  remoteAddr?: string | undefined;
  expires: string;
}

interface CodeRecord {
  mode: 'cli' | 'test';
  clientChallenge: string;
  connector: string;
  user?: string | undefined;
  request?: Attempt['request'];
  report?: SsoTestReport | undefined;
  expires: string;
}

/** One protocol's relying party (OIDC, GitHub's OAuth): where to send the browser, and the callback's claims. */
export interface SsoProtocol {
  authorizationUrl(
    c: SsoConnector,
    p: { state: string; nonce: string; codeVerifier: string },
  ): Promise<string>;
  /** Verified claims from the callback; failures are GatehouseErrors with a `reason` in details. */
  exchange(
    c: SsoConnector,
    callback: URLSearchParams,
    p: { state: string; nonce: string; codeVerifier: string },
  ): Promise<Claims>;
  /** SAML: the service provider's metadata document for the IdP. */
  metadata?(c: SsoConnector): Promise<string>;
}

/** One SsoProtocol that hands each connector to its kind's relying party. */
export function protocolsByKind(by: Record<SsoConnector['kind'], SsoProtocol>): SsoProtocol {
  return {
    authorizationUrl: (c, p) => by[c.kind].authorizationUrl(c, p),
    exchange: (c, q, p) => by[c.kind].exchange(c, q, p),
    metadata: async (c) => {
      const m = by[c.kind].metadata;
      if (!m) {
        throw new GatehouseError('GH_ERR_NOT_FOUND', `SSO connector "${c.name}" is not a SAML connector`, {
          hint: 'only kind: saml connectors have service provider metadata',
        });
      }
      return m.call(by[c.kind], c);
    },
  };
}

export interface SsoServiceDeps {
  connectors: SsoConnectorRegistry;
  /** The relying party for a connector's kind. */
  rp: SsoProtocol;
  backend: Backend;
  sealer: Sealer;
  clock: Clock;
  audit: AuditEmitter;
  users: {
    get(name: string): Promise<UserRecord | undefined>;
    upsertSso(req: { name: string; roles: string[]; traits: Traits; sso: SsoUserInfo }): Promise<UserRecord>;
  };
  roleExists: (name: string) => Promise<boolean>;
  findLocks: (who: { user: string; roles: readonly string[] }) => Promise<LockRecord[]>;
  /** Certificates and a web session for an authenticated user (LoginService.issue). */
  issue: (
    user: UserRecord,
    req: Pick<LoginRequest, 'ssh_public_key' | 'tls_public_key' | 'ttl'>,
    ctx: { remoteAddr?: string | undefined; mfa: boolean; maxTtlMs?: number | undefined },
  ) => Promise<{ response: LoginResponse; sessionId: string }>;
}

/** What the HTTP layer does with a callback. */
export type SsoCallbackOutcome =
  | { kind: 'redirect'; location: string }
  | { kind: 'web'; sessionId: string; response: LoginResponse }
  /** `errorId` names the stored error the login page reads (GET /v1/sso/errors/:id). */
  | { kind: 'web-error'; errorId: string };

const MAX_TRAIT_VALUES = 256;
const MAX_TRAITS = 64;

/**
 * Single sign-on logins, owned by core: attempts with state, nonce and PKCE
 * bound to them (single use, 10 minutes), the provider's answer verified,
 * claims mapped to roles and traits, the SSO user written, and the result
 * handed to the CLI through a one-time code only the holder of the
 * verifier can redeem (see docs/decisions/0027-sso.md).
 */
export class SsoService {
  readonly #d: SsoServiceDeps;
  /** Failures already audited with their own reason (a lock), so the callback does not audit them twice. */
  readonly #audited = new WeakSet<Error>();

  constructor(deps: SsoServiceDeps) {
    this.#d = deps;
  }

  /** Connectors for the login page's buttons (no issuer or client details). */
  async buttons(): Promise<SsoConnectorButton[]> {
    return (await this.#d.connectors.list()).map((c) => ({ name: c.name, display: c.display, kind: c.kind }));
  }

  /** GET /v1/sso/saml/:name/metadata: what an admin gives the IdP (entity id, ACS URL). */
  async spMetadata(name: string): Promise<string> {
    const c = await this.#d.connectors.require(name);
    if (!this.#d.rp.metadata) throw new Error('no SAML relying party');
    return this.#d.rp.metadata(c);
  }

  /** The CLI (or `sso test`) starts a login; the browser is to open `auth_url`. */
  async startClient(
    req: SsoStartRequest,
    mode: 'cli' | 'test',
    ctx: { remoteAddr?: string | undefined },
  ): Promise<SsoStartResponse> {
    const c = await this.#d.connectors.require(req.connector);
    const redirect = cliRedirectUrl(req.redirect_url);
    if (!TOKEN_RE.test(req.client_challenge)) {
      throw new GatehouseError('GH_ERR_VALIDATION', 'client_challenge must be a base64url SHA-256', {
        hint: 'send the base64url SHA-256 of a random verifier',
      });
    }
    return this.#start(c, {
      mode,
      clientRedirect: redirect.href,
      clientChallenge: req.client_challenge,
      ...(mode === 'cli'
        ? {
            request: {
              ssh_public_key: req.ssh_public_key,
              tls_public_key: req.tls_public_key,
              ttl: req.ttl,
            },
          }
        : {}),
      remoteAddr: ctx.remoteAddr,
    });
  }

  /** The web UI's button: the browser gets a cookie the callback must see again. */
  async startWeb(
    name: string,
    ctx: { remoteAddr?: string | undefined },
  ): Promise<{ authUrl: string; browserSecret: string; kind: SsoConnector['kind'] }> {
    const c = await this.#d.connectors.require(name);
    const browserSecret = random();
    const r = await this.#start(c, {
      mode: 'web',
      browserBinding: sha256(browserSecret),
      remoteAddr: ctx.remoteAddr,
    });
    return { authUrl: r.auth_url, browserSecret, kind: c.kind };
  }

  async #start(
    c: SsoConnector,
    a: Omit<Attempt, 'connector' | 'sealed' | 'expires'>,
  ): Promise<SsoStartResponse> {
    const state = random();
    const nonce = random();
    const codeVerifier = random();
    const key = ATTEMPTS + sha256(state);
    let authUrl: string;
    try {
      authUrl = await this.#d.rp.authorizationUrl(c, { state, nonce, codeVerifier });
    } catch (e) {
      const err = toGatehouseError(e) ?? internal(e);
      await this.#failed(undefined, c.name, reasonOf(err), err, a.remoteAddr);
      throw err;
    }
    const expires = new Date(this.#d.clock.now().getTime() + SSO_ATTEMPT_TTL_MS).toISOString();
    const attempt: Attempt = {
      ...a,
      connector: c.name,
      sealed: this.#d.sealer.seal(JSON.stringify({ nonce, codeVerifier }), key),
      expires,
    };
    await this.#d.backend.create(key, JSON.stringify(attempt), { ttlMs: SSO_ATTEMPT_TTL_MS });
    return { auth_url: authUrl, expires };
  }

  /**
   * The provider sent the browser back. The state is taken (deleted) first,
   * so it works once; then the code is exchanged and the ID token verified.
   * Failures before the attempt is known throw (nobody to send them to);
   * later ones go where the login started (the CLI's listener, the login page).
   */
  async callback(
    query: URLSearchParams,
    ctx: { browserSecret?: string | undefined; remoteAddr?: string | undefined },
  ): Promise<SsoCallbackOutcome> {
    const state = query.get('state') ?? '';
    const { attempt, connector } = await this.#takeAttempt(state, ctx);
    const c = connector;
    try {
      if (attempt.mode === 'web') {
        const ok =
          ctx.browserSecret !== undefined &&
          attempt.browserBinding !== undefined &&
          safeEqual(sha256(ctx.browserSecret), attempt.browserBinding);
        if (!ok) {
          throw stateInvalid('this login was started in another browser (or its cookie is gone)', c.name);
        }
      }
      const { nonce, codeVerifier } = JSON.parse(
        this.#d.sealer.open(attempt.sealed, ATTEMPTS + sha256(state)),
      ) as { nonce: string; codeVerifier: string };
      const claims = await this.#d.rp.exchange(c, query, { state, nonce, codeVerifier });
      if (attempt.mode === 'test') {
        return this.#toClient(attempt, { mode: 'test', report: await this.#report(c, claims) });
      }
      const user = await this.#login(c, claims, attempt.remoteAddr);
      if (attempt.mode === 'cli') {
        return this.#toClient(attempt, { mode: 'cli', user: user.record.name, request: attempt.request });
      }
      const { response, sessionId } = await this.#d.issue(
        user.record,
        {},
        { remoteAddr: ctx.remoteAddr, mfa: false, maxTtlMs: c.maxSessionTtlMs },
      );
      await this.#succeeded(user.record.name, c.name, ctx.remoteAddr);
      return { kind: 'web', sessionId, response };
    } catch (e) {
      const err = toGatehouseError(e) ?? internal(e);
      if (!this.#audited.has(err)) {
        await this.#failed(undefined, c.name, reasonOf(err), err, ctx.remoteAddr);
      }
      if (attempt.mode === 'web') return { kind: 'web-error', errorId: await this.#storeError(err) };
      // The CLI prints it; the code is not issued.
      const back = new URL(attempt.clientRedirect ?? '');
      back.search = new URLSearchParams({ error: err.code, message: err.message }).toString();
      return { kind: 'redirect', location: back.href };
    }
  }

  /**
   * A failed web login's error, for the login page to show. It is stored
   * and named by a random id rather than put in the URL, so nobody can make
   * the login page say what they like through a crafted link.
   */
  async webError(id: string): Promise<{ code: string; message: string; hint?: string | undefined }> {
    const item = TOKEN_RE.test(id) ? await this.#d.backend.get(ERRORS + sha256(id)) : undefined;
    if (!item) {
      throw new GatehouseError('GH_ERR_NOT_FOUND', 'no such SSO error (they are kept for 5 minutes)', {
        hint: 'sign in again',
      });
    }
    return JSON.parse(item.value) as { code: string; message: string; hint?: string };
  }

  async #storeError(err: GatehouseError): Promise<string> {
    const id = random();
    const value = { code: err.code, message: err.message, ...(err.hint ? { hint: err.hint } : {}) };
    await this.#d.backend.create(ERRORS + sha256(id), JSON.stringify(value), { ttlMs: 5 * 60_000 });
    return id;
  }

  /** The CLI redeems its one-time code with the verifier only it holds. */
  async redeem(req: SsoRedeemRequest, ctx: { remoteAddr?: string | undefined }): Promise<SsoRedeemResponse> {
    const bad = async (why: string) => {
      const err = new GatehouseError('GH_ERR_SSO_CODE_INVALID', `the login code is not valid: ${why}`, {
        hint: 'run gatehouse login --auth NAME again',
      });
      await this.#failed(undefined, undefined, 'sso_code_invalid', err, ctx.remoteAddr);
      return err;
    };
    if (typeof req.code !== 'string' || !TOKEN_RE.test(req.code)) throw await bad('malformed');
    const key = CODES + sha256(req.code);
    const item = await this.#d.backend.get(key);
    // Deleted before the verifier is checked: a wrong guess burns the code (the CLI then logs in again).
    if (!item || !(await this.#d.backend.delete(key))) throw await bad('unknown, expired or already used');
    const rec = JSON.parse(item.value) as CodeRecord;
    if (Date.parse(rec.expires) <= this.#d.clock.now().getTime()) throw await bad('expired');
    if (typeof req.verifier !== 'string' || !safeEqual(sha256(req.verifier), rec.clientChallenge)) {
      throw await bad('the verifier does not match');
    }
    if (rec.mode === 'test') return { kind: 'test', report: rec.report! };
    const c = await this.#d.connectors.require(rec.connector);
    const user = await this.#d.users.get(rec.user ?? '');
    if (!user?.sso) throw await bad('the user was removed since');
    // Locked between the callback and now: refused like at the callback.
    await this.#checkLocks(user, c.name, ctx.remoteAddr);
    const { response } = await this.#d.issue(user, rec.request ?? {}, {
      remoteAddr: ctx.remoteAddr,
      mfa: false,
      maxTtlMs: c.maxSessionTtlMs,
    });
    await this.#succeeded(user.name, c.name, ctx.remoteAddr);
    return { kind: 'login', login: response };
  }

  async #toClient(
    attempt: Attempt,
    r: Pick<CodeRecord, 'mode' | 'user' | 'request' | 'report'>,
  ): Promise<SsoCallbackOutcome> {
    const code = random();
    const rec: CodeRecord = {
      ...r,
      connector: attempt.connector,
      clientChallenge: attempt.clientChallenge ?? '',
      expires: new Date(this.#d.clock.now().getTime() + SSO_CODE_TTL_MS).toISOString(),
    };
    await this.#d.backend.create(CODES + sha256(code), JSON.stringify(rec), { ttlMs: SSO_CODE_TTL_MS });
    const back = new URL(attempt.clientRedirect ?? '');
    back.search = new URLSearchParams({ code }).toString();
    return { kind: 'redirect', location: back.href };
  }

  async #takeAttempt(
    state: string,
    ctx: { remoteAddr?: string | undefined },
  ): Promise<{ attempt: Attempt; connector: SsoConnector }> {
    const fail = async (why: string, connector?: string) => {
      const err = stateInvalid(why, connector);
      await this.#failed(undefined, connector, 'sso_state_invalid', err, ctx.remoteAddr);
      return err;
    };
    if (!TOKEN_RE.test(state)) throw await fail('the callback carries no valid state');
    const key = ATTEMPTS + sha256(state);
    const item = await this.#d.backend.get(key);
    // Taken by deleting it: of two callbacks with one state, one wins.
    if (!item || !(await this.#d.backend.delete(key))) {
      throw await fail('unknown, expired or already used state');
    }
    const attempt = JSON.parse(item.value) as Attempt;
    if (Date.parse(attempt.expires) <= this.#d.clock.now().getTime()) {
      throw await fail('the login took too long', attempt.connector);
    }
    return { attempt, connector: await this.#d.connectors.require(attempt.connector) };
  }

  /** Claims -> user name, roles and traits, refused with the reason when they do not add up. */
  async #map(
    c: SsoConnector,
    claims: Claims,
  ): Promise<{ user: string; roles: string[]; missing: string[]; traits: Traits; subject: string }> {
    const subject = typeof claims.sub === 'string' ? claims.sub : '';
    const nameClaim =
      c.usernameClaim ?? ['email', 'preferred_username', 'sub'].find((k) => typeof claims[k] === 'string');
    const raw = nameClaim !== undefined ? claims[nameClaim] : undefined;
    const user = typeof raw === 'string' ? raw.toLowerCase() : '';
    const traits = claimsToTraits(claims);
    const wanted = new Set<string>();
    for (const m of c.claimsToRoles) {
      if ((traits[m.claim] ?? []).includes(m.value)) for (const r of m.roles) wanted.add(r);
    }
    const roles: string[] = [];
    const missing: string[] = [];
    for (const r of wanted) ((await this.#d.roleExists(r)) ? roles : missing).push(r);
    return { user, roles, missing, traits, subject };
  }

  async #report(c: SsoConnector, claims: Claims): Promise<SsoTestReport> {
    const m = await this.#map(c, claims);
    let error: GatehouseError | undefined;
    try {
      checkMapping(c, m, claims);
    } catch (e) {
      error = toGatehouseError(e);
    }
    return {
      connector: c.name,
      claims,
      ...(m.user ? { user: m.user } : {}),
      roles: m.roles,
      missing_roles: m.missing,
      traits: m.traits,
      ...(error ? { error: { code: error.code, message: error.message } } : {}),
    };
  }

  async #login(
    c: SsoConnector,
    claims: Claims,
    remoteAddr: string | undefined,
  ): Promise<{ record: UserRecord }> {
    const m = await this.#map(c, claims);
    checkMapping(c, m, claims);
    const ttl = c.maxSessionTtlMs ?? 12 * 3600_000;
    const record = await this.#d.users.upsertSso({
      name: m.user,
      roles: m.roles,
      traits: m.traits,
      sso: {
        connector: c.name,
        kind: c.kind,
        subject: m.subject,
        expires: new Date(this.#d.clock.now().getTime() + ttl).toISOString(),
      },
    });
    await this.#checkLocks(record, c.name, remoteAddr);
    return { record };
  }

  async #checkLocks(record: UserRecord, connector: string, remoteAddr: string | undefined): Promise<void> {
    const lock = (await this.#d.findLocks({ user: record.name, roles: record.roles }))[0];
    if (!lock) return;
    const err = new GatehouseError(
      'GH_ERR_USER_LOCKED',
      `your access is locked${lock.message ? `: ${lock.message}` : ''}`,
      {
        hint: 'ask an admin to remove the lock (gatehouse locks ls, gatehouse locks rm <id>)',
        details: { lock_id: lock.id },
      },
    );
    await this.#failed(record.name, connector, 'user_locked', err, remoteAddr);
    this.#audited.add(err);
    throw err;
  }

  /** Audited when certificates or a web session are handed out (a code never redeemed logged nobody in). */
  async #succeeded(user: string, connector: string, addr: string | undefined): Promise<void> {
    await this.#d.audit.emit({
      type: 'user.login',
      success: true,
      method: 'sso',
      connector,
      mfa: false,
      user,
      ...(addr ? { addr: { remote: addr } } : {}),
    });
  }

  async #failed(
    user: string | undefined,
    connector: string | undefined,
    reason: LoginFailureReason,
    err: GatehouseError,
    addr: string | undefined,
  ): Promise<void> {
    await this.#d.audit.record({
      type: 'user.login',
      success: false,
      method: 'sso',
      reason,
      error: err.message,
      ...(connector ? { connector } : {}),
      ...(user !== undefined ? { user } : {}),
      ...(addr ? { addr: { remote: addr } } : {}),
    });
  }
}

function checkMapping(
  c: SsoConnector,
  m: { user: string; roles: string[]; missing: string[]; traits: Traits; subject: string },
  claims: Claims,
): void {
  if (!m.subject) {
    throw new GatehouseError(
      'GH_ERR_SSO_TOKEN_INVALID',
      `the ${c.kind === 'saml' ? 'assertion' : 'ID token'} from connector ${c.name} has no subject`,
      {
        hint: `the provider must send a ${c.kind === 'saml' ? 'NameID' : 'sub claim'}`,
        details: { connector: c.name, reason: 'sso_token_invalid' },
      },
    );
  }
  const what = c.kind === 'saml' ? 'attributes' : 'claims';
  if (m.roles.length === 0) {
    const shown = c.claimsToRoles
      .map((x) => x.claim)
      .filter((k, i, a) => a.indexOf(k) === i)
      .map((k) => `${k}=${JSON.stringify(m.traits[k] ?? [])}`)
      .join(', ');
    throw new GatehouseError(
      'GH_ERR_SSO_NO_ROLES',
      `connector ${c.name}: the ${what} ${shown} map to no role${m.missing.length ? ` (mapped roles that do not exist: ${m.missing.join(', ')})` : ''}`,
      {
        hint: `ask an admin to map one of these values to a role in ${c.kind === 'saml' ? 'attributes_to_roles' : 'claims_to_roles'} (gatehouse sso test shows the ${what})`,
        details: { connector: c.name, reason: 'sso_no_roles' },
      },
    );
  }
  if (!USER_NAME_RE.test(m.user)) {
    const claim = c.usernameClaim ?? 'email/preferred_username/sub';
    throw new GatehouseError(
      'GH_ERR_SSO_TOKEN_INVALID',
      `connector ${c.name}: the claim ${claim} (${JSON.stringify(claims[c.usernameClaim ?? 'email'] ?? null)}) is not a valid user name`,
      {
        hint: 'set username_claim to a claim that holds a name of lowercase letters, digits, ".", "_", "@" or "-"',
        details: { connector: c.name, reason: 'sso_token_invalid' },
      },
    );
  }
}

/** Claims usable as traits ({{external.<claim>}}): strings, numbers, booleans and lists of them. */
export function claimsToTraits(claims: Claims): Traits {
  const out: Traits = {};
  let n = 0;
  for (const [k, v] of Object.entries(claims)) {
    if (n >= MAX_TRAITS || !/^[A-Za-z0-9_.:/-]{1,128}$/.test(k)) continue;
    const list = (Array.isArray(v) ? v : [v])
      .filter((x) => typeof x === 'string' || typeof x === 'number' || typeof x === 'boolean')
      .map(String)
      .filter((x) => x.length > 0 && x.length <= 512)
      .slice(0, MAX_TRAIT_VALUES);
    if (list.length === 0) continue;
    Object.defineProperty(out, k, {
      value: [...new Set(list)],
      enumerable: true,
      writable: true,
      configurable: true,
    });
    n++;
  }
  return out;
}

function stateInvalid(why: string, connector?: string): GatehouseError {
  return new GatehouseError('GH_ERR_SSO_STATE_INVALID', `SSO login refused: ${why}`, {
    hint: 'start the login again from gatehouse login --auth NAME or the web UI; a callback URL works once',
    details: { reason: 'sso_state_invalid', ...(connector ? { connector } : {}) },
  });
}

function internal(e: unknown): GatehouseError {
  return new GatehouseError('GH_ERR_INTERNAL', 'internal error during the SSO login', {
    hint: 'see the gateway log',
    cause: e,
  });
}

function reasonOf(err: GatehouseError): LoginFailureReason {
  const r = (err.details as { reason?: string } | undefined)?.reason;
  switch (r) {
    case 'sso_state_invalid':
    case 'sso_idp_unavailable':
    case 'sso_idp_error':
    case 'sso_token_invalid':
    case 'sso_assertion_invalid':
    case 'sso_no_roles':
      return r;
    default:
      return err.code === 'GH_ERR_SSO_USER_CONFLICT' ? 'sso_user_conflict' : 'sso_token_invalid';
  }
}

function safeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}
