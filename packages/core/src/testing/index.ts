export * from './backend-contract.js';
export * from './peers.js';
