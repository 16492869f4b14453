import { posix } from 'node:path';
import type { AuditEmitter, AuditEventInput } from '@gatehouse/audit';
import {
  type BpfEvent,
  BpfUnavailableError,
  createEnforcer,
  type Enforcer,
  policyNeedsBpf,
  type SessionCgroup,
  type SessionCgroups,
  type SessionPolicy,
  sessionCgroups,
} from '@gatehouse/bpf';
import type { LogFn, SshSessionPolicy } from '@gatehouse/core';

/**
 * The node's side of enhanced recording and restrict_network: one session
 * cgroup and one kernel session per SSH session whose certificate carries a
 * policy (core put it there from the grant; the node never decides access).
 * Kernel events become audit events tied to the session. See
 * docs/decisions/0023-bpf-helper.md.
 */

/** A running session's enforcement. */
export interface SessionEnforcement {
  /** The session's first process writes its pid here before it execs (see cgroupWrapper). */
  readonly procsFile: string;
  /**
   * The session's channel is done: once its last process has exited (a
   * background job may outlive the shell), stop enforcing, deliver the last
   * events and remove the cgroup.
   */
  release(): void;
  /** Ends every process the session started, background jobs included (the gateway ended the session). */
  kill(): Promise<void>;
  /** Resolves once the session's last process has exited and its cgroup is gone (after release()). */
  readonly released: Promise<void>;
}

export interface SessionIds {
  /** The audit events' session_id. */
  sessionId: string;
  /** The session cgroup's name, unique per channel. */
  cgroup: string;
  /** Gatehouse user (certificate key id). */
  user: string;
  login: string;
}

export interface NodeEnforcement {
  /**
   * Starts enforcing `policy` for a new session, or throws
   * BpfUnavailableError saying why this node cannot. `onFailed` is called if
   * enforcement stops under the running session (its processes are killed).
   */
  start(
    ids: SessionIds,
    policy: SshSessionPolicy,
    onFailed: (reason: string) => void,
  ): Promise<SessionEnforcement>;
  /**
   * A cgroup of its own for a session without a policy, so the node knows
   * when its last process ended and can end them all. Undefined when this
   * node cannot make cgroups (not root, no cgroup v2): the session runs in
   * the service's cgroup as before, and the log says why, once.
   */
  contain(ids: SessionIds): Promise<SessionEnforcement | undefined>;
  /** Ends enforcement: sessions still running are killed (they would otherwise run unrestricted). */
  close(): Promise<void>;
}

export interface NodeEnforcementOptions {
  audit: AuditEmitter;
  /** Node name (the audit events' `server`). */
  server: string;
  log: LogFn;
  /** Default: createEnforcer() on first use, again after a helper died. */
  enforcer?: () => Promise<Enforcer>;
  /** Session cgroups for sessions without a policy. Default: sessionCgroups(), tried once. */
  cgroups?: () => Promise<SessionCgroups>;
}

const RECORD = new Set(['command', 'disk', 'network']);

/** Throws for a recording kind this node does not know (from a newer gateway): not recording it would fail open. */
export function toBpfPolicy(p: SshSessionPolicy): SessionPolicy {
  const unknown = p.enhancedRecording.filter((r) => !RECORD.has(r));
  if (unknown.length > 0) {
    throw new BpfUnavailableError(`this node cannot record ${unknown.join(', ')}`, {
      hint: 'upgrade the node service to the gateway version',
    });
  }
  return {
    record: p.enhancedRecording as ('command' | 'disk' | 'network')[],
    deny: p.restrictNetwork.deny,
    allow: p.restrictNetwork.allow,
  };
}

export function needsEnforcement(p: SshSessionPolicy): boolean {
  return (
    policyNeedsBpf({ record: [], deny: p.restrictNetwork.deny, allow: p.restrictNetwork.allow }) ||
    p.enhancedRecording.length > 0
  );
}

/**
 * Opens `disk` recording leaves out unless a role's `include` asks for them:
 * what every program does on start (the loader, shared libraries, locales),
 * kernel interfaces and the usual character devices. Hundreds per command,
 * and none says what the user did. Only places a non-root login cannot
 * write to: a symlink planted in an excluded directory (`/dev/shm`) would
 * hide the open of its target.
 */
export const DEFAULT_OPEN_EXCLUDE: readonly string[] = [
  '/proc',
  '/sys',
  '/dev/null',
  '/dev/zero',
  '/dev/random',
  '/dev/urandom',
  '/dev/tty',
  '/dev/pts',
  '/dev/ptmx',
  '/etc/ld.so.cache',
  '/lib',
  '/lib32',
  '/lib64',
  '/usr/lib',
  '/usr/lib32',
  '/usr/lib64',
  '/usr/share/locale',
];

