export * from './builtin.js';
export * from './checker.js';
export * from './labels.js';
export * from './lint.js';
export * from './role-schema.js';
export * from './roles.js';
export * from './templates.js';
export type * from './types.js';
