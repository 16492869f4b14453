#!/usr/bin/env node
import { main } from '../dist/main.js';

main(process.argv).then(
  (code) => {
    process.exit(code);
  },
  (e) => {
    process.stderr.write(`error: ${e?.stack ?? e}\n`);
    process.exitCode = 1;
  },
);