/** Paths that can lead anywhere (another root, a cwd, an open file), whatever prefix they start with. */
const ANYWHERE =
  /^\/(proc\/[^/]+\/(task\/[^/]+\/)?(root|cwd|fd|map_files)|dev\/fd|dev\/std(in|out|err))(\/|$)/;

/** `path` is `prefix` or under it (`/etc` covers `/etc/hostname`, not `/etcetera`). */
function under(path: string, prefix: string): boolean {
  const p = prefix.length > 1 && prefix.endsWith('/') ? prefix.slice(0, -1) : prefix;
  return p === '/' || path === p || path.startsWith(`${p}/`);
}

/**
 * Which opened paths `disk` recording audits, from the roles'
 * enhanced_recording_paths: never under `exclude`; with `include`, only
 * under it; without, not under DEFAULT_OPEN_EXCLUDE. Paths are compared
 * after removing `.` and `..` (`/proc/../etc/shadow` is `/etc/shadow`). A
 * path that could lead anywhere is always recorded rather than let it hide
 * an open: a relative one (`cd /etc; cat hostname`), and one through
 * `/proc/PID/root`, `cwd`, `fd`, `map_files` or `/dev/fd`.
 */
export function openRecorded(
  paths: { include: string[]; exclude: string[] } | undefined,
): (path: string) => boolean {
  const include = paths?.include ?? [];
  const exclude = paths?.exclude ?? [];
  return (raw) => {
    if (!raw.startsWith('/')) return true;
    const path = posix.normalize(raw);
    if (ANYWHERE.test(path)) return true;
    if (exclude.some((p) => under(path, p))) return false;
    if (include.length > 0) return include.some((p) => under(path, p));
    return !DEFAULT_OPEN_EXCLUDE.some((p) => under(path, p));
  };
}

/** Runs `plan` inside the session cgroup: a shell moves itself in (as root, before setpriv drops privileges), then execs. */
export function cgroupWrapper(
  procsFile: string,
  plan: { file: string; args: string[] },
): { file: string; args: string[] } {
  return { file: '/bin/sh', args: ['-c', 'echo $$ > "$0" && exec "$@"', procsFile, plan.file, ...plan.args] };
}

/** The audit event for one kernel event, or undefined for one that is not audited on its own. */
export function auditFor(
  e: BpfEvent,
  base: { session_id: string; server: string; login: string; user: string },
  execed: Set<number>,
  lastLost: { total: number },
): AuditEventInput | undefined {
  switch (e.type) {
    case 'exec':
      if (e.ret === 0) execed.add(e.pid);
      return {
        ...base,
        type: 'session.command',
        pid: e.pid,
        ppid: e.ppid,
        uid: e.uid,
        program: e.file,
        argv: e.argv,
        ...(e.truncated ? { argv_truncated: true } : {}),
        ...(e.ret !== 0 ? { error_code: e.ret } : {}),
      };
    case 'exit':
      // Forked subshells that never exec'd are not commands.
      if (!execed.delete(e.pid)) return undefined;
      return {
        ...base,
        type: 'session.command.exit',
        pid: e.pid,
        ...(e.exitCode !== undefined ? { exit_code: e.exitCode } : {}),
        ...(e.signal !== undefined ? { signal: e.signal } : {}),
      };
    case 'open':
      return { ...base, type: 'session.open', pid: e.pid, path: e.path, flags: e.flags, result: e.ret };
    case 'network':
      return {
        ...base,
        type: 'session.network',
        success: !e.denied,
        pid: e.pid,
        operation: e.op,
        protocol: String(e.protocol),
        dst_addr: e.addr,
        dst_port: e.port,
        ...(e.rule ? { rule: e.rule } : {}),
      };
    case 'lost': {
      const lost = e.total - lastLost.total;
      lastLost.total = e.total;
      return lost > 0 ? { ...base, type: 'session.events_lost', lost, total: e.total } : undefined;
    }
    case 'helper-exit':
      return { ...base, type: 'session.enforcement_failed', error: `the eBPF helper stopped: ${e.reason}` };
    default: {
      const _: never = e;
      return _;
    }
  }
}

