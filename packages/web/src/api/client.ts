import {
  type AcceptInviteRequest,
  ADMIN_ROUTES,
  type AdminApi,
  type AssumeAccessRequestResponse,
  type AuditQuery,
  type BrowserMfaPage,
  type DesktopTokenView,
  type FileQuery,
  type FileUploadResponse,
  type InviteInfo,
  type LoginRequest,
  type LoginResponse,
  MAX_UPLOAD_BYTES,
  type MfaDeviceInfo,
  type MfaTotpAddRequest,
  type MfaTotpBeginResponse,
  type PasswordlessLoginRequest,
  type PingResponse,
  PUBLIC_ROUTES,
  type RecordingQuery,
  type SessionMfaCertsRequest,
  type SessionMfaCertsResponse,
  type SessionMfaChallengeRequest,
  type SessionMfaChallengeResponse,
  type SsoConnectorButton,
  type WebAuthnResponseJson,
  type WhoamiResponse,
} from './routes';

/** A failed API call as the page shows it: the problem JSON's title, code and hint. */
export class ApiError extends Error {
  override name = 'ApiError';
  readonly status: number;
  /** GH_ERR_* from the server, or GH_WEB_TIMEOUT / GH_WEB_NETWORK / GH_WEB_HTTP from this client. */
  readonly code: string;
  readonly hint: string | undefined;
  /** Extra problem fields (retry_after_s, lint messages, ...). */
  readonly details: Record<string, unknown>;

  constructor(
    status: number,
    code: string,
    message: string,
    hint?: string,
    details: Record<string, unknown> = {},
  ) {
    super(message);
    this.status = status;
    this.code = code;
    this.hint = hint;
    this.details = details;
  }
}

/**
 * Where the CSRF token from the login response lives. The browser build uses
 * sessionStorage (docs/decisions/0013-web-ui.md): it survives a reload of the
 * tab, is not shared with other sites or persisted to disk like localStorage,
 * and alone grants nothing without the HttpOnly session cookie.
 */
export interface CsrfStore {
  get(): string | undefined;
  set(token: string | undefined): void;
}

export function memoryCsrfStore(): CsrfStore {
  let token: string | undefined;
  return {
    get: () => token,
    set: (t) => {
      token = t;
    },
  };
}

const CSRF_KEY = 'gatehouse.csrf';

export function sessionCsrfStore(storage: Pick<Storage, 'getItem' | 'setItem' | 'removeItem'>): CsrfStore {
  return {
    get: () => storage.getItem(CSRF_KEY) ?? undefined,
    set: (t) => (t === undefined ? storage.removeItem(CSRF_KEY) : storage.setItem(CSRF_KEY, t)),
  };
}

export interface WebApiOptions {
  csrf: CsrfStore;
  fetch?: typeof fetch;
  /** Prefix for paths; '' (same origin) in the browser. */
  base?: string;
  /** Every call gives up after this long, so no spinner runs forever. */
  timeoutMs?: number;
  /** Called when the session is gone (401 outside login, or a CSRF refusal). */
  onSessionEnded?: (err: ApiError) => void;
  /** Makes the request for uploads (the only call that needs upload progress). */
  xhr?: () => XMLHttpRequest;
}

type RouteDef = readonly [string, string];

/** Bytes so far, and the total when known. */
export type Progress = (done: number, total: number | undefined) => void;

export function filesQueryString(q: FileQuery): string {
  return new URLSearchParams({
    node: q.node,
    login: q.login,
    path: q.path,
    ...(q.mfa_token ? { mfa_token: q.mfa_token } : {}),
  }).toString();
}

/** Aborts `ctl` when `reset` has not been called for `ms`: a transfer may be long, never silent. */
function idleTimer(ctl: AbortController, ms: number): { reset(): void; stop(): void } {
  let t: ReturnType<typeof setTimeout> | undefined;
  const reset = () => {
    clearTimeout(t);
    t = setTimeout(() => ctl.abort(), ms);
  };
  reset();
  return { reset, stop: () => clearTimeout(t) };
}

