export * from './authorizer.js';
export { type AccessTarget, Grant } from './grant.js';
