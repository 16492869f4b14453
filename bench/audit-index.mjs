// The audit search index alone (issue 22): CPU per event and events/s of
// SqliteAuditIndex on its worker thread (the gateway's setup), fed in
// chunks of different sizes, in one run, interleaved rounds, medians.
// 100 events per chunk is what the log's old 20 ms collection window gave
// at the PostgreSQL bench's audit rate; the larger chunk is the new bound
// (AuditLog backgroundBatchMax). With `--before DIR` (a build of
// @gatehouse/audit's dist from an older commit, placed under this
// repository so it resolves better-sqlite3) the same chunks also go through
// that version's index, for a before/after in the same run. CPU is
// process.cpuUsage() (all threads: the main thread's hand-off and the
// index thread's SQLite work), steadier than the rate on a shared machine.
// Then the audit path as the gateway runs it (chained record, index in the
// background) at a pgbench-like rate: record only, and with each index.
import { createHash, randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import * as audit from '@gatehouse/audit';
import { cpuMeter, median, roundOrder } from './lib.mjs';

export const description =
  'audit search index: CPU µs/event and events/s by chunk size (SQLite + FTS5, index thread)';

function parseArgs(argv) {
  const o = { events: 40_000, logEvents: 15_000, runs: 3, chunks: [100, 4000], before: undefined };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--events') o.events = Number(argv[++i]);
    else if (a === '--runs') o.runs = Number(argv[++i]);
    else if (a === '--chunks') o.chunks = String(argv[++i]).split(',').map(Number);
    else if (a === '--before') o.before = path.resolve(String(argv[++i]));
    else throw new Error(`unknown option ${a} (use --events N, --runs N, --chunks 100,4000, --before DIR)`);
  }
  return o;
}

/** A db.session.query event as the chained record holds it (~420 bytes of JSON with its chain link). */
function event(i) {
  const e = {
    id: randomUUID(),
    time: new Date(1_750_000_000_000 + i).toISOString(),
    type: 'db.session.query',
    code: 'TDB02I',
    cluster: 'bench',
    user: `user-${i % 20}`,
    session_id: `0190c3a2-7b1e-7000-8000-${String(i % 64).padStart(12, '0')}`,
    db_service: 'orders',
    db_protocol: 'postgres',
    db_user: 'reader',
    db_name: 'orders',
    query: `SELECT abalance FROM pgbench_accounts WHERE aid = ${i};`,
    chain: { seq: i, prev: createHash('sha256').update(String(i)).digest('hex') },
  };
  return { e, line: `${JSON.stringify(e)}\n` };
}

async function measure(Index, events, chunk) {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'gh-bench-index-'));
  const index = new Index({ path: path.join(dir, 'index.db'), worker: true });
  try {
    // Start the thread outside the measurement.
    await index.writeBatch([events[0].e], [events[0].line]);
    const cpu = cpuMeter();
    const t0 = process.hrtime.bigint();
    for (let i = 1; i < events.length; i += chunk) {
      const part = events.slice(i, i + chunk);
      await index.writeBatch(
        part.map((x) => x.e),
        part.map((x) => x.line),
      );
    }
    const s = Number(process.hrtime.bigint() - t0) / 1e9;
    const n = events.length - 1;
    const cpuUs = (cpu() * 1000) / n;
    const found = (await index.search({ q: 'pgbench_accounts', limit: 1 })).events.length;
    if (index.count() !== events.length || found !== 1) throw new Error('the index lost events');
    return { cpuUs, rate: n / s };
  } finally {
    await index.close();
    await rm(dir, { recursive: true, force: true });
  }
}

/** A statement's record as the PostgreSQL adapter emits it. */
const query = {
  type: 'db.session.query',
  session_id: 'bench',
  db_service: 'bench',
  db_protocol: 'postgres',
  db_user: 'bench',
  db_name: 'bench',
  user: 'bench',
  query: 'SELECT abalance FROM pgbench_accounts WHERE aid = 42;',
};

/**
 * The gateway's audit path as a whole: a chained JSON-lines record in the
 * foreground and the index in the background on its thread (or no index),
 * 8 emitters each pausing 1 ms between statements (a few thousand events/s,
 * the rate pgbench reaches through the gateway, where a collection window
 * holds fewer events than at full speed). CPU per event, all threads,
 * including the index catching up (a search at the end waits for it).
 */
async function measureLog(mod, withIndex, events) {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'gh-bench-index-log-'));
  const record = new mod.JsonlFileSink({ dir: path.join(dir, 'audit'), chain: true });
  const index = withIndex
    ? new mod.SqliteAuditIndex({ path: path.join(dir, 'index.db'), worker: true })
    : undefined;
  const log = new mod.AuditLog({
    cluster: 'bench',
    sinks: index ? [record, index] : [record],
    index,
    spoolDir: path.join(dir, 'spool'),
    background: index ? [index.name] : [],
  });
  try {
    await log.emit(query);
    if (index) await log.search({ limit: 1 });
    const cpu = cpuMeter();
    const t0 = process.hrtime.bigint();
    let n = 0;
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        while (n < events) {
          n++;
          await log.emit(query);
          await new Promise((r) => setTimeout(r, 1));
        }
      }),
    );
    if (index) await log.search({ limit: 1 });
    const s = Number(process.hrtime.bigint() - t0) / 1e9;
    return { cpuUs: (cpu() * 1000) / n, rate: n / s };
  } finally {
    await log.close();
    await rm(dir, { recursive: true, force: true });
  }
}

export async function run(argv) {
  const o = parseArgs(argv);
  const impls = [{ name: 'this build', Index: audit.SqliteAuditIndex, mod: audit }];
  if (o.before) {
    const mod = await import(pathToFileURL(path.join(o.before, 'index.js')).href);
    impls.unshift({ name: 'before', Index: mod.SqliteAuditIndex, mod });
  }
  const events = Array.from({ length: o.events }, (_, i) => event(i));
  const targets = [
    ...impls.flatMap((im) =>
      o.chunks.map((chunk) => ({
        key: `${im.name}, chunks of ${chunk}`,
        measure: () => measure(im.Index, events, chunk),
      })),
    ),
    { key: 'audit path, record only', measure: () => measureLog(audit, false, o.logEvents) },
    ...impls.map((im) => ({
      key: `audit path, ${im.name}`,
      measure: () => measureLog(im.mod, true, o.logEvents),
    })),
  ];
  const results = new Map(targets.map((t) => [t.key, { cpuUs: [], rate: [] }]));
  process.stdout.write(
    `index alone: ${o.events} events per measurement; audit path (chained record + index thread, 8 emitters pausing 1 ms): ${o.logEvents}; median of ${o.runs} interleaved rounds; CPU of all threads\n\n`,
  );
  for (let r = 0; r < o.runs; r++) {
    for (const t of roundOrder(targets, r)) {
      const m = await t.measure();
      results.get(t.key).cpuUs.push(m.cpuUs);
      results.get(t.key).rate.push(m.rate);
    }
  }
  for (const t of targets) {
    const r = results.get(t.key);
    process.stdout.write(
      `  ${t.key.padEnd(32)} ${median(r.cpuUs).toFixed(1).padStart(6)} us CPU/event  ${Math.round(median(r.rate)).toString().padStart(7)} events/s\n`,
    );
  }
}
