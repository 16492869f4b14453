import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import os from 'node:os';
import type { Writable } from 'node:stream';
import type { CertPermissions, LogFn } from '@gatehouse/core';
import pty from 'node-pty';
import type { PseudoTtyInfo, ServerChannel, Session } from 'ssh2';
import type { AgentSocket } from './agent.js';
import { cgroupWrapper, type NodeEnforcement, needsEnforcement, type SessionEnforcement } from './enforce.js';
import type { UnixUser } from './passwd.js';
import {
  FORWARDABLE_SIGNALS,
  isAllowedClientEnv,
  type ProcessIdentity,
  sessionArgv,
  sessionEnv,
  spawnPlan,
} from './spawn.js';

/** What happens in one session channel, for audit and recording hooks. */
export type NodeSessionEvent =
  | {
      type: 'start';
      sessionId: string;
      login: string;
      /** The certificate's key id (the Gatehouse user). */
      user: string;
      remoteAddr: string;
      kind: 'shell' | 'exec' | 'subsystem';
      command?: string | undefined;
      pty?: { term: string; cols: number; rows: number } | undefined;
    }
  | { type: 'refused'; sessionId: string; login: string; user: string; request: string; reason: string }
  | { type: 'end'; sessionId: string; login: string; user: string; exitCode?: number; signal?: string };

export interface SessionContext {
  /** The id audit events carry: the proxy's session id when its certificate names one. */
  sessionId: string;
  /** Unique per channel (one connection may run several): names the session cgroup. */
  channelId: string;
  user: UnixUser;
  /** Certificate key id. */
  certUser: string;
  perms: CertPermissions;
  self: ProcessIdentity;
  remoteAddr: string;
  /** SSH_CONNECTION value. */
  connection: string;
  sftpServer?: string | undefined;
  /** The connection's forwarded-agent socket (`ssh -A`), shared by its sessions as in sshd. */
  agent: AgentSocket;
  log: LogFn;
  onEvent: (e: NodeSessionEvent) => void;
  /** The node name, for messages. */
  server: string;
  /** eBPF enforcement for sessions whose certificate carries a policy; absent: such sessions are refused. */
  enforcement?: NodeEnforcement | undefined;
  /** A policy with only enhanced_recording on a node that cannot record: refuse (default) or run with a warning. */
  recordingUnavailable?: 'refuse' | 'warn' | undefined;
  /** The session runs in its own cgroup (so the node can end it later, e.g. when its certificate is revoked). */
  onContained?: ((e: SessionEnforcement) => void) | undefined;
}

interface Running {
  pid: number;
  resize?: (cols: number, rows: number) => void;
  kill: (signal: NodeJS.Signals) => void;
}

const SIGNAL_NAMES = new Map<number, string>(
  Object.entries(os.constants.signals).map(([name, num]) => [num, name.replace(/^SIG/, '')]),
);

function waitDrained(w: Writable): Promise<void> {
  if (w.writableLength === 0 || w.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      w.off('drain', done);
      w.off('close', done);
      resolve();
    };
    w.on('drain', done);
    w.on('close', done);
  });
}

/**
 * One SSH session channel: collects pty/env requests, then runs a login
 * shell, a command or the sftp subsystem as the Unix user, and relays
 * window changes, signals, EOF and the exit status.
 */
