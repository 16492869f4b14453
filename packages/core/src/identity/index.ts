export * from './locks.js';
export { auditLoginFailure, PasswordLogin, type PasswordLoginOptions } from './login.js';
export * from './passwords.js';
export { UserTokens, type UserTokensOptions } from './tokens.js';
export * from './totp.js';
export type * from './types.js';
export * from './users.js';
