// One address floods the listener (issue: "one IP can block the main port"):
// the attacker holds --idle idle connections from 127.0.0.2 (reconnecting
// each one the moment it is closed, as a flood tool does) and --trickle
// connections that send a TLS ClientHello one byte every 5 s, against the real daemon
// (`gatehouse start`). Meanwhile, every 200 ms, two clients ask GET /v1/ping
// over HTTPS on a new connection: one from 127.0.0.1 with the Gatehouse
// certificate of a user who logged in there before the attack, one without
// a certificate from 127.0.0.254, an address that never authenticated
// (with --mysql, that one opens the MySQL port and waits for its greeting). Prints the probes' success rate and what the audit log
// received: listener.reject events, their bytes, and the refusals they stand
// for (summaries carry a count). Figures are printed, not asserted.
import { spawn } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';

export const description =
  'listener under a one-address flood (1,000 idle + trickling connections): client success, reject events/min';

const here = path.dirname(fileURLToPath(import.meta.url));
/** The client that never authenticated. */
const ANONYMOUS = '127.0.0.254';
const BIN = path.join(here, '..', 'packages', 'cli', 'bin', 'gatehouse.js');

function parseArgs(argv) {
  const o = { seconds: 30, idle: 1000, trickle: 100, sources: 1, mysql: false, json: false, extra: '' };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--json') o.json = true;
    else if (a === '--mysql') o.mysql = true;
    else if (a === '--seconds') o.seconds = Number(argv[++i]);
    else if (a === '--idle') o.idle = Number(argv[++i]);
    else if (a === '--trickle') o.trickle = Number(argv[++i]);
    else if (a === '--sources') o.sources = Number(argv[++i]);
    else if (a === '--listener') o.extra = argv[++i] ?? '';
    else
      throw new Error(
        `unknown option ${a} (options: --seconds N, --idle N, --trickle N, --sources N (attacker addresses ` +
          `127.0.0.2..), --mysql (flood the MySQL port instead), --listener 'key: value, ...', --json)`,
      );
  }
  if (!(o.seconds > 0) || !(o.idle >= 0) || !(o.trickle >= 0) || !(o.sources >= 1 && o.sources <= 250))
    throw new Error('options must be positive numbers; --sources at most 250');
  return o;
}

/** The attacker, in a worker thread so its sockets do not delay the probes' timers. */
function attacker({ port, idle, trickle, sources }) {
  const stats = { connects: 0, closedByServer: 0, errors: 0 };
  let stopped = false;
  const live = new Set();
  const src = (i) => `127.0.0.${2 + (i % sources)}`;
  const open = (i, trickling) => {
    if (stopped) return;
    const s = net.connect({ host: '127.0.0.1', port, localAddress: src(i) });
    live.add(s);
    let timer;
    s.on('connect', () => {
      stats.connects++;
      if (!trickling) return;
      // The start of a TLS ClientHello, one byte every 5 s (the record header
      // completes at 5 s, so the TLS handshake deadline is what ends it).
      const hello = [0x16, 0x03, 0x01, 0x00, 0x50, 0x01, 0x00, 0x00, 0x4c, 0x03, 0x03];
      s.write(Buffer.from(hello.slice(0, 2)));
      let next = 2;
      timer = setInterval(() => s.write(Buffer.from([hello[next++ % hello.length]])), 5_000);
    });
    s.on('data', () => undefined);
    s.on('error', () => {
      stats.errors++;
    });
    s.on('close', () => {
      clearInterval(timer);
      live.delete(s);
      if (stopped) return;
      stats.closedByServer++;
      // A flood tool reconnects at once; setImmediate keeps the loop responsive.
      setImmediate(() => open(i, trickling));
    });
  };
  for (let i = 0; i < idle; i++) open(i, false);
  for (let i = 0; i < trickle; i++) open(i, true);
  parentPort.on('message', (m) => {
    if (m !== 'stop') return;
    stopped = true;
    for (const s of live) s.destroy();
    parentPort.postMessage(stats);
  });
}

if (!isMainThread && workerData?.role === 'attacker') attacker(workerData);