export function nodeEnforcement(o: NodeEnforcementOptions): NodeEnforcement {
  let current: Promise<Enforcer> | undefined;
  const live = new Set<{ kill(): Promise<void>; done: Promise<void> }>();
  let closed = false;

  const enforcer = (): Promise<Enforcer> => {
    if (!current) {
      const p = (
        o.enforcer ?? (() => createEnforcer({ onDiagnostic: (l) => o.log('debug', `bpf helper: ${l}`) }))
      )();
      current = p;
      p.then(
        (e) => {
          // A dead helper is replaced for the next session; its own sessions end.
          void e.exited.then((why) => {
            o.log('error', `node: the eBPF helper stopped (${why})`);
            if (current === p) current = undefined;
          });
        },
        () => {
          // Not cached: the next session tries again (and is refused with the reason if it still fails).
          if (current === p) current = undefined;
        },
      );
    }
    return current;
  };

  let plain: Promise<SessionCgroups | undefined> | undefined;
  const cgroups = (): Promise<SessionCgroups | undefined> => {
    plain ??= (o.cgroups ?? sessionCgroups)().catch((e: unknown) => {
      // Said once: it does not change while the service runs.
      o.log(
        'error',
        `node: sessions run in the node service's cgroup (no cgroup per session): ${(e as Error).message}`,
      );
      return undefined;
    });
    return plain;
  };

  /** Removes a session's cgroup once its last process has exited (after `before`, e.g. closing its BPF session). */
  const releaseWhenEmpty = (cg: SessionCgroup, before: () => Promise<void>, done: () => void) => {
    let releasing = false;
    let markReleased: () => void = () => {};
    const released = new Promise<void>((r) => (markReleased = r));
    const release = () => {
      if (releasing) return;
      releasing = true;
      void (async () => {
        await cg.waitEmpty();
        await before();
        await cg.remove();
      })()
        .catch((err: unknown) => o.log('error', `node: releasing session cgroup ${cg.path}`, err))
        .finally(() => {
          done();
          markReleased();
        });
    };
    return { release, released };
  };

  return {
    async contain(ids) {
      if (closed) return undefined;
      const c = await cgroups();
      if (!c) return undefined;
      let cg: SessionCgroup;
      try {
        cg = await c.create(ids.cgroup);
      } catch (e) {
        o.log('error', `node: session ${ids.sessionId} runs without a cgroup of its own`, e);
        return undefined;
      }
      return {
        procsFile: cg.procsFile,
        ...releaseWhenEmpty(
          cg,
          async () => {},
          () => {},
        ),
        kill: () => cg.kill(),
      };
    },
    async start(ids, policy, onFailed) {
      if (closed) throw new BpfUnavailableError('the node service is stopping');
      const bpfPolicy = toBpfPolicy(policy);
      const e = await enforcer();
      const cg = await e.createCgroup(ids.cgroup);
      let session: Awaited<ReturnType<Enforcer['open']>>;
      try {
        session = await e.open(cg.path, bpfPolicy);
      } catch (err) {
        await cg.remove().catch(() => undefined);
        throw err;
      }
      const base = { session_id: ids.sessionId, server: o.server, login: ids.login, user: ids.user };
      const execed = new Set<number>();
      const lastLost = { total: 0 };
      const recorded = openRecorded(policy.recordingPaths);
      const pump = (async () => {
        for await (const ev of session) {
          // Filtered here, before the audit log: the kernel's cost per open is the same either way.
          if (ev.type === 'open' && !recorded(ev.path)) continue;
          if (ev.type === 'helper-exit') {
            // The reason first: killing the processes ends the channel, and a message written after
            // that never reached the user (the full run lost it once).
            onFailed(ev.reason);
            await cg
              .kill()
              .catch((err: unknown) => o.log('error', 'node: could not kill a session cgroup', err));
          }
          const a = auditFor(ev, base, execed, lastLost);
          if (a)
            await o.audit.emit(a).catch((err: unknown) => o.log('error', 'node: enhanced audit failed', err));
        }
      })();
      let markDone: () => void = () => {};
      const entry = { kill: () => cg.kill(), done: new Promise<void>((r) => (markDone = r)) };
      live.add(entry);
      return {
        procsFile: cg.procsFile,
        ...releaseWhenEmpty(
          cg,
          async () => {
            // After the last process: every event it caused is delivered before close resolves.
            await session.close().catch((err: unknown) => o.log('debug', 'node: closing a bpf session', err));
            await pump;
          },
          () => {
            live.delete(entry);
            markDone();
          },
        ),
        kill: () => cg.kill(),
      };
    },
    async close() {
      closed = true;
      for (const s of live) await s.kill().catch(() => undefined);
      await Promise.all([...live].map((s) => s.done));
      const e = await current?.catch(() => undefined);
      await e?.close();
    },
  };
}
