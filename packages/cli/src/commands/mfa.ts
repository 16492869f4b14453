import { GatehouseError, type MfaDeviceInfo } from '@gatehouse/core';
import type { Command } from 'commander';
import QRCode from 'qrcode';
import { type Ctx, profileClient } from '../context.js';
import { json, table } from '../output.js';
import { ask, readSecretFromStdin } from '../prompt.js';
import { examples, usage } from './usage.js';

/** The current login's client: MFA devices are always the caller's own. */
function client(ctx: Ctx) {
  const profile = ctx.home.current();
  if (!profile) {
    throw new GatehouseError('GH_ERR_UNAUTHENTICATED', 'not logged in', {
      hint: 'log in first: gatehouse login --proxy HOST:PORT --user NAME',
    });
  }
  return { api: profileClient(ctx, profile), proxy: profile.proxy };
}

function kind(d: MfaDeviceInfo): string {
  if (d.kind === 'totp') return 'totp';
  return d.passkey ? 'passkey' : 'security key';
}

export function registerMfa(program: Command, ctx: Ctx): void {
  const mfa = program
    .command('mfa')
    .description('your second-factor devices: authenticator apps (TOTP), security keys and passkeys');
  mfa
    .command('ls')
    .description('list your second-factor devices')
    .option('--json', 'print JSON')
    .addHelpText('after', examples('  $ gatehouse mfa ls\n  $ gatehouse mfa ls --json | jq -r ".[].name"'))
    .action(async (o: { json?: boolean }) => {
      const { api } = client(ctx);
      try {
        const list = await api.mfaDevices();
        if (o.json) {
          ctx.out(json(list));
          return;
        }
        ctx.out(
          table(
            ['NAME', 'TYPE', 'ADDED', 'LAST USED', 'ID'],
            list.map((d) => [d.name, kind(d), d.added_at, d.last_used_at ?? '-', d.id]),
          ),
        );
      } finally {
        api.close();
      }
    });
  mfa
    .command('add')
    .description('add an authenticator app (security keys and passkeys are added in the web UI)')
    .requiredOption('--name <name>', 'what to call the device, e.g. "work phone"')
    .option('--type <type>', 'totp (security keys: webauthn, in the web UI)', 'totp')
    .option('--code-stdin', 'read the confirmation code from the first line of stdin')
    .option('--json', 'print JSON')
    .addHelpText('after', examples('  $ gatehouse mfa add --name "work phone"'))
    .action(async (o: { name: string; type: string; codeStdin?: boolean; json?: boolean }) => {
      if (o.type === 'webauthn') {
        const { proxy } = client(ctx);
        throw usage(
          'security keys and passkeys are added in the web UI (the browser talks to the key)',
          `open https://${proxy}/web/account and choose "Add a security key or passkey"`,
        );
      }
      if (o.type !== 'totp') throw usage(`unknown device type "${o.type}"`, 'use --type totp');
      const { api } = client(ctx);
      try {
        const begun = await api.mfaTotpBegin();
        const qr = await QRCode.toString(begun.uri, { type: 'terminal', small: true });
        // On stderr: stdout stays the result (JSON with --json), and the secret is not in a pipe's output.
        ctx.err(
          `Scan this code with your authenticator app:\n\n${qr}\n` +
            `or enter the secret by hand: ${begun.secret}\nURI: ${begun.uri}\n\n`,
        );
        const code = o.codeStdin
          ? await readSecretFromStdin('one-time code')
          : await ask('Code from the app: ', { hidden: false, what: 'one-time code', flag: '--code-stdin' });
        const d = await api.mfaTotpAdd({ pending_id: begun.pending_id, name: o.name, code: code.trim() });
        ctx.out(o.json ? json(d) : `Added ${kind(d)} device "${d.name}" (${d.id}).\n`);
      } finally {
        api.close();
      }
    });
  mfa
    .command('rm')
    .description('remove one of your devices (not the last one while the cluster requires a second factor)')
    .argument('<device>', 'the device id or name (gatehouse mfa ls)')
    .option('--json', 'print JSON')
    .addHelpText('after', examples('  $ gatehouse mfa rm "old phone"'))
    .action(async (device: string, o: { json?: boolean }) => {
      const { api } = client(ctx);
      try {
        const d = await api.mfaRemove(device);
        ctx.out(o.json ? json(d) : `Removed ${kind(d)} device "${d.name}".\n`);
      } finally {
        api.close();
      }
    });
}
