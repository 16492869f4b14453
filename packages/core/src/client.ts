/**
 * `@gatehouse/core/client`: the API client alone, for CLI verbs on the fast
 * path (`gatehouse ssh` asks whether a per-session MFA check is needed
 * before every session) without loading the gateway, its storage and PKI.
 */
export { GatehouseClient, type GatehouseClientOptions } from './api/client.js';
export type { MfaTarget } from './identity/types.js';
export type { BrowserMfaStartResponse } from './mfa/browser.js';
export type {
  SessionMfaCertsRequest,
  SessionMfaCertsResponse,
  SessionMfaChallengeRequest,
  SessionMfaChallengeResponse,
} from './mfa/session.js';
