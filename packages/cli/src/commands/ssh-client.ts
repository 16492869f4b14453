import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { encodeTargetRequest, TargetReplyParser } from '@gatehouse/adapter-ssh/wire';
import { GatehouseError, parseHostPort } from '@gatehouse/core/lite';
import type { Command } from 'commander';
import type { ClientHome } from '../profile.js';
import { requireProfile, splitPems } from '../profile.js';
import {
  BROWSER_HELP,
  MFA_CODE_HELP,
  MFA_MODE_HELP,
  mfaSource,
  sessionMfaCerts,
  withCertFile,
} from '../session-mfa.js';
import { examples, usage } from './usage.js';

// The OpenSSH wrappers (`gatehouse ssh`, `scp`, `proxy ssh`). This module
// loads only light dependencies: `gatehouse proxy ssh` runs once per OpenSSH
// connection and `gatehouse ssh` once per command, so their start-up time is
// connection latency (bin/gatehouse.js routes them here without loading the
// rest of the CLI; see fast.ts).

/** What these commands need from the CLI context. */
export interface SshCtx {
  env: NodeJS.ProcessEnv;
  home: ClientHome;
  exitCode?: number | undefined;
}

const collect = (v: string, prev: string[] = []) => [...prev, v];

/** The command OpenSSH runs as ProxyCommand: this very CLI, with the same node binary. */
export function proxyCommand(): string {
  const q = (s: string) => (/^[A-Za-z0-9_./:@=+-]+$/.test(s) ? s : `"${s.replace(/(["\\$`])/g, '\\$1')}"`);
  return `${q(process.execPath)} ${q(process.argv[1] ?? 'gatehouse')} proxy ssh %h:%p`;
}

/**
 * Whether this CPU encrypts AES in hardware (AES-NI, the ARMv8 crypto
 * extension). Where it does, AES-GCM costs the client and the gateway a good
 * deal less per byte than OpenSSH's default chacha20-poly1305. Where the
 * answer is unknown the defaults stay.
 */
export function cpuHasAes(): boolean {
  if (process.platform === 'darwin') return true; // every Mac that runs a current Node has it
  if (!existsSync('/proc/cpuinfo')) return false; // unknown: keep OpenSSH's own order
  return /^(?:flags|Features)\s*:.*\baes\b/m.test(readFileSync('/proc/cpuinfo', 'latin1'));
}

/** OpenSSH's cipher order with AES-GCM moved to the front (`^` keeps every other default). */
export const AES_FIRST = 'Ciphers=^aes128-gcm@openssh.com,aes256-gcm@openssh.com';

/** TLS 1.3 with AES-128-GCM preferred: as safe as AES-256 here and cheaper for bulk SSH traffic. */
export const TLS_CIPHERS = [
  'TLS_AES_128_GCM_SHA256',
  ...tls.DEFAULT_CIPHERS.split(':').filter((c) => c !== 'TLS_AES_128_GCM_SHA256'),
].join(':');

/**
 * OpenSSH options that make plain `ssh`/`scp` go through Gatehouse with the
 * current login: the profile's key and certificate, the known_hosts file with
 * the cluster's @cert-authority line, and `gatehouse proxy ssh` as the
 * ProxyCommand (SSH inside TLS with the login's client certificate).
 */
export function sshOptions(ctx: SshCtx, certFile?: string): string[] {
  const p = requireProfile(ctx.home);
  const keys = ctx.home.keyPaths(p.proxy, p.user);
  for (const f of [keys.sshKey, keys.sshCert]) {
    if (!existsSync(f)) {
      throw new GatehouseError(
        'GH_ERR_UNAUTHENTICATED',
        `the SSH files of ${p.user}@${p.proxy} are missing (${f})`,
        {
          hint: `log in again: gatehouse login --proxy ${p.proxy} --user ${p.user}`,
        },
      );
    }
  }
  return [
    '-i',
    keys.sshKey,
    '-o',
    // A per-session MFA certificate for this one session, or the login's.
    `CertificateFile=${certFile ?? keys.sshCert}`,
    '-o',
    'IdentitiesOnly=yes',
    '-o',
    `UserKnownHostsFile=${ctx.home.knownHostsPath}`,
    '-o',
    'StrictHostKeyChecking=yes',
    '-o',
    `ProxyCommand=${proxyCommand()}`,
    ...(cpuHasAes() ? ['-o', AES_FIRST] : []),
  ];
}

