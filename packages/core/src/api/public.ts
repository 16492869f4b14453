import type { Route, Traits } from '../identity/types.js';
import type { AdminPermissions } from './types.js';

/** GET /v1/ping: unauthenticated; what a client needs before login. */
export interface PingResponse {
  cluster_name: string;
  version: string;
  server_time: string;
  second_factor: 'otp' | 'off';
  /** host:port clients should use. */
  public_addr: string;
  /** host:port of the MySQL listener, when enabled. */
  mysql_listen?: string | undefined;
  /** Security keys and passkeys work here (public_addr is a DNS name: the RP id). */
  webauthn?: { rp_id: string } | undefined;
  /**
   * `SHA256:` fingerprint of the host CA key that signs host certificates now
   * (the new key from a rotation's update_servers on): a joined node whose
   * certificate is from another key renews it (decision 0035).
   */
  host_ca_signer?: string | undefined;
  /**
   * The gateway that answered, and the other live gateways sharing its
   * backend (decision 0039-gateway-peers); absent before it listens.
   */
  gateway?: GatewayView | undefined;
  peers?: GatewayView[] | undefined;
}

/** One gateway of the cluster as /v1/ping shows it (no internal address: ping is unauthenticated). */
export interface GatewayView {
  name: string;
  version: string;
  /** ISO time it started. */
  started: string;
}

/** POST /v1/login */
export interface LoginRequest {
  user: string;
  password: string;
  /** TOTP code, when second_factor is otp (or `webauthn` instead). */
  otp?: string | undefined;
  /**
   * A security key's assertion (the JSON @simplewebauthn/browser's
   * startAuthentication returns) for the options of webauthnLoginBegin.
   */
  webauthn?: WebAuthnResponseJson | undefined;
  /** OpenSSH public key line (Ed25519) to certify. Optional: a web login sends none. */
  ssh_public_key?: string | undefined;
  /** PEM SPKI public key (ECDSA P-256) to certify. */
  tls_public_key?: string | undefined;
  /** Requested TTL like "8h"; capped by the roles' max_session_ttl. */
  ttl?: string | undefined;
  /** Optional route to scope the X.509 cert to (db or kube). */
  route?: Route | undefined;
}

export interface LoginResponse {
  user: string;
  roles: string[];
  traits: Traits;
  /** SSH principals in the cert. */
  logins: string[];
  expires: string;
  cluster_name: string;
  ssh_cert?: string | undefined;
  tls_cert?: string | undefined;
  /** Trust material for the client to store. */
  cas: {
    /** `@cert-authority`-ready SSH public keys of the host CA. */
    host_ssh: string[];
    /** PEM certs of the host CA (verify the proxy and nodes). */
    host_x509: string[];
    /** PEM certs of the user CA (for completeness, e.g. kubeconfig client chain). */
    user_x509: string[];
  };
  /** CSRF token for cookie-authenticated state-changing requests (web; empty for a re-issue). */
  csrf_token: string;
  /** The approved access requests the certificates carry (`gatehouse login --request-id`). */
  access_requests?: string[] | undefined;
}

/**
 * A WebAuthn credential's answer as JSON (RegistrationResponseJSON or
 * AuthenticationResponseJSON of @simplewebauthn): core hands it to the
 * library, which checks every field.
 */
export interface WebAuthnResponseJson {
  id: string;
  rawId: string;
  type: 'public-key';
  response: Record<string, unknown>;
  clientExtensionResults: Record<string, unknown>;
  authenticatorAttachment?: string | undefined;
}

/** POST /v1/webauthn/login/begin: the password first; then the user's keys are challenged. */
export interface WebAuthnLoginBeginRequest {
  user: string;
  password: string;
}

/** POST /v1/login/passwordless: a passkey's assertion for passwordlessBegin's options. */
export interface PasswordlessLoginRequest {
  webauthn: WebAuthnResponseJson;
  ssh_public_key?: string | undefined;
  tls_public_key?: string | undefined;
  ttl?: string | undefined;
}

/** One of the caller's second-factor devices (GET /v1/mfa/devices). */
export interface MfaDeviceInfo {
  id: string;
  name: string;
  kind: 'totp' | 'webauthn';
  added_at: string;
  last_used_at?: string | undefined;
  /** A passkey signs in without a password. */
  passkey?: boolean | undefined;
}

/** POST /v1/mfa/devices/totp/begin -> a secret to scan; confirm it with a code (mfaTotpAdd). */
export interface MfaTotpBeginResponse {
  pending_id: string;
  secret: string;
  uri: string;
}

/** POST /v1/mfa/devices/totp */
export interface MfaTotpAddRequest {
  pending_id: string;
  name: string;
  code: string;
}

/** POST /v1/mfa/devices/webauthn/begin */
export interface MfaWebAuthnBeginRequest {
  /** A passkey (discoverable, user verification: signs in without a password) or a second-factor key. */
  passkey: boolean;
}

