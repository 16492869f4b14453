export {
  ANCHOR_FILE,
  type AnchorRecord,
  type ChainLink,
  eventFiles,
  fileKey,
  GENESIS,
  type HeadRecord,
  type HeadSigner,
  lineHash,
  withChain,
} from './chain.js';
export { removeExpiredFiles } from './chain-writer.js';
export * from './clip.js';
export * from './emitter.js';
export * from './errors.js';
export * from './events.js';
export { createIdGenerator } from './id.js';
export {
  POSTGRES_AUDIT_INDEX_ERROR_CHANNEL,
  PostgresAuditIndex,
  type PostgresAuditIndexOptions,
} from './index-postgres.js';
export { SqliteAuditIndex, type SqliteAuditIndexOptions } from './index-sqlite.js';
export { AUDIT_DIAGNOSTICS_CHANNEL, type AuditDiagnostic, AuditLog, type AuditLogOptions } from './log.js';
export type { OrphanClose } from './open-sessions.js';
export {
  type AuditQuery,
  type AuditSearchResult,
  DEFAULT_LIMIT,
  decodeCursor,
  encodeCursor,
  MAX_LIMIT,
} from './query.js';
export { decodeEvent, encodeEvent, RecordingFormatError } from './recording/codec.js';
export { type DesktopActivity, describeActivity, desktopActivity } from './recording/desktop.js';
export { RecordingError, type RecordingErrorCode, validateSessionId } from './recording/errors.js';
export { FileRecordingStore, type FileRecordingStoreOptions } from './recording/file-store.js';
export { DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT } from './recording/meta.js';
export {
  collect,
  exportRecording,
  isRecordingFormat,
  type PlayOptions,
  type PlayResult,
  play,
  RECORDING_FORMATS,
  type RecordingFormat,
  toAsciicast,
  toJson,
  toText,
} from './recording/playback.js';
export {
  POSTGRES_RECORDINGS_CHANNEL,
  PostgresRecordingStore,
  type PostgresRecordingStoreOptions,
} from './recording/postgres-store.js';
export type * from './recording/types.js';
export * from './session-db.js';
export * from './session-desktop.js';
export * from './session-kube.js';
export * from './session-ssh.js';
export { createExportSink, type ExportSinkConfig } from './sinks/create.js';
export { type ElasticsearchSinkOptions, elasticsearchSink, indexTemplate } from './sinks/elasticsearch.js';
export {
  type ExportItem,
  type ExportOptions,
  ExportSink,
  type SendResult,
  type SpoolFullPolicy,
  type Transport,
} from './sinks/export.js';
export { JsonlFileSink, type JsonlFileSinkOptions } from './sinks/jsonl.js';
export { encodePushRequest, type LokiSinkOptions, lokiLabels, lokiSink } from './sinks/loki.js';
export { snappyCompress } from './sinks/snappy.js';
export { StdoutSink, type StdoutSinkOptions } from './sinks/stdout.js';
export { formatSyslog, type SyslogSinkOptions, syslogSink } from './sinks/syslog.js';
export type { AuditIndex, AuditSink, AuditSinkStatus } from './sinks/types.js';
export {
  WEBHOOK_SIGNATURE_HEADER,
  WEBHOOK_TIMESTAMP_HEADER,
  type WebhookSinkOptions,
  webhookSignature,
  webhookSink,
} from './sinks/webhook.js';
export { appendWhole, Spool } from './spool.js';
export {
  type ChainProblem,
  type ChainProblemKind,
  type VerifyChainOptions,
  type VerifyChainResult,
  verifyAuditChain,
  verifyAuditChainAsync,
} from './verify.js';