/** `program` (ssh, scp) could not be started. */
function sshMissing(program: string, err: Error): GatehouseError {
  return new GatehouseError('GH_ERR_NOT_FOUND', `cannot run ${program}: ${err.message}`, {
    hint: 'install the OpenSSH client (apt-get install openssh-client)',
    cause: err,
  });
}

function run(ctx: SshCtx, program: string, args: string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(program, args, { stdio: 'inherit', env: ctx.env });
    child.on('error', (err) => reject(sshMissing(program, err)));
    child.on('close', (status) => resolve(status ?? 255));
  });
}

/** `gatehouse ssh [-L spec] [-R spec] [-D port] [-t] [-N] [-p port] LOGIN@NODE [command...]` on `cmd`. */
export function defineSsh(cmd: Command, ctx: SshCtx): Command {
  return (
    cmd
      .description('open an SSH session to a node through Gatehouse (runs OpenSSH with your certificate)')
      .argument('<target>', 'LOGIN@NODE')
      .argument('[command...]', 'command to run instead of a shell')
      .option('-L <spec>', 'local port forward, as ssh -L (repeatable)', collect)
      .option('-R <spec>', 'remote port forward, as ssh -R (repeatable)', collect)
      .option('-D <port>', 'SOCKS proxy on a local port, as ssh -D')
      // Counted like OpenSSH: -tt forces a terminal even when stdin is not one (scripts, expect).
      .option(
        '-t',
        'force a terminal, as ssh -t (-tt: even without a local terminal)',
        (_v, n: number) => n + 1,
        0,
      )
      .option('-N', 'no command (forwarding only), as ssh -N')
      .option('-A', 'forward your ssh-agent to the node, as ssh -A (your roles must allow agent_forwarding)')
      .option('-p <port>', "the node's SSH port as registered (default 22)")
      .option('--mfa-code <code>', MFA_CODE_HELP)
      .option('--mfa-mode <mode>', MFA_MODE_HELP)
      .option('--browser <command>', BROWSER_HELP)
      .addHelpText(
        'after',
        examples(
          '  $ gatehouse ssh root@web1\n  $ gatehouse ssh root@web1 uptime\n  $ gatehouse ssh -L 8080:localhost:80 root@web1 -N',
        ),
      )
      .action(
        async (
          target: string,
          command: string[],
          o: {
            L?: string[];
            R?: string[];
            D?: string;
            t: number;
            N?: boolean;
            A?: boolean;
            p?: string;
            mfaCode?: string;
            mfaMode?: string;
            browser?: string;
          },
        ) => {
          if (!/^[^@\s]+@[^@\s]+$/.test(target))
            throw usage(`"${target}" is not LOGIN@NODE`, 'e.g. gatehouse ssh root@web1');
          const [login, node] = target.split('@') as [string, string];
          const p = requireProfile(ctx.home);
          // The proxy says whether this session needs a fresh check (require_session_mfa).
          const mfa = await sessionMfaCerts(
            ctx.home,
            p,
            { kind: 'node', node, login },
            { ssh_public_key: ctx.home.readKeys(p).sshPub.trim() },
            mfaSource(o, ctx.env),
            target,
          );
          const connect = async (certFile?: string) => {
            const args = [...sshOptions(ctx, certFile)];
            for (const l of o.L ?? []) args.push('-L', l);
            for (const r of o.R ?? []) args.push('-R', r);
            if (o.D) args.push('-D', o.D);
            for (let i = 0; i < o.t; i++) args.push('-t');
            if (o.N) args.push('-N');
            if (o.A) args.push('-A');
            if (o.p) args.push('-p', o.p);
            args.push(target, ...command);
            // A wrapper exits with its program's status (`ssh host false` exits 1).
            ctx.exitCode = await run(ctx, 'ssh', args);
          };
          if (mfa?.ssh_cert) await withCertFile(mfa.ssh_cert, 'mfa-cert.pub', connect);
          else await connect();
        },
      )
  );
}

