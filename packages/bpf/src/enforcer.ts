import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import {
  cgroupLevel,
  createSessionCgroup,
  ensureParentCgroup,
  findCgroup2Mount,
  type SessionCgroup,
  tracefsMounted,
} from './cgroup.js';
import { BpfHelperError, BpfUnavailableError } from './errors.js';
import { type BpfEvent, decodeEvent } from './events.js';
import { encodePolicy, type SessionPolicy } from './policy.js';
import { EventQueue } from './queue.js';

/** Built by scripts/build.mjs next to src/ and dist/. */
export const DEFAULT_HELPER = fileURLToPath(new URL('../build/gatehouse-bpf-helper', import.meta.url));

export interface EnforcerOptions {
  /** The helper binary; default the one `npm run build` made. */
  helperPath?: string;
  /** The cgroup v2 mount; default found in /proc/mounts. */
  cgroupMount?: string;
  /** The Gatehouse parent cgroup's name under the mount. Default `gatehouse`. */
  parentName?: string;
  /** Ring buffer size in bytes (a power of two, at least a page). Default 16 MiB. */
  ringBufferBytes?: number;
  /** The helper's stderr (libbpf diagnostics), line by line. */
  onDiagnostic?: (line: string) => void;
}

/** One session's kernel view: its events until close(), then the count of events the kernel lost. */
export interface BpfSession extends AsyncIterable<BpfEvent> {
  readonly cgroupId: number;
  readonly cgroupPath: string;
  /** Stops recording and enforcing; resolves after every event the session produced was delivered. */
  close(): Promise<{ lost: number }>;
}

export interface Enforcer {
  /** The Gatehouse parent cgroup directory sessions are created in. */
  readonly parent: string;
  /** The helper's process id. */
  readonly pid: number;
  /**
   * Programs for syscalls this kernel has no tracepoint for (arm64 has no
   * `open` or `creat`), left unattached: e.g. `['on_open', 'on_open_exit']`.
   */
  readonly skipped: readonly string[];
  /** Resolves with the reason once the helper has exited (on purpose or not). */
  readonly exited: Promise<string>;
  /** A fresh cgroup under the parent for one session. */
  createCgroup(name: string): Promise<SessionCgroup>;
  /** Starts applying `policy` to every process in `cgroupPath` (and what it forks). */
  open(cgroupPath: string, policy: SessionPolicy): Promise<BpfSession>;
  close(): Promise<void>;
}

interface Reply {
  re: number;
  ok: boolean;
  error?: string;
  cg?: number;
  lost?: number;
}

const run = promisify(execFile);

/** Mounts tracefs when it is missing: tracepoints attach through it. */
async function ensureTracefs(mounts: string): Promise<void> {
  if (tracefsMounted(mounts)) return;
  try {
    await run('mount', ['-t', 'tracefs', 'nodev', '/sys/kernel/tracing']);
  } catch (e) {
    throw new BpfUnavailableError('tracefs is not mounted and could not be mounted', {
      hint: 'mount it: mount -t tracefs nodev /sys/kernel/tracing',
      cause: e,
    });
  }
}

/**
 * Starts the native helper, which loads the session programs (tracepoints,
 * and cgroup connect/sendmsg hooks at the cgroup v2 root), and returns the
 * handle the node service opens sessions with. Throws BpfUnavailableError
 * saying why when this machine cannot do it.
 */
