// Kubernetes adapter benchmark: a simple GET directly against the fixture API
// server and through Gatehouse (impersonation, audit) in one run, then exec
// sessions per second (WebSocket v5, recorded) the same two ways. The
// clients and the fixture run in a worker thread, so the gateway's event loop
// is its own, as it would be in front of a real cluster.
// Usage: npm run bench -- kube [--seconds 5] [--concurrency 16] [--exec-concurrency 8]
import { generateKeyPairSync } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';

export const description =
  'kubectl-style GET req/s + p50/p99 and exec sessions/s: direct to the fixture vs through Gatehouse';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

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

async function loadFixture() {
  return import(await fixtureModuleUrl());
}

function pct(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0;
}

async function load(seconds, concurrency, once) {
  const lat = [];
  let errors = 0;
  const end = performance.now() + seconds * 1000;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < end) {
        const t = performance.now();
        try {
          await once();
          lat.push(performance.now() - t);
        } catch {
          errors++;
        }
      }
    }),
  );
  lat.sort((a, b) => a - b);
  return { rate: lat.length / seconds, p50: pct(lat, 50), p99: pct(lat, 99), errors, n: lat.length };
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

/** Posts `msg` to the other side and waits for its next message. */
function ask(port, msg) {
  return new Promise((resolve, reject) => {
    port.once('message', resolve);
    port.once('error', reject);
    port.postMessage(msg);
  });
}

/** The worker: the fixture API server and every client. */
async function peer() {
  const { seconds, concurrency, execConcurrency, dir } = workerData;
  const { WebSocket } = await import('ws');
  const { startFixtureApiServer } = await loadFixture();
  const fixture = await startFixtureApiServer({ dir });
  const via = await ask(parentPort, { kubeconfig: fixture.kubeconfig });
  try {
    const b64 = (s) =>
      Buffer.from(s.match(/client-(certificate|key)-data: (\S+)/)?.[2] ?? '', 'base64').toString();
    const up = {
      cert: b64(fixture.kubeconfig.match(/client-certificate-data: \S+/)[0]),
      key: b64(fixture.kubeconfig.match(/client-key-data: \S+/)[0]),
    };
    const direct = {
      host: '127.0.0.1',
      port: fixture.port,
      ca: fixture.caPem,
      cert: up.cert,
      key: up.key,
      headers: { 'impersonate-user': 'alice', 'impersonate-group': 'developers' },
    };
    const path1 = '/api/v1/namespaces/default/pods/web-1';
    const agentD = new https.Agent({ keepAlive: true, maxSockets: concurrency, ...direct });
    const agentG = new https.Agent({ keepAlive: true, maxSockets: concurrency, ...via });
    // Warm up both paths (TLS sessions, upstream credentials, JIT).
    await load(1, concurrency, () => get({ ...direct, agent: agentD, path: path1 }));
    await load(1, concurrency, () => get({ ...via, agent: agentG, path: path1 }));
    const d = await load(seconds, concurrency, () => get({ ...direct, agent: agentD, path: path1 }));
    const g = await load(seconds, concurrency, () => get({ ...via, agent: agentG, path: path1 }));
    agentD.destroy();
    agentG.destroy();

    // One TLS context per target, as a client keeps it: building one per connection (parsing the
    // key and certificates) cost the bench more than the exec it measures.
    const exec = (target) => {
      const secureContext = tls.createSecureContext({ ca: target.ca, cert: target.cert, key: target.key });
      return () =>
        new Promise((resolve, reject) => {
          const ws = new WebSocket(
            `wss://127.0.0.1:${target.port}/api/v1/namespaces/default/pods/web-1/exec?command=true&stdout=true&stderr=true`,
            ['v5.channel.k8s.io'],
            {
              secureContext,
              servername: target.servername,
              headers: target.headers ?? {},
            },
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
    await load(1, execConcurrency, exec(direct));
    await load(1, execConcurrency, exec(via));
    const ed = await load(seconds, execConcurrency, exec(direct));
    const eg = await load(seconds, execConcurrency, exec(via));
    parentPort.postMessage({ d, g, ed, eg });
  } finally {
    await fixture.close();
  }
}

export async function run(argv) {
  const seconds = flag(argv, '--seconds', 5);
  const concurrency = flag(argv, '--concurrency', 16);
  const execConcurrency = flag(argv, '--exec-concurrency', 8);
  const { createGateway } = await import('@gatehouse/core');
  const { kube, kubeServerName } = await import('@gatehouse/adapter-k8s');
  const dir = await mkdtemp(path.join(os.tmpdir(), 'gh-bench-kube-'));
  const worker = new Worker(fileURLToPath(import.meta.url), {
    workerData: { seconds, concurrency, execConcurrency, dir },
  });
  const gw = await createGateway({
    dataDir: path.join(dir, 'data'),
    secondFactor: 'off',
    env: {},
    clusterName: 'bench',
  });
  gw.use(kube());
  const { port } = await gw.listen({ host: '127.0.0.1', port: 0 });
  try {
    const { kubeconfig } = await new Promise((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
    });
    await gw.admin.putRole(
      'kind: role\nname: kube-dev\nallow:\n  kube_labels: { "*": "*" }\n  kube_groups: [developers]\n',
    );
    await gw.admin.createUser({ name: 'alice', roles: ['kube-dev'], password: 'correct horse battery' });
    await gw.admin.addKubeCluster({ name: 'prod', kubeconfig, labels: { env: 'prod' } });
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const now = Date.now();
    const user = await gw.authorities.issueX509UserCert({
      publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }),
      identity: { user: 'alice', roles: ['kube-dev'], traits: {}, expires: new Date(now + 3600_000) },
      notBefore: new Date(now - 60_000),
      notAfter: new Date(now + 3600_000),
    });
    const { d, g, ed, eg } = await ask(worker, {
      host: '127.0.0.1',
      port,
      ca: gw.authorities.get('host').map((k) => k.x509CertPem),
      cert: user.cert,
      key: privateKey.export({ type: 'pkcs8', format: 'pem' }),
      servername: kubeServerName('prod', 'bench'),
    });
    const row = (name, r) =>
      `${name.padEnd(34)} ${r.rate.toFixed(0).padStart(7)}/s  p50 ${r.p50.toFixed(2).padStart(7)} ms  p99 ${r.p99.toFixed(2).padStart(7)} ms  errors ${r.errors}`;
    process.stdout.write(
      [
        `kube bench: ${seconds} s per run, ${concurrency} concurrent GETs, ${execConcurrency} concurrent execs, ${os.cpus().length} CPUs`,
        row('GET pod, direct to fixture', d),
        row('GET pod, through Gatehouse', g),
        `  through/direct: ${(g.rate / d.rate).toFixed(2)}x throughput, p50 +${(g.p50 - d.p50).toFixed(2)} ms  (goal >= 500/s: ${g.rate >= 500 ? 'met' : 'NOT met'})`,
        row('exec session, direct to fixture', ed),
        row('exec session, through Gatehouse', eg),
        `  through/direct: ${(eg.rate / ed.rate).toFixed(2)}x sessions/s, recorded + audited  (goal >= 100/s: ${eg.rate >= 100 ? 'met' : 'NOT met'})`,
        '',
      ].join('\n'),
    );
  } finally {
    await worker.terminate();
    await gw.close();
    await rm(dir, { recursive: true, force: true });
  }
}

if (!isMainThread) await peer();
