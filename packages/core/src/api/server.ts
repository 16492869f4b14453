import type { X509Certificate } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { posix } from 'node:path';
import { Readable, pipeline as streamPipeline, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { TLSSocket } from 'node:tls';
import { type AuditEmitter, isRecordingFormat, type RecordingQuery } from '@gatehouse/audit';
import { z } from 'zod';
import type { LoginService } from '../auth/login.js';
import { RateLimiter } from '../auth/ratelimit.js';
import type { WebSession, WebSessions } from '../auth/sessions.js';
import type { Authorizer, ConnectionContext, Principal } from '../authz/authorizer.js';
import type { Clock } from '../clock.js';
import type { GatehouseConfig } from '../config/load.js';
import type { DesktopTokens } from '../desktops/tokens.js';
import { GatehouseError, isGatehouseError, toGatehouseError } from '../errors.js';
import type { MfaDevices } from '../identity/mfa-devices.js';
import type {
  PublicKeyCredentialRequestOptionsJSON,
  RegistrationResponseJSON,
  WebAuthnService,
} from '../identity/webauthn.js';
import type { BrowserMfa, BrowserMfaLoginResponse } from '../mfa/browser.js';
import type { SessionMfa } from '../mfa/session.js';
import {
  MAX_NODE_AUDIT_BODY_BYTES,
  type NodeAuditRequest,
  type NodeAuditResponse,
} from '../nodes/audit-ingest.js';
import type { NodeHostCertRenewRequest, NodeHostCertResponse } from '../nodes/host-certs.js';
import type { NodeJoinRequest, NodeJoinResponse } from '../nodes/join-tokens.js';
import type { CaExportFormat } from '../pki/authority.js';
import { mintClientTicket } from '../pki/credentials.js';
import type { AccessRequestChange, RequestCertsRequest } from '../requests/types.js';
import type { FileRequest, TerminalRegistry, TerminalService } from '../sessions/terminal.js';
import { MAX_SAML_RESPONSE_BYTES } from '../sso/saml.js';
import type { SsoService } from '../sso/service.js';
import { adminPermissions } from './authorized.js';
import { authenticateCaller, type Caller, SESSION_COOKIE } from './caller.js';
import {
  auditHttpReject,
  compileRoute,
  header,
  matchRoute,
  parseCookies,
  type Route,
  readForm,
  readJson,
  remoteAddress,
  sendJson,
  sendProblem,
  sendText,
} from './http.js';
import {
  type AcceptInviteRequest,
  type AssumeAccessRequestResponse,
  type FileQuery,
  type FileUploadResponse,
  type GatewayView,
  type InviteInfo,
  type LoginResponse,
  MAX_UPLOAD_BYTES,
  type PingResponse,
  PUBLIC_ROUTES,
  type WhoamiResponse,
} from './public.js';
import { checkAuditQuery, checkRecordingQuery, limitParam } from './queries.js';
import { issueRouteCert, type RouteCertDeps } from './route-cert.js';
import { ADMIN_ROUTES, type AdminApi, type AuditQuery, type RecordingReadOptions } from './types.js';

export { SESSION_COOKIE } from './caller.js';

export interface ApiServerDeps {
  config: GatehouseConfig;
  /** Addresses clients are told: the bound ones once listening (port 0 resolved). */
  advertised: () => { publicAddr: string; mysqlListen?: string };
  /** SSH fingerprint of the host CA key that signs host certificates now (ping's host_ca_signer). */
  hostCaSigner?: () => string;
  /** This gateway and its live peers, for ping (from the registry's cache: no backend read per ping). */
  gateways?: () => { self: GatewayView; peers: GatewayView[] } | undefined;
  clock: Clock;
  version: string;
  audit: AuditEmitter;
  authorizer: Authorizer;
  sessions: WebSessions;
  login: LoginService;
  invites: {
    inspect(token: string): Promise<InviteInfo>;
    accept(token: string, req: AcceptInviteRequest, remoteAddr: string): Promise<void>;
  };
  exportCa: (format: CaExportFormat, opts: { type?: 'user' | 'host' | 'db'; hosts?: string }) => string;
  /** The OpenSSH KRL of revoked login certificates. */
  krl: () => Promise<Buffer>;
  /**
   * The admin API as `caller` may use it (api/authorized.ts): it makes every
   * permission check and visibility decision; this layer only routes, parses
   * and serializes.
   */
  admin: (caller: Principal, ctx: ConnectionContext) => AdminApi;
  /** GET /v1/requests/watch: the access request changes `who` (checked again per change) may see. */
  watchAccessRequests: (
    who: () => Promise<Principal>,
    after: number,
    signal: AbortSignal,
  ) => AsyncIterable<AccessRequestChange>;
  /** POST /v1/certs/request: the caller's certificate re-issued with approved access requests. */
  requestCerts: (caller: Principal, req: RequestCertsRequest, remoteAddr: string) => Promise<LoginResponse>;
  /** POST /v1/requests/:id/assume: a new web session with the roles of one more approved request. */
  assumeAccessRequest: (
    caller: Principal,
    session: WebSession,
    id: string,
    remoteAddr: string,
  ) => Promise<{ sessionId: string; response: AssumeAccessRequestResponse }>;
  /** For POST /v1/certs/route. */
  routeCerts: Omit<RouteCertDeps, 'clock' | 'authorizer'>;
  log: (level: 'debug' | 'error', msg: string, err?: unknown) => void;
  /** Redeems a node join token (POST /v1/nodes/join). */
  nodeJoin: (req: NodeJoinRequest, remoteAddr: string) => Promise<NodeJoinResponse>;
  /** Renews an agentless node's host certificate (POST /v1/nodes/renew-host-cert). */
  nodeRenewHostCert: (req: NodeHostCertRenewRequest, remoteAddr: string) => Promise<NodeHostCertResponse>;
  /** Writes a joined node's signed batch of audit events (POST /v1/nodes/audit). */
  nodeAudit: (req: NodeAuditRequest, remoteAddr: string) => Promise<NodeAuditResponse>;
  /** Files on nodes (GET/PUT /v1/files), through the SSH adapter's TerminalService. */
  terminals: TerminalRegistry;
  /** Desktop tokens for the RDCleanPath WebSocket (POST /v1/desktops/:name/token). */
  desktopTokens: DesktopTokens;
  /** Single sign-on logins (connectors, the callback, the CLI's one-time codes). */
  sso: SsoService;
  /** Second-factor devices, WebAuthn, and the password check before a security key login. */
  mfa: {
    devices: MfaDevices;
    webauthn: WebAuthnService;
    beginLogin: (req: {
      user: string;
      password: string;
      remoteAddr: string;
    }) => Promise<PublicKeyCredentialRequestOptionsJSON>;
  };
  /** Per-session MFA challenges and target-bound certificates (POST /v1/mfa/session/*). */
  sessionMfa: SessionMfa;
  /** The CLI's security key round trip through a gateway page (POST /v1/mfa/browser/*). */
  browserMfa: BrowserMfa;
  /** A login succeeded on this connection (the listener then keeps its source's handshake precedence). */
  authenticated?: (socket: Socket) => void;
}

interface Ctx {
  req: IncomingMessage;
  res: ServerResponse;
  url: URL;
  remoteAddr: string;
  /** On failure, close the connection: the request body may be left unread (an upload). */
  closeAfter?: boolean;
}

/** An upload whose body may outlast a fixed request deadline (the gateway gives it an idle limit instead). */
export function isFileUpload(req: IncomingMessage): boolean {
  return (
    req.method === PUBLIC_ROUTES.uploadFile[0] &&
    (req.url ?? '').split('?')[0] === PUBLIC_ROUTES.uploadFile[1]
  );
}

/** How long the rest of an oversized body is read and discarded after the 413, before the connection is cut. */
const OVERSIZED_DRAIN_MS = 5_000;

/** An upload that sends nothing for this long is cut off. */
const UPLOAD_IDLE_MS = 60_000;

/** A WebAuthn credential's JSON: bounded here; @simplewebauthn/server checks every field. */
const webauthnResponse = z
  .object({
    id: z.string().min(1).max(1024),
    rawId: z.string().min(1).max(1024),
    type: z.literal('public-key'),
    response: z.record(z.string(), z.unknown()),
    clientExtensionResults: z.record(z.string(), z.unknown()).default({}),
    authenticatorAttachment: z.string().max(32).optional(),
  })
  .strict();

const loginBody = z
  .object({
    user: z.string().min(1).max(128),
    password: z.string().max(4096),
    otp: z.string().max(16).optional(),
    webauthn: webauthnResponse.optional(),
    ssh_public_key: z.string().max(16_384).optional(),
    tls_public_key: z.string().max(16_384).optional(),
    ttl: z.string().max(32).optional(),
    route: z
      .union([
        z.object({
          kind: z.literal('db'),
          name: z.string(),
          user: z.string().optional(),
          database: z.string().optional(),
          protocol: z.string().optional(),
        }),
        z.object({ kind: z.literal('kube'), cluster: z.string() }),
      ])
      .optional(),
  })
  .strict();

const routeCertBody = z
  .object({
    route: z
      .object({
        kind: z.literal('db'),
        name: z.string().min(1).max(63),
        user: z.string().min(1).max(128).optional(),
        database: z.string().min(1).max(128).optional(),
      })
      .strict(),
  })
  .strict();

const mfaTargetBody = z.union([
  z.object({ kind: z.literal('node'), node: z.string().max(128), login: z.string().max(128) }).strict(),
  z.object({ kind: z.literal('db'), name: z.string().max(128), user: z.string().max(128) }).strict(),
  z.object({ kind: z.literal('kube'), cluster: z.string().max(128) }).strict(),
  z.object({ kind: z.literal('desktop'), desktop: z.string().max(128), login: z.string().max(128) }).strict(),
]);

const sessionMfaChallengeBody = z.object({ target: mfaTargetBody }).strict();

const sessionMfaCertsBody = z
  .object({
    challenge_id: z.string().max(128),
    response: z.union([
      z.object({ method: z.literal('totp'), code: z.string().max(16) }).strict(),
      z.object({ method: z.literal('webauthn'), credential: z.record(z.string(), z.unknown()) }).strict(),
    ]),
    ssh_public_key: z.string().max(16_384).optional(),
    tls_public_key: z.string().max(16_384).optional(),
  })
  .strict();

const nodeJoinBody = z
  .object({
    token: z.string().max(256),
    name: z.string().max(64),
    addr: z.string().max(300),
    labels: z.record(z.string().max(63), z.string().max(253)).optional(),
    host_public_key: z.string().max(16_384),
  })
  .strict();

const renewHostCertBody = z
  .object({
    node: z.string().max(64),
    cert: z.string().max(16_384),
    time: z.string().max(64),
    signature: z.string().max(1024),
    ttl: z.string().max(32).optional(),
  })
  .strict();

const nodeAuditBody = z
  .object({
    cert: z.string().max(16_384),
    sig: z.string().max(256),
    payload: z.string().max(MAX_NODE_AUDIT_BODY_BYTES),
  })
  .strict();

const webauthnLoginBeginBody = z
  .object({ user: z.string().min(1).max(128), password: z.string().max(4096) })
  .strict();

const browserCallback = {
  redirect_url: z.string().max(2048),
  state: z.string().max(128),
};
const browserMfaLoginBody = z
  .object({ user: z.string().min(1).max(128), password: z.string().max(4096), ...browserCallback })
  .strict();
const sessionMfaBrowserBody = z.object({ challenge_id: z.string().max(128), ...browserCallback }).strict();
const browserMfaTakeBody = z.object({ id: z.string().max(128) }).strict();

const passwordlessBody = z
  .object({
    webauthn: webauthnResponse,
    ssh_public_key: z.string().max(16_384).optional(),
    tls_public_key: z.string().max(16_384).optional(),
    ttl: z.string().max(32).optional(),
  })
  .strict();

const mfaTotpAddBody = z
  .object({ pending_id: z.string().max(64), name: z.string().max(256), code: z.string().max(16) })
  .strict();
const mfaWebAuthnBeginBody = z.object({ passkey: z.boolean() }).strict();
const mfaWebAuthnAddBody = z.object({ name: z.string().max(256), response: webauthnResponse }).strict();

const createRequestBody = z
  .object({
    roles: z.array(z.string().max(64)).max(16).optional(),
    resources: z.array(z.string().max(200)).max(16).optional(),
    reason: z.string().max(4096).optional(),
    ttl: z.string().max(32).optional(),
    user: z.string().max(128).optional(),
  })
  .strict();

const reviewRequestBody = z
  .object({ verdict: z.enum(['approve', 'deny']), reason: z.string().max(4096).optional() })
  .strict();

const dropRequestBody = z.object({ reason: z.string().max(4096).optional() }).strict();

const requestCertsBody = z
  .object({
    request_ids: z
      .array(z.string().regex(/^[0-9a-f]{8,64}$/))
      .min(1)
      .max(16),
    ssh_public_key: z.string().max(16_384).optional(),
    tls_public_key: z.string().max(16_384).optional(),
  })
  .strict();

const desktopTokenBody = z
  .object({
    login: z.string().min(1).max(256),
    /** A per-session MFA check's single-use token for this desktop and login (require_session_mfa). */
    mfa_token: z.string().max(128).optional(),
  })
  .strict();

const ssoStartBody = z
  .object({
    connector: z.string().min(1).max(63),
    redirect_url: z.string().min(1).max(512),
    client_challenge: z.string().max(64),
    ssh_public_key: z.string().max(16_384).optional(),
    tls_public_key: z.string().max(16_384).optional(),
    ttl: z.string().max(32).optional(),
  })
  .strict();

const ssoRedeemBody = z.object({ code: z.string().max(64), verifier: z.string().max(64) }).strict();

const noStore = { 'cache-control': 'no-store' };

/** A comment line this often keeps an idle watch open through proxies and shows a dead peer. */
const WATCH_PING_MS = 15_000;

/** Binds a web SSO login to the browser that started it; SameSite=Lax so the provider's redirect carries it. */
const SSO_BROWSER_COOKIE = 'gatehouse_sso';
/** Every kind's callback is under it (/v1/sso/oidc/callback, /v1/sso/github/callback). */
const SSO_COOKIE_PATH = '/v1/sso/';

const inviteBody = z.object({ password: z.string().max(4096), otp: z.string().max(16).optional() }).strict();

function parseBody<T>(schema: z.ZodType<T>, body: unknown): T {
  const r = schema.safeParse(body);
  if (!r.success) {
    const i = r.error.issues[0];
    throw new GatehouseError(
      'GH_ERR_VALIDATION',
      `invalid request: ${i?.path.join('.') || 'body'}: ${i?.message}`,
      {
        hint: 'check the request against the API reference in packages/core/README.md',
      },
    );
  }
  return r.data;
}

/**
 * The JSON API under /v1/. Public routes (ping, CA export, login, invites)
 * need no credentials; everything else needs a client certificate from the
 * user CA or a web session cookie (plus X-CSRF-Token on state changes).
 */
export function createApiHandler(d: ApiServerDeps): (req: IncomingMessage, res: ServerResponse) => void {
  const limiter = new RateLimiter(d.config.auth.loginRatePerMinute, () => d.clock.now().getTime());
  const max = d.config.listener.maxBodyBytes;

  // Reads change nothing; every other method needs the CSRF header with a cookie session.
  const caller = (ctx: Ctx): Promise<Caller> =>
    authenticateCaller(
      d,
      ctx.req,
      ctx.req.method === 'GET' || ctx.req.method === 'HEAD' ? 'none' : 'csrf-header',
    );

  /** SSO starts and redeems share the login rate limit (each costs the provider a request, or a guess). */
  const takeLoginSlot = (ctx: Ctx) => {
    if (!limiter.take(ctx.remoteAddr)) {
      throw new GatehouseError('GH_ERR_RATE_LIMITED', 'too many login attempts from this address', {
        hint: `wait ${limiter.retryAfter(ctx.remoteAddr)} s and try again`,
      });
    }
  };

  /** The caller, for their own MFA devices: local users only (an SSO user's factors are the provider's). */
  const localUser = async (ctx: Ctx) => {
    const c = await caller(ctx);
    const user = c.principal.user.name;
    const rec = await d.mfa.devices.record(user);
    if (rec?.sso) {
      throw new GatehouseError('GH_ERR_VALIDATION', 'single sign-on users have no Gatehouse MFA devices', {
        hint: `your second factor is your identity provider's (connector ${rec.sso.connector})`,
      });
    }
    return { user, by: { actor: user, remoteAddr: ctx.remoteAddr } };
  };

  const ssoCallback = async (ctx: Ctx, query = ctx.url.searchParams): Promise<void> => {
    const browserSecret = parseCookies(ctx.req.headers.cookie)[SSO_BROWSER_COOKIE];
    const out = await d.sso.callback(query, { browserSecret, remoteAddr: ctx.remoteAddr });
    const clear = `${SSO_BROWSER_COOKIE}=; Path=${SSO_COOKIE_PATH}; HttpOnly; Secure; SameSite=Lax; Max-Age=0`;
    switch (out.kind) {
      case 'redirect':
        ctx.res.writeHead(302, { location: out.location, 'cache-control': 'no-store' }).end();
        return;
      case 'web':
        d.authenticated?.(ctx.req.socket);
        // The page keeps the CSRF token in this tab's sessionStorage, as after a password login;
        // the fragment never reaches a server.
        ctx.res
          .writeHead(302, {
            location: `/web/login#sso_csrf=${encodeURIComponent(out.response.csrf_token)}`,
            'cache-control': 'no-store',
            'set-cookie': [
              sessionCookie(out.sessionId, Date.parse(out.response.expires) - d.clock.now().getTime()),
              clear,
            ],
          })
          .end();
        return;
      case 'web-error':
        ctx.res
          .writeHead(302, {
            location: `/web/login?sso_error=${encodeURIComponent(out.errorId)}`,
            'cache-control': 'no-store',
            'set-cookie': clear,
          })
          .end();
        return;
      default: {
        const never: never = out;
        throw new Error(`unknown SSO outcome ${String(never)}`);
      }
    }
  };

  const webauthnPing = () => {
    try {
      return { webauthn: { rp_id: d.mfa.webauthn.relyingParty().id } };
    } catch {
      // No DNS name in public_addr: the login page offers no security keys.
      return {};
    }
  };

  const routes: Route<Ctx>[] = [
    compileRoute('GET', PUBLIC_ROUTES.ping[1], async ({ res }) => {
      const at = d.advertised();
      const body: PingResponse = {
        cluster_name: d.config.clusterName,
        version: d.version,
        server_time: d.clock.now().toISOString(),
        second_factor: d.config.auth.secondFactor,
        public_addr: at.publicAddr,
        ...webauthnPing(),
        // MySQL clients need its own port (gatehouse db login writes it into ~/.my.cnf).
        ...(at.mysqlListen ? { mysql_listen: at.mysqlListen } : {}),
        ...(d.hostCaSigner ? { host_ca_signer: d.hostCaSigner() } : {}),
        ...(() => {
          const g = d.gateways?.();
          return g ? { gateway: g.self, peers: g.peers } : {};
        })(),
      };
      sendJson(res, 200, body);
    }),
    compileRoute('GET', PUBLIC_ROUTES.caExport[1], async ({ res, url }) => {
      const format = url.searchParams.get('format') ?? 'x509';
      const type = url.searchParams.get('type') ?? undefined;
      const hosts = url.searchParams.get('hosts') ?? undefined;
      if (!['sshd', 'known_hosts', 'x509', 'postgres', 'mariadb', 'kube'].includes(format)) {
        throw new GatehouseError('GH_ERR_VALIDATION', `unknown export format "${format}"`, {
          hint: 'use one of sshd, known_hosts, x509, postgres, mariadb, kube',
        });
      }
      if (type !== undefined && !['user', 'host', 'db'].includes(type)) {
        throw new GatehouseError('GH_ERR_VALIDATION', `unknown CA type "${type}"`, {
          hint: 'use user, host or db',
        });
      }
      sendText(
        res,
        200,
        d.exportCa(format as CaExportFormat, {
          ...(type ? { type: type as 'user' | 'host' | 'db' } : {}),
          ...(hosts ? { hosts } : {}),
        }),
      );
    }),
    compileRoute('GET', PUBLIC_ROUTES.caKrl[1], async ({ res }) => {
      const body = await d.krl();
      res.writeHead(200, {
        'content-type': 'application/octet-stream',
        'content-length': body.length,
        'cache-control': 'no-store',
        'x-content-type-options': 'nosniff',
      });
      res.end(body);
    }),
    compileRoute('POST', PUBLIC_ROUTES.login[1], async (ctx) => {
      if (!limiter.take(ctx.remoteAddr)) {
        const body = (await readJson(ctx.req, max).catch(() => ({}))) as { user?: unknown };
        await d.audit.emit({
          type: 'user.login',
          success: false,
          method: 'password',
          reason: 'rate_limited',
          error: 'too many login attempts from this address',
          user: typeof body.user === 'string' ? body.user.slice(0, 128) : 'unknown',
          addr: { remote: ctx.remoteAddr },
        });
        throw new GatehouseError('GH_ERR_RATE_LIMITED', 'too many login attempts from this address', {
          hint: `wait ${limiter.retryAfter(ctx.remoteAddr)} s and try again`,
        });
      }
      const req = parseBody(loginBody, await readJson(ctx.req, max));
      const { response, sessionId } = await d.login.login(req, { remoteAddr: ctx.remoteAddr });
      d.authenticated?.(ctx.req.socket);
      sendJson(ctx.res, 200, response, {
        'set-cookie': sessionCookie(sessionId, Date.parse(response.expires) - d.clock.now().getTime()),
      });
    }),
    compileRoute('POST', PUBLIC_ROUTES.webauthnLoginBegin[1], async (ctx) => {
      takeLoginSlot(ctx);
      const req = parseBody(webauthnLoginBeginBody, await readJson(ctx.req, max));
      sendJson(ctx.res, 200, await d.mfa.beginLogin({ ...req, remoteAddr: ctx.remoteAddr }), noStore);
    }),
    compileRoute('POST', PUBLIC_ROUTES.browserMfaLogin[1], async (ctx) => {
      takeLoginSlot(ctx);
      const { redirect_url, state, ...req } = parseBody(browserMfaLoginBody, await readJson(ctx.req, max));
      let options: PublicKeyCredentialRequestOptionsJSON | undefined;
      try {
        // The password first (counted like any login); then the user's keys are challenged.
        options = await d.mfa.beginLogin({ ...req, remoteAddr: ctx.remoteAddr });
      } catch (e) {
        // No key (or no relying party): the CLI falls back to an authenticator code.
        if (
          !isGatehouseError(e, 'GH_ERR_SECOND_FACTOR_NOT_ENROLLED') &&
          !isGatehouseError(e, 'GH_ERR_WEBAUTHN_UNAVAILABLE')
        )
          throw e;
      }
      const totp = (await d.mfa.devices.list(req.user)).some((x) => x.kind === 'totp');
      const body: BrowserMfaLoginResponse = {
        totp,
        ...(options
          ? {
              webauthn: await d.browserMfa.create(
                { redirect_url, state },
                { user: req.user, purpose: 'login', options },
              ),
            }
          : {}),
      };
      sendJson(ctx.res, 200, body, noStore);
    }),
    compileRoute('POST', PUBLIC_ROUTES.browserMfaTake[1], async (ctx) => {
      takeLoginSlot(ctx);
      const req = parseBody(browserMfaTakeBody, await readJson(ctx.req, max));
      sendJson(ctx.res, 200, await d.browserMfa.take(req.id, { remoteAddr: ctx.remoteAddr }), noStore);
    }),
    compileRoute('POST', PUBLIC_ROUTES.passwordlessBegin[1], async (ctx) => {
      takeLoginSlot(ctx);
      sendJson(ctx.res, 200, await d.mfa.webauthn.beginAssertion(), noStore);
    }),
    compileRoute('POST', PUBLIC_ROUTES.passwordlessLogin[1], async (ctx) => {
      takeLoginSlot(ctx);
      const req = parseBody(passwordlessBody, await readJson(ctx.req, max));
      const { response, sessionId } = await d.login.passwordless(req, { remoteAddr: ctx.remoteAddr });
      d.authenticated?.(ctx.req.socket);
      sendJson(ctx.res, 200, response, {
        'set-cookie': sessionCookie(sessionId, Date.parse(response.expires) - d.clock.now().getTime()),
      });
    }),
    compileRoute('GET', PUBLIC_ROUTES.mfaDevices[1], async (ctx) => {
      const me = await localUser(ctx);
      sendJson(ctx.res, 200, await d.mfa.devices.list(me.user), noStore);
    }),
    compileRoute('POST', PUBLIC_ROUTES.mfaTotpBegin[1], async (ctx) => {
      const me = await localUser(ctx);
      sendJson(ctx.res, 200, await d.mfa.devices.beginTotp(me.user), noStore);
    }),
    compileRoute('POST', PUBLIC_ROUTES.mfaTotpAdd[1], async (ctx) => {
      const me = await localUser(ctx);
      const req = parseBody(mfaTotpAddBody, await readJson(ctx.req, max));
      sendJson(ctx.res, 201, await d.mfa.devices.finishTotp(me.user, req, me.by));
    }),
    compileRoute('POST', PUBLIC_ROUTES.mfaWebAuthnBegin[1], async (ctx) => {
      const me = await localUser(ctx);
      const req = parseBody(mfaWebAuthnBeginBody, await readJson(ctx.req, max));
      sendJson(ctx.res, 200, await d.mfa.webauthn.beginRegistration(me.user, req), noStore);
    }),
    compileRoute('POST', PUBLIC_ROUTES.mfaWebAuthnAdd[1], async (ctx) => {
      const me = await localUser(ctx);
      const req = parseBody(mfaWebAuthnAddBody, await readJson(ctx.req, max));
      const response = req.response as unknown as RegistrationResponseJSON;
      sendJson(
        ctx.res,
        201,
        await d.mfa.webauthn.finishRegistration(me.user, { name: req.name, response }, me.by),
      );
    }),
    compileRoute('DELETE', PUBLIC_ROUTES.mfaRemove[1], async (ctx, p) => {
      const me = await localUser(ctx);
      sendJson(ctx.res, 200, await d.mfa.devices.remove(me.user, p.id!, me.by));
    }),
    compileRoute('GET', PUBLIC_ROUTES.ssoConnectors[1], async (ctx) => {
      sendJson(ctx.res, 200, await d.sso.buttons());
    }),
    compileRoute('POST', PUBLIC_ROUTES.ssoStart[1], async (ctx) => {
      takeLoginSlot(ctx);
      const req = parseBody(ssoStartBody, await readJson(ctx.req, max));
      sendJson(ctx.res, 200, await d.sso.startClient(req, 'cli', { remoteAddr: ctx.remoteAddr }));
    }),
    compileRoute('GET', PUBLIC_ROUTES.ssoWebStart[1], async (ctx, p) => {
      takeLoginSlot(ctx);
      const { authUrl, browserSecret, kind } = await d.sso.startWeb(p.name!, { remoteAddr: ctx.remoteAddr });
      // A SAML IdP comes back with a cross-site POST, which carries no Lax cookie: the binding
      // cookie is SameSite=None there (still HttpOnly, Secure, and only under /v1/sso/).
      const sameSite = kind === 'saml' ? 'None' : 'Lax';
      ctx.res
        .writeHead(302, {
          location: authUrl,
          'cache-control': 'no-store',
          'set-cookie': `${SSO_BROWSER_COOKIE}=${browserSecret}; Path=${SSO_COOKIE_PATH}; HttpOnly; Secure; SameSite=${sameSite}; Max-Age=600`,
        })
        .end();
    }),
    compileRoute('GET', PUBLIC_ROUTES.ssoCallback[1], (ctx) => ssoCallback(ctx)),
    compileRoute('GET', PUBLIC_ROUTES.ssoGithubCallback[1], (ctx) => ssoCallback(ctx)),
    compileRoute('POST', PUBLIC_ROUTES.ssoSamlAcs[1], async (ctx) => {
      const form = await readForm(ctx.req, Math.max(max, MAX_SAML_RESPONSE_BYTES + 8192));
      // RelayState carries the attempt's state, as `state` does in OIDC.
      const query = new URLSearchParams({
        state: form.get('RelayState') ?? '',
        SAMLResponse: form.get('SAMLResponse') ?? '',
      });
      await ssoCallback(ctx, query);
    }),
    compileRoute('GET', PUBLIC_ROUTES.ssoSamlMetadata[1], async (ctx, p) => {
      const xml = await d.sso.spMetadata(p.name!);
      ctx.res
        .writeHead(200, {
          'content-type': 'application/samlmetadata+xml; charset=utf-8',
          'content-length': Buffer.byteLength(xml),
          'x-content-type-options': 'nosniff',
        })
        .end(xml);
    }),
    compileRoute('GET', PUBLIC_ROUTES.ssoError[1], async (ctx, p) => {
      sendJson(ctx.res, 200, await d.sso.webError(p.id!));
    }),
    compileRoute('POST', PUBLIC_ROUTES.ssoRedeem[1], async (ctx) => {
      takeLoginSlot(ctx);
      const req = parseBody(ssoRedeemBody, await readJson(ctx.req, max));
      const out = await d.sso.redeem(req, { remoteAddr: ctx.remoteAddr });
      if (out.kind === 'login') d.authenticated?.(ctx.req.socket);
      sendJson(ctx.res, 200, out);
    }),
    compileRoute('POST', PUBLIC_ROUTES.logout[1], async (ctx) => {
      const id = parseCookies(ctx.req.headers.cookie)[SESSION_COOKIE];
      const c = await caller(ctx);
      if (id && c.session) await d.sessions.delete(id);
      await d.audit.emit({
        type: 'user.logout',
        user: c.principal.user.name,
        addr: { remote: ctx.remoteAddr },
      });
      ctx.res.writeHead(204, { 'set-cookie': sessionCookie('', 0), 'cache-control': 'no-store' }).end();
    }),
    compileRoute('GET', PUBLIC_ROUTES.inspectInvite[1], async (ctx, p) => {
      sendJson(ctx.res, 200, await d.invites.inspect(p.token!));
    }),
    compileRoute('POST', PUBLIC_ROUTES.acceptInvite[1], async (ctx, p) => {
      if (!limiter.take(ctx.remoteAddr)) {
        throw new GatehouseError('GH_ERR_RATE_LIMITED', 'too many attempts from this address', {
          hint: `wait ${limiter.retryAfter(ctx.remoteAddr)} s and try again`,
        });
      }
      const body = parseBody(inviteBody, await readJson(ctx.req, max));
      await d.invites.accept(p.token!, body, ctx.remoteAddr);
      ctx.res.writeHead(204, { 'cache-control': 'no-store' }).end();
    }),
    compileRoute('GET', PUBLIC_ROUTES.whoami[1], async (ctx) => {
      const c = await caller(ctx);
      const p = c.principal;
      const body: WhoamiResponse = {
        user: p.user.name,
        roles: p.roles.map((r) => r.name),
        traits: p.user.traits,
        logins: p.checker.sshLogins(),
        expires: p.identity.expires.toISOString(),
        auth: c.auth,
        ...(p.identity.accessRequests?.length ? { access_requests: p.identity.accessRequests } : {}),
        permissions: adminPermissions(p),
      };
      sendJson(ctx.res, 200, body);
    }),
    compileRoute('POST', PUBLIC_ROUTES.routeCert[1], async (ctx) => {
      const c = await caller(ctx);
      const sock = ctx.req.socket;
      const peer = sock instanceof TLSSocket ? sock.getPeerX509Certificate() : undefined;
      if (c.auth !== 'client-cert' || !peer) {
        throw new GatehouseError(
          'GH_ERR_UNAUTHENTICATED',
          'route certificates are issued for a client certificate',
          {
            hint: 'log in with gatehouse login, then run gatehouse db login NAME',
          },
        );
      }
      const body = parseBody(routeCertBody, await readJson(ctx.req, max));
      const deps = { ...d.routeCerts, clock: d.clock, authorizer: d.authorizer };
      sendJson(
        ctx.res,
        200,
        await issueRouteCert(deps, c.principal, peer as X509Certificate, body, ctx.remoteAddr),
      );
    }),
    compileRoute('POST', PUBLIC_ROUTES.requestCerts[1], async (ctx) => {
      const c = await caller(ctx);
      if (c.auth !== 'client-cert') {
        throw new GatehouseError(
          'GH_ERR_UNAUTHENTICATED',
          'certificates for access requests are issued for a client certificate',
          { hint: 'log in with gatehouse login, then run gatehouse login --request-id ID' },
        );
      }
      const body = parseBody(requestCertsBody, await readJson(ctx.req, max));
      sendJson(ctx.res, 200, await d.requestCerts(c.principal, body, ctx.remoteAddr));
    }),
    compileRoute('POST', PUBLIC_ROUTES.assumeAccessRequest[1], async (ctx, p) => {
      const c = await caller(ctx);
      if (c.auth !== 'session' || !c.session) {
        throw new GatehouseError('GH_ERR_VALIDATION', 'only a browser session assumes an access request', {
          hint: 'from the command line, run gatehouse login --request-id ID',
        });
      }
      await readJson(ctx.req, max);
      const { sessionId, response } = await d.assumeAccessRequest(
        c.principal,
        c.session.value,
        p.id!,
        ctx.remoteAddr,
      );
      await d.sessions.delete(c.session.id);
      sendJson(ctx.res, 200, response, {
        'set-cookie': sessionCookie(sessionId, Date.parse(response.expires) - d.clock.now().getTime()),
      });
    }),
    compileRoute('GET', PUBLIC_ROUTES.watchAccessRequests[1], async (ctx) => {
      const from = ctx.url.searchParams.get('after') ?? header(ctx.req, 'last-event-id') ?? '0';
      if (!/^\d{1,15}$/.test(from)) {
        throw new GatehouseError('GH_ERR_VALIDATION', `after=${from.slice(0, 32)} is not a cursor`, {
          hint: 'pass the id of the last event received (a number), or 0 for everything',
        });
      }
      // Authenticated before the 200, and again before each change (a lock ends the stream).
      await caller(ctx);
      const abort = new AbortController();
      ctx.res.once('close', () => abort.abort());
      const changes = d.watchAccessRequests(
        async () => (await caller(ctx)).principal,
        Number(from),
        abort.signal,
      );
      ctx.res.writeHead(200, {
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-store',
        'x-accel-buffering': 'no',
      });
      ctx.res.flushHeaders();
      const ping = setInterval(() => ctx.res.write(': ping\n\n'), WATCH_PING_MS);
      try {
        for await (const c of changes) {
          ctx.res.write(`id: ${c.cursor}\nevent: access_request\ndata: ${JSON.stringify(c)}\n\n`);
        }
      } catch (err) {
        if (abort.signal.aborted) return;
        // Headers are out: the refusal (a lock, an expired certificate) is the stream's last event.
        const ge =
          toGatehouseError(err) ??
          new GatehouseError('GH_ERR_INTERNAL', 'the watch failed', {
            cause: err,
            hint: 'see the gateway log',
          });
        if (!toGatehouseError(err)) d.log('error', 'access request watch failed', err);
        await auditHttpReject(
          d.audit,
          ge,
          { method: 'GET', path: ctx.url.pathname, remoteAddr: ctx.remoteAddr },
          d.log,
        );
        ctx.res.write(`event: error\ndata: ${JSON.stringify(ge.toProblem())}\n\n`);
      } finally {
        clearInterval(ping);
        abort.abort();
        ctx.res.end();
      }
    }),
    compileRoute('POST', PUBLIC_ROUTES.sessionMfaChallenge[1], async (ctx) => {
      const c = await caller(ctx);
      const body = parseBody(sessionMfaChallengeBody, await readJson(ctx.req, max));
      sendJson(ctx.res, 200, await d.sessionMfa.challenge(c.principal, body, { remoteAddr: ctx.remoteAddr }));
    }),
    compileRoute('POST', PUBLIC_ROUTES.sessionMfaBrowser[1], async (ctx) => {
      const c = await caller(ctx);
      const { challenge_id, ...cb } = parseBody(sessionMfaBrowserBody, await readJson(ctx.req, max));
      const p = await d.sessionMfa.browserOptions(c.principal, challenge_id);
      sendJson(
        ctx.res,
        200,
        await d.browserMfa.create(cb, {
          user: p.user,
          purpose: 'session',
          target: p.target,
          options: p.options as unknown as PublicKeyCredentialRequestOptionsJSON,
        }),
        noStore,
      );
    }),
    compileRoute('POST', PUBLIC_ROUTES.sessionMfaCerts[1], async (ctx) => {
      // Each answer is a guess at a 6-digit code: limited like logins.
      if (!limiter.take(ctx.remoteAddr)) {
        throw new GatehouseError('GH_ERR_RATE_LIMITED', 'too many attempts from this address', {
          hint: `wait ${limiter.retryAfter(ctx.remoteAddr)} s and try again`,
        });
      }
      const c = await caller(ctx);
      const body = parseBody(sessionMfaCertsBody, await readJson(ctx.req, max));
      sendJson(ctx.res, 200, await d.sessionMfa.complete(c.principal, body, { remoteAddr: ctx.remoteAddr }));
    }),
    compileRoute('POST', PUBLIC_ROUTES.desktopToken[1], async (ctx, p) => {
      const c = await caller(ctx);
      const body = parseBody(desktopTokenBody, await readJson(ctx.req, max));
      // After a check the desktop token is minted for the bound identity: the Authorizer
      // accepts it for this desktop and login only (mfa/target.ts).
      const identity =
        body.mfa_token === undefined
          ? c.principal.identity
          : await d.sessionMfa.redeemToken(body.mfa_token, c.principal.user.name);
      const view = await d.desktopTokens.mint(identity, p.name!, body.login, {
        remoteAddr: ctx.remoteAddr,
        protocol: 'rdp',
      });
      sendJson(ctx.res, 200, view);
    }),
    compileRoute('POST', PUBLIC_ROUTES.nodeJoin[1], async (ctx) => {
      // Tokens are long random strings; the limiter stops guessing and floods of joins alike.
      if (!limiter.take(ctx.remoteAddr)) {
        throw new GatehouseError('GH_ERR_RATE_LIMITED', 'too many attempts from this address', {
          hint: `wait ${limiter.retryAfter(ctx.remoteAddr)} s and try again`,
        });
      }
      const body = parseBody(nodeJoinBody, await readJson(ctx.req, max));
      sendJson(ctx.res, 200, await d.nodeJoin(body, ctx.remoteAddr));
    }),
    compileRoute('POST', PUBLIC_ROUTES.nodeRenewHostCert[1], async (ctx) => {
      if (!limiter.take(ctx.remoteAddr)) {
        throw new GatehouseError('GH_ERR_RATE_LIMITED', 'too many attempts from this address', {
          hint: `wait ${limiter.retryAfter(ctx.remoteAddr)} s and try again`,
        });
      }
      const body = parseBody(renewHostCertBody, await readJson(ctx.req, max));
      sendJson(ctx.res, 200, await d.nodeRenewHostCert(body, ctx.remoteAddr));
    }),
    compileRoute('POST', PUBLIC_ROUTES.nodeAudit[1], async (ctx) => {
      // Authenticated by the signature inside (NodeAuditIngest); refused batches are throttled per
      // address like joins, so a flood of forgeries costs the attacker, not the audit log.
      const body = parseBody(nodeAuditBody, await readJson(ctx.req, MAX_NODE_AUDIT_BODY_BYTES + 32_768));
      try {
        sendJson(ctx.res, 200, await d.nodeAudit(body, ctx.remoteAddr));
      } catch (e) {
        if (toGatehouseError(e)?.code === 'GH_ERR_UNAUTHENTICATED' && !limiter.take(ctx.remoteAddr)) {
          throw new GatehouseError('GH_ERR_RATE_LIMITED', 'too many refused batches from this address', {
            hint: `wait ${limiter.retryAfter(ctx.remoteAddr)} s and try again`,
          });
        }
        throw e;
      }
    }),
    compileRoute('GET', PUBLIC_ROUTES.downloadFile[1], async (ctx) => {
      const c = await caller(ctx);
      const service = terminalService();
      const req = await fileRequest(ctx, c, d.sessionMfa);
      const file = await service.readFile(req);
      ctx.res.writeHead(200, {
        'content-type': 'application/octet-stream',
        'content-disposition': attachment(req.path),
        'content-length': file.size,
        'cache-control': 'no-store',
        'x-content-type-options': 'nosniff',
      });
      try {
        await pipeline(file.stream, ctx.res);
      } catch (err) {
        // The browser cancelled the download: nothing failed on our side.
        if (ctx.res.destroyed && !ctx.res.writableFinished && !file.stream.errored) return;
        throw err;
      }
    }),
    compileRoute('PUT', PUBLIC_ROUTES.uploadFile[1], async (ctx) => {
      ctx.closeAfter = true;
      const c = await caller(ctx);
      const declared = Number(ctx.req.headers['content-length'] ?? '0');
      if (declared > MAX_UPLOAD_BYTES) throw uploadTooLarge();
      const service = terminalService();
      const req = await fileRequest(ctx, c, d.sessionMfa);
      const result = await service.writeFile(req, limitedBody(ctx.req));
      const body: FileUploadResponse = { bytes: result.bytes };
      sendJson(ctx.res, 200, body);
    }),
    ...adminRoutes(),
  ];

  function terminalService(): TerminalService {
    const service = d.terminals.get();
    if (!service) {
      throw new GatehouseError('GH_ERR_UPSTREAM_UNAVAILABLE', 'no SSH adapter runs in this gateway', {
        hint: 'files on nodes need the SSH adapter (gatehouse start serves it by default)',
      });
    }
    return service;
  }

  function adminRoutes(): Route<Ctx>[] {
    const out: Route<Ctx>[] = [];
    for (const [name, [method, path]] of Object.entries(ADMIN_ROUTES) as [
      keyof AdminApi,
      readonly [string, string],
    ][]) {
      out.push(
        compileRoute(method, path, async (ctx, params) => {
          const c = await caller(ctx);
          const body =
            method === 'GET' || method === 'DELETE'
              ? {}
              : ((await readJson(ctx.req, max)) as Record<string, unknown>);
          const abort = new AbortController();
          ctx.res.on('close', () => abort.abort());
          const admin = d.admin(c.principal, { remoteAddr: ctx.remoteAddr, protocol: 'http' });
          const result = await callAdmin(admin, name, params, body, ctx.url, abort.signal);
          if (name === 'readRecording') {
            await streamRecording(ctx.res, result as AsyncIterable<Uint8Array>, ctx.url);
            return;
          }
          if (result === undefined) ctx.res.writeHead(204, { 'cache-control': 'no-store' }).end();
          else sendJson(ctx.res, name === 'createUser' ? 201 : 200, result);
        }),
      );
    }
    return out;
  }

  return (req, res) => {
    const remoteAddr = remoteAddress(req);
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'https://gatehouse.invalid');
    } catch {
      sendProblem(res, new GatehouseError('GH_ERR_BAD_REQUEST', 'malformed request URL'));
      return;
    }
    const ctx: Ctx = { req, res, url, remoteAddr };
    const m = matchRoute(routes, req.method ?? 'GET', url.pathname);
    if (!m) {
      sendProblem(
        res,
        new GatehouseError('GH_ERR_NOT_FOUND', `no API route ${url.pathname}`, {
          hint: 'API routes live under /v1/',
        }),
      );
      return;
    }
    if ('allowed' in m) {
      sendProblem(res, new GatehouseError('GH_ERR_BAD_REQUEST', `method ${req.method} not allowed here`), {
        allow: m.allowed.join(', '),
      });
      return;
    }
    m.route
      .handler(ctx, m.params)
      .catch((err: unknown) => fail(ctx, err))
      .catch((err: unknown) => {
        // Answering the failure failed too (the client is gone): this request
        // ends here; nothing about it may take the process down.
        d.log('error', `API ${req.method} ${url.pathname}: answering a failed request failed`, err);
        res.destroy();
      });
  };

  async function fail(ctx: Ctx, err: unknown): Promise<void> {
    const known = toGatehouseError(err);
    const ge =
      known ??
      new GatehouseError('GH_ERR_INTERNAL', 'internal error', { cause: err, hint: 'see the gateway log' });
    if (!known) d.log('error', `API ${ctx.req.method} ${ctx.url.pathname} failed`, err);
    await auditHttpReject(
      d.audit,
      ge,
      { method: ctx.req.method ?? '', path: ctx.url.pathname, remoteAddr: ctx.remoteAddr },
      d.log,
    );
    if (ctx.res.headersSent || ctx.res.destroyed) {
      ctx.res.destroy();
      return;
    }
    if (ge.code === 'GH_ERR_PAYLOAD_TOO_LARGE' && !ctx.req.complete) {
      // The client is still sending: answer now, and let the HTTP server read
      // and discard the rest (nothing is kept) so the client can read the 413
      // instead of a reset. A body that does not end soon costs its connection.
      sendProblem(ctx.res, ge);
      const socket = ctx.req.socket;
      const t = setTimeout(() => {
        if (!ctx.req.complete) socket?.destroy();
      }, OVERSIZED_DRAIN_MS);
      t.unref();
      ctx.req.once('end', () => clearTimeout(t));
      socket?.once('close', () => clearTimeout(t));
      return;
    }
    // An upload refused early, or a body that missed its deadline, must not
    // be parsed as the next request: `Connection: close` makes the server
    // close once this answer is out.
    const close = !ctx.req.complete && (ctx.closeAfter || ge.code === 'GH_ERR_REQUEST_TIMEOUT');
    sendProblem(ctx.res, ge, close ? { connection: 'close' } : {});
  }
}

