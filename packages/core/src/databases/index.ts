export * from './access.js';
export * from './registry.js';
