export * from './registry.js';
export * from './relay.js';
export * from './tokens.js';
