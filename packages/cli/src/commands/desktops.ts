import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { startLocalFront } from '@gatehouse/adapter-rdp';
import type { AddDesktopRequest, DesktopView } from '@gatehouse/core';
import type { Command } from 'commander';
import { createWebSocketStream } from 'ws';
import { type Ctx, profileClient, withAdmin } from '../context.js';
import { json, table } from '../output.js';
import {
  BROWSER_HELP,
  MFA_CODE_HELP,
  MFA_MODE_HELP,
  type MfaCodeSource,
  mfaSource,
  sessionMfaCerts,
} from '../session-mfa.js';
import { currentProfile } from './db.js';
import { labelsOf } from './ssh.js';
import { examples, usage } from './usage.js';

async function readText(file: string, what: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    throw usage(`cannot read ${what} ${file}: ${(err as Error).message}`, 'check the path');
  }
}

function desktopRow(d: DesktopView): string[] {
  return [
    d.name,
    d.addr,
    Object.entries(d.labels)
      .map(([k, v]) => `${k}=${v}`)
      .join(','),
    d.tls_verify,
    (d.allowed?.logins ?? d.logins).join(','),
  ];
}

export function registerDesktops(program: Command, ctx: Ctx): void {
  const desktops = program.command('desktops').description('RDP desktops behind Gatehouse');
  registerDesktopConnect(desktops, ctx);
  desktops
    .command('add')
    .description('register an RDP desktop (the gateway logs in with the credential you store)')
    .argument('<name>', 'desktop name users open (a DNS label)')
    .requiredOption('--addr <host:port>', "the desktop's RDP address, as the gateway reaches it")
    .option('--label <k=v...>', 'labels roles match on (repeatable)')
    .option('--ca-file <file>', "PEM of the CA that signs the desktop's TLS certificate")
    .option('--fingerprint <sha256>', "pin the desktop's TLS certificate by its SHA-256 fingerprint")
    .option('--server-name <name>', 'name to check in the certificate (default: the host of --addr)')
    .option('--insecure-skip-verify', 'accept any TLS certificate (test desktops only; audited)')
    .option('--login <name>', 'Windows login the gateway logs in as')
    .option('--password-file <file>', 'file with that login password (first line); stored sealed')
    .option('--domain <domain>', 'Windows domain of the login')
    .option('--description <text>', 'free text')
    .addHelpText(
      'after',
      examples(
        '  $ gatehouse desktops add win1 --addr 10.0.0.5:3389 --label env=prod \\\n' +
          '      --fingerprint 3F:...:A1 --login Administrator --password-file ./win1.pw',
      ),
    )
    .action(async function (
      this: Command,
      name: string,
      o: {
        addr: string;
        label?: string[];
        caFile?: string;
        fingerprint?: string;
        serverName?: string;
        insecureSkipVerify?: boolean;
        login?: string;
        passwordFile?: string;
        domain?: string;
        description?: string;
      },
    ) {
      if ((o.login === undefined) !== (o.passwordFile === undefined)) {
        throw usage(
          '--login and --password-file go together',
          'give both, or neither (the desktop then asks for a login itself)',
        );
      }
      const req: AddDesktopRequest = {
        name,
        addr: o.addr,
        labels: labelsOf(o.label),
        ...(o.caFile ? { ca_pem: await readText(o.caFile, 'CA file') } : {}),
        ...(o.fingerprint ? { tls_fingerprint: o.fingerprint } : {}),
        ...(o.serverName ? { server_name: o.serverName } : {}),
        ...(o.insecureSkipVerify ? { insecure_skip_verify: true } : {}),
        ...(o.login && o.passwordFile
          ? {
              credentials: [
                {
                  login: o.login,
                  password: (await readText(o.passwordFile, 'password file')).split(/\r?\n/)[0] ?? '',
                  ...(o.domain ? { domain: o.domain } : {}),
                },
              ],
            }
          : {}),
        ...(o.description ? { description: o.description } : {}),
      };
      const view = await withAdmin(this, ctx, (t) => t.api.addDesktop(req));
      ctx.out(`Desktop ${view.name} added (${view.addr}).\nOpen it from the Resources page of the web UI.\n`);
    });
  desktops
    .command('rm')
    .description('remove a desktop registered with desktops add')
    .argument('<name>')
    .action(async function (this: Command, name: string) {
      await withAdmin(this, ctx, (t) => t.api.removeDesktop(name));
      ctx.out(`Desktop ${name} removed.\n`);
    });
  desktops
    .command('ls')
    .description('list the desktops you may reach, with their labels and Windows logins')
    .option('--label <k=v...>', 'only desktops with these labels (repeatable)')
    .option('--json', 'JSON output')
    .action(async function (this: Command, o: { label?: string[]; json?: boolean }) {
      const want = labelsOf(o.label);
      const all = await withAdmin(this, ctx, (t) => t.api.listDesktops());
      const shown = all.filter((d) => Object.entries(want).every(([k, v]) => d.labels[k] === v));
      if (o.json) {
        ctx.out(json(shown));
        return;
      }
      if (shown.length === 0) {
        ctx.out(
          'No desktops you may reach. Ask an admin for a role with desktop_labels, or add desktops with gatehouse desktops add.\n',
        );
        return;
      }
      ctx.out(table(['DESKTOP', 'ADDRESS', 'LABELS', 'TLS', 'LOGINS'], shown.map(desktopRow)));
    });
}