function startDaemon(root, extraConfig) {
  const configFile = path.join(root, 'gatehouse.yaml');
  writeFileSync(
    configFile,
    `cluster_name: flood\ndata_dir: ${root}/data\nlisten: 127.0.0.1:0\nmysql_listen: 127.0.0.1:0\n` +
      `auth:\n  second_factor: "off"\n${extraConfig}`,
  );
  const child = spawn(process.execPath, [BIN, 'start', '--config', configFile], {
    env: { ...process.env, GATEHOUSE_HOME: path.join(root, 'home') },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stderr.on('data', () => undefined);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`gatehouse start printed no invite:\n${out}`)), 30_000);
    child.on('exit', (code) => reject(new Error(`gatehouse start exited with ${code}:\n${out}`)));
    child.stdout.on('data', (d) => {
      out += d;
      const proxy = /accept-invite --proxy 127\.0\.0\.1:(\d+)/.exec(out);
      const my = /mysql:\s+127\.0\.0\.1:(\d+)/.exec(out);
      if (proxy && my) {
        clearTimeout(timer);
        const token = /accept-invite --proxy \S+ --ca-pin \S+ (\S+)/.exec(out);
        resolve({ child, port: Number(proxy[1]), mysqlPort: Number(my[1]), token: token?.[1] });
      }
    });
  });
}

function postJson(port, path, body) {
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        host: '127.0.0.1',
        port,
        path,
        method: 'POST',
        rejectUnauthorized: false,
        headers: { 'content-type': 'application/json' },
      },
      (res) => {
        let text = '';
        res.on('data', (d) => {
          text += d;
        });
        res.on('end', () =>
          res.statusCode < 300
            ? resolve(text ? JSON.parse(text) : {})
            : reject(new Error(`${path}: ${text}`)),
        );
      },
    );
    req.on('error', reject);
    req.end(JSON.stringify(body));
  });
}

/** The first admin accepts its invite and logs in: a Gatehouse client certificate and its key. */
async function adminCert(port, token) {
  const password = 'bench password 123';
  await postJson(port, `/v1/invites/${token}`, { password });
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const res = await postJson(port, '/v1/login', {
    user: 'admin',
    password,
    tls_public_key: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
  });
  return { cert: res.tls_cert, key: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString() };
}

function ping(port, tlsAuth, localAddress = '127.0.0.1') {
  return new Promise((resolve) => {
    const req = https.get(
      {
        host: '127.0.0.1',
        localAddress,
        port,
        path: '/v1/ping',
        rejectUnauthorized: false,
        timeout: 5_000,
        agent: false,
        ...tlsAuth,
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode === 200));
      },
    );
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(false));
  });
}

/** The MySQL port answers with a greeting (protocol version 10) within 5 s. */
function mysqlGreeting(port) {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port, localAddress: ANONYMOUS });
    const t = setTimeout(() => s.destroy(), 5_000);
    let ok = false;
    s.on('data', (d) => {
      ok = d.length > 4 && d[4] === 10;
      s.destroy();
    });
    s.on('error', () => undefined);
    s.on('close', () => {
      clearTimeout(t);
      resolve(ok);
    });
  });
}

/** listener.reject lines in the audit log: events, bytes, and the refusals they stand for. */
function auditFigures(dataDir) {
  const dir = path.join(dataDir, 'audit');
  const f = { events: 0, summaries: 0, bytes: 0, refusals: 0, reasons: {}, dbRejects: 0 };
  for (const name of readdirSync(dir).filter((n) => n.endsWith('.jsonl'))) {
    for (const line of readFileSync(path.join(dir, name), 'utf8').split('\n')) {
      if (line.includes('"type":"db.reject"')) f.dbRejects++;
      if (!line.includes('"listener.reject')) continue;
      const e = JSON.parse(line);
      if (e.type !== 'listener.reject' && e.type !== 'listener.reject.summary') continue;
      const n = e.type === 'listener.reject.summary' ? e.count : 1;
      f.events++;
      if (e.type === 'listener.reject.summary') f.summaries++;
      f.bytes += Buffer.byteLength(line) + 1;
      f.refusals += n;
      f.reasons[e.reason] = (f.reasons[e.reason] ?? 0) + n;
    }
  }
  return f;
}

