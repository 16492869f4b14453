// placeholder
export * from './rbac/index.js';
