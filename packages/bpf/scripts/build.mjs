#!/usr/bin/env node
// Builds the native half of @gatehouse/bpf from source (no prebuilt binaries):
//   bpftool   vmlinux.h from the running kernel's BTF (CO-RE: the object runs on other kernels too)
//   clang     -target bpf: native/gatehouse.bpf.c -> build/gatehouse.bpf.o
//   bpftool   gen skeleton: the object embedded in a C header
//   cc        native/helper.c + libbpf -> build/gatehouse-bpf-helper (static when the .a files exist)
// Runs from the root `npm run build` (so `npm ci` and `npm test` build it). Skips, with a notice,
// off Linux or with GATEHOUSE_BPF_BUILD=skip; on Linux a missing tool is a warning that names the
// Debian packages to install (scripts/peers.mjs installs them in CI), an error with
// GATEHOUSE_BPF_BUILD=require (npm test).
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const pkg = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const native = path.join(pkg, 'native');
const out = path.join(pkg, 'build');
const helper = path.join(out, 'gatehouse-bpf-helper');
const BTF = '/sys/kernel/btf/vmlinux';
const DEBIAN_PACKAGES = 'clang libbpf-dev bpftool libelf-dev zlib1g-dev gcc libc6-dev';

function note(msg) {
  console.error(`@gatehouse/bpf: ${msg}`);
}

/** Returns the exit status; process.exitCode lets stderr drain instead of cutting it off. */
function main() {
  if (process.env.GATEHOUSE_BPF_BUILD === 'skip') {
    note('GATEHOUSE_BPF_BUILD=skip: the eBPF helper is not built; `gatehouse node check` will say so');
    return 0;
  }
  if (process.platform !== 'linux') {
    note(`eBPF needs Linux (this is ${process.platform}); the helper is not built`);
    return 0;
  }

  /**
   * The helper cannot be built here. `npm ci && npm start` on a fresh machine must
   * still work (the gateway does not need the helper; a node service without it
   * refuses sessions whose roles ask for enforcement and `gatehouse node check`
   * says why), so this is a warning, unless GATEHOUSE_BPF_BUILD=require (the
   * test run: its eBPF tests need the helper).
   */
  function unbuilt() {
    if (process.env.GATEHOUSE_BPF_BUILD === 'require') return 1;
    note('building without the eBPF helper (GATEHOUSE_BPF_BUILD=require makes this an error)');
    return 0;
  }

  function which(bin, extra = []) {
    for (const dir of [...(process.env.PATH ?? '').split(':'), ...extra]) {
      if (dir && existsSync(path.join(dir, bin))) return path.join(dir, bin);
    }
    return undefined;
  }

  // bpftool lives in /usr/sbin on Debian, which a non-root PATH often lacks.
  const tools = {
    clang: which('clang'),
    bpftool: which('bpftool', ['/usr/sbin', '/usr/local/sbin']),
    cc: which('cc') ?? which('gcc'),
  };
  const missing = Object.entries(tools)
    .filter(([, p]) => !p)
    .map(([n]) => n);
  if (!existsSync('/usr/include/bpf/libbpf.h')) missing.push('libbpf headers (/usr/include/bpf/libbpf.h)');
  if (missing.length > 0) {
    console.error(
      `@gatehouse/bpf: cannot build the eBPF helper: missing ${missing.join(', ')}.\n` +
        `  Debian/Ubuntu: sudo apt-get install -y ${DEBIAN_PACKAGES}\n` +
        '  (or set GATEHOUSE_BPF_BUILD=skip to build without eBPF session enforcement)',
    );
    return unbuilt();
  }
  if (!existsSync(BTF)) {
    console.error(
      `@gatehouse/bpf: this kernel has no BTF (${BTF}): CO-RE programs cannot be built or loaded here.\n` +
        '  Use a kernel built with CONFIG_DEBUG_INFO_BTF=y, or set GATEHOUSE_BPF_BUILD=skip.',
    );
    return unbuilt();
  }

  const newest = (files) => Math.max(...files.map((f) => statSync(f).mtimeMs));
  const sources = readdirSync(native).map((f) => path.join(native, f));
  if (existsSync(helper) && statSync(helper).mtimeMs > newest([...sources, fileURLToPath(import.meta.url)])) {
    return 0;
  }

  mkdirSync(out, { recursive: true });
  const run = (file, args) =>
    execFileSync(file, args, { stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 256 << 20 });
  const started = Date.now();

  writeFileSync(path.join(out, 'vmlinux.h'), run(tools.bpftool, ['btf', 'dump', 'file', BTF, 'format', 'c']));
  const arch = { x64: 'x86', arm64: 'arm64' }[process.arch];
  if (!arch) {
    console.error(`@gatehouse/bpf: no BPF target architecture for ${process.arch} yet`);
    return 1;
  }
  run(tools.clang, [
    '-g',
    '-O2',
    '-Wall',
    '-Werror',
    '-target',
    'bpf',
    `-D__TARGET_ARCH_${arch}`,
    '-I',
    out,
    '-I',
    native,
    '-c',
    path.join(native, 'gatehouse.bpf.c'),
    '-o',
    path.join(out, 'gatehouse.bpf.o'),
  ]);
  writeFileSync(
    path.join(out, 'gatehouse.skel.h'),
    run(tools.bpftool, ['gen', 'skeleton', path.join(out, 'gatehouse.bpf.o'), 'name', 'gatehouse']),
  );

  // Static when libbpf.a, libelf.a and libz.a are installed: the helper then needs nothing at run time.
  const cflags = [
    '-O2',
    '-Wall',
    '-Wextra',
    '-Werror',
    '-I',
    out,
    '-I',
    native,
    path.join(native, 'helper.c'),
    '-o',
    helper,
  ];
  const libs = ['-lbpf', '-lelf', '-lz'];
  const staticLink = spawnSync(tools.cc, [...cflags, '-static', ...libs], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let linkage = 'static';
  if (staticLink.status !== 0) {
    linkage = 'dynamic';
    run(tools.cc, [...cflags, ...libs]);
  }
  note(`built ${path.relative(process.cwd(), helper)} (${linkage}, ${Date.now() - started} ms)`);
  return 0;
}

process.exitCode = main();