/** Routes whose 401 means "wrong credentials", not "your session ended". */
const CREDENTIAL_ROUTES: ReadonlySet<string> = new Set([
  PUBLIC_ROUTES.login[1],
  PUBLIC_ROUTES.inspectInvite[1],
  PUBLIC_ROUTES.acceptInvite[1],
  PUBLIC_ROUTES.webauthnLoginBegin[1],
  PUBLIC_ROUTES.passwordlessBegin[1],
  PUBLIC_ROUTES.passwordlessLogin[1],
  // A used or expired security key link for the CLI is about the link.
  PUBLIC_ROUTES.browserMfaTake[1],
  // A refused code or key while adding a device is about the device, not the session.
  PUBLIC_ROUTES.mfaTotpAdd[1],
  PUBLIC_ROUTES.mfaWebAuthnAdd[1],
  // A refused code for a per-session MFA check is about the code, not the session.
  PUBLIC_ROUTES.sessionMfaChallenge[1],
  PUBLIC_ROUTES.sessionMfaCerts[1],
]);

export const DEFAULT_TIMEOUT_MS = 15_000;
export const RECORDING_TIMEOUT_MS = 120_000;

type UiAdmin = Pick<
  AdminApi,
  | 'listUsers'
  | 'createUser'
  | 'deleteUser'
  | 'resetUser'
  | 'lockUser'
  | 'unlockUser'
  | 'listRoles'
  | 'getRole'
  | 'putRole'
  | 'deleteRole'
  | 'lintRole'
  | 'searchAudit'
  | 'listDatabases'
  | 'listKubeClusters'
  | 'listDesktops'
  | 'listRecordings'
  | 'getRecording'
  | 'listNodes'
  | 'listSessions'
  | 'killSession'
  | 'listAccessRequests'
  | 'getAccessRequest'
  | 'createAccessRequest'
  | 'reviewAccessRequest'
  | 'dropAccessRequest'
>;

/**
 * The browser's typed client for the Gatehouse HTTP API: same-origin fetches
 * with the session cookie, X-CSRF-Token on every state change, a timeout on
 * every call, and problem JSON turned into ApiError.
 */
export class WebApi implements UiAdmin {
  readonly #o: Required<Omit<WebApiOptions, 'onSessionEnded'>> & Pick<WebApiOptions, 'onSessionEnded'>;