async function callAdmin(
  admin: AdminApi,
  name: keyof AdminApi,
  p: Record<string, string>,
  body: Record<string, unknown>,
  url: URL,
  signal?: AbortSignal,
): Promise<unknown> {
  const b = body as never;
  switch (name) {
    case 'listUsers':
      return admin.listUsers();
    case 'getUser':
      return admin.getUser(p.name!);
    case 'createUser':
      return admin.createUser(b);
    case 'updateUser':
      return admin.updateUser(p.name!, b);
    case 'deleteUser':
      return admin.deleteUser(p.name!);
    case 'resetUser':
      return admin.resetUser(p.name!);
    case 'lockUser':
      return admin.lockUser(p.name!, b);
    case 'unlockUser':
      return admin.unlockUser(p.name!);
    case 'listRoles':
      return admin.listRoles();
    case 'getRole':
      return admin.getRole(p.name!);
    case 'putRole':
      return admin.putRole(String(body.text ?? ''), { create: body.create === true });
    case 'deleteRole':
      return admin.deleteRole(p.name!);
    case 'lintRole':
      return admin.lintRole(String(body.text ?? ''));
    case 'listLocks':
      return admin.listLocks();
    case 'createLock':
      return admin.createLock(b);
    case 'deleteLock':
      return admin.deleteLock(p.id!);
    case 'searchAudit':
      return admin.searchAudit(auditQueryFromUrl(url));
    case 'verifyAudit': {
      const since = url.searchParams.get('since');
      return admin.verifyAudit(since === null ? {} : { since });
    }
    case 'listDatabases':
      return admin.listDatabases();
    case 'addDatabase':
      return admin.addDatabase(b);
    case 'removeDatabase':
      return admin.removeDatabase(p.name!);
    case 'createJoinToken':
      return admin.createJoinToken(b);
    case 'listRecordings':
      return admin.listRecordings(recordingQueryFromUrl(url));
    case 'getRecording':
      return admin.getRecording(p.id!);
    case 'deleteRecording':
      return admin.deleteRecording(p.id!, { reason: typeof body.reason === 'string' ? body.reason : '' });
    case 'readRecording':
      return admin.readRecording(p.id!, { ...recordingReadFromUrl(url), ...(signal ? { signal } : {}) });
    case 'listKubeClusters':
      return admin.listKubeClusters();
    case 'addKubeCluster':
      return admin.addKubeCluster(b);
    case 'removeKubeCluster':
      return admin.removeKubeCluster(p.name!);
    case 'listNodes':
      return admin.listNodes();
    case 'addNode':
      return admin.addNode(b);
    case 'removeNode':
      return admin.removeNode(p.name!);
    case 'signNodeHostCert':
      return admin.signNodeHostCert({ ...(body as object), node: p.name! } as never);
    case 'listDesktops':
      return admin.listDesktops();
    case 'addDesktop':
      return admin.addDesktop(b);
    case 'removeDesktop':
      return admin.removeDesktop(p.name!);
    case 'listSsoConnectors':
      return admin.listSsoConnectors();
    case 'putSsoConnector':
      return admin.putSsoConnector(b);
    case 'removeSsoConnector':
      return admin.removeSsoConnector(p.name!);
    case 'testSsoConnector':
      return admin.testSsoConnector(p.name!, b);
    case 'caStatus':
      return admin.caStatus();
    case 'rotateCa':
      return admin.rotateCa(b);
    case 'listSessions':
      return admin.listSessions();
    case 'killSession':
      return admin.killSession(p.id!);
    case 'listAccessRequests':
      return admin.listAccessRequests();
    case 'getAccessRequest':
      return admin.getAccessRequest(p.id!);
    case 'createAccessRequest':
      return admin.createAccessRequest(parseBody(createRequestBody, body));
    case 'reviewAccessRequest':
      return admin.reviewAccessRequest(p.id!, parseBody(reviewRequestBody, body));
    case 'dropAccessRequest':
      return admin.dropAccessRequest(p.id!, parseBody(dropRequestBody, body));
    default: {
      const never: never = name;
      throw new GatehouseError('GH_ERR_NOT_FOUND', `unknown admin call ${String(never)}`);
    }
  }
}

