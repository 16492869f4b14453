export {
  BROWSER_MFA_TTL_MS,
  BrowserMfa,
  type BrowserMfaLoginRequest,
  type BrowserMfaLoginResponse,
  type BrowserMfaPage,
  type BrowserMfaPurpose,
  type BrowserMfaStartRequest,
  type BrowserMfaStartResponse,
  type SessionMfaBrowserRequest,
} from './browser.js';
export {
  type MfaCheckContext,
  type MfaDevice,
  type MfaFailureReason,
  type MfaMethodChallenge,
  type MfaMethodName,
  type MfaResponse,
  MfaResponseError,
  type SecondFactorMethod,
  sessionScope,
  TotpMethod,
  WebAuthnMethod,
} from './methods.js';
export {
  SESSION_MFA_CERT_TTL_MS,
  SESSION_MFA_CHALLENGE_TTL_MS,
  SessionMfa,
  type SessionMfaCertsRequest,
  type SessionMfaCertsResponse,
  type SessionMfaChallengeRequest,
  type SessionMfaChallengeResponse,
  type SessionMfaDeps,
} from './session.js';
export { describeMfaTarget, mfaTargetMatches, sessionMfaRefusal } from './target.js';