  constructor(opts: WebApiOptions) {
    this.#o = {
      fetch: opts.fetch ?? ((input, init) => globalThis.fetch(input, init)),
      base: opts.base ?? '',
      timeoutMs: opts.timeoutMs ?? DEFAULT_TIMEOUT_MS,
      csrf: opts.csrf,
      onSessionEnded: opts.onSessionEnded,
      xhr: opts.xhr ?? (() => new XMLHttpRequest()),
    };
  }

  /** True when this tab holds a CSRF token (it logged in, or was reloaded after that). */
  hasSession(): boolean {
    return this.#o.csrf.get() !== undefined;
  }

  ping(): Promise<PingResponse> {
    return this.#call(PUBLIC_ROUTES.ping);
  }

  async login(req: LoginRequest): Promise<LoginResponse> {
    const r = await this.#call<LoginResponse>(PUBLIC_ROUTES.login, {}, { body: req });
    this.#o.csrf.set(r.csrf_token);
    return r;
  }

  /** Checks the password, then challenges the user's security keys (options for navigator.credentials.get). */
  webauthnLoginBegin(user: string, password: string): Promise<unknown> {
    return this.#call(PUBLIC_ROUTES.webauthnLoginBegin, {}, { body: { user, password } });
  }

  /** The CLI's pending security key check behind a /web/mfa link (handed out once). */
  browserMfaTake(id: string): Promise<BrowserMfaPage> {
    return this.#call(PUBLIC_ROUTES.browserMfaTake, {}, { body: { id } });
  }

  /** A challenge for any passkey (passwordless login). */
  passwordlessBegin(): Promise<unknown> {
    return this.#call(PUBLIC_ROUTES.passwordlessBegin, {}, { body: {} });
  }

  async passwordlessLogin(req: PasswordlessLoginRequest): Promise<LoginResponse> {
    const r = await this.#call<LoginResponse>(PUBLIC_ROUTES.passwordlessLogin, {}, { body: req });
    this.#o.csrf.set(r.csrf_token);
    return r;
  }

  mfaDevices(): Promise<MfaDeviceInfo[]> {
    return this.#call(PUBLIC_ROUTES.mfaDevices);
  }

  mfaTotpBegin(): Promise<MfaTotpBeginResponse> {
    return this.#call(PUBLIC_ROUTES.mfaTotpBegin, {}, { body: {} });
  }

  mfaTotpAdd(req: MfaTotpAddRequest): Promise<MfaDeviceInfo> {
    return this.#call(PUBLIC_ROUTES.mfaTotpAdd, {}, { body: req });
  }

  /** Options for navigator.credentials.create: a passkey, or a second-factor key. */
  mfaWebAuthnBegin(passkey: boolean): Promise<unknown> {
    return this.#call(PUBLIC_ROUTES.mfaWebAuthnBegin, {}, { body: { passkey } });
  }

  mfaWebAuthnAdd(name: string, response: WebAuthnResponseJson): Promise<MfaDeviceInfo> {
    return this.#call(PUBLIC_ROUTES.mfaWebAuthnAdd, {}, { body: { name, response } });
  }

  mfaRemove(id: string): Promise<MfaDeviceInfo> {
    return this.#call(PUBLIC_ROUTES.mfaRemove, { id });
  }

  /** The SSO connectors the login page offers a button for. */
  ssoConnectors(): Promise<SsoConnectorButton[]> {
    return this.#call(PUBLIC_ROUTES.ssoConnectors);
  }

  /** Why a web SSO login failed, by the id the gateway put in the login page's URL. */
  ssoError(id: string): Promise<{ code: string; message: string; hint?: string }> {
    return this.#call(PUBLIC_ROUTES.ssoError, { id });
  }

  /**
   * After an SSO login the gateway's callback set the session cookie and
   * sent the CSRF token in the URL fragment (which no server sees); this tab
   * keeps it as it does after a password login.
   */
  adoptSsoSession(csrf: string): void {
    this.#o.csrf.set(csrf);
  }

  async logout(): Promise<void> {
    try {
      await this.#call(PUBLIC_ROUTES.logout, {}, { body: {} });
    } finally {
      this.#o.csrf.set(undefined);
    }
  }

  whoami(): Promise<WhoamiResponse> {
    return this.#call(PUBLIC_ROUTES.whoami);
  }

  inspectInvite(token: string): Promise<InviteInfo> {
    return this.#call(PUBLIC_ROUTES.inspectInvite, { token });
  }

  acceptInvite(token: string, req: AcceptInviteRequest): Promise<void> {
    return this.#call(PUBLIC_ROUTES.acceptInvite, { token }, { body: req });
  }

  listUsers: UiAdmin['listUsers'] = () => this.#call(ADMIN_ROUTES.listUsers);
  createUser: UiAdmin['createUser'] = (req) => this.#call(ADMIN_ROUTES.createUser, {}, { body: req });
  deleteUser: UiAdmin['deleteUser'] = (name) => this.#call(ADMIN_ROUTES.deleteUser, { name });
  resetUser: UiAdmin['resetUser'] = (name) => this.#call(ADMIN_ROUTES.resetUser, { name }, { body: {} });
  lockUser: UiAdmin['lockUser'] = (name, req) => this.#call(ADMIN_ROUTES.lockUser, { name }, { body: req });
  unlockUser: UiAdmin['unlockUser'] = (name) => this.#call(ADMIN_ROUTES.unlockUser, { name }, { body: {} });
  listRoles: UiAdmin['listRoles'] = () => this.#call(ADMIN_ROUTES.listRoles);
  getRole: UiAdmin['getRole'] = (name) => this.#call(ADMIN_ROUTES.getRole, { name });
  putRole: UiAdmin['putRole'] = (text, opts) =>
    this.#call(ADMIN_ROUTES.putRole, {}, { body: { text, ...(opts?.create ? { create: true } : {}) } });
  deleteRole: UiAdmin['deleteRole'] = (name) => this.#call(ADMIN_ROUTES.deleteRole, { name });
  lintRole: UiAdmin['lintRole'] = (text) => this.#call(ADMIN_ROUTES.lintRole, {}, { body: { text } });
  searchAudit: UiAdmin['searchAudit'] = (q) =>
    this.#call(ADMIN_ROUTES.searchAudit, {}, { query: auditQueryString(q) });
  listDatabases: UiAdmin['listDatabases'] = () => this.#call(ADMIN_ROUTES.listDatabases);
  listKubeClusters: UiAdmin['listKubeClusters'] = () => this.#call(ADMIN_ROUTES.listKubeClusters);
  listRecordings: UiAdmin['listRecordings'] = (q) =>
    this.#call(ADMIN_ROUTES.listRecordings, {}, { query: recordingQueryString(q ?? {}) });
  getRecording: UiAdmin['getRecording'] = (id) => this.#call(ADMIN_ROUTES.getRecording, { id });
  listNodes: UiAdmin['listNodes'] = () => this.#call(ADMIN_ROUTES.listNodes);
  listDesktops: UiAdmin['listDesktops'] = () => this.#call(ADMIN_ROUTES.listDesktops);
  /** A single-use token for the desktop's RDCleanPath WebSocket (core authorizes the login now). */
  /** `mfaToken`: a per-session MFA check's token for this desktop and login (require_session_mfa). */
  desktopToken(name: string, login: string, mfaToken?: string): Promise<DesktopTokenView> {
    return this.#call(
      PUBLIC_ROUTES.desktopToken,
      { name },
      { body: { login, ...(mfaToken ? { mfa_token: mfaToken } : {}) } },
    );
  }
  /** Whether a terminal on this node login needs a per-session MFA check (require_session_mfa), and its challenge. */
  sessionMfaChallenge(req: SessionMfaChallengeRequest): Promise<SessionMfaChallengeResponse> {
    return this.#call(PUBLIC_ROUTES.sessionMfaChallenge, {}, { body: req });
  }
  /** The answer; with no key sent, a single-use token the terminal's WebSocket carries (`mfa_token`). */
  sessionMfaCerts(req: SessionMfaCertsRequest): Promise<SessionMfaCertsResponse> {
    return this.#call(PUBLIC_ROUTES.sessionMfaCerts, {}, { body: req });
  }
  listSessions: UiAdmin['listSessions'] = () => this.#call(ADMIN_ROUTES.listSessions);
  killSession: UiAdmin['killSession'] = (id) => this.#call(ADMIN_ROUTES.killSession, { id });
  /** Replaces this browser session with one carrying an approved request's roles (core checks it); keeps the new CSRF token. */
  async assumeAccessRequest(id: string): Promise<AssumeAccessRequestResponse> {
    const r = await this.#call<AssumeAccessRequestResponse>(
      PUBLIC_ROUTES.assumeAccessRequest,
      { id },
      { body: {} },
    );
    this.#o.csrf.set(r.csrf_token);
    return r;
  }
  listAccessRequests: UiAdmin['listAccessRequests'] = () => this.#call(ADMIN_ROUTES.listAccessRequests);
  getAccessRequest: UiAdmin['getAccessRequest'] = (id) => this.#call(ADMIN_ROUTES.getAccessRequest, { id });
  createAccessRequest: UiAdmin['createAccessRequest'] = (req) =>
    this.#call(ADMIN_ROUTES.createAccessRequest, {}, { body: req });
  reviewAccessRequest: UiAdmin['reviewAccessRequest'] = (id, req) =>
    this.#call(ADMIN_ROUTES.reviewAccessRequest, { id }, { body: req });
  dropAccessRequest: UiAdmin['dropAccessRequest'] = (id, req) =>
    this.#call(ADMIN_ROUTES.dropAccessRequest, { id }, { body: req ?? {} });

  /**
   * A recording's events as JSON lines (what has been written so far, for a
   * live session). Long recordings take a while: a longer timeout than the
   * other calls, still finite.
   */
  recordingText(id: string, timeoutMs = RECORDING_TIMEOUT_MS): Promise<string> {
    return this.#call(ADMIN_ROUTES.readRecording, { id }, { query: 'format=json', text: true, timeoutMs });
  }

  /**
   * Downloads a file from a node (`GET /v1/files`, audited like an SFTP
   * read) into memory, reporting progress. Gives up when no byte arrives for
   * the call timeout, however long the whole transfer takes.
   */
  async downloadFile(q: FileQuery, onProgress?: Progress): Promise<Blob> {
    const csrf = this.#o.csrf.get();
    const ctl = new AbortController();
    const idle = idleTimer(ctl, this.#o.timeoutMs);
    try {
      const res = await this.#o
        .fetch(`${this.#o.base}${PUBLIC_ROUTES.downloadFile[1]}?${filesQueryString(q)}`, {
          method: 'GET',
          credentials: 'same-origin',
          cache: 'no-store',
          redirect: 'error',
          signal: ctl.signal,
        })
        .catch((err: unknown) => {
          throw this.#transportError(err, ctl.signal.aborted);
        });
      if (!res.ok) {
        const text = await res.text().catch(() => '');
        throw this.#failed(
          res,
          PUBLIC_ROUTES.downloadFile[1],
          parseJson(text, res.headers.get('content-type')),
          csrf,
        );
      }
      const total = Number(res.headers.get('content-length') ?? '') || undefined;
      const parts: Uint8Array<ArrayBuffer>[] = [];
      let done = 0;
      onProgress?.(0, total);
      if (!res.body) return await res.blob();
      const reader = res.body.getReader();
      for (;;) {
        idle.reset();
        const r = await reader.read().catch((err: unknown) => {
          throw this.#transportError(err, ctl.signal.aborted);
        });
        if (r.done) break;
        parts.push(r.value);
        done += r.value.byteLength;
        onProgress?.(done, total);
      }
      if (total !== undefined && done !== total) {
        throw new ApiError(
          0,
          'GH_WEB_NETWORK',
          `the download stopped after ${done} of ${total} bytes`,
          'the node or the connection failed during the transfer; try again',
        );
      }
      return new Blob(parts, { type: res.headers.get('content-type') ?? 'application/octet-stream' });
    } finally {
      idle.stop();
    }
  }

  /**
   * Uploads a file to a node (`PUT /v1/files`, audited like an SFTP write),
   * replacing it, with upload progress (XMLHttpRequest: fetch reports none).
   */
  uploadFile(q: FileQuery, body: Blob, onProgress?: Progress): Promise<FileUploadResponse> {
    const [method, path] = PUBLIC_ROUTES.uploadFile;
    if (body.size > MAX_UPLOAD_BYTES) {
      // The gateway would refuse it with 413 only after the browser sent the headers; say so now.
      return Promise.reject(
        new ApiError(
          413,
          'GH_ERR_PAYLOAD_TOO_LARGE',
          `the file is larger than the ${MAX_UPLOAD_BYTES / 1024 ** 3} GiB the web upload takes`,
          'copy large files with scp or sftp through the gateway',
        ),
      );
    }
    return new Promise((resolve, reject) => {
      const xhr = this.#o.xhr();
      xhr.open(method, `${this.#o.base}${path}?${filesQueryString(q)}`);
      xhr.setRequestHeader('accept', 'application/json');
      xhr.setRequestHeader('content-type', 'application/octet-stream');
      const csrf = this.#o.csrf.get();
      if (csrf) xhr.setRequestHeader('x-csrf-token', csrf);
      const ctl = new AbortController();
      ctl.signal.addEventListener('abort', () => xhr.abort());
      const idle = idleTimer(ctl, this.#o.timeoutMs);
      xhr.upload.onprogress = (e) => {
        idle.reset();
        onProgress?.(e.loaded, e.lengthComputable ? e.total : body.size);
      };
      xhr.onprogress = () => idle.reset();
      xhr.onload = () => {
        idle.stop();
        const type = xhr.getResponseHeader('content-type');
        const parsed = parseJson(xhr.responseText, type);
        if (xhr.status < 200 || xhr.status >= 300) {
          const res = new Response(null, { status: xhr.status, statusText: xhr.statusText });
          reject(this.#failed(res, path, parsed, csrf));
          return;
        }
        const bytes = (parsed as { bytes?: unknown } | undefined)?.bytes;
        resolve({ bytes: typeof bytes === 'number' ? bytes : body.size });
      };
      xhr.onerror = () => {
        idle.stop();
        reject(this.#transportError(new Error('the upload failed'), false));
      };
      xhr.onabort = () => {
        idle.stop();
        reject(this.#transportError(new Error('aborted'), true));
      };
      onProgress?.(0, body.size);
      xhr.send(body);
    });
  }

  #transportError(err: unknown, timedOut: boolean): ApiError {
    if (err instanceof ApiError) return err;
    if (timedOut) {
      return new ApiError(
        0,
        'GH_WEB_TIMEOUT',
        `the gateway sent nothing for ${Math.round(this.#o.timeoutMs / 1000)} s`,
        'check that the gateway is running and reachable, then try again',
      );
    }
    return new ApiError(
      0,
      'GH_WEB_NETWORK',
      `could not reach the gateway (${(err as Error).message})`,
      'check your network connection and that the gateway is running, then try again',
    );
  }

  /**
   * The error for a failed answer; a 401 outside login or a CSRF refusal also
   * ends the session, unless the session was replaced while the request was
   * on its way (`sentWith`, the CSRF token it went out under, is no longer
   * the current one): assuming an access request swaps the session, and a
   * page refresh sent just before it is refused for the old one.
   */
  #failed(res: Response, template: string, body: unknown, sentWith: string | undefined): ApiError {
    const err = problemToError(res.status, res.statusText, body);
    const ended =
      this.#o.csrf.get() === sentWith &&
      ((res.status === 401 && (!CREDENTIAL_ROUTES.has(template) || err.code === 'GH_ERR_UNAUTHENTICATED')) ||
        err.code === 'GH_ERR_CSRF');
    if (ended) {
      this.#o.csrf.set(undefined);
      this.#o.onSessionEnded?.(err);
    }
    return err;
  }

  async #call<T>(
    route: RouteDef,
    params: Record<string, string> = {},
    opts: { body?: unknown; query?: string; text?: boolean; timeoutMs?: number } = {},
  ): Promise<T> {
    const [method, template] = route;
    const url = this.#o.base + fillPath(template, params) + (opts.query ? `?${opts.query}` : '');
    const headers: Record<string, string> = { accept: 'application/json' };
    if (opts.body !== undefined) headers['content-type'] = 'application/json';
    const csrf = this.#o.csrf.get();
    if (method !== 'GET' && method !== 'HEAD' && csrf) headers['x-csrf-token'] = csrf;
    const ctl = new AbortController();
    const timeoutMs = opts.timeoutMs ?? this.#o.timeoutMs;
    const timer = setTimeout(() => ctl.abort(), timeoutMs);
    let res: Response;
    let text: string;
    try {
      res = await this.#o.fetch(url, {
        method,
        headers,
        credentials: 'same-origin',
        cache: 'no-store',
        redirect: 'error',
        signal: ctl.signal,
        ...(opts.body !== undefined ? { body: JSON.stringify(opts.body) } : {}),
      });
      text = await res.text();
    } catch (err) {
      if (ctl.signal.aborted) {
        throw new ApiError(
          0,
          'GH_WEB_TIMEOUT',
          `the gateway did not answer within ${Math.round(timeoutMs / 1000)} s`,
          'check that the gateway is running and reachable, then try again',
        );
      }
      throw new ApiError(
        0,
        'GH_WEB_NETWORK',
        `could not reach the gateway (${(err as Error).message})`,
        'check your network connection and that the gateway is running, then try again',
      );
    } finally {
      clearTimeout(timer);
    }
    const body = parseJson(text, res.headers.get('content-type'));
    if (!res.ok) throw this.#failed(res, template, body, csrf);
    if (opts.text) return text as T;
    if (res.status === 204 || text === '') return undefined as T;
    if (body === undefined) {
      throw new ApiError(
        res.status,
        'GH_WEB_HTTP',
        `the gateway answered ${method} ${template} with something that is not JSON`,
        'a proxy in between may have rewritten the answer; try again or ask your admin',
      );
    }
    return body as T;
  }
}

