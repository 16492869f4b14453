export * from './backend-contract.js';
