export * from './api/authorized.js';
export * from './api/client.js';
export {
  answerClientError,
  clientErrorStatus,
  clientLeft,
  HttpConnections,
  socketRemoteAddress,
  unparsedRequestError,
} from './api/http-connections.js';
export * from './api/local.js';
export * from './api/pin.js';
export * from './api/public.js';
export { AUDIT_PAGE_MAX, checkAuditQuery, checkRecordingQuery, RECORDINGS_LIST_MAX } from './api/queries.js';
export * from './api/server.js';
export * from './api/terminal-protocol.js';
export * from './api/types.js';
export * from './auth/login.js';
export * from './auth/sessions.js';
export * from './authz/index.js';
export * from './backend/index.js';
export * from './backup/backup.js';
export * from './clock.js';
export * from './config/index.js';
export * from './crypto/seal.js';
export * from './databases/index.js';
export * from './desktops/index.js';
export * from './errors.js';
export * from './gateway.js';
export * from './identity/index.js';
export * from './kube/index.js';
export * from './listener/proxy-protocol.js';
export * from './listener/routes.js';
export * from './listener/sniff.js';
export { TlsRefused } from './listener/tls-accept.js';
export * from './log.js';
export { denialReason, GatewayMetrics, type GatewayMetricsDeps } from './metrics.js';
export * from './mfa/index.js';
export * from './net/dialer.js';
export * from './nodes/audit-ingest.js';
export * from './nodes/host-certs.js';
export * from './nodes/join-tokens.js';
export * from './nodes/registry.js';
export * from './peers/registry.js';
export type { SessionList, UnreachableGateway } from './peers/sessions.js';
export * from './pki/index.js';
export * from './rbac/index.js';
export * from './requests/index.js';
export * from './sessions/guards.js';
export * from './sessions/live.js';
export * from './sessions/terminal.js';
export * from './sso/index.js';
export * from './util/bounded-map.js';
export * from './util/byte-queue.js';
export * from './util/duration.js';
export * from './util/pull-parser.js';
export { parseIsoTime } from './util/time.js';
export * from './version.js';
export * from './web/static.js';
