export { type AuditSinkOption, isExportSinkConfig, resolveAuditSinks } from './audit-sinks.js';
export * from './load.js';
export * from './schema.js';
