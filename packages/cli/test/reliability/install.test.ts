import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { fetchPinnedCa, GatehouseClient, parseHostPort } from '@gatehouse/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Daemon, startEmbedded } from '../harness.js';

/**
 * The clean-machine install (issue 21): `npm run pack`'s tarballs, and nothing else from the
 * repository, installed into a fresh prefix with npm, give a `gatehouse` that prints its
 * version and starts with the embedded defaults. Here (reliability, not integration) because
 * npm builds better-sqlite3 and node-pty from source: about 2.5 minutes on 2 cores. Packages come
 * from npm's cache where it has them (--prefer-offline). Needs the build (`npm run build`).
 */
const exec = promisify(execFile);
const repo = fileURLToPath(new URL('../../../../', import.meta.url));
const version = JSON.parse(readFileSync(join(repo, 'packages/cli/package.json'), 'utf8')).version as string;

let root = '';
let prefix = '';
let bin = '';
const daemons: Daemon[] = [];

beforeAll(async () => {
  for (const built of ['packages/cli/dist/index.js', 'packages/web/dist/index.html']) {
    if (!existsSync(join(repo, built))) throw new Error(`${built} is missing: run \`npm run build\` first`);
  }
  root = mkdtempSync(join(tmpdir(), 'gh-install-'));
  const packDir = join(root, 'pack');
  prefix = join(root, 'prefix');
  await exec(process.execPath, [join(repo, 'scripts/pack.mjs'), '--no-build', '--out', packDir], {
    cwd: repo,
  });
  const tarballs = readdirSync(packDir).map((f) => join(packDir, f));
  await exec(
    'npm',
    ['install', '--prefix', prefix, '--prefer-offline', '--no-audit', '--no-fund', ...tarballs],
    {
      cwd: root,
      maxBuffer: 16 << 20,
    },
  );
  bin = join(prefix, 'node_modules/.bin/gatehouse');
}, 600_000);

afterAll(async () => {
  for (const d of daemons.splice(0)) {
    await d.stop();
    rmSync(d.root, { recursive: true, force: true });
  }
  if (root) rmSync(root, { recursive: true, force: true });
});

describe('install from the packed tarballs', () => {
  it('every @gatehouse package comes from a tarball, not the registry (another owner publishes @gatehouse/core there)', () => {
    const lock = JSON.parse(readFileSync(join(prefix, 'package-lock.json'), 'utf8'));
    const ours = Object.entries(lock.packages as Record<string, { resolved?: string }>).filter(([p]) =>
      p.includes('node_modules/@gatehouse/'),
    );
    expect(ours.map(([p]) => p).sort()).toEqual(
      [
        'adapter-k8s',
        'adapter-mysql',
        'adapter-postgres',
        'adapter-rdp',
        'adapter-ssh',
        'audit',
        'bpf',
        'cli',
        'core',
        'web',
      ].map((n) => `node_modules/@gatehouse/${n}`),
    );
    for (const [p, meta] of ours) expect(meta.resolved, p).toMatch(/^file:.*\.tgz$/);
  });

  it("applies Gatehouse's ssh2 patch at install (the installed tree has no patch-package)", () => {
    const server = readFileSync(join(prefix, 'node_modules/ssh2/lib/server.js'), 'utf8');
    expect(server).toContain('openssh_authAgent(cb)');
    expect(readFileSync(join(prefix, 'node_modules/ssh2/lib/protocol/crypto.js'), 'utf8')).toContain(
      'Gatehouse patch',
    );
  });

  it('gatehouse --version prints the packed version', async () => {
    const r = await exec(process.execPath, [bin, '--version'], { cwd: root });
    expect(r.stdout.trim()).toBe(`gatehouse ${version}`);
  });

  it('gatehouse start runs with the embedded defaults: /v1/ping answers and / serves the web UI', async () => {
    const d = await startEmbedded({ bin, args: ['--listen', '127.0.0.1:0', '--mysql-listen', 'off'] });
    daemons.push(d);
    const { host, port } = parseHostPort(d.proxy);
    const ca = await fetchPinnedCa({ host, port, pin: d.pin });
    const client = new GatehouseClient({ proxy: d.proxy, caPem: ca.caPem });
    try {
      const ping = await client.ping();
      expect(ping.version).toBe(version);
      expect(ping.public_addr).toBe(d.proxy);
    } finally {
      client.close();
    }
    const html = await new Promise<string>((resolve, reject) => {
      https
        .get({ host, port, path: '/', ca: ca.caPem }, (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (c) => {
            body += c;
          });
          res.on('end', () => resolve(body));
        })
        .on('error', reject);
    });
    expect(html).toContain('<title>Gatehouse</title>');
  });
});