function auditQueryFromUrl(url: URL): AuditQuery {
  const s = url.searchParams;
  const q: AuditQuery = {};
  const from = s.get('from');
  const to = s.get('to');
  const types = s.get('types');
  const user = s.get('user');
  const sessionId = s.get('session_id');
  const text = s.get('q');
  const limit = s.get('limit');
  const cursor = s.get('cursor');
  const n = limitParam(limit);
  // An empty from= is a bound the client meant to set: it reaches the check, not the search unbounded.
  if (from !== null) q.from = from;
  if (to !== null) q.to = to;
  if (types) q.types = types.split(',').filter(Boolean);
  if (user) q.user = user;
  if (sessionId) q.session_id = sessionId;
  if (text) q.q = text;
  if (n !== undefined) q.limit = n;
  if (cursor) q.cursor = cursor;
  return checkAuditQuery(q);
}

function recordingQueryFromUrl(url: URL): RecordingQuery {
  const s = url.searchParams;
  const q: RecordingQuery = {};
  const user = s.get('user');
  const kind = s.get('kind');
  const from = s.get('from');
  const to = s.get('to');
  const limit = s.get('limit');
  if (user) q.user = user;
  if (kind) {
    if (kind !== 'ssh' && kind !== 'kube' && kind !== 'desktop') {
      throw new GatehouseError('GH_ERR_VALIDATION', `unknown recording kind "${kind}"`, {
        hint: 'use ssh, kube or desktop',
      });
    }
    q.kind = kind;
  }
  const n = limitParam(limit);
  if (from !== null) q.from = from;
  if (to !== null) q.to = to;
  if (n !== undefined) q.limit = n;
  return checkRecordingQuery(q);
}

