#!/usr/bin/env node
// Benchmark dispatcher: `npm run bench -- <name> [options]` runs bench/<name>.mjs
// after the build (plain node, no TypeScript loader). Each bench module exports
// `description` (one line) and `run(argv)`. Without a name, lists the benches.
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));

async function available() {
  const files = (await readdir(here)).filter((f) => f.endsWith('.mjs') && f !== 'run.mjs').sort();
  const out = [];
  for (const f of files) {
    const mod = await import(pathToFileURL(path.join(here, f)).href);
    if (typeof mod.run === 'function')
      out.push({ name: f.slice(0, -4), description: mod.description ?? '', mod });
  }
  return out;
}

const [name, ...rest] = process.argv.slice(2);
const benches = await available();
const bench = benches.find((b) => b.name === name);
if (!bench) {
  if (name && name !== '--help' && name !== '-h') process.stderr.write(`unknown bench "${name}"\n\n`);
  process.stdout.write('usage: npm run bench -- <name> [options]\n\navailable benches:\n');
  for (const b of benches) process.stdout.write(`  ${b.name.padEnd(12)} ${b.description}\n`);
  process.exit(name && name !== '--help' && name !== '-h' ? 2 : 0);
}
await bench.mod.run(rest);
