// The cost of the audit hash chain (issue 19): the same events through an
// AuditLog whose JSON-lines record is hash-chained (lock file, SHA-256 per
// line, state file, signed file heads) and through one that is not, in the
// same run, alternating, in fresh temp directories. Two paths: one event at
// a time (each emit awaited: what a lone session pays per event) and bursts
// of concurrent emits (group commit: many events per write). Prints µs/event
// and the difference; nothing is asserted.
import { generateKeyPairSync, sign } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { AuditLog, JsonlFileSink, verifyAuditChain } from '@gatehouse/audit';
import { median } from './lib.mjs';

export const description = 'audit hash chain: µs/event with and without the chain (sequential and bursts)';

function parseArgs(argv) {
  const o = { events: 20_000, burst: 64, runs: 3 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--events') o.events = Number(argv[++i]);
    else if (a === '--burst') o.burst = Number(argv[++i]);
    else if (a === '--runs') o.runs = Number(argv[++i]);
    else throw new Error(`unknown option ${a} (use --events N, --burst N, --runs N)`);
  }
  return o;
}

const { publicKey, privateKey } = generateKeyPairSync('ed25519');
const signer = { keyId: 'bench', sign: (d) => sign(null, d, privateKey) };

/** A typical per-statement record (the hottest audit path). */
function event(i) {
  return {
    type: 'db.session.query',
    user: 'alice',
    session_id: '0190c3a2-7b1e-7000-8000-000000000001',
    db_service: 'orders',
    db_protocol: 'postgres',
    db_user: 'reader',
    db_name: 'orders',
    query: `SELECT * FROM invoices WHERE id = ${i}`,
  };
}

async function once(chain, mode, o) {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'gh-bench-chain-'));
  try {
    const record = new JsonlFileSink({ dir: path.join(dir, 'audit'), chain });
    if (chain) record.setHeadSigner(signer);
    const log = new AuditLog({ cluster: 'bench', sinks: [record], spoolDir: path.join(dir, 'spool') });
    const t0 = process.hrtime.bigint();
    if (mode === 'sequential') {
      for (let i = 0; i < o.events; i++) await log.emit(event(i));
    } else {
      for (let i = 0; i < o.events; i += o.burst) {
        const n = Math.min(o.burst, o.events - i);
        await Promise.all(Array.from({ length: n }, (_, k) => log.emit(event(i + k))));
      }
    }
    const us = Number(process.hrtime.bigint() - t0) / 1000 / o.events;
    await log.close();
    if (chain) {
      // The figure only counts if the record it produced verifies.
      const r = verifyAuditChain({ dir: path.join(dir, 'audit'), keys: { bench: publicKey } });
      if (r.problems.length > 0 || r.events !== o.events) {
        throw new Error(`chained record does not verify: ${JSON.stringify(r.problems.slice(0, 3))}`);
      }
    }
    return us;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * Prints the chain's cost per event, with and without, in the same run:
 * `npm run bench -- audit-chain`, and the last table of `npm run bench -- audit`.
 */
export async function printChainCost(o) {
  process.stdout.write(
    `\naudit hash chain: ${o.events} db.session.query events per run, median of ${o.runs} runs, bursts of ${o.burst}\n\n`,
  );
  process.stdout.write(
    `${'path'.padEnd(12)} ${'without'.padStart(12)} ${'with chain'.padStart(12)} ${'chain cost'.padStart(12)} ${'ratio'.padStart(7)}\n`,
  );
  for (const mode of ['sequential', 'burst']) {
    const plain = [];
    const chained = [];
    // Warm-up, then alternate so drift (page cache, CPU shared with others) hits both alike.
    await once(false, mode, { ...o, events: Math.min(2000, o.events) });
    await once(true, mode, { ...o, events: Math.min(2000, o.events) });
    for (let r = 0; r < o.runs; r++) {
      plain.push(await once(false, mode, o));
      chained.push(await once(true, mode, o));
    }
    const a = median(plain);
    const b = median(chained);
    process.stdout.write(
      `${mode.padEnd(12)} ${`${a.toFixed(1)} µs`.padStart(12)} ${`${b.toFixed(1)} µs`.padStart(12)} ${`${(b - a).toFixed(1)} µs`.padStart(12)} ${`${(b / a).toFixed(2)}x`.padStart(7)}\n`,
    );
  }
  process.stdout.write(
    '\n(µs per event on the audit path, emit to durable in the JSON-lines file; sequential: each emit awaited)\n',
  );
}

export async function run(argv) {
  await printChainCost(parseArgs(argv));
}
