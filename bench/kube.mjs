// Kubernetes adapter benchmark: a simple GET directly against the fixture API
// server and through Gatehouse (impersonation, audit) in one run, then exec
// sessions per second (WebSocket v5, recorded) the same two ways.
// Usage: npm run bench -- kube [--seconds 5] [--concurrency 16] [--exec-concurrency 8]
import { generateKeyPairSync } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

export const description =
  'kubectl-style GET req/s + p50/p99 and exec sessions/s: direct to the fixture vs through Gatehouse';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

function flag(argv, name, def) {
  const i = argv.indexOf(name);
  return i >= 0 && argv[i + 1] ? Number(argv[i + 1]) : def;
}

/** The fixture is a test file (TypeScript): transpile it next to node_modules so its imports resolve. */
async function loadFixture() {
  const ts = (await import('typescript')).default;
  const src = await readFile(path.join(root, 'packages/adapter-k8s/test/fixture-apiserver.ts'), 'utf8');
  const out = ts.transpileModule(src, {
    compilerOptions: {
      module: ts.ModuleKind.ESNext,
      target: ts.ScriptTarget.ES2022,
      verbatimModuleSyntax: false,
    },
  }).outputText;
  const dir = path.join(root, 'node_modules/.cache/gatehouse-bench');
  await mkdir(dir, { recursive: true });
  const file = path.join(dir, 'fixture-apiserver.mjs');
  await writeFile(file, out);
  return import(pathToFileURL(file).href);
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

export async function run(argv) {
  const seconds = flag(argv, '--seconds', 5);
  const concurrency = flag(argv, '--concurrency', 16);
  const execConcurrency = flag(argv, '--exec-concurrency', 8);
  const { createGateway } = await import('@gatehouse/core');
  const { kube, kubeServerName } = await import('@gatehouse/adapter-k8s');
  const { WebSocket } = await import('ws');
  const { startFixtureApiServer } = await loadFixture();
  const dir = await mkdtemp(path.join(os.tmpdir(), 'gh-bench-kube-'));
  const fixture = await startFixtureApiServer({ dir });
  const gw = await createGateway({
    dataDir: path.join(dir, 'data'),
    secondFactor: 'off',
    env: {},
    clusterName: 'bench',
  });
  gw.use(kube());
  const { port } = await gw.listen({ host: '127.0.0.1', port: 0 });
  try {
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
    const userKey = privateKey.export({ type: 'pkcs8', format: 'pem' });
    const hostCa = gw.authorities.get('host').map((k) => k.x509CertPem);
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
    const via = {
      host: '127.0.0.1',
      port,
      ca: hostCa,
      cert: user.cert,
      key: userKey,
      servername: kubeServerName('prod', 'bench'),
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

    const exec = (target) => () =>
      new Promise((resolve, reject) => {
        const ws = new WebSocket(
          `wss://127.0.0.1:${target.port}/api/v1/namespaces/default/pods/web-1/exec?command=true&stdout=true&stderr=true`,
          ['v5.channel.k8s.io'],
          {
            ca: target.ca,
            cert: target.cert,
            key: target.key,
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
    await load(1, execConcurrency, exec(direct));
    const ed = await load(seconds, execConcurrency, exec(direct));
    const eg = await load(seconds, execConcurrency, exec(via));

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
    await gw.close();
    await fixture.close();
    await rm(dir, { recursive: true, force: true });
  }
}