export async function run(argv) {
  const o = parseArgs(argv);
  const root = mkdtempSync(path.join(os.tmpdir(), 'gh-flood-'));
  const extra = o.extra
    ? `listener:\n${o.extra
        .split(',')
        .map((kv) => `  ${kv.trim()}\n`)
        .join('')}`
    : '';
  const d = await startDaemon(root, extra);
  try {
    const target = o.mysql ? d.mysqlPort : d.port;
    const auth = await adminCert(d.port, d.token);
    const probes = {
      anonymous: o.mysql ? () => mysqlGreeting(d.mysqlPort) : () => ping(d.port, {}, ANONYMOUS),
      certificate: () => ping(d.port, auth),
    };
    const tally = () => Object.fromEntries(Object.keys(probes).map((k) => [k, { ok: 0, all: 0 }]));
    const runProbes = (into) =>
      Object.entries(probes).map(([k, probe]) =>
        probe().then((ok) => {
          into[k].all++;
          if (ok) into[k].ok++;
        }),
      );
    const before = tally();
    for (let i = 0; i < 5; i++) await Promise.all(runProbes(before));
    const worker = new Worker(fileURLToPath(import.meta.url), {
      workerData: { role: 'attacker', port: target, idle: o.idle, trickle: o.trickle, sources: o.sources },
    });
    const started = Date.now();
    const during = tally();
    const pending = [];
    while (Date.now() - started < o.seconds * 1000) {
      pending.push(...runProbes(during));
      await new Promise((r) => setTimeout(r, 200));
    }
    await Promise.all(pending);
    const attackMs = Date.now() - started;
    const stats = await new Promise((resolve) => {
      worker.once('message', resolve);
      worker.postMessage('stop');
    });
    await worker.terminate();
    // SIGTERM: the gateway closes its listener (and writes what it aggregated) before it exits.
    const exited = new Promise((r) => d.child.once('exit', r));
    d.child.kill('SIGTERM');
    await exited;
    const a = auditFigures(path.join(root, 'data'));
    const perMin = (n) => Math.round((n * 60_000) / attackMs);
    const result = {
      port: o.mysql ? 'mysql' : 'main',
      seconds: Math.round(attackMs / 1000),
      attacker: { sources: o.sources, idle: o.idle, trickle: o.trickle, ...stats },
      probes: Object.fromEntries(
        Object.keys(probes).map((k) => [
          k,
          { before: `${before[k].ok}/${before[k].all}`, during: `${during[k].ok}/${during[k].all}` },
        ]),
      ),
      audit: {
        listener_reject_events: a.events,
        of_which_summaries: a.summaries,
        events_per_min: perMin(a.events),
        bytes_per_min: perMin(a.bytes),
        refusals_counted: a.refusals,
        reasons: a.reasons,
        db_reject_events: a.dbRejects,
      },
    };
    if (o.json) process.stdout.write(`${JSON.stringify(result)}\n`);
    else {
      process.stdout.write(
        `${result.port} port, ${result.seconds} s, attacker ${o.sources} source(s): ${o.idle} idle + ${o.trickle} trickling ` +
          `(${stats.connects} connects, ${stats.closedByServer} closed by the gateway)\n` +
          Object.entries(result.probes)
            .map(([k, p]) => `${k} client: ${p.before} before, ${p.during} during the attack\n`)
            .join('') +
          `listener.reject events: ${a.events} (${a.summaries} summaries), ${result.audit.events_per_min}/min, ` +
          `${(result.audit.bytes_per_min / 1e6).toFixed(2)} MB/min; refusals counted: ${a.refusals} ${JSON.stringify(a.reasons)}\n` +
          `db.reject events (MySQL handshakes that failed or timed out): ${a.dbRejects}\n`,
      );
    }
  } finally {
    if (d.child.exitCode === null) d.child.kill('SIGKILL');
    rmSync(root, { recursive: true, force: true });
  }
}
