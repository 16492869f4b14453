export * from './wire/client-info.js';
export * from './wire/rdcleanpath.js';
export * from './wire/tpkt.js';
export * from './wire/x224.js';