/** scp's options that take a value (OpenSSH 9: -c -D -F -i -J -l -o -P -S -X). */
const SCP_VALUE_OPTIONS = new Set('cDFiJloPSX');

/** A remote end of an scp: the node, and the login when the operand names one (`LOGIN@NODE:PATH`). */
export interface ScpRemote {
  node: string;
  login?: string;
}

/**
 * scp's arguments read by OpenSSH's rules. `remotes`: the remote ends named
 * in the operands, in order and without repeats; an operand is remote when a
 * `:` comes before any `/` (a leading `:` or `[...]` brackets aside), or it
 * is an `scp://[LOGIN@]NODE[:PORT]/PATH` URI. `sshConfig`: the options scp
 * hands on to ssh that decide which login ssh uses (`-F FILE`, `-o OPTION`),
 * in order, for `sshLogin`.
 */
export function parseScpArgs(args: string[]): { remotes: ScpRemote[]; sshConfig: string[] } {
  const operands: string[] = [];
  const sshConfig: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--') {
      operands.push(...args.slice(i + 1));
      break;
    }
    if (a.startsWith('-') && a.length > 1) {
      // Flags can be grouped (-rP 2222); a value option takes the rest of the word or the next argument.
      for (let j = 1; j < a.length; j++) {
        const flag = a[j]!;
        if (SCP_VALUE_OPTIONS.has(flag)) {
          const value = j === a.length - 1 ? args[++i] : a.slice(j + 1);
          if ((flag === 'F' || flag === 'o') && value !== undefined) sshConfig.push(`-${flag}`, value);
          break;
        }
      }
      continue;
    }
    operands.push(a);
  }
  const found = new Map<string, ScpRemote>();
  const add = (userHost: string) => {
    const at = userHost.lastIndexOf('@');
    const node = (at >= 0 ? userHost.slice(at + 1) : userHost).replace(/^\[(.*)\]$/, '$1');
    if (!node) return;
    if (at >= 0) {
      const login = userHost.slice(0, at);
      found.set(`${login}@${node}`, { login, node });
    } else found.set(`@${node}`, { node });
  };
  for (const o of operands) {
    const uri = /^scp:\/\/([^/]+?)(?::\d+)?(?:\/|$)/.exec(o);
    if (uri) {
      add(decodeURIComponent(uri[1]!));
      continue;
    }
    if (o.startsWith(':')) continue; // a leading colon belongs to a local file name
    let bracket = false;
    for (let k = 0; k < o.length; k++) {
      const c = o[k];
      if (c === '@' && o[k + 1] === '[') bracket = true;
      else if (c === '[' && k === 0) bracket = true;
      else if (c === ']' && o[k + 1] === ':' && bracket) {
        add(o.slice(0, k + 1));
        break;
      } else if (c === ':' && !bracket) {
        add(o.slice(0, k));
        break;
      } else if (c === '/') break;
    }
  }
  return { remotes: [...found.values()], sshConfig };
}

/**
 * The login ssh will use for `remote`, as OpenSSH itself resolves it: `ssh
 * -G` with what scp passes to ssh (`sshConfig` from `parseScpArgs`, then the
 * operand's login as `-l`). OpenSSH 9.2 takes the first `-o User=` (keyword
 * in any case, `=` or a space), then the operand's `LOGIN@`, then `User` in
 * the config files (`-F FILE`, else ~/.ssh/config and /etc/ssh/ssh_config,
 * `Match` blocks included), then the local user name. Asking ssh keeps that
 * order right whatever the installed version does. Options ssh rejects are a
 * usage error here, before any MFA check (scp would refuse them too).
 */
