/**
 * The route tables and wire types, taken from core's own modules so the
 * browser and the server cannot drift. types.ts and public.ts import only
 * types besides these constants, so the bundle pulls no Node code.
 */

export type { AuditEvent } from '../../../audit/src/events';
/** Event types for the audit filter: the catalogue's keys (events.ts has no imports). */
export { EVENT_CODES } from '../../../audit/src/events';
export type {
  DesktopInput,
  RecordingEvent,
  RecordingMeta,
  RecordingQuery,
} from '../../../audit/src/recording/types';
export type {
  AcceptInviteRequest,
  AssumeAccessRequestResponse,
  FileQuery,
  FileUploadResponse,
  InviteInfo,
  LoginRequest,
  LoginResponse,
  MfaDeviceInfo,
  MfaTotpAddRequest,
  MfaTotpBeginResponse,
  PasswordlessLoginRequest,
  PingResponse,
  WebAuthnResponseJson,
  WhoamiResponse,
} from '../../../core/src/api/public';
export { MAX_UPLOAD_BYTES, PUBLIC_ROUTES } from '../../../core/src/api/public';
export {
  parseTerminalServerFrame,
  TERMINAL_WS_CLOSE,
  TERMINAL_WS_PATHS,
  type TerminalClientFrame,
  type TerminalServerFrame,
  validTerminalSize,
} from '../../../core/src/api/terminal-protocol';
export type {
  AdminApi,
  AuditPage,
  AuditQuery,
  DatabaseView,
  DesktopView,
  KubeClusterView,
  LintMessage,
  LockView,
  NodeView,
  SessionView,
  TokenView,
  UserView,
} from '../../../core/src/api/types';
export { ADMIN_ROUTES } from '../../../core/src/api/types';
export type { DesktopTokenView } from '../../../core/src/desktops/protocol';
export type { BrowserMfaPage } from '../../../core/src/mfa/browser';
export type {
  SessionMfaCertsRequest,
  SessionMfaCertsResponse,
  SessionMfaChallengeRequest,
  SessionMfaChallengeResponse,
} from '../../../core/src/mfa/session';
export type { JoinMode, Role } from '../../../core/src/rbac/types';
export type { AccessRequestView } from '../../../core/src/requests/types';
export type { SsoConnectorButton } from '../../../core/src/sso/connectors';