/** POST /v1/mfa/devices/webauthn */
export interface MfaWebAuthnAddRequest {
  name: string;
  response: WebAuthnResponseJson;
}

/** GET /v1/invites/:token */
export interface InviteInfo {
  user: string;
  kind: 'invite' | 'reset';
  expires: string;
  second_factor: 'otp' | 'off';
  totp?: { secret: string; uri: string } | undefined;
}

/** POST /v1/invites/:token */
export interface AcceptInviteRequest {
  password: string;
  otp?: string | undefined;
}

/** GET /v1/whoami (client cert or session cookie) */
export interface WhoamiResponse {
  user: string;
  roles: string[];
  traits: Traits;
  logins: string[];
  expires: string;
  auth: 'client-cert' | 'session';
  /** The approved access requests whose roles this certificate or session carries. */
  access_requests?: string[] | undefined;
  /** Which admin calls the caller's roles grant: what a UI should offer (core still decides each call). */
  permissions: AdminPermissions;
}

/** POST /v1/requests/:id/assume: the new session (its cookie is set; the old one is gone). */
export interface AssumeAccessRequestResponse {
  roles: string[];
  access_requests: string[];
  expires: string;
  csrf_token: string;
}

/** POST /v1/certs/route (client certificate only): the caller's certificate re-issued for one route. */
export interface RouteCertRequest {
  route: { kind: 'db'; name: string; user?: string | undefined; database?: string | undefined };
}

export interface RouteCertResponse {
  /** PEM X.509 for the SAME public key as the caller's certificate, scoped to `route`. */
  tls_cert: string;
  /** No later than the caller's certificate. */
  expires: string;
  route: Route;
  cas: { host_x509: string[] };
}

/**
 * GET/PUT /v1/files?node=NAME&login=LOGIN&path=PATH (client certificate or
 * web session; PUT with a cookie needs X-CSRF-Token). GET answers the bytes
 * (application/octet-stream, Content-Disposition attachment); PUT takes the
 * bytes as the body (at most MAX_UPLOAD_BYTES) and answers FileUploadResponse.
 */
export interface FileQuery {
  node: string;
  login: string;
  /** Absolute, or relative to the login's home directory. */
  path: string;
  /** A per-session MFA check's single-use token for this node and login (require_session_mfa), as the web terminal's. */
  mfa_token?: string | undefined;
}

export interface FileUploadResponse {
  bytes: number;
}

/** Largest upload PUT /v1/files takes (1 GiB); a bigger declared body gets 413 before it is read. */
export const MAX_UPLOAD_BYTES = 1024 ** 3;

