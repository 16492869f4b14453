// Kubernetes adapter benchmark: a simple GET directly against the fixture API
// server and through Gatehouse (impersonation, audit), then exec sessions per
// second (WebSocket v5, recorded) the same two ways, in interleaved rounds
// (the order rotates each round) and reported as the median round.
//
// Three processes: the gateway (this one), the fixture API server, and the
// load generator (every client). On 2 cores they still share the CPUs, so
// wall-clock rates are noisy; the gateway's own CPU per request
// (process.cpuUsage of this process, which runs nothing but the gateway
// while a round runs) is the steadier figure, and is printed with them.
// Usage: npm run bench -- kube [--seconds 5] [--rounds 3] [--concurrency 16] [--exec-concurrency 8] [--only get|exec] [--json]
import { fork } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { cpuMeter, median, processCpuMs, roundOrder } from './lib.mjs';

export const description =
  'kubectl-style GET req/s + p50/p99 and exec sessions/s: direct to the fixture vs through Gatehouse';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
/** Which part of the bench this process is: unset in the gateway, 'fixture' or 'load' in the children. */
const ROLE_ENV = 'GATEHOUSE_BENCH_KUBE_ROLE';

function flag(argv, name, def) {
  const i = argv.indexOf(name);
  return i >= 0 && argv[i + 1] ? Number(argv[i + 1]) : def;
}

/**
 * The fixture is test files (TypeScript): transpile them next to node_modules so their imports
 * resolve. Returns the URL of the fixture API server's module (soak.mjs loads it in a worker).
 */
export async function fixtureModuleUrl() {
  const ts = (await import('typescript')).default;
  const dir = path.join(root, 'node_modules/.cache/gatehouse-bench');
  await mkdir(dir, { recursive: true });
  await writeFile(path.join(dir, 'package.json'), '{ "type": "module" }\n');
  for (const name of ['fixture-apiserver', 'fixture-portforward']) {
    const src = await readFile(path.join(root, `packages/adapter-k8s/test/${name}.ts`), 'utf8');
    const out = ts.transpileModule(src, {
      compilerOptions: {
        module: ts.ModuleKind.ESNext,
        target: ts.ScriptTarget.ES2022,
        verbatimModuleSyntax: false,
      },
    }).outputText;
    await writeFile(path.join(dir, `${name}.js`), out);
  }
  return pathToFileURL(path.join(dir, 'fixture-apiserver.js')).href;
}

function pct(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0;
}

async function load(seconds, concurrency, once) {
  const lat = [];
  let errors = 0;
  let firstError;
  const end = performance.now() + seconds * 1000;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < end) {
        const t = performance.now();
        try {
          await once();
          lat.push(performance.now() - t);
        } catch (err) {
          errors++;
          firstError ??= err.message;
        }
      }
    }),
  );
  lat.sort((a, b) => a - b);
  return {
    rate: lat.length / seconds,
    p50: pct(lat, 50),
    p99: pct(lat, 99),
    errors,
    firstError,
    n: lat.length,
  };
}

function get(opts) {
  return new Promise((resolve, reject) => {
    const req = https.request(opts, (res) => {
      res.resume();
      res.on('end', () =>
        res.statusCode === 200 ? resolve() : reject(new Error(`status ${res.statusCode}`)),
      );
    });
    req.on('error', reject);
    req.end();
  });
}

/** Sends `msg` to a child (or the parent) over IPC and waits for its next message. */
function ask(proc, msg) {
  return new Promise((resolve, reject) => {
    const onExit = (code) => reject(new Error(`bench process exited (${code}) before answering`));
    proc.once('exit', onExit);
    proc.once('message', (m) => {
      proc.off('exit', onExit);
      if (m?.error) reject(new Error(m.error));
      else resolve(m);
    });
    proc.send(msg);
  });
}

