/**
 * `@gatehouse/core/lite`: the few pieces a short-lived client process needs
 * (errors, address parsing) without loading the gateway, its storage and
 * PKI. `gatehouse proxy ssh` runs once per OpenSSH connection, so its start-up
 * time is connection latency. The adapters' wire codecs take their byte queue
 * from here for the same reason: a codec loads without the gateway.
 */
export * from './errors.js';
export { ByteQueue } from './util/byte-queue.js';
export { parseHostPort } from './util/hostport.js';
