export * from './locks.js';
export * from './passwords.js';
export * from './totp.js';
export type * from './types.js';
export * from './users.js';