export async function createEnforcer(opts: EnforcerOptions = {}): Promise<Enforcer> {
  if (process.platform !== 'linux')
    throw new BpfUnavailableError(`eBPF needs Linux, not ${process.platform}`);
  const helperPath = opts.helperPath ?? DEFAULT_HELPER;
  if (!existsSync(helperPath)) {
    throw new BpfUnavailableError(`the eBPF helper is not built (${helperPath})`, {
      hint: 'install the toolchain (apt-get install clang libbpf-dev bpftool libelf-dev zlib1g-dev gcc libc6-dev) and run npm run build',
    });
  }
  const mounts = await readFile('/proc/mounts', 'utf8');
  const mount = opts.cgroupMount ?? findCgroup2Mount(mounts);
  if (!mount) {
    throw new BpfUnavailableError('no cgroup v2 hierarchy is mounted', {
      hint: 'mount one: mkdir -p /sys/fs/cgroup/unified && mount -t cgroup2 none /sys/fs/cgroup/unified',
    });
  }
  await ensureTracefs(mounts);
  let parent: string;
  try {
    parent = await ensureParentCgroup(mount, opts.parentName);
  } catch (e) {
    throw new BpfUnavailableError(
      `cannot create the Gatehouse cgroup under ${mount}: ${(e as Error).message}`,
      {
        hint: 'run the node service as root',
        cause: e,
      },
    );
  }
  const level = cgroupLevel(mount, parent) + 1;
  const args = ['--cgroup-root', mount, '--level', String(level)];
  if (opts.ringBufferBytes !== undefined) args.push('--ringbuf-bytes', String(opts.ringBufferBytes));
  const child = spawn(helperPath, args, {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  return attach(child, parent, opts);
}

async function attach(child: ChildProcess, parent: string, opts: EnforcerOptions): Promise<Enforcer> {
  const stdin = child.stdin as NonNullable<ChildProcess['stdin']>;
  const pending = new Map<number, { resolve: (r: Reply) => void; reject: (e: Error) => void }>();
  const sessions = new Map<number, EventQueue<BpfEvent>>();
  let nextId = 1;
  let exitReason: string | undefined;
  let helperError: string | undefined;
  let resolveExited: (reason: string) => void = () => {};
  const exited = new Promise<string>((r) => {
    resolveExited = r;
  });
  let skipped: string[] = [];
  let resolveReady: () => void = () => {};
  let rejectReady: (e: Error) => void = () => {};
  const ready = new Promise<void>((res, rej) => {
    resolveReady = res;
    rejectReady = rej;
  });

  createInterface({ input: child.stderr as NonNullable<ChildProcess['stderr']> }).on('line', (l) =>
    opts.onDiagnostic?.(l),
  );
  createInterface({ input: child.stdout as NonNullable<ChildProcess['stdout']> }).on('line', (line) => {
    let msg: Record<string, unknown>;
    try {
      msg = JSON.parse(line) as Record<string, unknown>;
    } catch {
      opts.onDiagnostic?.(`unreadable helper line: ${line.slice(0, 200)}`);
      return;
    }
    if (typeof msg.re === 'number') {
      const p = pending.get(msg.re);
      pending.delete(msg.re);
      p?.resolve(msg as unknown as Reply);
      return;
    }
    if (msg.ev === 'ready') {
      if (Array.isArray(msg.skipped)) skipped = msg.skipped.map(String);
      return resolveReady();
    }
    if (msg.ev === 'error') {
      helperError = `${String(msg.stage ?? 'helper')}: ${String(msg.error)}`;
      return;
    }
    const d = decodeEvent(msg as Parameters<typeof decodeEvent>[0], line);
    if (d) sessions.get(d.cgroupId)?.push(d.event);
  });

  child.on('error', (e) => {
    helperError ??= e.message;
  });
  child.on('exit', (code, signal) => {
    exitReason = helperError ?? (signal ? `killed by ${signal}` : `exited with status ${code}`);
    const err = new BpfHelperError(`the eBPF helper stopped (${exitReason})`);
    rejectReady(err);
    for (const p of pending.values()) p.reject(err);
    pending.clear();
    for (const q of sessions.values()) {
      q.push({ type: 'helper-exit', reason: exitReason });
      q.end();
    }
    sessions.clear();
    resolveExited(exitReason);
  });
  stdin.on('error', () => {
    // EPIPE after the helper died: the exit handler reports it.
  });

  const request = (line: string): Promise<Reply> => {
    if (exitReason) return Promise.reject(new BpfHelperError(`the eBPF helper stopped (${exitReason})`));
    const id = nextId++;
    return new Promise<Reply>((resolve, reject) => {
      pending.set(id, { resolve, reject });
      stdin.write(`${line.replace('ID', String(id))}\n`);
    }).then((r) => {
      if (!r.ok) throw new BpfHelperError(r.error ?? 'the eBPF helper refused the request');
      return r;
    });
  };

  try {
    await ready;
  } catch (e) {
    const why = helperError ?? (e as Error).message;
    const notRoot = process.getuid?.() !== 0;
    throw new BpfUnavailableError(`the eBPF programs could not be loaded: ${why}`, {
      hint: notRoot
        ? 'run the node service as root (loading BPF programs needs CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN)'
        : 'run gatehouse node check to see what this kernel supports',
      cause: e,
    });
  }

  return {
    parent,
    pid: child.pid ?? 0,
    skipped,
    exited,
    createCgroup: (name) => createSessionCgroup(parent, name),
    async open(cgroupPath, policy) {
      if (/\s/.test(cgroupPath))
        throw new BpfHelperError(`cgroup path ${JSON.stringify(cgroupPath)} has spaces`);
      const { flags, rules } = encodePolicy(policy);
      const r = await request(`open ID ${flags} ${cgroupPath}`);
      const cg = r.cg as number;
      const q = new EventQueue<BpfEvent>();
      sessions.set(cg, q);
      let closing: Promise<{ lost: number }> | undefined;
      const close = () => {
        closing ??= request(`close ID ${cg}`).then(
          (res) => {
            sessions.delete(cg);
            q.end();
            return { lost: res.lost ?? 0 };
          },
          (e: unknown) => {
            sessions.delete(cg);
            q.end();
            throw e;
          },
        );
        return closing;
      };
      try {
        for (const rule of rules) {
          await request(`rule ID ${cg} ${rule.kind} ${rule.family} ${rule.hex} ${rule.prefix}`);
        }
      } catch (e) {
        await close().catch(() => undefined);
        throw e;
      }
      return {
        cgroupId: cg,
        cgroupPath,
        close,
        [Symbol.asyncIterator]: () => q[Symbol.asyncIterator](),
      };
    },
    async close() {
      if (exitReason) return;
      stdin.end();
      await exited;
    },
  };
}