export const PUBLIC_ROUTES = {
  ping: ['GET', '/v1/ping'],
  /** ?format=sshd|known_hosts|x509|postgres|mariadb|kube[&type=user|host|db] -> text/plain */
  caExport: ['GET', '/v1/ca/export'],
  /**
   * The OpenSSH KRL of login certificates whose user was deleted, re-created
   * or is locked (serials only) -> application/octet-stream, for sshd's RevokedKeys.
   */
  caKrl: ['GET', '/v1/ca/krl'],
  login: ['POST', '/v1/login'],
  /** WebAuthnLoginBeginRequest -> options for navigator.credentials.get (the password is checked first). */
  webauthnLoginBegin: ['POST', '/v1/webauthn/login/begin'],
  /**
   * BrowserMfaLoginRequest -> BrowserMfaLoginResponse: the CLI's login with a
   * security key: the password is checked, then a pending check is opened for
   * the gateway page /web/mfa (mfa/browser.ts); the CLI logs in with the
   * assertion the page sends back to its loopback callback.
   */
  browserMfaLogin: ['POST', '/v1/mfa/browser/login'],
  /** {id} -> BrowserMfaPage: the page /web/mfa takes its pending check (once). */
  browserMfaTake: ['POST', '/v1/mfa/browser/take'],
  /** -> options for a passkey (any user's; user verification required). */
  passwordlessBegin: ['POST', '/v1/webauthn/passwordless/begin'],
  /** PasswordlessLoginRequest -> LoginResponse (and the session cookie). */
  passwordlessLogin: ['POST', '/v1/login/passwordless'],
  /** -> MfaDeviceInfo[]: the caller's second-factor devices. */
  mfaDevices: ['GET', '/v1/mfa/devices'],
  /** -> MfaTotpBeginResponse */
  mfaTotpBegin: ['POST', '/v1/mfa/devices/totp/begin'],
  /** MfaTotpAddRequest -> MfaDeviceInfo */
  mfaTotpAdd: ['POST', '/v1/mfa/devices/totp'],
  /** MfaWebAuthnBeginRequest -> options for navigator.credentials.create */
  mfaWebAuthnBegin: ['POST', '/v1/mfa/devices/webauthn/begin'],
  /** MfaWebAuthnAddRequest -> MfaDeviceInfo */
  mfaWebAuthnAdd: ['POST', '/v1/mfa/devices/webauthn'],
  /** -> MfaDeviceInfo (the removed one); the last one is refused while a second factor is required. */
  mfaRemove: ['DELETE', '/v1/mfa/devices/:id'],
  logout: ['POST', '/v1/logout'],
  inspectInvite: ['GET', '/v1/invites/:token'],
  acceptInvite: ['POST', '/v1/invites/:token'],
  whoami: ['GET', '/v1/whoami'],
  /** A node service redeems a join token (the token is the credential). */
  nodeJoin: ['POST', '/v1/nodes/join'],
  /** A configured agentless node renews its host certificate (its current one and its host key are the credential). */
  nodeRenewHostCert: ['POST', '/v1/nodes/renew-host-cert'],
  /** A joined node delivers its audit events (NodeAuditRequest: signed with its host key and certificate). */
  nodeAudit: ['POST', '/v1/nodes/audit'],
  routeCert: ['POST', '/v1/certs/route'],
  /**
   * RequestCertsRequest -> LoginResponse: the caller's login certificate
   * re-issued (new keys) with the roles of approved access requests, ending
   * no later than it and the requests (`gatehouse login --request-id`).
   */
  requestCerts: ['POST', '/v1/certs/request'],
  /**
   * {} -> AssumeAccessRequestResponse (web session only, with X-CSRF-Token):
   * the browser session replaced by one that also carries this approved
   * request's roles, ending no later than it and the request ("Assume roles").
   */
  assumeAccessRequest: ['POST', '/v1/requests/:id/assume'],
  /**
   * ?after=CURSOR (or Last-Event-ID) -> text/event-stream of
   * AccessRequestChange (`id:` the cursor, `event: access_request`, `data:`
   * the change as JSON): every request the caller sees that changed after
   * the cursor, then each change as it happens; `: ping` lines keep it open.
   * What plugins watch (docs/decisions/0036-access-requests.md).
   */
  watchAccessRequests: ['GET', '/v1/requests/watch'],
  /** SessionMfaChallengeRequest -> SessionMfaChallengeResponse: whether a session to a target needs a fresh MFA check, and its challenge. */
  sessionMfaChallenge: ['POST', '/v1/mfa/session/challenge'],
  /** SessionMfaCertsRequest -> SessionMfaCertsResponse: the answer in, a 1-minute certificate (or web token) bound to the target out. */
  sessionMfaCerts: ['POST', '/v1/mfa/session/certs'],
  /** SessionMfaBrowserRequest -> BrowserMfaStartResponse: a gateway page to answer a session challenge with a security key (the CLI). */
  sessionMfaBrowser: ['POST', '/v1/mfa/session/browser'],
  /** ?node&login&path (FileQuery) -> the file's bytes */
  downloadFile: ['GET', '/v1/files'],
  /** ?node&login&path (FileQuery), body = the bytes -> FileUploadResponse */
  uploadFile: ['PUT', '/v1/files'],
  /** -> SsoConnectorButton[]: the connectors the login page offers. */
  ssoConnectors: ['GET', '/v1/sso/connectors'],
  /** SsoStartRequest -> SsoStartResponse: the CLI starts an SSO login. */
  ssoStart: ['POST', '/v1/sso/login'],
  /** The web UI's button: sets a browser-binding cookie and redirects to the provider. */
  ssoWebStart: ['GET', '/v1/sso/:name/web'],
  /** The provider's redirect: the URL to register at the provider (redirect_url). */
  ssoCallback: ['GET', '/v1/sso/oidc/callback'],
  /** GitHub's redirect: the OAuth app's callback URL (redirect_url of a github connector). */
  ssoGithubCallback: ['GET', '/v1/sso/github/callback'],
  /** The SAML IdP POSTs its response here (HTTP-POST binding): acs_url of a saml connector. */
  ssoSamlAcs: ['POST', '/v1/sso/saml/acs'],
  /** -> the SP metadata (XML) of a saml connector: entity id, ACS URL; give this URL to the IdP. */
  ssoSamlMetadata: ['GET', '/v1/sso/saml/:name/metadata'],
  /** -> {code, message, hint}: why a web SSO login failed (the login page shows it; kept 5 minutes). */
  ssoError: ['GET', '/v1/sso/errors/:id'],
  /** SsoRedeemRequest -> SsoRedeemResponse: the CLI redeems its one-time code. */
  ssoRedeem: ['POST', '/v1/sso/redeem'],
  /** {login} -> DesktopTokenView: a single-use token for the RDCleanPath WebSocket (authorized now). */
  desktopToken: ['POST', '/v1/desktops/:name/token'],
} as const;
