// Enhanced recording overhead: a build-like workload (N execve, M openat)
// run in a session cgroup with the eBPF helper recording command, disk and
// network, and the same workload in a plain cgroup with no BPF loaded, in
// the same run, alternating, median of rounds. Then the event-rate test: one
// process opening a file as fast as it can, and one paced at --rate opens/s,
// for --burst-seconds each, recorded and not: events/s delivered, events
// lost, and the workload's time (flat out) or CPU (paced) ratio. Goal
// (issue 16): <= 5% overhead and 0 events lost at 50,000 events/s. Needs
// root (like the node).
import { execFile } from 'node:child_process';
import { mkdir, readFile, rmdir } from 'node:fs/promises';
import path from 'node:path';
import { createEnforcer, findCgroup2Mount } from '@gatehouse/bpf';
import { median, processCpuMs, roundOrder } from './lib.mjs';

export const description = 'eBPF enhanced recording overhead on execve + openat bursts vs no BPF (root)';

function parseArgs(argv) {
  const o = {
    execs: 10_000,
    opens: 100_000,
    rounds: 3,
    rate: 50_000,
    burstSeconds: 3,
    rateOnly: false,
    json: false,
  };
  const keys = { '--execs': 'execs', '--opens': 'opens', '--rounds': 'rounds', '--rate': 'rate' };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--json') o.json = true;
    else if (a === '--rate-test') o.rateOnly = true;
    else if (a === '--burst-seconds') o.burstSeconds = Number(argv[++i]);
    else if (keys[a]) o[keys[a]] = Number(argv[++i]);
    else
      throw new Error(
        `unknown option ${a} (options: --execs N, --opens N, --rounds N, --rate N, --burst-seconds S, --rate-test, --json)`,
      );
  }
  if (!(o.burstSeconds >= 0))
    throw new Error('--burst-seconds must be a number >= 0 (0 skips the rate test)');
  if (o.rateOnly && o.burstSeconds === 0) throw new Error('--rate-test needs --burst-seconds > 0');
  for (const k of ['execs', 'opens', 'rounds', 'rate']) {
    if (!(Number.isInteger(o[k]) && o[k] >= 0)) throw new Error(`--${k} must be a whole number`);
  }
  return o;
}

const OPENER =
  'import os,sys\nfor i in range(int(sys.argv[1])): os.close(os.open("/etc/hostname", os.O_RDONLY))';

// Opens one file for argv[2] seconds: flat out when argv[1] is 0, else paced
// at argv[1] opens/s (it catches up in batches, sleeping when ahead). Prints
// its opens, seconds and own CPU seconds (user + system: where tracepoint
// programs run) as JSON.
const BURSTER = `import os,sys,time,json
rate=float(sys.argv[1]); dur=float(sys.argv[2]); n=0; c0=os.times(); t0=time.monotonic(); el=0.0
while el<dur:
  if rate==0: todo=1000
  else: todo=int(rate*el)-n
  if todo<=0: time.sleep(0.0005)
  for _ in range(todo): os.close(os.open("/etc/hostname", os.O_RDONLY))
  n+=max(todo,0); el=time.monotonic()-t0
c=os.times()
print(json.dumps({"opens":n,"seconds":el,"cpu":(c.user-c0.user)+(c.system-c0.system)}))`;

/** Runs `script` under /bin/sh with its first process in `procsFile`; resolves with wall milliseconds and stdout. */
function inCgroup(procsFile, script) {
  const t0 = performance.now();
  return new Promise((resolve, reject) =>
    execFile(
      '/bin/sh',
      ['-c', 'echo $$ > "$0" && exec /bin/sh -c "$1"', procsFile, script],
      { maxBuffer: 1 << 20 },
      (err, stdout) => (err ? reject(err) : resolve({ ms: performance.now() - t0, stdout })),
    ),
  );
}