export function sshLogin(env: NodeJS.ProcessEnv, sshConfig: string[], remote: ScpRemote): Promise<string> {
  // -T as scp asks for no terminal (-oRequestTTY=no): ssh would say on stderr that it allocates none.
  const args = ['-G', '-T', ...sshConfig, ...(remote.login ? ['-l', remote.login] : []), '--', remote.node];
  return new Promise((resolve, reject) => {
    const child = spawn('ssh', args, { stdio: ['ignore', 'pipe', 'pipe'], env });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => {
      out += s;
    });
    child.stderr.setEncoding('utf8').on('data', (s: string) => {
      err += s;
    });
    child.on('error', (e) => reject(sshMissing('ssh', e)));
    child.on('close', (status) => {
      const why = err.trim().replace(/\s*\n\s*/g, '; ');
      if (status !== 0) {
        reject(
          usage(
            `ssh cannot use these options: ${why || `ssh -G exited with ${status}`}`,
            'fix the -o or -F option',
          ),
        );
        return;
      }
      const user = /^user (.+)$/m.exec(out)?.[1];
      if (user) resolve(user);
      else
        reject(
          new GatehouseError('GH_ERR_INTERNAL', `ssh -G named no user for ${remote.node}`, {
            hint: 'install OpenSSH 6.8 or later (apt-get install openssh-client)',
          }),
        );
    });
  });
}

/**
 * The `LOGIN@NODE` targets an scp copies to or from, each login as ssh
 * resolves it, without repeats (`web1:` and `root@web1:` are one target when
 * the local user is root).
 */
export async function scpTargets(
  env: NodeJS.ProcessEnv,
  args: string[],
): Promise<{ login: string; node: string }[]> {
  const { remotes, sshConfig } = parseScpArgs(args);
  const found = new Map<string, { login: string; node: string }>();
  for (const r of remotes) {
    const login = await sshLogin(env, sshConfig, r);
    found.set(`${login}@${r.node}`, { login, node: r.node });
  }
  return [...found.values()];
}

/** `gatehouse scp ARGS...` on `cmd`. */
export function defineScp(cmd: Command, ctx: SshCtx): Command {
  return cmd
    .description('copy files to or from nodes through Gatehouse (runs OpenSSH scp with your certificate)')
    .argument('<args...>', 'scp arguments, e.g. file.txt root@web1:/tmp/')
    .option('--mfa-code <code>', MFA_CODE_HELP)
    .option('--mfa-mode <mode>', MFA_MODE_HELP)
    .option('--browser <command>', BROWSER_HELP)
    .allowUnknownOption(true)
    .addHelpText(
      'after',
      `
When a role asks for a check per session (require_session_mfa), the
certificate is bound to one LOGIN@NODE: the login is the one ssh will use,
as \`ssh -G\` resolves it (the first -o User=, else LOGIN@ in the operand,
else User in the -F file or ~/.ssh/config, else your local user name). NODE
is the name in the operand: a HostName alias in the ssh config is not
followed, and ssh is asked even when -S names another program. A copy
between two nodes gets no check.
${examples(
  '  $ gatehouse scp report.pdf root@web1:/tmp/\n  $ gatehouse scp -o User=root report.pdf web1:/tmp/\n  $ gatehouse scp -r root@web1:/var/log/app ./logs',
)}`,
    )
    .action(async (args: string[], o: { mfaCode?: string; mfaMode?: string; browser?: string }) => {
      const p = requireProfile(ctx.home);
      const targets = await scpTargets(ctx.env, args);
      // A copy with one node asks the proxy whether it needs a fresh check, as gatehouse ssh does.
      // A bound certificate opens one target: a copy between two nodes goes without, and is
      // refused for users who need the check (the refusal names gatehouse scp; decision 0037).
      const one = targets.length === 1 ? targets[0] : undefined;
      const mfa = one
        ? await sessionMfaCerts(
            ctx.home,
            p,
            { kind: 'node', node: one.node, login: one.login },
            { ssh_public_key: ctx.home.readKeys(p).sshPub.trim() },
            mfaSource(o, ctx.env),
            `${one.login}@${one.node}`,
          )
        : undefined;
      const copy = async (certFile?: string) => {
        ctx.exitCode = await run(ctx, 'scp', [...sshOptions(ctx, certFile), ...args]);
      };
      if (mfa?.ssh_cert) await withCertFile(mfa.ssh_cert, 'mfa-cert.pub', copy);
      else await copy();
    });
}