const XFREERDP = '/usr/bin/xfreerdp';

/**
 * `gatehouse desktops connect NAME --login L`: a local port for a native
 * RDP client, speaking RDCleanPath to the gateway with the profile's client
 * certificate like the browser does with its cookie. The gateway logs in
 * with the Windows credential it holds: the client is given no password.
 */
export function registerDesktopConnect(desktops: Command, ctx: Ctx): void {
  desktops
    .command('connect')
    .description('open a desktop in a native RDP client (xfreerdp), or print a local address for mstsc')
    .argument('<name>', 'desktop name (gatehouse desktops ls)')
    .requiredOption('--login <login>', 'Windows login (one your roles allow; the gateway holds its password)')
    .option('--port <port>', 'local port for the RDP client (default: a free one)', (v) => Number(v))
    .option('--no-launch', 'do not start xfreerdp; print the address and wait (Ctrl+C ends)')
    .option('--mfa-code <code>', `${MFA_CODE_HELP}; each new RDP connection after the first asks again`)
    .option('--mfa-mode <mode>', MFA_MODE_HELP)
    .option('--browser <command>', BROWSER_HELP)
    .addHelpText('after', examples('  $ gatehouse desktops connect win1 --login Administrator'))
    .action(
      async (
        name: string,
        o: {
          login: string;
          port?: number;
          launch: boolean;
          mfaCode?: string;
          mfaMode?: string;
          browser?: string;
        },
      ) => {
        const profile = currentProfile(ctx);
        const api = profileClient(ctx, profile);
        const keys = ctx.home.readKeys(profile);
        // With require_session_mfa every desktop connection is a new session: each asks for a
        // check (the code given here pays for the first) and its token mints that one desktop token.
        const source = mfaSource(o, ctx.env);
        const checked = (src: MfaCodeSource) =>
          sessionMfaCerts(
            ctx.home,
            profile,
            { kind: 'desktop', desktop: name, login: o.login },
            {},
            src,
            `desktop ${name} as ${o.login}`,
          ).then((r) => r?.mfa_token);
        // Authorize now, so a refusal is printed before any client starts.
        const first = await api.desktopToken(name, o.login, await checked(source));
        let pending: string | undefined = first.token;
        const front = await startLocalFront({
          desktop: name,
          token: async () => {
            // The code given on the command line paid for the first connection: later ones ask.
            const later = { mfaMode: source.mfaMode, browser: source.browser };
            const t = pending ?? (await api.desktopToken(name, o.login, await checked(later))).token;
            pending = undefined;
            return t;
          },
          openSocket: () =>
            new Promise((resolve, reject) => {
              const ws = api.openDesktopSocket();
              ws.once('open', () => resolve(createWebSocketStream(ws)));
              ws.once('error', reject);
            }),
          // The native client talks TLS to this local port only; it sees the user's own certificate.
          cert: keys.tlsCert,
          key: keys.tlsKey,
          ...(o.port ? { port: o.port } : {}),
          log: (msg, err) => ctx.err(`${msg}${err ? `: ${(err as Error).message}` : ''}\n`),
        });
        const stop = async () => {
          await front.close();
          api.close();
        };
        if (o.launch && existsSync(XFREERDP)) {
          ctx.err(`Desktop ${name} on ${front.address}; starting xfreerdp as ${o.login}.\n`);
          const child = spawn(
            XFREERDP,
            [`/v:${front.address}`, `/u:${o.login}`, '/p:', '/cert:ignore', '/sec:tls'],
            {
              stdio: 'inherit',
            },
          );
          // Ending this command ends the client too (no xfreerdp left behind on its display).
          const forward = (sig: NodeJS.Signals) => child.kill(sig);
          process.once('SIGINT', forward);
          process.once('SIGTERM', forward);
          const code = await new Promise<number>((resolve) => child.once('exit', (c) => resolve(c ?? 1)));
          process.off('SIGINT', forward);
          process.off('SIGTERM', forward);
          await stop();
          process.exitCode = code;
          return;
        }
        ctx.out(
          `Desktop ${name} is at ${front.address}: point your RDP client there as ${o.login} (no password needed;\n` +
            'accept the certificate, it is your own Gatehouse certificate). Ctrl+C ends.\n',
        );
        await new Promise<void>((resolve) => process.once('SIGINT', () => resolve()));
        await stop();
      },
    );
}
