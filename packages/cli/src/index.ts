export { buildProgram, main, version } from './main.js';