/** `gatehouse proxy ssh HOST[:PORT]` on `cmd` (the `ssh` subcommand of `proxy`). */
export function defineProxySsh(cmd: Command, ctx: SshCtx): Command {
  return cmd
    .description('ProxyCommand for OpenSSH: SSH inside TLS to the proxy with your certificate (stdin/stdout)')
    .argument('<host[:port]>', 'the node, as OpenSSH passes %h:%p')
    .addHelpText('after', examples('  $ ssh -o "ProxyCommand=gatehouse proxy ssh %h:%p" root@web1'))
    .action(async (hostPort: string) => {
      const m = /^(?:\[([^\]]+)\]|([^:]+))(?::(\d+))?$/.exec(hostPort);
      if (!m) throw usage(`"${hostPort}" is not HOST[:PORT]`, 'OpenSSH passes %h:%p');
      const host = (m[1] ?? m[2])!;
      const port = m[3] ? Number(m[3]) : 22;
      await proxySsh(ctx, host, port);
    });
}

/**
 * `gatehouse proxy ssh`: TLS to the proxy (ALPN gatehouse-ssh, the login's
 * client certificate), one line naming the node, then stdin/stdout carry the
 * SSH connection, which the gateway terminates as the node. A refusal before
 * that is printed on stderr (OpenSSH shows a ProxyCommand's stderr).
 */
async function proxySsh(ctx: SshCtx, host: string, port: number): Promise<void> {
  const p = requireProfile(ctx.home);
  const keys = ctx.home.readKeys(p);
  const target = parseHostPort(p.proxy);
  const sock = tls.connect({
    host: target.host,
    port: target.port,
    ...(net.isIP(target.host) ? {} : { servername: target.host }),
    ca: splitPems(keys.cas),
    cert: keys.tlsCert,
    key: keys.tlsKey,
    ALPNProtocols: ['gatehouse-ssh'],
    ciphers: TLS_CIPHERS,
  });
  await new Promise<void>((resolve, reject) => {
    sock.once('secureConnect', resolve);
    sock.once('error', (err) =>
      reject(
        new GatehouseError(
          'GH_ERR_UPSTREAM_UNAVAILABLE',
          `cannot reach the proxy ${p.proxy}: ${err.message}`,
          {
            hint: 'check the proxy address (gatehouse status) and that it is running',
            cause: err,
          },
        ),
      ),
    );
  });
  if (sock.alpnProtocol !== 'gatehouse-ssh') {
    sock.destroy();
    throw new GatehouseError('GH_ERR_UPSTREAM_UNAVAILABLE', `the proxy ${p.proxy} does not serve SSH`, {
      hint: 'the gateway runs without the ssh adapter',
    });
  }
  sock.write(encodeTargetRequest({ host, port }));
  const parser = new TargetReplyParser();
  const rest = await new Promise<Buffer>((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      let got: ReturnType<TargetReplyParser['push']>;
      try {
        got = parser.push(chunk);
      } catch (err) {
        sock.off('data', onData);
        reject(err);
        return;
      }
      if (!got) return;
      sock.off('data', onData);
      sock.pause();
      if (got.reply.ok) resolve(got.rest);
      else reject(new GatehouseError('GH_ERR_ACCESS_DENIED', got.reply.error.replace(/^Gatehouse: /, '')));
    };
    sock.on('data', onData);
    sock.once('end', () =>
      reject(new GatehouseError('GH_ERR_UPSTREAM_UNAVAILABLE', 'the proxy closed the connection')),
    );
  });
  if (rest.length) process.stdout.write(rest);
  await new Promise<void>((resolve) => {
    process.stdin.pipe(sock);
    sock.pipe(process.stdout);
    sock.resume();
    sock.on('close', () => resolve());
    sock.on('error', () => resolve());
    process.stdin.on('end', () => sock.end());
  });
  process.stdin.unpipe(sock);
  process.stdin.destroy();
}
