// SSH proxy benchmark, side by side in one run: throughput (bytes from the
// node to the client) and `true` round-trip latency for direct ssh, OpenSSH
// `ssh -J` through an OpenSSH jump sshd, `ssh -J` through Gatehouse and
// `gatehouse ssh` (ProxyCommand over TLS), each as a ratio to OpenSSH -J;
// then the gateway's memory per idle interactive session.
// Usage: npm run bench -- ssh [--bytes 1073741824] [--rounds 3] [--runs 20] [--sessions 1000] [--guards N]
// --guards N adds `gatehouse ssh` for a user whose role has N content guards on output and input.
// Needs: OpenSSH client and server (apt-get install openssh-client openssh-server) and root (it adds a test login).
import { execFile, spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import v8 from 'node:v8';
import vm from 'node:vm';
import { addLoginAccount, guardLines, median } from './lib.mjs';

export const description =
  'ssh throughput + `true` latency: direct vs OpenSSH -J vs ssh -J through Gatehouse vs gatehouse ssh; memory per idle session';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const BIN = path.join(root, 'packages/cli/bin/gatehouse.js');
const exec = promisify(execFile);
const PASSWORD = 'bench password 123';

function flag(argv, name, def) {
  const i = argv.indexOf(name);
  return i >= 0 && argv[i + 1] ? Number(argv[i + 1]) : def;
}

/** Runs a command with stdout discarded; resolves to wall ms. */
function timed(cmd, args, env) {
  return new Promise((resolve, reject) => {
    const t = performance.now();
    const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], env });
    let err = '';
    child.stderr.on('data', (d) => {
      err += d;
    });
    child.on('error', reject);
    child.on('close', (code) => {
      if (code !== 0) reject(new Error(`${cmd} ${args.slice(-3).join(' ')} exited ${code}: ${err.trim()}`));
      else resolve(performance.now() - t);
    });
  });
}

