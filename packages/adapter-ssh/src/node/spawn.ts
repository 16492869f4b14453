import { GatehouseError } from '@gatehouse/core';
import type { UnixUser } from './passwd.js';

/**
 * How the node turns "run this as LOGIN" into an exec. No I/O here.
 *
 * As root, every session goes through `setpriv --reuid --regid --groups`
 * (util-linux, present on every Debian/Ubuntu/RHEL): it sets exactly the
 * uid, gid and supplementary groups we resolved from the passwd database and
 * then execs the program, so the PID we hold is the user's shell itself (the
 * process group we signal is the session's). node-pty and child_process can
 * set uid/gid but not supplementary groups. `runuser` was the alternative; it
 * goes through PAM (pam_env, limits, motd, lastlog...), which makes the
 * result depend on /etc/pam.d and keeps a runuser parent between us and the
 * shell. Not root: only the service's own user can be served, directly.
 */

export const SETPRIV = '/usr/bin/setpriv';

export interface SpawnPlan {
  file: string;
  args: string[];
}

export interface ProcessIdentity {
  uid: number;
  /** User name of the service process, for the refusal message. */
  name: string;
}

/** Refuses logins the service process cannot become. */
export function checkCanServe(self: ProcessIdentity, user: UnixUser): void {
  if (self.uid === 0 || self.uid === user.uid) return;
  throw new GatehouseError(
    'GH_ERR_ACCESS_DENIED',
    `this node service runs as "${self.name}" (not root), so it can only start sessions as "${self.name}", not "${user.name}"`,
    {
      hint: `Connect as ${self.name}@node, or run the node service as root to serve other logins.`,
    },
  );
}

/** The exec that runs `argv` as `user` from a process running as `self`. */
export function spawnPlan(self: ProcessIdentity, user: UnixUser, argv: [string, ...string[]]): SpawnPlan {
  checkCanServe(self, user);
  const [file, ...args] = argv;
  if (self.uid !== 0) return { file, args };
  return {
    file: SETPRIV,
    args: [
      `--reuid=${user.uid}`,
      `--regid=${user.gid}`,
      user.groups.length > 0 ? `--groups=${user.groups.join(',')}` : '--clear-groups',
      '--',
      file,
      ...args,
    ],
  };
}

const ROOT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const USER_PATH = '/usr/local/bin:/usr/bin:/bin:/usr/games';

/** Environment variable names a client may set with an `env` request. */
export function isAllowedClientEnv(name: string): boolean {
  return (
    name === 'LANG' ||
    name === 'LANGUAGE' ||
    name === 'TERM' ||
    name === 'TZ' ||
    name === 'COLORTERM' ||
    /^LC_[A-Z_]+$/.test(name) ||
    /^GATEHOUSE_[A-Z0-9_]+$/.test(name)
  );
}

export interface SessionEnvInput {
  user: UnixUser;
  term?: string | undefined;
  clientEnv: Record<string, string>;
  /** "client_ip client_port server_ip server_port", as sshd sets SSH_CONNECTION. */
  connection: string;
  originalCommand?: string | undefined;
  /** The forwarded agent's socket (`ssh -A`), as sshd sets SSH_AUTH_SOCK. */
  agentSocket?: string | undefined;
}

/** The whole environment of a session: nothing leaks in from the service process. */
export function sessionEnv(i: SessionEnvInput): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(i.clientEnv)) if (isAllowedClientEnv(k)) env[k] = v;
  Object.assign(env, {
    HOME: i.user.home,
    USER: i.user.name,
    LOGNAME: i.user.name,
    SHELL: i.user.shell,
    PATH: i.user.uid === 0 ? ROOT_PATH : USER_PATH,
    SSH_CONNECTION: i.connection,
    SSH_CLIENT: i.connection
      .split(' ')
      .slice(0, 2)
      .concat(i.connection.split(' ')[3] ?? '')
      .join(' '),
  });
  if (i.term) env.TERM = i.term;
  if (i.originalCommand !== undefined) env.SSH_ORIGINAL_COMMAND = i.originalCommand;
  if (i.agentSocket !== undefined) env.SSH_AUTH_SOCK = i.agentSocket;
  return env;
}

/** The argv of a session: a login shell, or `shell -c command` as sshd runs it. */
export function sessionArgv(user: UnixUser, command: string | undefined): [string, ...string[]] {
  return command === undefined ? [user.shell, '-l'] : [user.shell, '-c', command];
}

/** Signals a client may send (RFC 4254 section 6.10 names). */
export const FORWARDABLE_SIGNALS = new Set([
  'ABRT',
  'ALRM',
  'FPE',
  'HUP',
  'ILL',
  'INT',
  'KILL',
  'PIPE',
  'QUIT',
  'SEGV',
  'TERM',
  'USR1',
  'USR2',
]);
