export * from './backend-contract.js';
export * from './etcd.js';
export * from './fuzz.js';
export * from './peers.js';