export async function run(argv) {
  const bytes = flag(argv, '--bytes', 1024 ** 3);
  const runs = flag(argv, '--runs', 20);
  const rounds = flag(argv, '--rounds', 3);
  const sessions = flag(argv, '--sessions', 1000);
  const guards = flag(argv, '--guards', 0);
  const { createGateway } = await import('@gatehouse/core');
  const { startSshd } = await import('@gatehouse/core/testing');
  const { ssh } = await import('@gatehouse/adapter-ssh');
  const dir = await mkdtemp(path.join(os.tmpdir(), 'gh-bench-ssh-'));
  const cleanups = [];
  const { login, remove } = await addLoginAccount();
  cleanups.push(remove);
  try {
    // Recording stays on (the role default): interactive sessions below are recorded to files.
    const gw = await createGateway({
      dataDir: path.join(dir, 'data'),
      clusterName: 'bench',
      secondFactor: 'off',
      env: {},
    });
    gw.use(ssh());
    const { port } = await gw.listen({ host: '127.0.0.1', port: 0 });
    cleanups.push(() => gw.close());
    await gw.admin.createUser({
      name: 'bench',
      roles: ['access'],
      traits: { logins: [login] },
      password: PASSWORD,
    });

    const hostKey = path.join(dir, 'ssh_host_ed25519_key');
    await exec('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', hostKey]);
    const hc = await gw.authorities.issueSshHostCert({
      publicKey: (await readFile(`${hostKey}.pub`, 'utf8')).trim(),
      keyId: 'node1',
      principals: ['node1', '127.0.0.1'],
      validAfter: new Date(),
      validBefore: new Date(Date.now() + 3600e3),
    });
    await writeFile(`${hostKey}-cert.pub`, `${hc.cert}\n`);
    const nodeDir = path.join(dir, 'node');
    const jumpDir = path.join(dir, 'jump');
    await exec('mkdir', ['-p', nodeDir, jumpDir]);
    const common = ['PrintMotd no', 'PrintLastLog no', 'MaxSessions 2000', 'MaxStartups 2000'];
    const node = await startSshd({
      dir: nodeDir,
      userCaKeys: gw.exportCa('sshd'),
      hostKey,
      hostCert: `${hostKey}-cert.pub`,
      extraConfig: common,
    });
    cleanups.push(() => node.stop());
    const jump = await startSshd({
      dir: jumpDir,
      userCaKeys: gw.exportCa('sshd'),
      hostKey,
      hostCert: `${hostKey}-cert.pub`,
      extraConfig: common,
    });
    cleanups.push(() => jump.stop());
    await gw.nodes.add({ name: 'node1', addr: `127.0.0.1:${node.port}`, labels: { env: 'bench' } }, 'bench');

    // A real login through the CLI: its files serve every mode below.
    const home = path.join(dir, 'home');
    const env = { ...process.env, GATEHOUSE_HOME: home };
    const ghLogin = (user, e) =>
      new Promise((resolve, reject) => {
        const c = spawn(
          process.execPath,
          [
            BIN,
            'login',
            '--proxy',
            `127.0.0.1:${port}`,
            '--user',
            user,
            '--ca-pin',
            gw.caPin(),
            '--password-stdin',
          ],
          { env: e, stdio: ['pipe', 'ignore', 'inherit'] },
        );
        c.on('close', (code) =>
          code === 0 ? resolve() : reject(new Error(`gatehouse login exited ${code}`)),
        );
        c.stdin.end(`${PASSWORD}\n`);
      });
    await ghLogin('bench', env);
    // --guards N: another user, whose role adds N content guards on output and input.
    const guardedEnv = { ...process.env, GATEHOUSE_HOME: path.join(dir, 'home-guarded') };
    if (guards > 0) {
      await gw.admin.putRole(
        `kind: role\nname: guarded\nallow:\n  logins: ['{{internal.logins}}']\n  node_labels: { '*': '*' }\noptions:\n${guardLines(guards, ['output', 'input'])}\n`,
        { create: true },
      );
      await gw.admin.createUser({
        name: 'benchg',
        roles: ['guarded'],
        traits: { logins: [login] },
        password: PASSWORD,
      });
      await ghLogin('benchg', guardedEnv);
    }
    const keyDir = path.join(home, 'keys', `127.0.0.1_${port}`, 'bench');
    const cfg = path.join(dir, 'ssh_config');
    await writeFile(
      cfg,
      [
        'Host *',
        `  IdentityFile ${path.join(keyDir, 'id_ed25519')}`,
        `  CertificateFile ${path.join(keyDir, 'id_ed25519-cert.pub')}`,
        '  IdentitiesOnly yes',
        `  UserKnownHostsFile ${path.join(home, 'known_hosts')}`,
        '  StrictHostKeyChecking yes',
        '  BatchMode yes',
        '  LogLevel ERROR',
        '',
      ].join('\n'),
    );
    const modes = [
      {
        name: 'direct ssh',
        cmd: 'ssh',
        args: (c) => ['-F', cfg, '-p', String(node.port), `${login}@127.0.0.1`, c],
      },
      {
        name: 'OpenSSH ssh -J',
        cmd: 'ssh',
        args: (c) => [
          '-F',
          cfg,
          '-J',
          `${login}@127.0.0.1:${jump.port}`,
          '-p',
          String(node.port),
          `${login}@127.0.0.1`,
          c,
        ],
      },
      {
        name: 'ssh -J Gatehouse',
        cmd: 'ssh',
        args: (c) => ['-F', cfg, '-J', `bench@127.0.0.1:${port}`, `${login}@node1`, c],
      },
      { name: 'gatehouse ssh', cmd: process.execPath, args: (c) => [BIN, 'ssh', `${login}@node1`, c] },
      ...(guards > 0
        ? [
            {
              name: `gatehouse ssh, ${guards} guards`,
              cmd: process.execPath,
              args: (c) => [BIN, 'ssh', `${login}@node1`, c],
              env: guardedEnv,
            },
          ]
        : []),
    ];

    const out = [];
    for (const m of modes) {
      const e = m.env ?? env;
      await timed(m.cmd, m.args('true'), e); // warm up (host cert, upstream cert caches)
      await timed(m.cmd, m.args(`head -c ${64 * 1024 ** 2} /dev/zero`), e); // and the bulk data path
      const lat = [];
      for (let i = 0; i < runs; i++) lat.push(await timed(m.cmd, m.args('true'), e));
      out.push({ name: m.name, latency: median(lat), transfers: [] });
    }
    // Throughput rounds go through every mode in turn, so a slow spell on this
    // shared machine hits all modes alike; the median round counts.
    for (let r = 1; r <= rounds; r++) {
      for (const [i, m] of modes.entries())
        out[i].transfers.push(await timed(m.cmd, m.args(`head -c ${bytes} /dev/zero`), m.env ?? env));
      process.stdout.write(`  throughput round ${r} of ${rounds}: done\n`);
    }
    for (const o of out) o.mibps = bytes / 1024 / 1024 / (median(o.transfers) / 1000);
    const ref = out.find((o) => o.name === 'OpenSSH ssh -J');
    const w = Math.max(18, ...out.map((o) => o.name.length + 2));
    process.stdout.write(
      `\nSSH, median of ${rounds} rounds of ${(bytes / 1024 ** 2).toFixed(0)} MiB from the node and of ${runs} \`true\` runs (recording on):\n\n`,
    );
    process.stdout.write(
      `${'mode'.padEnd(w)}${'MiB/s'.padStart(10)}${'x -J'.padStart(8)}${'true ms'.padStart(10)}${'x -J'.padStart(8)}\n`,
    );
    for (const o of out) {
      process.stdout.write(
        `${o.name.padEnd(w)}${o.mibps.toFixed(1).padStart(10)}${(o.mibps / ref.mibps).toFixed(2).padStart(8)}${o.latency.toFixed(1).padStart(10)}${(o.latency / ref.latency).toFixed(2).padStart(8)}\n`,
      );
    }

    // Memory per idle interactive session: N recorded pty shells held open through the gateway (in this process).
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc');
    const settle = async () => {
      for (let i = 0; i < 3; i++) {
        gc();
        await new Promise((r) => setTimeout(r, 200));
      }
      const m = process.memoryUsage();
      // (arrayBuffers is part of external: counted once)
      return { heap: m.heapUsed + m.external, rss: m.rss };
    };
    const before = await settle();
    const children = [];
    for (let i = 0; i < sessions; i++) {
      const c = spawn('ssh', ['-F', cfg, '-tt', '-J', `bench@127.0.0.1:${port}`, `${login}@node1`], {
        stdio: ['pipe', 'ignore', 'ignore'],
      });
      children.push(c);
    }
    const t0 = Date.now();
    while (gw.liveSessions.size < sessions && Date.now() - t0 < 120_000)
      await new Promise((r) => setTimeout(r, 200));
    const live = gw.liveSessions.size;
    await new Promise((r) => setTimeout(r, 2000));
    const after = await settle();
    // GATEHOUSE_BENCH_SSH_HEAPSNAPSHOT=FILE: the gateway's heap with the idle sessions up, to see what each keeps.
    const snap = process.env.GATEHOUSE_BENCH_SSH_HEAPSNAPSHOT;
    if (snap) process.stdout.write(`heap snapshot: ${v8.writeHeapSnapshot(snap)}\n`);
    for (const c of children) c.kill('SIGTERM');
    await Promise.all(
      children.map((c) => (c.exitCode !== null ? 0 : new Promise((r) => c.once('close', r)))),
    );
    const rssPer = (after.rss - before.rss) / Math.max(live, 1) / 1024;
    process.stdout.write(
      `\nIdle interactive sessions: ${live} of ${sessions} live; gateway memory per session: ` +
        `${((after.heap - before.heap) / Math.max(live, 1) / 1024).toFixed(1)} KiB JS heap+buffers, ` +
        `${rssPer.toFixed(1)} KiB RSS\n`,
    );
    const ratio = out.find((o) => o.name === 'gatehouse ssh').mibps / ref.mibps;
    process.stdout.write(
      `goal gatehouse ssh >= 1.3x ssh -J throughput, recording on: ${ratio >= 1.3 ? 'met' : 'NOT met'} (${ratio.toFixed(2)}x)\n` +
        `goal idle memory per session <= 100 KiB (RSS, all ${live} sessions live): ${live === sessions && rssPer <= 100 ? 'met' : 'NOT met'} (${rssPer.toFixed(1)} KiB)\n`,
    );
  } finally {
    for (const c of cleanups.reverse()) await c().catch(() => {});
    await rm(dir, { recursive: true, force: true });
  }
}
