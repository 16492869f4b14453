export * from './emitter.js';
export * from './events.js';
