import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { encodeTargetRequest, TargetReplyParser } from '@gatehouse/adapter-ssh';
import { GatehouseError, type NodeView, parseHostPort, type SessionView } from '@gatehouse/core';
import type { Command } from 'commander';
import { parseTraits } from '../args.js';
import { type AdminTarget, type Ctx, type GlobalOpts, openAdmin } from '../context.js';
import { json, table } from '../output.js';
import { splitPems } from '../profile.js';
import { currentProfile } from './db.js';
import { proxyGroup } from './proxy.js';
import { asUsage, usage } from './usage.js';

const examples = (text: string) => `\nExamples:\n${text}`;

async function withAdmin<T>(cmd: Command, ctx: Ctx, fn: (t: AdminTarget) => Promise<T>): Promise<T> {
  const target = await openAdmin(cmd.optsWithGlobals<GlobalOpts>(), ctx);
  try {
    return await fn(target);
  } finally {
    await target.close();
  }
}

function labelsOf(values: string[] | undefined): Record<string, string> {
  return Object.fromEntries(
    Object.entries(asUsage(() => parseTraits(values))).map(([k, v]) => [k, v.join(',')]),
  );
}

/** The command OpenSSH runs as ProxyCommand: this very CLI, with the same node binary. */
function proxyCommand(): string {
  const q = (s: string) => (/^[A-Za-z0-9_./:@=+-]+$/.test(s) ? s : `"${s.replace(/(["\\$`])/g, '\\$1')}"`);
  return `${q(process.execPath)} ${q(process.argv[1] ?? 'gatehouse')} proxy ssh %h:%p`;
}

/**
 * OpenSSH options that make plain `ssh`/`scp` go through Gatehouse with the
 * current login: the profile's key and certificate, the known_hosts file with
 * the cluster's @cert-authority line, and `gatehouse proxy ssh` as the
 * ProxyCommand (SSH inside TLS with the login's client certificate).
 */
export function sshOptions(ctx: Ctx): string[] {
  const p = currentProfile(ctx);
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
    `CertificateFile=${keys.sshCert}`,
    '-o',
    'IdentitiesOnly=yes',
    '-o',
    `UserKnownHostsFile=${ctx.home.knownHostsPath}`,
    '-o',
    'StrictHostKeyChecking=yes',
    '-o',
    `ProxyCommand=${proxyCommand()}`,
  ];
}

function run(ctx: Ctx, program: string, args: string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(program, args, { stdio: 'inherit', env: ctx.env });
    child.on('error', (err) =>
      reject(
        new GatehouseError('GH_ERR_NOT_FOUND', `cannot run ${program}: ${err.message}`, {
          hint: 'install the OpenSSH client (apt-get install openssh-client)',
          cause: err,
        }),
      ),
    );
    child.on('close', (status) => resolve(status ?? 255));
  });
}

const collect = (v: string, prev: string[] = []) => [...prev, v];