/** Child process: the fixture API server, until the parent disconnects. */
async function fixtureMain() {
  const { startFixtureApiServer } = await import(await fixtureModuleUrl());
  const fixture = await startFixtureApiServer({ dir: process.argv[2] });
  process.send({ kubeconfig: fixture.kubeconfig, port: fixture.port, caPem: fixture.caPem });
  // The parent is gone: close the server and let the process end by itself (process.exit could cut
  // output still buffered for a pipe); the unref'd timer only fires if a socket still holds it.
  process.on('disconnect', () => {
    void fixture.close().finally(() => setTimeout(() => process.exit(0), 5_000).unref());
  });
}

/** Child process: every client. Runs one measurement per request from the parent. */
async function loadMain() {
  const { WebSocket } = await import('ws');
  const targets = {};
  const agents = {};
  const execs = {};
  const concurrency = Number(process.argv[2]);

  // One TLS context per target, as a client keeps it: building one per connection (parsing the
  // key and certificates) cost the bench more than the exec it measures.
  const exec = (target) => {
    const secureContext = tls.createSecureContext({ ca: target.ca, cert: target.cert, key: target.key });
    return () =>
      new Promise((resolve, reject) => {
        const ws = new WebSocket(
          `wss://127.0.0.1:${target.port}/api/v1/namespaces/default/pods/web-1/exec?command=true&stdout=true&stderr=true`,
          ['v5.channel.k8s.io'],
          { secureContext, servername: target.servername, headers: target.headers ?? {} },
        );
        // Done when the exit status arrives (what kubectl waits for); the close handshake is not timed.
        ws.on('message', (m) => {
          if (m[0] !== 3) return;
          const exit = m.subarray(1).toString();
          ws.terminate();
          if (exit.includes('Success')) resolve();
          else reject(new Error(`exec ended without success: ${exit}`));
        });
        ws.on('close', () => reject(new Error('closed before the exit status')));
        ws.on('error', reject);
      });
  };
  const path1 = '/api/v1/namespaces/default/pods/web-1';
  process.on('message', async (m) => {
    try {
      if (m.targets) {
        Object.assign(targets, m.targets);
        for (const [name, t] of Object.entries(m.targets)) {
          agents[name] = new https.Agent({ keepAlive: true, maxSockets: concurrency, ...t });
          execs[name] = exec(t);
        }
        process.send({ ok: true });
        return;
      }
      const t = targets[m.target];
      const once =
        m.kind === 'get' ? () => get({ ...t, agent: agents[m.target], path: path1 }) : execs[m.target];
      process.send(await load(m.seconds, m.concurrency, once));
    } catch (err) {
      process.send({ error: err.message });
    }
  });
  process.on('disconnect', () => {
    for (const a of Object.values(agents)) a.destroy();
    // Ends by itself once the agents' sockets are closed; the backstop only fires if one lingers.
    setTimeout(() => process.exit(0), 5_000).unref();
  });
  process.send({ ready: true });
}