function recordingReadFromUrl(url: URL): RecordingReadOptions {
  const format = url.searchParams.get('format') ?? 'json';
  if (!isRecordingFormat(format)) {
    throw new GatehouseError('GH_ERR_VALIDATION', `unknown recording format "${format}"`, {
      hint: 'use format=json, asciicast or text',
    });
  }
  const follow = url.searchParams.get('follow');
  return { format, follow: follow === '1' || follow === 'true' };
}

const RECORDING_CONTENT_TYPES = {
  json: 'application/x-ndjson',
  asciicast: 'application/x-asciicast',
  text: 'application/octet-stream',
} as const;

/** Streams a recording with backpressure; an error after the headers cuts the connection (fail() destroys it). */
async function streamRecording(
  res: ServerResponse,
  body: AsyncIterable<Uint8Array>,
  url: URL,
): Promise<void> {
  const { format = 'json' } = recordingReadFromUrl(url);
  res.writeHead(200, { 'content-type': RECORDING_CONTENT_TYPES[format], 'cache-control': 'no-store' });
  await pipeline(Readable.from(body), res);
}

/**
 * The FileRequest of a /v1/files call; a missing parameter is a 400. With
 * `mfa_token` (a per-session MFA check for this node and login, as the web
 * terminal's), the transfer runs as the token's bound identity; the
 * Authorizer checks that the binding is for this node and login.
 */