export function registerSsh(program: Command, ctx: Ctx): void {
  program
    .command('ssh')
    .description('open an SSH session to a node through Gatehouse (runs OpenSSH with your certificate)')
    .argument('<target>', 'LOGIN@NODE')
    .argument('[command...]', 'command to run instead of a shell')
    .option('-L <spec>', 'local port forward, as ssh -L (repeatable)', collect)
    .option('-R <spec>', 'remote port forward, as ssh -R (repeatable)', collect)
    .option('-D <port>', 'SOCKS proxy on a local port, as ssh -D')
    .option('-t', 'force a terminal, as ssh -t')
    .option('-N', 'no command (forwarding only), as ssh -N')
    .option('-p <port>', "the node's SSH port as registered (default 22)")
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
        o: { L?: string[]; R?: string[]; D?: string; t?: boolean; N?: boolean; p?: string },
      ) => {
        if (!/^[^@\s]+@[^@\s]+$/.test(target))
          throw usage(`"${target}" is not LOGIN@NODE`, 'e.g. gatehouse ssh root@web1');
        const args = [...sshOptions(ctx)];
        for (const l of o.L ?? []) args.push('-L', l);
        for (const r of o.R ?? []) args.push('-R', r);
        if (o.D) args.push('-D', o.D);
        if (o.t) args.push('-t');
        if (o.N) args.push('-N');
        if (o.p) args.push('-p', o.p);
        args.push(target, ...command);
        // A wrapper exits with its program's status (`ssh host false` exits 1).
        ctx.exitCode = await run(ctx, 'ssh', args);
      },
    );

  program
    .command('scp')
    .description('copy files to or from nodes through Gatehouse (runs OpenSSH scp with your certificate)')
    .argument('<args...>', 'scp arguments, e.g. file.txt root@web1:/tmp/')
    .allowUnknownOption(true)
    .addHelpText(
      'after',
      examples(
        '  $ gatehouse scp report.pdf root@web1:/tmp/\n  $ gatehouse scp -r root@web1:/var/log/app ./logs',
      ),
    )
    .action(async (args: string[]) => {
      ctx.exitCode = await run(ctx, 'scp', [...sshOptions(ctx), ...args]);
    });

  const config =
    program.commands.find((c) => c.name() === 'config') ??
    program.command('config').description('print client configuration for other tools');
  config
    .command('ssh')
    .description('print an ssh_config block so plain ssh/scp/sftp reach nodes through Gatehouse')
    .addHelpText('after', examples('  $ gatehouse config ssh >> ~/.ssh/config\n  $ ssh root@web1.CLUSTER'))
    .action(() => {
      const p = currentProfile(ctx);
      const keys = ctx.home.keyPaths(p.proxy, p.user);
      const { host, port } = parseHostPort(p.proxy);
      ctx.out(
        [
          `# Gatehouse cluster ${p.cluster} (proxy ${p.proxy}), written by gatehouse config ssh`,
          `Host *.${p.cluster} gatehouse-${p.cluster}`,
          `  IdentityFile ${keys.sshKey}`,
          `  CertificateFile ${keys.sshCert}`,
          '  IdentitiesOnly yes',
          `  UserKnownHostsFile ${ctx.home.knownHostsPath}`,
          '  StrictHostKeyChecking yes',
          `Host *.${p.cluster}`,
          `  ProxyCommand ${proxyCommand()}`,
          `# For ssh -J gatehouse-${p.cluster} LOGIN@NODE:`,
          `Host gatehouse-${p.cluster}`,
          `  HostName ${host}`,
          `  Port ${port}`,
          `  User ${p.user}`,
          '',
        ].join('\n'),
      );
    });

  proxyGroup(program)
    .command('ssh')
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

  const nodes = program.command('nodes').description('SSH nodes behind Gatehouse');
  nodes
    .command('add')
    .description('register an SSH node (an sshd trusting the user CA, with a host certificate)')
    .argument('<name>', 'node name users connect to (a DNS label)')
    .requiredOption('--addr <host:port>', "the node's SSH address, as the gateway reaches it")
    .option('--label <k=v...>', 'labels roles match on (repeatable)')
    .option('--description <text>', 'free text')
    .addHelpText('after', examples('  $ gatehouse nodes add web1 --addr 10.0.0.5:22 --label env=prod'))
    .action(async function (
      this: Command,
      name: string,
      o: { addr: string; label?: string[]; description?: string },
    ) {
      const labels = labelsOf(o.label);
      const view = await withAdmin(this, ctx, (t) =>
        t.api.addNode({
          name,
          addr: o.addr,
          labels,
          ...(o.description ? { description: o.description } : {}),
        }),
      );
      ctx.out(`Node ${view.name} added (${view.addr}).\nConnect with: gatehouse ssh LOGIN@${view.name}\n`);
    });
  nodes
    .command('rm')
    .description('remove a node registered with nodes add')
    .argument('<name>')
    .action(async function (this: Command, name: string) {
      await withAdmin(this, ctx, (t) => t.api.removeNode(name));
      ctx.out(`Node ${name} removed.\n`);
    });

  program
    .command('ls')
    .description('list the SSH nodes you may reach, with their labels')
    .option('--label <k=v...>', 'only nodes with these labels (repeatable)')
    .option('--json', 'JSON output')
    .action(async function (this: Command, o: { label?: string[]; json?: boolean }) {
      const want = labelsOf(o.label);
      const all = await withAdmin(this, ctx, (t) => t.api.listNodes());
      const shown = all.filter((n) => Object.entries(want).every(([k, v]) => n.labels[k] === v));
      if (o.json) {
        ctx.out(json(shown));
        return;
      }
      if (shown.length === 0) {
        ctx.out(
          'No nodes you may reach. Ask an admin for a role with node_labels, or add nodes with gatehouse nodes add.\n',
        );
        return;
      }
      ctx.out(table(['NODE', 'ADDRESS', 'LABELS', 'LOGINS'], shown.map(nodeRow)));
    });

  const sessions = program.command('sessions').description('live sessions on the gateway');
  sessions
    .command('ls')
    .description('list live sessions (yours, or all with session:list)')
    .option('--json', 'JSON output')
    .addHelpText('after', examples('  $ gatehouse sessions ls\n  $ gatehouse join SESSION_ID'))
    .action(async function (this: Command, o: { json?: boolean }) {
      const list = await withAdmin(this, ctx, (t) => t.api.listSessions());
      if (o.json) {
        ctx.out(json(list));
        return;
      }
      if (list.length === 0) {
        ctx.out('No live sessions.\n');
        return;
      }
      ctx.out(table(['ID', 'KIND', 'USER', 'TARGET', 'STARTED', 'FROM'], list.map(sessionRow)));
    });
  sessions
    .command('kill')
    .description('end a live session now (its user sees why; the end is audited)')
    .argument('<id>', 'a session id from gatehouse sessions ls')
    .action(async function (this: Command, id: string) {
      await withAdmin(this, ctx, (t) => t.api.killSession(id));
      ctx.out(`Session ${id} ended.\n`);
    });
}

function nodeRow(n: NodeView): string[] {
  return [
    n.name,
    n.addr,
    Object.entries(n.labels)
      .map(([k, v]) => `${k}=${v}`)
      .join(','),
    n.allowed ? n.allowed.logins.join(',') : '*',
  ];
}

function sessionRow(s: SessionView): string[] {
  return [s.id, s.kind, s.user, s.login ? `${s.login}@${s.server}` : s.server, s.started, s.remoteAddr ?? ''];
}

/**
 * `gatehouse proxy ssh`: TLS to the proxy (ALPN gatehouse-ssh, the login's
 * client certificate), one line naming the node, then stdin/stdout carry the
 * SSH connection, which the gateway terminates as the node. A refusal before
 * that is printed on stderr (OpenSSH shows a ProxyCommand's stderr).
 */
async function proxySsh(ctx: Ctx, host: string, port: number): Promise<void> {
  const p = currentProfile(ctx);
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