export function handleSession(session: Session, c: SessionContext): void {
  let ptyInfo: PseudoTtyInfo | undefined;
  const clientEnv: Record<string, string> = {};
  let running: Running | undefined;
  let started = false;

  const refuse = (request: string, reason: string, reject?: (reason: string) => void) => {
    c.onEvent({
      type: 'refused',
      sessionId: c.sessionId,
      login: c.user.name,
      user: c.certUser,
      request,
      reason,
    });
    reject?.(reason);
  };

  session.on('pty', (accept, reject, info) => {
    if (!c.perms.pty) return refuse('pty-req', 'certificate has no permit-pty', reject);
    ptyInfo = info;
    accept?.();
  });
  session.on('env', (accept, reject, info) => {
    if (!isAllowedClientEnv(info.key)) return refuse('env', `variable ${info.key} is not allowed`, reject);
    clientEnv[info.key] = info.val;
    accept?.();
  });
  session.on('window-change', (accept, _reject, info) => {
    if (ptyInfo) ptyInfo = { ...ptyInfo, cols: info.cols, rows: info.rows };
    running?.resize?.(info.cols, info.rows);
    accept?.();
  });
  session.on('signal', (accept, reject, info) => {
    const name = info.name.toUpperCase().replace(/^SIG/, '');
    if (name === 'KILL' && enforcement) {
      // The gateway ends a session this way (a lock, sessions kill, expiry) before it
      // closes the channel: everything the session started goes, background jobs
      // included. A client leaving only hangs up (SIGHUP), so `nohup` jobs survive that.
      enforcement.kill().catch((e: unknown) => c.log('error', 'node: could not kill a session cgroup', e));
      accept?.();
      return;
    }
    if (!FORWARDABLE_SIGNALS.has(name) || !running)
      return refuse('signal', `cannot deliver ${info.name}`, reject);
    running.kill(`SIG${name}` as NodeJS.Signals);
    accept?.();
  });
  session.on('auth-agent', (accept, reject) => {
    if (!c.perms.agentForwarding) {
      return refuse('auth-agent-req', 'certificate has no permit-agent-forwarding', reject);
    }
    c.agent.enable(c.self, c.user).then(
      () => accept?.(),
      (e: Error) => {
        c.log('error', 'node: could not create the agent socket', e);
        refuse('auth-agent-req', `could not create the agent socket: ${e.message}`, reject);
      },
    );
  });
  session.on('x11', (_accept, reject) => refuse('x11-req', 'X11 forwarding is not supported', reject));
  session.on('shell', (accept, reject) => start('shell', undefined, accept, reject));
  session.on('exec', (accept, reject, info) => start('exec', info.command, accept, reject));
  session.on('subsystem', (accept, reject, info) => {
    if (info.name !== 'sftp' || !c.sftpServer) {
      return refuse('subsystem', `subsystem ${info.name} is not available`, reject);
    }
    start('subsystem', undefined, accept, reject, c.sftpServer);
  });
  let closed = false;
  session.on('close', () => {
    closed = true;
    // Like sshd: a client that goes away hangs up its session.
    running?.kill('SIGHUP');
  });

  function start(
    kind: 'shell' | 'exec' | 'subsystem',
    command: string | undefined,
    accept: () => ServerChannel,
    reject: () => void,
    subsystemBinary?: string,
  ): void {
    if (started) return refuse(kind, 'session already started', reject);
    started = true;
    const policy = c.perms.sessionPolicy;
    const contain = c.enforcement;
    if (!needsEnforcement(policy) && !contain) {
      launch(kind, command, accept, reject, subsystemBinary, undefined);
      return;
    }
    // Accepted before the session cgroup (and kernel session) is set up (that takes a
    // moment): ssh2 refuses a late accept once the client has sent EOF, which `ssh node
    // cmd </dev/null` does at once, and the client would hang.
    const channel = accept();
    if (!channel) return;
    const setup = needsEnforcement(policy)
      ? enforce(kind)
      : (contain as NodeEnforcement)
          .contain({ sessionId: c.sessionId, cgroup: c.channelId, user: c.certUser, login: c.user.name })
          .then((r) => (enforcement = r));
    void setup.then((r) => {
      if (r === 'refused') {
        // Fail closed, with the reason where the user reads it (ssh prints stderr).
        channel.stderr.write(`gatehouse node ${c.server}: ${refusal}\r\n`);
        finish(channel, 1, null);
        return;
      }
      if (closed) {
        // The client went away meanwhile: nothing to run.
        r?.release();
        return;
      }
      if (r) c.onContained?.(r);
      const failed = (reason?: string) => {
        channel.stderr.write(`gatehouse node ${c.server}: ${reason ?? 'the session could not start'}\r\n`);
        finish(channel, 1, null);
      };
      launch(kind, command, () => channel, failed, subsystemBinary, r);
    });
  }

  let refusal = '';
  let enforcement: SessionEnforcement | undefined;
  let channelRef: ServerChannel | undefined;

  /** Starts the session's kernel enforcement, or says why it is refused. */
  async function enforce(kind: string): Promise<SessionEnforcement | undefined | 'refused'> {
    const policy = c.perms.sessionPolicy;
    const restricts = policy.restrictNetwork.deny.length > 0 || policy.restrictNetwork.allow.length > 0;
    try {
      if (!c.enforcement) throw new Error('this node service runs without eBPF enforcement');
      enforcement = await c.enforcement.start(
        { sessionId: c.sessionId, cgroup: c.channelId, user: c.certUser, login: c.user.name },
        policy,
        (reason) => {
          channelRef?.stderr.write(
            `\r\ngatehouse node ${c.server}: session enforcement stopped (${reason}); the session is ended\r\n`,
          );
        },
      );
      return enforcement;
    } catch (e) {
      const err = e as Error & { hint?: string };
      const why = err.hint ? `${err.message} (${err.hint})` : err.message;
      const what = restricts ? 'restrict_network' : 'enhanced_recording';
      if (!restricts && c.recordingUnavailable === 'warn') {
        c.log('error', `node: session ${c.sessionId} runs without enhanced recording: ${why}`);
        return undefined;
      }
      refusal = `the role requires ${what}, which this node cannot enforce: ${why}`;
      refuse(kind, refusal);
      return 'refused';
    }
  }

  function launch(
    kind: 'shell' | 'exec' | 'subsystem',
    command: string | undefined,
    accept: () => ServerChannel,
    reject: (reason?: string) => void,
    subsystemBinary: string | undefined,
    enf: SessionEnforcement | undefined,
  ): void {
    const forced = c.perms.forceCommand;
    const effective = forced ?? command;
    const argv: [string, ...string[]] =
      forced === undefined && subsystemBinary ? [subsystemBinary] : sessionArgv(c.user, effective);
    let plan: { file: string; args: string[] };
    try {
      plan = spawnPlan(c.self, c.user, argv);
    } catch (e) {
      return refuse(kind, (e as Error).message, reject);
    }
    if (enf) plan = cgroupWrapper(enf.procsFile, plan);
    const cwd = existsSync(c.user.home) ? c.user.home : '/';
    const usePty = ptyInfo !== undefined && kind !== 'subsystem';
    c.onEvent({
      type: 'start',
      sessionId: c.sessionId,
      login: c.user.name,
      user: c.certUser,
      remoteAddr: c.remoteAddr,
      kind,
      ...(effective !== undefined ? { command: effective } : {}),
      ...(usePty && ptyInfo ? { pty: { term: ptyInfo.term, cols: ptyInfo.cols, rows: ptyInfo.rows } } : {}),
    });
    // Accepted at once (ssh2 drops data sent to a channel not accepted yet);
    // the program starts once the agent socket, if any, exists: an OpenSSH
    // client does not wait for the answer to auth-agent-req.
    const channel = accept();
    channelRef = channel;
    const run = (agentSock: string | undefined) => {
      const env = sessionEnv({
        user: c.user,
        term: ptyInfo?.term,
        clientEnv,
        connection: c.connection,
        originalCommand: forced !== undefined ? (command ?? '') : undefined,
        agentSocket: agentSock,
      });
      if (usePty && ptyInfo) runPty(channel, plan, env, cwd, ptyInfo);
      else runPipes(channel, plan, env, cwd);
    };
    const agent = c.agent.path();
    if (!agent) run(undefined);
    else agent.then(run, () => run(undefined));
  }

  let finished = false;
  function finish(channel: ServerChannel, exitCode: number | null, signal: string | null): void {
    if (finished) return;
    finished = true;
    running = undefined;
    enforcement?.release();
    const stderr = channel.stderr as Writable;
    void Promise.all([waitDrained(channel), waitDrained(stderr)]).then(() => {
      if (channel.destroyed) return;
      try {
        if (signal) channel.exit(signal, false, '');
        else channel.exit(exitCode ?? 255);
      } catch (e) {
        // An unknown signal name cannot be sent as exit-signal; report 128+n like a shell would.
        c.log('debug', `node: could not send exit-signal ${signal}`, e);
        channel.exit(255);
      }
      channel.end();
      c.onEvent({
        type: 'end',
        sessionId: c.sessionId,
        login: c.user.name,
        user: c.certUser,
        ...(exitCode !== null ? { exitCode } : {}),
        ...(signal ? { signal } : {}),
      });
    });
  }

  function runPty(
    channel: ServerChannel,
    plan: { file: string; args: string[] },
    env: Record<string, string>,
    cwd: string,
    info: PseudoTtyInfo,
  ): void {
    let term: pty.IPty;
    try {
      term = pty.spawn(plan.file, plan.args, {
        name: info.term || 'xterm',
        cols: info.cols || 80,
        rows: info.rows || 24,
        cwd,
        env,
        // Raw bytes: the recorder must see exactly what the user sees.
        encoding: null,
      } as pty.IPtyForkOptions);
    } catch (e) {
      c.log('error', 'node: could not start a pty session', e);
      channel.stderr.write(`gatehouse node: could not start the session: ${(e as Error).message}\r\n`);
      finish(channel, 255, null);
      return;
    }
    running = {
      pid: term.pid,
      resize: (cols, rows) => {
        if (cols > 0 && rows > 0) term.resize(cols, rows);
      },
      // The shell leads its own session and process group (node-pty calls setsid).
      kill: (sig) => signalGroup(term.pid, sig),
    };
    term.onData((d: string | Buffer) => {
      if (!channel.write(d)) {
        term.pause();
        channel.once('drain', () => term.resume());
      }
    });
    channel.on('data', (d: Buffer) => term.write(d));
    term.onExit(({ exitCode, signal }) => {
      finish(channel, signal ? null : exitCode, signal ? (SIGNAL_NAMES.get(signal) ?? null) : null);
    });
  }

  function runPipes(
    channel: ServerChannel,
    plan: { file: string; args: string[] },
    env: Record<string, string>,
    cwd: string,
  ): void {
    let child: ChildProcess;
    try {
      // detached: its own process group, so signals reach the whole command.
      child = spawn(plan.file, plan.args, { cwd, env, detached: true, stdio: ['pipe', 'pipe', 'pipe'] });
    } catch (e) {
      channel.stderr.write(`gatehouse node: could not start the session: ${(e as Error).message}\n`);
      finish(channel, 255, null);
      return;
    }
    const pid = child.pid;
    running = pid === undefined ? undefined : { pid, kill: (sig) => signalGroup(pid, sig) };
    child.stdout?.pipe(channel, { end: false });
    child.stderr?.pipe(channel.stderr as Writable, { end: false });
    channel.pipe(child.stdin as Writable);
    child.stdin?.on('error', (e) => c.log('debug', 'node: session stdin closed early', e));
    child.on('error', (e) => {
      c.log('error', 'node: could not start a session process', e);
      channel.stderr.write(`gatehouse node: could not start the session: ${e.message}\n`);
      finish(channel, 255, null);
    });
    child.on('close', (code, signal) => {
      finish(channel, code, signal ? signal.replace(/^SIG/, '') : null);
    });
  }

  function signalGroup(pid: number, sig: NodeJS.Signals): void {
    try {
      process.kill(-pid, sig);
    } catch (e) {
      // ESRCH: the group is gone already (the session is ending).
      if ((e as NodeJS.ErrnoException).code !== 'ESRCH')
        c.log('debug', `node: kill -${sig} ${pid} failed`, e);
    }
  }
}
