import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { findCgroup2Mount, sessionCgroups, tracefsMounted } from './cgroup.js';
import { createEnforcer, DEFAULT_HELPER, type EnforcerOptions } from './enforcer.js';

export interface CheckItem {
  name: 'linux' | 'root' | 'btf' | 'cgroup2' | 'sessions' | 'tracefs' | 'helper' | 'programs';
  ok: boolean;
  detail: string;
}

export interface CheckReport {
  /** Everything needed for enhanced recording and restrict_network works here. */
  ok: boolean;
  items: CheckItem[];
}

/**
 * What this machine can do, item by item, ending with the real test: the
 * helper loads and attaches every program, then unloads them. Used by
 * `gatehouse node check`; it changes nothing but the tracefs mount and the
 * (empty) Gatehouse parent cgroup it creates if missing.
 */
export async function check(opts: EnforcerOptions = {}): Promise<CheckReport> {
  const items: CheckItem[] = [];
  const add = (name: CheckItem['name'], ok: boolean, detail: string) => items.push({ name, ok, detail });
  add('linux', process.platform === 'linux', process.platform);
  const uid = process.getuid?.();
  add(
    'root',
    uid === 0,
    uid === 0 ? 'running as root' : `running as uid ${uid}: loading BPF programs needs root`,
  );
  add(
    'btf',
    existsSync('/sys/kernel/btf/vmlinux'),
    existsSync('/sys/kernel/btf/vmlinux')
      ? '/sys/kernel/btf/vmlinux'
      : 'the kernel has no BTF (CONFIG_DEBUG_INFO_BTF)',
  );
  const mounts = process.platform === 'linux' ? await readFile('/proc/mounts', 'utf8') : '';
  const cg = opts.cgroupMount ?? findCgroup2Mount(mounts);
  add('cgroup2', cg !== undefined, cg ?? 'no cgroup v2 hierarchy is mounted');
  // Every SSH session gets a cgroup of its own when this works, policy or not (no BPF needed).
  try {
    const s = await sessionCgroups({
      ...(cg ? { cgroupMount: cg } : {}),
      ...(opts.parentName ? { parentName: opts.parentName } : {}),
    });
    add('sessions', true, `every session runs in its own cgroup under ${s.parent}`);
  } catch (e) {
    add('sessions', false, `sessions run in the node service's cgroup: ${(e as Error).message}`);
  }
  add(
    'tracefs',
    tracefsMounted(mounts),
    tracefsMounted(mounts)
      ? 'mounted'
      : 'not mounted (the enforcer mounts it at /sys/kernel/tracing as root)',
  );
  const helper = opts.helperPath ?? DEFAULT_HELPER;
  add('helper', existsSync(helper), existsSync(helper) ? helper : `${helper} is not built (npm run build)`);
  if (items.every((i) => i.ok || i.name === 'tracefs')) {
    try {
      const e = await createEnforcer(opts);
      await e.close();
      add(
        'programs',
        true,
        'execve/exit/openat tracepoints and cgroup connect4/6, sendmsg4/6 load and attach',
      );
    } catch (e) {
      const err = e as Error & { hint?: string };
      add('programs', false, err.hint ? `${err.message} (${err.hint})` : err.message);
    }
  } else {
    add('programs', false, 'not tried: fix the items above first');
  }
  const programs = items.find((i) => i.name === 'programs');
  return { ok: programs?.ok === true, items };
}
