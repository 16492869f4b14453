import { startJoinedNode } from '@gatehouse/adapter-ssh/node';
import { check } from '@gatehouse/bpf';
import { type LogFn, systemClock } from '@gatehouse/core';
import type { Command } from 'commander';
import { durationFlag, relativeTime } from '../args.js';
import { type Ctx, type GlobalOpts, openAdmin } from '../context.js';
import { json } from '../output.js';
import { flag, usage } from './usage.js';

function parseLabels(values: string[] | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const v of values ?? []) {
    const i = v.indexOf('=');
    if (i <= 0) throw usage(`label "${v}" is not key=value`, 'e.g. --label env=dev');
    out[v.slice(0, i)] = v.slice(i + 1);
  }
  return out;
}

const collect = (v: string, prev: string[] = []) => [...prev, v];

/** The node service's errors, for the host's journal (debug lines stay quiet). */
function stderrLog(ctx: Ctx): LogFn {
  return (level, msg, err) => {
    if (level !== 'error') return;
    const why = err instanceof Error ? `: ${err.message}` : '';
    ctx.err(`${msg}${why}\n`);
  };
}

/** Where `node start` spools audit events the gateway has not taken yet. */
export const DEFAULT_NODE_SPOOL_DIR = '/var/lib/gatehouse/node-audit';

export function registerNodesJoin(program: Command, ctx: Ctx): void {
  const tokens = program.command('tokens').description('one-time join tokens');
  tokens
    .command('add')
    .description('create a one-time token a node service joins the cluster with')
    .requiredOption('--type <type>', 'token type (node)')
    .option('--ttl <duration>', 'how long the token stays valid (default 30m)', flag(durationFlag('--ttl')))
    .option('--json', 'print JSON')
    .addHelpText('after', '\nExamples:\n  $ gatehouse tokens add --type node --ttl 1h')
    .action(async (o: { type: string; ttl?: string; json?: boolean }, cmd: Command) => {
      if (o.type !== 'node') throw usage(`unknown token type "${o.type}"`, 'use --type node');
      const t = await openAdmin(cmd.optsWithGlobals<GlobalOpts>(), ctx);
      try {
        const token = await t.api.createJoinToken({ kind: 'node', ...(o.ttl ? { ttl: o.ttl } : {}) });
        if (o.json) {
          ctx.out(json(token));
          return;
        }
        const proxy = t.proxy.endsWith(':0') ? 'HOST:PORT' : t.proxy;
        ctx.out(
          `Node join token (single use, expires ${token.expires}, ${relativeTime(new Date(token.expires), ctx.now())}):\n\n` +
            `  ${token.token}\n\nOn the node, run:\n\n` +
            `  gatehouse node start --proxy ${proxy} --ca-pin ${t.pin} --token ${token.token} --name NAME [--label k=v]\n`,
        );
      } finally {
        await t.close();
      }
    });

  const node = program.command('node').description('run the Gatehouse node service on this machine');
  node
    .command('check')
    .description(
      'check what this machine supports for enhanced recording and restrict_network (eBPF); exits 1 when they cannot work',
    )
    .option('--json', 'print JSON')
    .addHelpText('after', '\nExamples:\n  $ sudo gatehouse node check\n  $ gatehouse node check --json')
    .action(async (o: { json?: boolean }) => {
      const report = await check();
      if (o.json) {
        ctx.out(json(report));
      } else {
        for (const i of report.items) ctx.out(`${i.ok ? 'ok  ' : 'FAIL'}  ${i.name.padEnd(9)} ${i.detail}\n`);
        ctx.out(
          report.ok
            ? '\nThis node can enforce restrict_network and record enhanced events.\n'
            : '\nThis node cannot enforce restrict_network or record enhanced events: sessions whose roles ask for them are refused.\n',
        );
      }
      if (!report.ok) ctx.exitCode = 1;
    });
  node
    .command('start')
    .description('join the cluster with a token and serve SSH sessions for this machine (foreground)')
    .requiredOption('--proxy <host:port>', 'the Gatehouse proxy')
    .requiredOption('--token <token>', 'join token from `gatehouse tokens add --type node`')
    .requiredOption('--ca-pin <sha256:...>', 'pin of the cluster CA (printed by gatehouse start)')
    .requiredOption('--name <name>', 'node name users connect to (a DNS label)')
    .option('--label <k=v>', 'node label (repeatable)', collect)
    .option('--listen <host:port>', 'where the node service listens', '0.0.0.0:3022')
    .option('--advertise <host:port>', 'address the proxy dials, when not the listen address')
    .option(
      '--spool-dir <dir>',
      "where audit events wait while the gateway is unreachable (they are sent to the gateway's audit log)",
      DEFAULT_NODE_SPOOL_DIR,
    )
    .addHelpText(
      'after',
      '\nExamples:\n  $ gatehouse node start --proxy gw.example.com:3080 --ca-pin sha256:... --token T --name web1 --label env=dev',
    )
    .action(
      async (o: {
        proxy: string;
        token: string;
        caPin: string;
        name: string;
        label?: string[];
        listen: string;
        advertise?: string;
        spoolDir: string;
      }) => {
        let signalled: (s: string) => void = () => {};
        const stopped = new Promise<string>((resolve) => {
          signalled = resolve;
        });
        const onInt = () => signalled('SIGINT');
        const onTerm = () => signalled('SIGTERM');
        process.once('SIGINT', onInt);
        process.once('SIGTERM', onTerm);
        try {
          const n = await startJoinedNode({
            proxy: o.proxy,
            caPin: o.caPin,
            token: o.token,
            name: o.name,
            labels: parseLabels(o.label),
            listen: o.listen,
            ...(o.advertise ? { advertise: o.advertise } : {}),
            clock: systemClock,
            // To the gateway's audit log, spooled here while it cannot be reached; stderr keeps a copy.
            auditSpoolDir: o.spoolDir,
            auditCopy: (line) => ctx.err(`${line}\n`),
            log: stderrLog(ctx),
          });
          try {
            ctx.out(
              `Node ${n.join.node.name} joined cluster ${n.join.cluster_name}\n` +
                `  listening on: ${n.address}\n` +
                `  registered:   ${n.join.node.addr}\n` +
                `  labels:       ${
                  Object.entries(n.join.node.labels)
                    .map(([k, v]) => `${k}=${v}`)
                    .join(',') || '-'
                }\n`,
            );
            const signal = await stopped;
            ctx.err(`received ${signal}, shutting down\n`);
          } finally {
            await n.close();
          }
        } finally {
          process.off('SIGINT', onInt);
          process.off('SIGTERM', onTerm);
        }
      },
    );
}
