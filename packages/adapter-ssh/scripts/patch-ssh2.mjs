#!/usr/bin/env node
// Gatehouse's ssh2 patch for installed packages. In the source checkout the root postinstall
// applies patches/ssh2+<version>.patch with patch-package; an installed @gatehouse/adapter-ssh
// (npm install of the tarball) has no patch-package and no root, so:
//   prepack   `patch-ssh2.mjs --stage`   copies the repo's patch into this package's patches/
//   postpack  `patch-ssh2.mjs --unstage` removes the copy again
//   postinstall `patch-ssh2.mjs`         applies patches/*.patch to the ssh2 this package resolves
// The patch is not optional: host certificates, agent forwarding, the ciphers without the
// native binding and the end-of-session signal all depend on it (patches/ssh2+1.17.0.patch
// says what each hunk does). Applying is idempotent (an installed tree that already has it is
// left alone) and fails the install, saying which file and hunk, rather than run an unpatched
// ssh2 when a hunk matches neither the original nor the patched text.
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const pkg = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const own = path.join(pkg, 'patches');
const repoPatches = path.resolve(pkg, '..', '..', 'patches');

/** Parses a unified diff (git/patch-package format) into files and hunks of line arrays. */
export function parsePatch(text) {
  const lines = text.split('\n');
  const files = [];
  let i = 0;
  while (i < lines.length) {
    const m = /^diff --git a\/node_modules\/ssh2\/(\S+) b\//.exec(lines[i]);
    if (!m) {
      i++;
      continue;
    }
    const file = { path: m[1], hunks: [] };
    files.push(file);
    i++;
    while (i < lines.length && !lines[i].startsWith('diff --git ')) {
      const h = /^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@/.exec(lines[i]);
      i++;
      if (!h) continue;
      let oldLeft = h[2] === undefined ? 1 : Number(h[2]);
      let newLeft = h[4] === undefined ? 1 : Number(h[4]);
      const hunk = { oldStart: Number(h[1]), old: [], new: [] };
      while (oldLeft > 0 || newLeft > 0) {
        const l = lines[i++];
        if (l === undefined) throw new Error(`${file.path}: the patch ends inside a hunk`);
        const body = l.slice(1);
        if (l[0] === ' ' || l === '') {
          hunk.old.push(body);
          hunk.new.push(body);
          oldLeft--;
          newLeft--;
        } else if (l[0] === '-') {
          hunk.old.push(body);
          oldLeft--;
        } else if (l[0] === '+') {
          hunk.new.push(body);
          newLeft--;
        } else if (l[0] !== '\\') {
          throw new Error(`${file.path}: unexpected line in a hunk: ${l}`);
        }
      }
      file.hunks.push(hunk);
    }
  }
  return files;
}

/** The index of `block` in `lines` nearest to `near`, or -1. */
function find(lines, block, near) {
  let best = -1;
  for (let at = 0; at + block.length <= lines.length; at++) {
    let ok = true;
    for (let k = 0; k < block.length && ok; k++) ok = lines[at + k] === block[k];
    if (ok && (best < 0 || Math.abs(at - near) < Math.abs(best - near))) best = at;
  }
  return best;
}

/**
 * Applies one file's hunks to its text. Returns the new text, or null when every hunk is
 * already applied; throws when a hunk matches neither side (another ssh2 version).
 */
export function applyFile(text, file) {
  const lines = text.split('\n');
  // Patched already when every hunk's result is there (the original text of some hunks can
  // still occur elsewhere in a patched file, so that is checked first).
  let shift = 0;
  const patched = file.hunks.every((h) => {
    const ok = find(lines, h.new, h.oldStart - 1 + shift) >= 0;
    shift += h.new.length - h.old.length;
    return ok;
  });
  if (patched) return null;
  shift = 0;
  for (const [n, hunk] of file.hunks.entries()) {
    const at = find(lines, hunk.old, hunk.oldStart - 1 + shift);
    if (at < 0) {
      throw new Error(
        `ssh2 ${file.path}: hunk ${n + 1} (line ${hunk.oldStart}) does not match: reinstall ssh2 of the patch's version`,
      );
    }
    lines.splice(at, hunk.old.length, ...hunk.new);
    shift += hunk.new.length - hunk.old.length;
  }
  return lines.join('\n');
}

function patchFiles(dir) {
  return existsSync(dir) ? readdirSync(dir).filter((f) => /^ssh2\+.*\.patch$/.test(f)) : [];
}

function main(argv) {
  if (argv.includes('--stage')) {
    const found = patchFiles(repoPatches);
    if (found.length === 0) throw new Error(`no ssh2 patch in ${repoPatches}: pack from the source checkout`);
    mkdirSync(own, { recursive: true });
    for (const f of found) copyFileSync(path.join(repoPatches, f), path.join(own, f));
    return;
  }
  if (argv.includes('--unstage')) {
    rmSync(own, { recursive: true, force: true });
    return;
  }
  // The source checkout has no patches/ here: its root postinstall (patch-package) applies it.
  const found = patchFiles(own);
  if (found.length === 0) return;
  const sshRoot = path.dirname(createRequire(path.join(pkg, 'package.json')).resolve('ssh2/package.json'));
  const version = JSON.parse(readFileSync(path.join(sshRoot, 'package.json'), 'utf8')).version;
  const patch = found.find((f) => f === `ssh2+${version}.patch`);
  if (!patch) {
    throw new Error(
      `ssh2 ${version} is installed but the patch is for ${found.join(', ')}: install ssh2 of that version`,
    );
  }
  const files = parsePatch(readFileSync(path.join(own, patch), 'utf8'));
  // Every file is checked before any is written, so a failure leaves ssh2 as it was.
  const out = files.map((f) => [f, applyFile(readFileSync(path.join(sshRoot, f.path), 'utf8'), f)]);
  let changed = 0;
  for (const [f, text] of out) {
    if (text === null) continue;
    writeFileSync(path.join(sshRoot, f.path), text);
    changed++;
  }
  console.log(
    `@gatehouse/adapter-ssh: ssh2 ${version} ${changed ? `patched (${changed} files)` : 'already patched'}`,
  );
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  try {
    main(process.argv.slice(2));
  } catch (e) {
    console.error(`@gatehouse/adapter-ssh: ${e instanceof Error ? e.message : e}`);
    process.exitCode = 1;
  }
}
