import { watch } from 'node:fs';
import { access, mkdir, readFile, rmdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { BpfUnavailableError } from './errors.js';

/** The cgroup v2 mount point from /proc/mounts text (hybrid hosts mount it at /sys/fs/cgroup/unified). */
export function findCgroup2Mount(procMounts: string): string | undefined {
  for (const line of procMounts.split('\n')) {
    const [, dir, fstype] = line.split(' ');
    if (fstype === 'cgroup2' && dir) return dir.replace(/\\040/g, ' ');
  }
  return undefined;
}

export function tracefsMounted(procMounts: string): boolean {
  return procMounts.split('\n').some((l) => l.split(' ')[2] === 'tracefs');
}

/** Depth of `dir` below the cgroup2 mount (the mount itself is 0), as bpf_get_current_ancestor_cgroup_id counts. */
export function cgroupLevel(mount: string, dir: string): number {
  const rel = path.relative(mount, dir);
  if (rel.startsWith('..') || path.isAbsolute(rel)) throw new Error(`${dir} is not under ${mount}`);
  return rel === '' ? 0 : rel.split(path.sep).length;
}

/** A session's own cgroup, a child of the Gatehouse parent. */
export interface SessionCgroup {
  readonly path: string;
  /** Write a pid here (as root) to move that process into the session. */
  readonly procsFile: string;
  /** Resolves once no process is left in the cgroup (cgroup.events "populated 0"). */
  waitEmpty(signal?: AbortSignal): Promise<void>;
  /** Kills every process in the session (cgroup.kill, Linux 5.14+). */
  kill(): Promise<void>;
  /** Removes the (empty) cgroup directory. */
  remove(): Promise<void>;
}

async function populated(dir: string): Promise<boolean> {
  const events = await readFile(path.join(dir, 'cgroup.events'), 'utf8');
  return /^populated 1$/m.test(events);
}

export function sessionCgroup(dir: string): SessionCgroup {
  return {
    path: dir,
    procsFile: path.join(dir, 'cgroup.procs'),
    async waitEmpty(signal) {
      if (!(await populated(dir))) return;
      // The kernel notifies cgroup.events changes through inotify (fs.watch).
      await new Promise<void>((resolve, reject) => {
        const w = watch(path.join(dir, 'cgroup.events'));
        const done = (e?: unknown) => {
          w.close();
          signal?.removeEventListener('abort', onAbort);
          if (e) reject(e);
          else resolve();
        };
        const onAbort = () => done(signal?.reason ?? new Error('aborted'));
        signal?.addEventListener('abort', onAbort);
        const check = () => {
          populated(dir).then((p) => {
            if (!p) done();
          }, done);
        };
        w.on('change', check);
        w.on('error', done);
        // It may have emptied between the first read and the watch.
        check();
      });
    },
    async kill() {
      await writeFile(path.join(dir, 'cgroup.kill'), '1');
    },
    async remove() {
      await rmdir(dir);
    },
  };
}

/**
 * The Gatehouse-owned parent cgroup (`<cgroup2>/gatehouse`) and its session
 * children. The parent is created on first use and left in place: other node
 * services on the machine may share it, and an empty cgroup costs nothing.
 */
export async function ensureParentCgroup(mount: string, name = 'gatehouse'): Promise<string> {
  const dir = path.join(mount, name);
  await mkdir(dir, { recursive: true });
  await access(path.join(dir, 'cgroup.procs'));
  return dir;
}

const SESSION_NAME = /^[A-Za-z0-9_.-]{1,100}$/;

export async function createSessionCgroup(parent: string, name: string): Promise<SessionCgroup> {
  // The helper protocol separates tokens with spaces, and a name must not climb out of the parent.
  if (!SESSION_NAME.test(name) || name.startsWith('.')) throw new Error(`bad session cgroup name ${name}`);
  const dir = path.join(parent, name);
  await mkdir(dir);
  return sessionCgroup(dir);
}

/** Session cgroups without any BPF: what every SSH session gets when the node can make cgroups. */
export interface SessionCgroups {
  /** The Gatehouse parent cgroup directory. */
  readonly parent: string;
  create(name: string): Promise<SessionCgroup>;
}

/**
 * The Gatehouse parent cgroup, ready for session children, or
 * BpfUnavailableError saying why this machine cannot have them (not Linux,
 * not root, no cgroup v2, no cgroup.kill before Linux 5.14). Creates the
 * parent on first use, like the enforcer.
 */
export async function sessionCgroups(
  opts: { cgroupMount?: string; parentName?: string } = {},
): Promise<SessionCgroups> {
  if (process.platform !== 'linux')
    throw new BpfUnavailableError(`cgroups need Linux, not ${process.platform}`);
  if (process.getuid?.() !== 0) {
    throw new BpfUnavailableError(`the node service runs as uid ${process.getuid?.()}, not root`, {
      hint: 'run the node service as root to give each session its own cgroup',
    });
  }
  const mount = opts.cgroupMount ?? findCgroup2Mount(await readFile('/proc/mounts', 'utf8'));
  if (!mount) {
    throw new BpfUnavailableError('no cgroup v2 hierarchy is mounted', {
      hint: 'mount one: mkdir -p /sys/fs/cgroup/unified && mount -t cgroup2 none /sys/fs/cgroup/unified',
    });
  }
  let parent: string;
  try {
    parent = await ensureParentCgroup(mount, opts.parentName);
  } catch (e) {
    throw new BpfUnavailableError(
      `cannot create the Gatehouse cgroup under ${mount}: ${(e as Error).message}`,
      {
        cause: e,
      },
    );
  }
  try {
    // Ending a session's processes (a lock, sessions kill) needs it; a non-root cgroup has it from Linux 5.14.
    await access(path.join(parent, 'cgroup.kill'));
  } catch (e) {
    throw new BpfUnavailableError('this kernel has no cgroup.kill (Linux 5.14 or later)', { cause: e });
  }
  return { parent, create: (name) => createSessionCgroup(parent, name) };
}