/** The build-like workload: each `/bin/true` is a fork + execve; python3 does the opens in one process. */
function buildLike(o) {
  return `i=0; while [ $i -lt ${o.execs} ]; do /bin/true; i=$((i+1)); done; exec python3 -c '${OPENER}' ${o.opens}`;
}

function burst(rate, seconds) {
  return `exec python3 -c '${BURSTER}' ${rate} ${seconds}`;
}

/**
 * Runs `script` once in a plain cgroup (no helper at all: its programs would
 * cost even outside sessions) or in a recorded session. Resolves with the
 * wall milliseconds, stdout, and for a recorded run the events delivered,
 * events lost and the helper's CPU milliseconds.
 */
async function runOnce(mode, name, plainParent, script) {
  if (mode === 'plain') {
    const dir = path.join(plainParent, name);
    await mkdir(dir);
    try {
      return await inCgroup(path.join(dir, 'cgroup.procs'), script);
    } finally {
      await rmdir(dir);
    }
  }
  const enforcer = await createEnforcer({ parentName: `gatehouse-bench-${process.pid}` });
  try {
    const cg = await enforcer.createCgroup(name);
    const s = await enforcer.open(cg.path, { record: ['command', 'disk', 'network'], deny: [], allow: [] });
    let events = 0;
    const drained = (async () => {
      for await (const e of s) if (e.type !== 'lost') events++;
    })();
    const helperCpu0 = processCpuMs(enforcer.pid);
    const nodeCpu0 = process.cpuUsage();
    const r = await inCgroup(cg.procsFile, script);
    await cg.waitEmpty();
    const { lost } = await s.close();
    await drained;
    const helperCpuMs = processCpuMs(enforcer.pid) - helperCpu0;
    const nodeCpu = process.cpuUsage(nodeCpu0);
    await cg.remove();
    // This process's CPU is mostly the event stream's (parsing the helper's lines).
    return { ...r, events, lost, helperCpuMs, nodeCpuMs: (nodeCpu.user + nodeCpu.system) / 1000 };
  } finally {
    await enforcer.close();
    await rmdir(enforcer.parent).catch(() => undefined);
  }
}

/** The build-like workload, plain and recorded alternating: medians and totals. */
async function buildBench(o, plainParent) {
  const times = { plain: [], recorded: [] };
  let events = 0;
  let lost = 0;
  let recordedMs = 0;
  for (let round = 0; round < o.rounds; round++) {
    for (const mode of roundOrder(['plain', 'recorded'], round)) {
      const r = await runOnce(mode, `b${round}`, plainParent, buildLike(o));
      times[mode].push(r.ms);
      if (mode === 'recorded') {
        events += r.events;
        lost += r.lost;
        recordedMs += r.ms;
      }
    }
  }
  const plain = median(times.plain);
  const recorded = median(times.recorded);
  return {
    execs: o.execs,
    opens: o.opens,
    plain_ms: Math.round(plain),
    recorded_ms: Math.round(recorded),
    ratio: recorded / plain,
    events_per_round: Math.round(events / o.rounds),
    events_per_second: Math.round(events / (recordedMs / 1000)),
    lost,
  };
}

/**
 * The event-rate test, for one pace (0 = flat out): plain and recorded
 * alternating. The overhead ratio is plain opens/s over recorded opens/s
 * flat out (time per open), and recorded CPU over plain CPU when paced (the
 * wall time is the pace's). Events/s is what the session delivered over the
 * recorded run's wall time; lost is summed over the rounds.
 */