function child(role, args) {
  const c = fork(fileURLToPath(import.meta.url), args, {
    env: { ...process.env, [ROLE_ENV]: role },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  return c;
}

function firstMessage(proc) {
  return new Promise((resolve, reject) => {
    proc.once('message', resolve);
    proc.once('error', reject);
    proc.once('exit', (code) => reject(new Error(`bench process exited (${code}) at start`)));
  });
}

export async function run(argv) {
  const seconds = flag(argv, '--seconds', 5);
  const rounds = flag(argv, '--rounds', 3);
  const concurrency = flag(argv, '--concurrency', 16);
  const execConcurrency = flag(argv, '--exec-concurrency', 8);
  const json = argv.includes('--json');
  if (!(Number.isInteger(rounds) && rounds >= 1)) throw new Error('--rounds must be a positive integer');
  const { createGateway } = await import('@gatehouse/core');
  // GATEHOUSE_BENCH_KUBE_ADAPTER: another build of the adapter's index.js, to compare a change.
  const { kube, kubeServerName } = await import(
    process.env.GATEHOUSE_BENCH_KUBE_ADAPTER
      ? pathToFileURL(path.resolve(process.env.GATEHOUSE_BENCH_KUBE_ADAPTER)).href
      : '@gatehouse/adapter-k8s'
  );
  const dir = await mkdtemp(path.join(os.tmpdir(), 'gh-bench-kube-'));
  const fixtureProc = child('fixture', [dir]);
  const loadProc = child('load', [String(Math.max(concurrency, execConcurrency))]);
  let gw;
  try {
    const [fixture] = await Promise.all([firstMessage(fixtureProc), firstMessage(loadProc)]);
    gw = await createGateway({
      dataDir: path.join(dir, 'data'),
      secondFactor: 'off',
      env: {},
      clusterName: 'bench',
    });
    gw.use(kube());
    const { port } = await gw.listen({ host: '127.0.0.1', port: 0 });
    await gw.admin.putRole(
      'kind: role\nname: kube-dev\nallow:\n  kube_labels: { "*": "*" }\n  kube_groups: [developers]\n',
    );
    await gw.admin.createUser({ name: 'alice', roles: ['kube-dev'], password: 'correct horse battery' });
    await gw.admin.addKubeCluster({ name: 'prod', kubeconfig: fixture.kubeconfig, labels: { env: 'prod' } });
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const now = Date.now();
    const user = await gw.authorities.issueX509UserCert({
      publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }),
      identity: { user: 'alice', roles: ['kube-dev'], traits: {}, expires: new Date(now + 3600_000) },
      notBefore: new Date(now - 60_000),
      notAfter: new Date(now + 3600_000),
    });
    const b64 = (field) =>
      Buffer.from(
        new RegExp(`client-${field}-data: (\\S+)`).exec(fixture.kubeconfig)?.[1] ?? '',
        'base64',
      ).toString();
    await ask(loadProc, {
      targets: {
        direct: {
          host: '127.0.0.1',
          port: fixture.port,
          ca: fixture.caPem,
          cert: b64('certificate'),
          key: b64('key'),
          headers: { 'impersonate-user': 'alice', 'impersonate-group': 'developers' },
        },
        gatehouse: {
          host: '127.0.0.1',
          port,
          ca: gw.authorities.get('host').map((k) => k.x509CertPem),
          cert: user.cert,
          key: privateKey.export({ type: 'pkcs8', format: 'pem' }),
          servername: kubeServerName('prod', 'bench'),
        },
      },
    });
    const only = argv.includes('--only') ? argv[argv.indexOf('--only') + 1] : undefined;
    const kinds = [
      { kind: 'get', label: 'GET pod', concurrency },
      { kind: 'exec', label: 'exec session', concurrency: execConcurrency },
    ].filter((k) => !only || k.kind === only);
    const targets = ['direct', 'gatehouse'];
    const results = [];
    for (const k of kinds) {
      // Warm up both paths (TLS sessions, upstream credentials, JIT).
      for (const t of targets)
        await ask(loadProc, { kind: k.kind, target: t, seconds: 1, concurrency: k.concurrency });
      const runs = new Map(targets.map((t) => [t, []]));
      for (let round = 0; round < rounds; round++) {
        for (const t of roundOrder(targets, round)) {
          const gwCpu = cpuMeter();
          const fixtureBefore = processCpuMs(fixtureProc.pid);
          const r = await ask(loadProc, { kind: k.kind, target: t, seconds, concurrency: k.concurrency });
          const gwMs = gwCpu();
          const fixtureMs = processCpuMs(fixtureProc.pid) - fixtureBefore;
          r.fixture_cpu_us = (fixtureMs * 1000) / Math.max(1, r.n);
          // Direct runs do not touch the gateway: its CPU then is its idle cost, shown as a check.
          r.gateway_cpu_us = (gwMs * 1000) / Math.max(1, r.n);
          runs.get(t).push(r);
          if (!json)
            process.stderr.write(
              `${k.label.padEnd(13)} ${t.padEnd(10)} round ${round + 1}/${rounds}: ${r.rate.toFixed(0)}/s, p50 ${r.p50.toFixed(2)} ms${r.errors ? `, ${r.errors} errors (${r.firstError})` : ''}\n`,
            );
        }
      }
      for (const t of targets) {
        const rs = runs.get(t);
        results.push({
          kind: k.kind,
          label: k.label,
          target: t,
          rate: median(rs.map((r) => r.rate)),
          p50: median(rs.map((r) => r.p50)),
          p99: median(rs.map((r) => r.p99)),
          errors: rs.reduce((n, r) => n + r.errors, 0),
          gateway_cpu_us: median(rs.map((r) => r.gateway_cpu_us)),
          fixture_cpu_us: median(rs.map((r) => r.fixture_cpu_us)),
          rates: rs.map((r) => r.rate),
        });
      }
    }
    const pick = (kind, target) => results.find((r) => r.kind === kind && r.target === target);
    const has = (kind) => kinds.some((k) => k.kind === kind);
    const goals = {
      ...(has('get')
        ? {
            get_p50_overhead_ms: pick('get', 'gatehouse').p50 - pick('get', 'direct').p50,
            get_throughput_ratio: pick('get', 'gatehouse').rate / pick('get', 'direct').rate,
          }
        : {}),
      ...(has('exec') ? { exec_ratio: pick('exec', 'gatehouse').rate / pick('exec', 'direct').rate } : {}),
    };
    if (json) {
      process.stdout.write(
        `${JSON.stringify({ seconds, rounds, concurrency, execConcurrency, cpus: os.cpus().length, results, goals }, null, 2)}\n`,
      );
      return;
    }
    const row = (r) =>
      `${`${r.label}, ${r.target}`.padEnd(26)} ${r.rate.toFixed(0).padStart(7)}/s (${Math.min(...r.rates).toFixed(0)}-${Math.max(...r.rates).toFixed(0)})  p50 ${r.p50.toFixed(2).padStart(6)} ms  p99 ${r.p99.toFixed(2).padStart(7)} ms  errors ${r.errors}  CPU/op: gateway ${r.target === 'direct' ? '(idle)' : `${r.gateway_cpu_us.toFixed(0)} us`}, fixture ${r.fixture_cpu_us.toFixed(0)} us`;
    process.stdout.write(
      [
        '',
        `kube bench: median of ${rounds} interleaved rounds of ${seconds} s; ${concurrency} concurrent GETs, ${execConcurrency} concurrent execs; gateway, fixture and load generator in 3 processes on ${os.cpus().length} CPUs`,
        ...(has('get')
          ? [
              row(pick('get', 'direct')),
              row(pick('get', 'gatehouse')),
              `  through/direct: ${goals.get_throughput_ratio.toFixed(2)}x throughput (goal >= 0.6x: ${goals.get_throughput_ratio >= 0.6 ? 'met' : 'NOT met'}), p50 +${goals.get_p50_overhead_ms.toFixed(2)} ms (goal <= 1 ms: ${goals.get_p50_overhead_ms <= 1 ? 'met' : 'NOT met'})`,
            ]
          : []),
        ...(has('exec')
          ? [
              row(pick('exec', 'direct')),
              row(pick('exec', 'gatehouse')),
              `  through/direct: ${goals.exec_ratio.toFixed(2)}x sessions/s, recorded + audited (goal >= 0.7x: ${goals.exec_ratio >= 0.7 ? 'met' : 'NOT met'})`,
            ]
          : []),
        '',
      ].join('\n'),
    );
  } finally {
    fixtureProc.disconnect?.();
    loadProc.disconnect?.();
    await gw?.close();
    await Promise.all(
      [fixtureProc, loadProc].map((p) =>
        p.exitCode !== null || p.signalCode !== null ? undefined : new Promise((r) => p.once('exit', r)),
      ),
    );
    await rm(dir, { recursive: true, force: true });
  }
}

if (process.env[ROLE_ENV] === 'fixture') await fixtureMain();
else if (process.env[ROLE_ENV] === 'load') await loadMain();
