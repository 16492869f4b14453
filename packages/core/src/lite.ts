/**
 * `@gatehouse/core/lite`: the few pieces a short-lived client process needs
 * (errors, address parsing) without loading the gateway, its storage and
 * PKI. `gatehouse proxy ssh` runs once per OpenSSH connection, so its start-up
 * time is connection latency.
 */
export * from './errors.js';
export { parseHostPort } from './util/hostport.js';
