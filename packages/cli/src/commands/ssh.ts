import { readFileSync } from 'node:fs';
import { type NodeView, parseHostPort, type SessionView } from '@gatehouse/core';
import type { Command } from 'commander';
import { parseTraits } from '../args.js';
import { type Ctx, withAdmin } from '../context.js';
import { json, table } from '../output.js';
import { currentProfile } from './db.js';
import { defineNodesConfigure } from './nodes-configure.js';
import { proxyGroup } from './proxy.js';
import { AES_FIRST, cpuHasAes, defineProxySsh, defineScp, defineSsh, proxyCommand } from './ssh-client.js';
import { asUsage, examples, usage } from './usage.js';

/** --label k=v flags as a label map (shared by the resource verbs). */
export function labelsOf(values: string[] | undefined): Record<string, string> {
  return Object.fromEntries(
    Object.entries(asUsage(() => parseTraits(values))).map(([k, v]) => [k, v.join(',')]),
  );
}

export function registerSsh(program: Command, ctx: Ctx): void {
  defineSsh(program.command('ssh'), ctx);
  defineScp(program.command('scp'), ctx);

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
          ...(cpuHasAes() ? [`  ${AES_FIRST.replace('=', ' ')}`] : []),
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

  defineProxySsh(proxyGroup(program).command('ssh'), ctx);

  const nodes = program.command('nodes').description('SSH nodes behind Gatehouse');
  nodes
    .command('add')
    .description('register an SSH node (an sshd trusting the user CA, with a host certificate)')
    .argument('<name>', 'node name users connect to (a DNS label)')
    .requiredOption('--addr <host:port>', "the node's SSH address, as the gateway reaches it")
    .option('--label <k=v...>', 'labels roles match on (repeatable)')
    .option('--description <text>', 'free text')
    .option(
      '--host-ca-key <file>',
      "also trust this host CA's public key (.pub) for the node's host certificate (repeatable)",
      (v: string, prev: string[] = []) => [...prev, v],
    )
    .addHelpText(
      'after',
      examples(`  $ gatehouse nodes add web1 --addr 10.0.0.5:22 --label env=prod
  $ sudo gatehouse nodes configure web1 --apply    # then, on web1: its sshd trusts Gatehouse`),
    )
    .action(async function (
      this: Command,
      name: string,
      o: { addr: string; label?: string[]; description?: string; hostCaKey?: string[] },
    ) {
      const labels = labelsOf(o.label);
      const hostCaKeys = (o.hostCaKey ?? []).flatMap((f) => {
        let text: string;
        try {
          text = readFileSync(f, 'utf8');
        } catch (e) {
          throw usage(`cannot read ${f}: ${(e as Error).message}`, "pass the host CA's .pub file");
        }
        return text
          .split('\n')
          .map((l) => l.trim())
          .filter((l) => l !== '' && !l.startsWith('#'));
      });
      const view = await withAdmin(this, ctx, (t) =>
        t.api.addNode({
          name,
          addr: o.addr,
          labels,
          ...(hostCaKeys.length ? { host_ca_keys: hostCaKeys } : {}),
          ...(o.description ? { description: o.description } : {}),
        }),
      );
      ctx.out(
        `Node ${view.name} added (${view.addr}).\nConnect with: gatehouse ssh LOGIN@${view.name}\n` +
          `An OpenSSH server there trusts Gatehouse after: sudo gatehouse nodes configure ${view.name} --apply (on the node)\n`,
      );
    });
  nodes
    .command('rm')
    .description('remove a node registered with nodes add')
    .argument('<name>')
    .action(async function (this: Command, name: string) {
      await withAdmin(this, ctx, (t) => t.api.removeNode(name));
      ctx.out(`Node ${name} removed.\n`);
    });

  defineNodesConfigure(nodes, ctx);

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
    .description(
      'list live sessions of every kind: ssh, postgres, mysql, kube exec/attach/port-forward (yours, or all with session:list)',
    )
    .option('--json', 'JSON output')
    .addHelpText('after', examples('  $ gatehouse sessions ls\n  $ gatehouse join SESSION_ID'))
    .action(async function (this: Command, o: { json?: boolean }) {
      const { sessions: list, unreachable } = await withAdmin(this, ctx, (t) => t.api.listSessions());
      // A gateway that did not answer makes a partial listing, not a failure: said on stderr (also with
      // --json, whose stdout stays the array of sessions scripts read).
      for (const u of unreachable) {
        ctx.err(`warning: gateway ${u.gateway} did not answer; its sessions are missing: ${u.error}\n`);
      }
      if (o.json) {
        ctx.out(json(list));
        return;
      }
      if (list.length === 0) {
        ctx.out('No live sessions.\n');
        return;
      }
      ctx.out(table(['ID', 'KIND', 'USER', 'TARGET', 'STARTED', 'FROM', 'GATEWAY'], list.map(sessionRow)));
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
  return [
    s.id,
    s.protocol ?? s.kind,
    s.user,
    s.login ? `${s.login}@${s.server}` : s.server,
    s.started,
    s.remoteAddr ?? '',
    s.gateway ?? '',
  ];
}