async function fileRequest(ctx: Ctx, c: Caller, mfa: Pick<SessionMfa, 'redeemToken'>): Promise<FileRequest> {
  const s = ctx.url.searchParams;
  const q: FileQuery = { node: s.get('node') ?? '', login: s.get('login') ?? '', path: s.get('path') ?? '' };
  const missing = (['node', 'login', 'path'] as const).filter((k) => q[k] === '' || q[k].length > 4096);
  if (missing.length > 0) {
    throw new GatehouseError('GH_ERR_BAD_REQUEST', `missing or invalid ${missing.join(', ')}`, {
      hint: 'send node=NAME&login=LOGIN&path=PATH',
    });
  }
  const token = s.get('mfa_token');
  const identity =
    token === null ? c.principal.identity : await mfa.redeemToken(token, c.principal.user.name);
  return { identity, ticket: mintClientTicket(identity, q.login), ...q, remoteAddr: ctx.remoteAddr };
}

/** Content-Disposition for a download: the file's base name, ASCII fallback plus RFC 8187 UTF-8. */
function attachment(path: string): string {
  const name = posix.basename(path) || 'download';
  const ascii = name.replace(/[^\x20-\x7e]|["\\]/g, '_');
  return `attachment; filename="${ascii}"; filename*=UTF-8''${encodeURIComponent(name)}`;
}

function uploadTooLarge(): GatehouseError {
  return new GatehouseError('GH_ERR_PAYLOAD_TOO_LARGE', `upload larger than ${MAX_UPLOAD_BYTES} bytes`, {
    hint: 'copy large files with scp or sftp through the gateway',
  });
}

/**
 * The upload body, cut off past MAX_UPLOAD_BYTES (a chunked body declares
 * no length) or after UPLOAD_IDLE_MS without a byte; either way the stream
 * the adapter reads fails, and so does the upload.
 */
function limitedBody(req: IncomingMessage): Readable {
  let seen = 0;
  let idle: NodeJS.Timeout | undefined;
  const arm = () => {
    clearTimeout(idle);
    idle = setTimeout(
      () =>
        counter.destroy(
          new GatehouseError('GH_ERR_BAD_REQUEST', `upload stalled: no data for ${UPLOAD_IDLE_MS / 1000} s`),
        ),
      UPLOAD_IDLE_MS,
    );
    idle.unref();
  };
  const counter = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      seen += chunk.length;
      if (seen > MAX_UPLOAD_BYTES) return cb(uploadTooLarge());
      arm();
      cb(null, chunk);
    },
  });
  arm();
  counter.once('close', () => clearTimeout(idle));
  streamPipeline(req, counter, () => {
    // Errors reach the reader through `counter` (pipeline destroys it with them).
  });
  return counter;
}

function sessionCookie(id: string, maxAgeMs: number): string {
  return `${SESSION_COOKIE}=${id}; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age=${Math.max(0, Math.floor(maxAgeMs / 1000))}`;
}