async function rateBench(o, plainParent, rate) {
  const per = { plain: [], recorded: [] };
  const rec = { events: [], rates: [], helperCpu: [], nodeCpu: [] };
  let lost = 0;
  for (let round = 0; round < o.rounds; round++) {
    for (const mode of roundOrder(['plain', 'recorded'], round)) {
      const r = await runOnce(mode, `r${rate}-${round}`, plainParent, burst(rate, o.burstSeconds));
      const w = JSON.parse(r.stdout);
      per[mode].push(rate === 0 ? w.opens / w.seconds : w.cpu / w.seconds);
      if (mode === 'recorded') {
        rec.events.push(r.events);
        // Over the workload's own seconds: python's start-up is not part of the burst.
        rec.rates.push(r.events / w.seconds);
        rec.helperCpu.push(r.helperCpuMs / r.ms);
        rec.nodeCpu.push(r.nodeCpuMs / r.ms);
        lost += r.lost;
      }
    }
  }
  const plain = median(per.plain);
  const recorded = median(per.recorded);
  return {
    pace: rate === 0 ? 'flat out' : `${rate}/s`,
    // Flat out: opens/s of the workload; paced: its CPU seconds per second.
    plain: rate === 0 ? Math.round(plain) : Number(plain.toFixed(3)),
    recorded: rate === 0 ? Math.round(recorded) : Number(recorded.toFixed(3)),
    ratio: rate === 0 ? plain / recorded : recorded / plain,
    events_per_round: Math.round(median(rec.events)),
    events_per_second: Math.round(median(rec.rates)),
    helper_cpu: Number(median(rec.helperCpu).toFixed(3)),
    node_cpu: Number(median(rec.nodeCpu).toFixed(3)),
    lost,
  };
}

export async function run(argv) {
  const o = parseArgs(argv);
  if (process.getuid?.() !== 0)
    throw new Error('bench bpf needs root (it loads BPF programs and makes cgroups)');
  const mount = findCgroup2Mount(await readFile('/proc/mounts', 'utf8'));
  if (!mount) throw new Error('no cgroup v2 mount');
  const plainParent = path.join(mount, `gatehouse-bench-plain-${process.pid}`);
  await mkdir(plainParent);
  const result = { rounds: o.rounds };
  try {
    if (!o.rateOnly) result.build = await buildBench(o, plainParent);
    if (o.burstSeconds > 0) {
      result.rate = {
        seconds: o.burstSeconds,
        flat_out: await rateBench(o, plainParent, 0),
        paced: await rateBench(o, plainParent, o.rate),
      };
    }
  } finally {
    await rmdir(plainParent).catch(() => undefined);
  }
  if (o.json) {
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    return;
  }
  const b = result.build;
  if (b) {
    process.stdout.write(
      `\neBPF enhanced recording (command, disk, network), median of ${o.rounds} rounds of ${b.execs} execve + ${b.opens} openat:\n\n` +
        `  no BPF            ${b.plain_ms} ms\n` +
        `  recorded          ${b.recorded_ms} ms\n` +
        `  ratio             ${b.ratio.toFixed(3)} (goal <= 1.05)\n` +
        `  events delivered  ${b.events_per_round} per round, ${b.events_per_second} /s while recording\n` +
        `  events lost       ${b.lost} (goal 0)\n`,
    );
  }
  const r = result.rate;
  if (r) {
    const f = r.flat_out;
    const p = r.paced;
    const row = (label, a, c) => `  ${label.padEnd(26)}${String(a).padStart(14)}${String(c).padStart(14)}\n`;
    process.stdout.write(
      `\nEvent rate: one process opening a file for ${r.seconds} s, median of ${o.rounds} rounds (default 16 MiB ring buffer):\n\n` +
        row('', 'flat out', `paced ${o.rate}/s`) +
        row('workload, no BPF', `${f.plain} opens/s`, `${p.plain} CPU`) +
        row('workload, recorded', `${f.recorded} opens/s`, `${p.recorded} CPU`) +
        row('overhead ratio', f.ratio.toFixed(3), p.ratio.toFixed(3)) +
        row('events delivered /s', f.events_per_second, p.events_per_second) +
        row('events lost (all rounds)', f.lost, p.lost) +
        row('helper CPU', f.helper_cpu, p.helper_cpu) +
        row('node CPU (event stream)', f.node_cpu, p.node_cpu) +
        '\n  (CPU: seconds per second of wall time. Goal: ratio <= 1.05 and 0 lost at 50,000 events/s.)\n',
    );
  }
}
