// Enhanced recording overhead: a build-like workload (N execve, M openat)
// run in a session cgroup with the eBPF helper recording command, disk and
// network, and the same workload in a plain cgroup with no BPF loaded, in
// the same run, alternating, median of rounds. Goal (issue 16): <= 5%
// overhead and 0 events lost at 50,000 events/s. Needs root (like the node).
import { execFile } from 'node:child_process';
import { mkdir, readFile, rmdir } from 'node:fs/promises';
import path from 'node:path';
import { createEnforcer, findCgroup2Mount } from '@gatehouse/bpf';
import { median, roundOrder } from './lib.mjs';

export const description = 'eBPF enhanced recording overhead on execve + openat bursts vs no BPF (root)';

function parseArgs(argv) {
  const o = { execs: 10_000, opens: 100_000, rounds: 3, json: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const num = () => Number(argv[++i]);
    if (a === '--json') o.json = true;
    else if (a === '--execs') o.execs = num();
    else if (a === '--opens') o.opens = num();
    else if (a === '--rounds') o.rounds = num();
    else throw new Error(`unknown option ${a} (options: --execs N, --opens N, --rounds N, --json)`);
  }
  for (const k of ['execs', 'opens', 'rounds']) {
    if (!(Number.isInteger(o[k]) && o[k] >= 0)) throw new Error(`--${k} must be a whole number`);
  }
  return o;
}

const OPENER =
  'import os,sys\nfor i in range(int(sys.argv[1])): os.close(os.open("/etc/hostname", os.O_RDONLY))';

/** Runs the workload with its first process in `procsFile`; resolves with wall milliseconds. */
function workload(procsFile, o) {
  // Each `/bin/true` is a fork + execve; python3 does the opens in one process.
  const script = `i=0; while [ $i -lt ${o.execs} ]; do /bin/true; i=$((i+1)); done; exec python3 -c '${OPENER}' ${o.opens}`;
  const t0 = performance.now();
  return new Promise((resolve, reject) =>
    execFile(
      '/bin/sh',
      ['-c', 'echo $$ > "$0" && exec /bin/sh -c "$1"', procsFile, script],
      { maxBuffer: 1 << 20 },
      (err) => (err ? reject(err) : resolve(performance.now() - t0)),
    ),
  );
}

export async function run(argv) {
  const o = parseArgs(argv);
  if (process.getuid?.() !== 0)
    throw new Error('bench bpf needs root (it loads BPF programs and makes cgroups)');
  const mount = findCgroup2Mount(await readFile('/proc/mounts', 'utf8'));
  if (!mount) throw new Error('no cgroup v2 mount');
  const plainParent = path.join(mount, `gatehouse-bench-plain-${process.pid}`);
  await mkdir(plainParent);
  const times = { plain: [], recorded: [] };
  let events = 0;
  let lost = 0;
  let recordedMs = 0;
  try {
    for (let round = 0; round < o.rounds; round++) {
      for (const mode of roundOrder(['plain', 'recorded'], round)) {
        if (mode === 'plain') {
          // No helper at all in this mode: its programs would cost even outside sessions.
          const dir = path.join(plainParent, `r${round}`);
          await mkdir(dir);
          times.plain.push(await workload(path.join(dir, 'cgroup.procs'), o));
          await rmdir(dir);
          continue;
        }
        const enforcer = await createEnforcer({ parentName: `gatehouse-bench-${process.pid}` });
        try {
          const cg = await enforcer.createCgroup(`r${round}`);
          const s = await enforcer.open(cg.path, {
            record: ['command', 'disk', 'network'],
            deny: [],
            allow: [],
          });
          let n = 0;
          const drained = (async () => {
            for await (const e of s) if (e.type !== 'lost') n++;
          })();
          const ms = await workload(cg.procsFile, o);
          times.recorded.push(ms);
          await cg.waitEmpty();
          const r = await s.close();
          await drained;
          await cg.remove();
          events += n;
          lost += r.lost;
          recordedMs += ms;
        } finally {
          await enforcer.close();
          await rmdir(enforcer.parent).catch(() => undefined);
        }
      }
    }
  } finally {
    await rmdir(plainParent).catch(() => undefined);
  }
  const plain = median(times.plain);
  const recorded = median(times.recorded);
  const result = {
    execs: o.execs,
    opens: o.opens,
    rounds: o.rounds,
    plain_ms: Math.round(plain),
    recorded_ms: Math.round(recorded),
    ratio: recorded / plain,
    events_per_round: Math.round(events / o.rounds),
    events_per_second: Math.round(events / (recordedMs / 1000)),
    lost,
  };
  if (o.json) {
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    return;
  }
  process.stdout.write(
    `\neBPF enhanced recording (command, disk, network), median of ${o.rounds} rounds of ${o.execs} execve + ${o.opens} openat:\n\n` +
      `  no BPF            ${result.plain_ms} ms\n` +
      `  recorded          ${result.recorded_ms} ms\n` +
      `  ratio             ${result.ratio.toFixed(3)} (goal <= 1.05)\n` +
      `  events delivered  ${result.events_per_round} per round, ${result.events_per_second} /s while recording\n` +
      `  events lost       ${lost} (goal 0)\n`,
  );
}