function parseJson(text: string, type: string | null): unknown {
  if (!text || !type?.includes('json')) return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** Problem JSON (RFC 9457 with Gatehouse's code and hint) to ApiError. */
export function problemToError(status: number, statusText: string, body: unknown): ApiError {
  if (body && typeof body === 'object') {
    const { title, code, hint, status: _s, type: _t, ...details } = body as Record<string, unknown>;
    if (typeof title === 'string' && typeof code === 'string') {
      return new ApiError(status, code, title, typeof hint === 'string' ? hint : undefined, details);
    }
  }
  return new ApiError(
    status,
    'GH_WEB_HTTP',
    `the gateway answered HTTP ${status}${statusText ? ` ${statusText}` : ''}`,
    status >= 500 ? 'the gateway had a problem; see its log, then try again' : undefined,
  );
}

/** Fills `:name` segments, escaping each value so a name cannot change the path. */
export function fillPath(template: string, params: Record<string, string>): string {
  return template.replace(/:([a-z_]+)/gi, (_, k: string) => {
    const v = params[k];
    if (v === undefined) throw new Error(`missing path parameter ${k} for ${template}`);
    return encodeURIComponent(v);
  });
}

export function recordingQueryString(q: RecordingQuery): string {
  const s = new URLSearchParams();
  if (q.user) s.set('user', q.user);
  if (q.kind) s.set('kind', q.kind);
  if (q.from) s.set('from', q.from);
  if (q.to) s.set('to', q.to);
  if (q.limit !== undefined) s.set('limit', String(q.limit));
  return s.toString();
}

export function auditQueryString(q: AuditQuery): string {
  const s = new URLSearchParams();
  if (q.from) s.set('from', q.from);
  if (q.to) s.set('to', q.to);
  if (q.types && q.types.length > 0) s.set('types', q.types.join(','));
  if (q.user) s.set('user', q.user);
  if (q.session_id) s.set('session_id', q.session_id);
  if (q.q) s.set('q', q.q);
  if (q.limit !== undefined) s.set('limit', String(q.limit));
  if (q.cursor) s.set('cursor', q.cursor);
  return s.toString();
}

/** One line for a page: the message and what to do next. */
export function describeError(err: unknown): { message: string; hint?: string | undefined; code?: string } {
  if (err instanceof ApiError) return { message: err.message, hint: err.hint, code: err.code };
  if (err instanceof Error) return { message: err.message };
  return { message: String(err) };
}
