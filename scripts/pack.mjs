#!/usr/bin/env node
// `npm run pack [-- --out DIR] [-- --no-build]`: builds every workspace and packs the ones
// `gatehouse` needs at runtime into DIR (default: pack/), one npm tarball each
// (gatehouse-core-0.1.0.tgz, ...). Install them together, e.g.
//   npm install --prefix /opt/gatehouse pack/*.tgz
// so that the packages' @gatehouse/* dependencies are satisfied by these tarballs
// (decision 0031-install says why together, and why not from the registry).
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** Every workspace `gatehouse start` loads, the web bundle included (core serves it). */
export const RUNTIME_WORKSPACES = [
  'packages/audit',
  'packages/core',
  'packages/web',
  'packages/bpf',
  'packages/adapter-ssh',
  'packages/adapter-postgres',
  'packages/adapter-mysql',
  'packages/adapter-k8s',
  'packages/adapter-rdp',
  'packages/cli',
];

const args = process.argv.slice(2);
const outIdx = args.indexOf('--out');
if (outIdx >= 0 && !args[outIdx + 1]) {
  console.error('pack: --out needs a directory');
  // exitCode, not exit(): the message above must reach a pipe.
  process.exitCode = 2;
} else {
  pack(path.resolve(outIdx >= 0 ? args[outIdx + 1] : path.join(root, 'pack')));
}

function pack(out) {
  if (!args.includes('--no-build')) {
    execFileSync('npm', ['run', 'build'], { cwd: root, stdio: 'inherit' });
  }
  mkdirSync(out, { recursive: true });
  // Old tarballs of another version would be installed alongside the new ones by `*.tgz`.
  for (const f of readdirSync(out)) if (/^gatehouse-.*\.tgz$/.test(f)) rmSync(path.join(out, f));
  const packed = JSON.parse(
    execFileSync(
      'npm',
      ['pack', '--json', '--pack-destination', out, ...RUNTIME_WORKSPACES.flatMap((w) => ['-w', w])],
      { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] },
    ),
  );
  for (const p of packed) console.log(path.join(out, p.filename));
}
