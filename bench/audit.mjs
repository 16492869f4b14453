// Audit export sinks at full speed (issue 19): events/s through each sink
// against local receivers, in the same run: syslog over TCP, TLS and UDP to a
// real rsyslogd, and Loki (protobuf+snappy and JSON), Elasticsearch _bulk and
// a webhook to the HTTP receivers of bench/audit-receivers.cjs (a process of
// their own). For each sink: how fast the gateway's audit path accepts events
// (emit: the JSON-lines record plus the sink's spool append) and how fast
// the receiver takes them (delivery), side by side with the audit path
// without any export sink. Then the cost of the hash chain per event (with
// and without, bench/audit-chain.mjs). Figures are printed, not asserted.
import { fork } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  AuditLog,
  elasticsearchSink,
  JsonlFileSink,
  lokiSink,
  syslogSink,
  webhookSink,
} from '@gatehouse/audit';
import { startRsyslog } from '@gatehouse/audit/testing';
import { printChainCost } from './audit-chain.mjs';
import { ensurePackages, median, roundOrder, serverTls } from './lib.mjs';

export const description =
  'audit export sinks: events/s through syslog (rsyslogd), Loki, Elasticsearch, webhook';

const here = path.dirname(fileURLToPath(import.meta.url));

function parseArgs(argv) {
  const o = { events: 20_000, runs: 3, group: 200 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--events') o.events = Number(argv[++i]);
    else if (a === '--runs') o.runs = Number(argv[++i]);
    else if (a === '--group') o.group = Number(argv[++i]);
    else throw new Error(`unknown option ${a} (use --events N, --runs N, --group N)`);
  }
  return o;
}

/** An exec event of realistic size (~300 bytes of JSON). */
function event(i) {
  return {
    type: 'exec',
    user: `user-${i % 50}`,
    login: 'root',
    session_id: `0190a7c4-${String(i % 1000).padStart(4, '0')}-7000-8000-000000000000`,
    server: `web-${i % 20}`,
    addr: { remote: '10.1.2.3:51234' },
    command: `systemctl status nginx --no-pager # ${i}`,
    exit_code: 0,
  };
}

async function until(cond) {
  while (!cond()) await new Promise((r) => setTimeout(r, 2));
}

/**
 * One measurement: `events` events emitted in groups of `group` concurrent
 * emits (many sessions auditing at once), through the JSON-lines record plus
 * `makeSink(dir)` (none for the baseline). Returns events/s accepted by the
 * audit path and events/s delivered to the receiver.
 */
async function measure(makeSink, o) {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'gh-bench-audit-'));
  const sink = makeSink?.(path.join(dir, 'export'));
  const log = new AuditLog({
    cluster: 'bench',
    sinks: [new JsonlFileSink({ dir: path.join(dir, 'audit') }), ...(sink ? [sink] : [])],
    spoolDir: path.join(dir, 'spool'),
  });
  try {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < o.events; i += o.group) {
      const n = Math.min(o.group, o.events - i);
      await Promise.all(Array.from({ length: n }, (_, k) => log.emit(event(i + k))));
    }
    const t1 = process.hrtime.bigint();
    if (sink) await until(() => sink.status().delivered >= o.events);
    const t2 = process.hrtime.bigint();
    const status = sink?.status();
    if (status && (status.rejected > 0 || status.dropped > 0)) {
      throw new Error(`sink ${status.name}: ${status.rejected} rejected, ${status.dropped} dropped`);
    }
    return {
      emit: o.events / (Number(t1 - t0) / 1e9),
      delivery: sink ? o.events / (Number(t2 - t0) / 1e9) : undefined,
    };
  } finally {
    await log.close();
    await rm(dir, { recursive: true, force: true });
  }
}

export async function run(argv) {
  const o = parseArgs(argv);
  ensurePackages([
    ['/usr/sbin/rsyslogd', 'rsyslog'],
    ['/usr/lib/x86_64-linux-gnu/rsyslog/lmnsd_ossl.so', 'rsyslog-openssl'],
  ]);
  const dir = await mkdtemp(path.join(os.tmpdir(), 'gh-bench-rsyslog-'));
  serverTls(dir);
  const rs = await startRsyslog({
    dir,
    caFile: path.join(dir, 'ca.crt'),
    certFile: path.join(dir, 'server.crt'),
    keyFile: path.join(dir, 'server.key'),
    out: '/dev/null',
  });
  const receivers = fork(path.join(here, 'audit-receivers.cjs'), [], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const { port } = await new Promise((resolve, reject) => {
    receivers.once('message', resolve);
    receivers.once('exit', (code) => reject(new Error(`the receivers exited with ${code}`)));
  });
  const url = `http://127.0.0.1:${port}`;
  const ca = readFileSync(path.join(dir, 'ca.crt'), 'utf8');
  const targets = [
    { name: 'none (JSON-lines record only)', make: undefined },
    {
      name: 'syslog tcp',
      make: (d) => syslogSink({ protocol: 'tcp', host: '127.0.0.1', port: rs.tcpPort, dir: d }),
    },
    {
      name: 'syslog tls',
      make: (d) => syslogSink({ protocol: 'tls', host: 'localhost', port: rs.tlsPort, ca, dir: d }),
    },
    {
      name: 'syslog udp',
      make: (d) => syslogSink({ protocol: 'udp', host: '127.0.0.1', port: rs.udpPort, dir: d }),
    },
    { name: 'loki protobuf+snappy', make: (d) => lokiSink({ url, dir: d }) },
    { name: 'loki json', make: (d) => lokiSink({ url, encoding: 'json', dir: d }) },
    { name: 'elasticsearch _bulk', make: (d) => elasticsearchSink({ url, dir: d }) },
    { name: 'webhook (HMAC)', make: (d) => webhookSink({ url: `${url}/hook`, secret: 'bench', dir: d }) },
  ];
  const results = new Map(targets.map((t) => [t.name, { emit: [], delivery: [] }]));
  try {
    process.stdout.write(
      `${o.events} events per sink, emitted ${o.group} at a time, median of ${o.runs} runs (targets in rotating order)\n`,
    );
    for (let r = 0; r < o.runs; r++) {
      for (const t of roundOrder(targets, r)) {
        const m = await measure(t.make, o);
        results.get(t.name).emit.push(m.emit);
        if (m.delivery !== undefined) results.get(t.name).delivery.push(m.delivery);
      }
    }
  } finally {
    receivers.kill();
    await rs.stop();
    await rm(dir, { recursive: true, force: true });
  }
  const base = median(results.get(targets[0].name).emit);
  const rows = targets.map((t) => {
    const r = results.get(t.name);
    const emit = median(r.emit);
    const delivery = r.delivery.length > 0 ? median(r.delivery) : undefined;
    return [
      t.name,
      Math.round(emit).toLocaleString('en'),
      `${(emit / base).toFixed(2)}x`,
      delivery === undefined ? '-' : Math.round(delivery).toLocaleString('en'),
    ];
  });
  const head = ['export sink', 'emit events/s', 'vs none', 'delivered events/s'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i].length)));
  const line = (cells) =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  process.stdout.write(`\n${line(head)}\n${widths.map((w) => '-'.repeat(w)).join('  ')}\n`);
  for (const row of rows) process.stdout.write(`${line(row)}\n`);
  process.stdout.write(
    '\nemit: events/s the audit path accepted (what sessions wait for); delivered: events/s from the first emit until the receiver took the last.\n',
  );
  // The cost of the hash chain on the same audit path (decision 0029-tamper-evident-audit).
  await printChainCost({ events: o.events, runs: o.runs, burst: o.group });
}
