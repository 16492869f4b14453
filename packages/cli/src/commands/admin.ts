import { readFileSync } from 'node:fs';
import type { AuditEvent, VerifyChainResult } from '@gatehouse/audit';
import {
  AUDIT_PAGE_MAX,
  type AuditQuery,
  type CaExportFormat,
  type CaStatusView,
  GatehouseClient,
  GatehouseError,
  type LintMessage,
  ROTATION_PHASES,
  type TokenView,
  type UserView,
} from '@gatehouse/core';
import { type Command, Option } from 'commander';
import { stringify as toYaml } from 'yaml';
import {
  checkTimeRange,
  durationFlag,
  parsePositiveInt,
  parseTraits,
  relativeTime,
  splitList,
  timeFlag,
} from '../args.js';
import {
  type AdminTarget,
  acceptInviteCommand,
  type Ctx,
  type GlobalOpts,
  openAdmin,
  openLocalGateway,
  trustProxy,
  wantsLocal,
  withAdmin,
} from '../context.js';
import { writeFileAtomic } from '../db/files.js';
import { JsonListWriter, json, summarizeEvent, table } from '../output.js';
import { readSecretFromStdin } from '../prompt.js';
import { defineCaSign } from './nodes-configure.js';
import { asUsage, examples, flag, usage } from './usage.js';

function printToken(ctx: Ctx, t: AdminTarget, token: TokenView): void {
  const what = token.kind === 'invite' ? 'Invite' : 'Reset link';
  ctx.out(
    `${what} for ${token.user} (expires ${token.expires}, ${relativeTime(new Date(token.expires), ctx.now())}).\n` +
      `Give ${token.user} this command:\n\n  ${acceptInviteCommand(t.proxy, t.pin, token.token)}\n`,
  );
}

function caStatusText(c: CaStatusView): string {
  const lines = [`${c.type} CA: phase ${c.phase}${c.mode && c.phase !== 'standby' ? ` (${c.mode})` : ''}`];
  if (c.phase === 'standby' && c.last_result)
    lines.push(`  last rotation: ${c.last_result.replace('_', ' ')}`);
  if (c.next_phase && c.next_phase_at) lines.push(`  next: ${c.next_phase} at ${c.next_phase_at}`);
  for (const k of c.keys) {
    lines.push(`  ${k.role.padEnd(7)} ${k.id}  ${k.signing ? 'trusted, signs' : 'trusted'}`);
    lines.push(`          ssh  ${k.ssh_fingerprint}`);
    lines.push(`          x509 ${k.x509_fingerprint}`);
  }
  return `${lines.join('\n')}\n`;
}

/** What the operator does before the next phase (the README's CA rotation how-to has the whole story). */
function nextStep(c: CaStatusView): string {
  const trust: Record<string, string> = {
    user: 'nodes: gatehouse nodes configure NODE (TrustedUserCAKeys), or gatehouse ca export --format sshd',
    host: 'clients: gatehouse login again, and gatehouse config ssh for known_hosts',
    db: 'databases: gatehouse ca export --format postgres (ssl_ca_file), then reload them',
  };
  switch (c.phase) {
    case 'init':
      return `Both keys are trusted now. Give the new key to what trusts this CA outside Gatehouse (${trust[c.type]}), then: gatehouse ca rotate --type ${c.type} --phase update_clients`;
    case 'update_clients':
      return `New client certificates come from the new key; users get them at their next login. Then: gatehouse ca rotate --type ${c.type} --phase update_servers`;
    case 'update_servers':
      return `New server certificates come from the new key (agentless nodes: gatehouse nodes configure --renew; joined node services renew by themselves within 10 minutes). Then: gatehouse ca rotate --type ${c.type} --phase standby`;
    case 'rollback':
      return `The old key signs again; both are still trusted. Finish with: gatehouse ca rotate --type ${c.type} --phase standby`;
    case 'standby':
      return `Only one key is trusted now: remove the other from what trusted it outside Gatehouse (${trust[c.type]}).`;
    default:
      return '';
  }
}

function userStatus(u: UserView): string {
  if (u.locked) return 'locked';
  if (!u.hasPassword) return 'invited';
  return 'active';
}

function printUser(ctx: Ctx, u: UserView): void {
  const traits = Object.entries(u.traits).map(([k, v]) => `${k}=${v.join(',')}`);
  ctx.out(
    `name:      ${u.name}\n` +
      `roles:     ${u.roles.join(', ')}\n` +
      `traits:    ${traits.join(' ') || '-'}\n` +
      `status:    ${userStatus(u)}${u.lockedBy?.length ? ` (locks: ${u.lockedBy.join(', ')})` : ''}\n` +
      `password:  ${u.hasPassword ? 'set' : 'not set'}\n` +
      `totp:      ${u.hasTotp ? 'enrolled' : 'not enrolled'}\n` +
      `mfa:       ${u.mfaDevices} device${u.mfaDevices === 1 ? '' : 's'} (TOTP apps, security keys, passkeys)\n` +
      `created:   ${u.createdAt}\n` +
      `updated:   ${u.updatedAt}\n`,
  );
}

function lintLines(file: string, messages: readonly LintMessage[]): string {
  return messages
    .map(
      (m) =>
        `${file}:${m.line}:${m.column}: ${m.severity === 'warning' ? 'warning: ' : ''}${m.key}: ${m.message}` +
        // Suggestions are whole phrases from the linter ("did you mean `logins`?").
        (m.suggestion ? ` (${m.suggestion})` : '') +
        '\n',
    )
    .join('');
}

function readFileArg(file: string): string {
  try {
    return readFileSync(file === '-' ? 0 : file, 'utf8');
  } catch (cause) {
    throw new GatehouseError('GH_ERR_VALIDATION', `cannot read ${file}: ${(cause as Error).message}`, {
      hint: 'pass -f with the path of a role YAML file (or - for stdin)',
      cause,
    });
  }
}

/** A rejected role carries its lint messages; show them like `roles lint` does. */
async function withLintOutput<T>(ctx: Ctx, file: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    const msgs = (e as GatehouseError).details?.messages;
    if (e instanceof GatehouseError && e.code === 'GH_ERR_ROLE_INVALID' && Array.isArray(msgs)) {
      ctx.err(lintLines(file, msgs as LintMessage[]));
    }
    throw e;
  }
}

export function registerAdmin(program: Command, ctx: Ctx): void {
  // ----------------------------------------------------------------- users
  const users = program
    .command('users')
    .description('manage users (locally with --data-dir, or remotely as a logged-in admin)');

  users
    .command('add')
    .description('create a user and print their invite')
    .argument('<name>', 'user name')
    .requiredOption('--roles <roles>', 'comma-separated roles')
    .option('--logins <logins>', 'comma-separated unix logins (the logins trait)')
    .option('--traits <k=v1,v2...>', 'extra traits, e.g. db_users=reader,writer')
    .option('--password-stdin', 'set the password from the first line of stdin instead of sending an invite')
    .addHelpText(
      'after',
      examples(`  $ gatehouse users add alice --roles access --logins root,ubuntu
  $ gatehouse users add bob --roles dev --traits db_users=reader kube_groups=dev
  $ printf '%s' "$PW" | gatehouse --data-dir /var/lib/gatehouse users add ci --roles access --password-stdin`),
    )
    .action(
      async (
        name: string,
        o: { roles: string; logins?: string; traits?: string[]; passwordStdin?: boolean },
        cmd: Command,
      ) => {
        const traits = asUsage(() => parseTraits(o.traits));
        const logins = splitList(o.logins);
        if (logins.length) traits.logins = [...new Set([...(traits.logins ?? []), ...logins])];
        const roles = splitList(o.roles);
        if (roles.length === 0) throw usage('--roles needs at least one role', 'e.g. --roles access');
        const password = o.passwordStdin ? await readSecretFromStdin('password') : undefined;
        await withAdmin(cmd, ctx, async (t) => {
          const res = await t.api.createUser({ name, roles, traits, ...(password ? { password } : {}) });
          ctx.out(`User ${res.user.name} created with roles ${res.user.roles.join(', ')}.\n`);
          if (res.token) printToken(ctx, t, res.token);
        });
      },
    );

  users
    .command('ls')
    .description('list users')
    .option('--json', 'print JSON')
    .addHelpText(
      'after',
      examples('  $ gatehouse users ls\n  $ gatehouse users ls --json | jq -r ".[].name"'),
    )
    .action(async (o: { json?: boolean }, cmd: Command) => {
      await withAdmin(cmd, ctx, async (t) => {
        const list = await t.api.listUsers();
        if (o.json) return ctx.out(json(list));
        ctx.out(
          table(
            ['NAME', 'ROLES', 'LOGINS', 'STATUS'],
            list.map((u) => [u.name, u.roles.join(','), (u.traits.logins ?? []).join(','), userStatus(u)]),
          ),
        );
      });
    });

  users
    .command('get')
    .description('show one user')
    .argument('<name>')
    .option('--json', 'print JSON')
    .addHelpText('after', examples('  $ gatehouse users get alice'))
    .action(async (name: string, o: { json?: boolean }, cmd: Command) => {
      await withAdmin(cmd, ctx, async (t) => {
        const u = await t.api.getUser(name);
        if (o.json) ctx.out(json(u));
        else printUser(ctx, u);
      });
    });

  users
    .command('rm')
    .description('delete a user')
    .argument('<name>')
    .addHelpText('after', examples('  $ gatehouse users rm alice'))
    .action(async (name: string, _o: unknown, cmd: Command) => {
      await withAdmin(cmd, ctx, async (t) => {
        await t.api.deleteUser(name);
        ctx.out(`User ${name} deleted.\n`);
      });
    });

  users
    .command('update')
    .description("change a user's roles, logins or traits")
    .argument('<name>')
    .option('--roles <roles>', 'replace the roles (comma-separated)')
    .option('--logins <logins>', 'replace the logins trait (comma-separated)')
    .option('--traits <k=v1,v2...>', 'replace these traits (other traits are kept)')
    .addHelpText('after', examples('  $ gatehouse users update alice --roles access,editor --logins root'))
    .action(async (name: string, o: { roles?: string; logins?: string; traits?: string[] }, cmd: Command) => {
      if (o.roles === undefined && o.logins === undefined && o.traits === undefined) {
        throw usage('nothing to update', 'pass --roles, --logins or --traits');
      }
      await withAdmin(cmd, ctx, async (t) => {
        const req: { roles?: string[]; traits?: Record<string, string[]> } = {};
        if (o.roles !== undefined) req.roles = splitList(o.roles);
        if (o.logins !== undefined || o.traits !== undefined) {
          const current = await t.api.getUser(name);
          req.traits = { ...current.traits, ...asUsage(() => parseTraits(o.traits)) };
          if (o.logins !== undefined) req.traits.logins = splitList(o.logins);
        }
        const u = await t.api.updateUser(name, req);
        ctx.out(`User ${u.name} updated.\n`);
        printUser(ctx, u);
      });
    });

  users
    .command('reset')
    .description('issue a reset link (new password and second factor) for a user')
    .argument('<name>')
    .addHelpText('after', examples('  $ gatehouse users reset alice'))
    .action(async (name: string, _o: unknown, cmd: Command) => {
      await withAdmin(cmd, ctx, async (t) => printToken(ctx, t, await t.api.resetUser(name)));
    });

  users
    .command('lock')
    .description('lock a user: refuses new logins and ends live sessions')
    .argument('<name>')
    .option('--message <text>', 'shown to the user and in the audit log')
    .option('--ttl <duration>', 'lift the lock after this long, e.g. 1h', flag(durationFlag('--ttl')))
    .addHelpText('after', examples('  $ gatehouse users lock alice --message "incident 42" --ttl 2h'))
    .action(async (name: string, o: { message?: string; ttl?: string }, cmd: Command) => {
      await withAdmin(cmd, ctx, async (t) => {
        const lock = await t.api.lockUser(name, {
          ...(o.message ? { message: o.message } : {}),
          ...(o.ttl ? { ttl: o.ttl } : {}),
        });
        ctx.out(`User ${name} locked (lock ${lock.id}${lock.expires ? `, until ${lock.expires}` : ''}).\n`);
      });
    });

  users
    .command('unlock')
    .description('remove every lock on a user')
    .argument('<name>')
    .addHelpText('after', examples('  $ gatehouse users unlock alice'))
    .action(async (name: string, _o: unknown, cmd: Command) => {
      await withAdmin(cmd, ctx, async (t) => {
        const removed = await t.api.unlockUser(name);
        ctx.out(
          `User ${name} unlocked (${removed.length} lock${removed.length === 1 ? '' : 's'} removed).\n`,
        );
      });
    });

  // ----------------------------------------------------------------- roles
  const roles = program.command('roles').description('manage roles (YAML documents)');

  const putRole = (create: boolean) => async (o: { file: string }, cmd: Command) => {
    const text = readFileArg(o.file);
    await withAdmin(cmd, ctx, async (t) => {
      const res = await withLintOutput(ctx, o.file, () =>
        t.api.putRole(text, create ? { create: true } : undefined),
      );
      ctx.out(`Role ${res.role.name} ${res.created ? 'created' : 'updated'}.\n`);
    });
  };
  roles
    .command('create')
    .description('create a role from a YAML file (fails if it exists)')
    .requiredOption('-f, --file <file>', 'role YAML (- for stdin)')
    .addHelpText('after', examples('  $ gatehouse roles create -f dev.yaml'))
    .action(putRole(true));
  roles
    .command('update')
    .description('create or replace a role from a YAML file')
    .requiredOption('-f, --file <file>', 'role YAML (- for stdin)')
    .addHelpText('after', examples('  $ gatehouse roles update -f dev.yaml'))
    .action(putRole(false));

  roles
    .command('ls')
    .description('list roles')
    .option('--json', 'print JSON')
    .addHelpText('after', examples('  $ gatehouse roles ls'))
    .action(async (o: { json?: boolean }, cmd: Command) => {
      await withAdmin(cmd, ctx, async (t) => {
        const list = await t.api.listRoles();
        if (o.json) return ctx.out(json(list));
        ctx.out(
          table(
            ['NAME', 'LOGINS', 'MAX TTL', 'DESCRIPTION'],
            list.map((r) => [
              r.name,
              (r.allow.logins ?? []).join(','),
              r.options.max_session_ttl ?? '',
              r.description ?? '',
            ]),
          ),
        );
      });
    });

  roles
    .command('get')
    .description('print a role')
    .argument('<name>')
    .addOption(new Option('--format <format>', 'output format').choices(['yaml', 'json']).default('yaml'))
    .addHelpText(
      'after',
      examples('  $ gatehouse roles get dev > dev.yaml\n  $ gatehouse roles get dev --format json'),
    )
    .action(async (name: string, o: { format: 'yaml' | 'json' }, cmd: Command) => {
      await withAdmin(cmd, ctx, async (t) => {
        const r = await t.api.getRole(name);
        ctx.out(o.format === 'json' ? json(r) : toYaml(r));
      });
    });

  roles
    .command('rm')
    .description('delete a role')
    .argument('<name>')
    .addHelpText('after', examples('  $ gatehouse roles rm dev'))
    .action(async (name: string, _o: unknown, cmd: Command) => {
      await withAdmin(cmd, ctx, async (t) => {
        await t.api.deleteRole(name);
        ctx.out(`Role ${name} deleted.\n`);
      });
    });

  roles
    .command('lint')
    .description('check a role file; prints FILE:LINE:COL: key: message, exit 1 on errors')
    .requiredOption('-f, --file <file>', 'role YAML (- for stdin)')
    .addHelpText('after', examples('  $ gatehouse roles lint -f dev.yaml'))
    .action(async (o: { file: string }, cmd: Command) => {
      const text = readFileArg(o.file);
      const messages = await withAdmin(cmd, ctx, (t) => t.api.lintRole(text));
      ctx.out(lintLines(o.file, messages));
      const errors = messages.filter((m) => m.severity === 'error').length;
      if (errors > 0) {
        throw new GatehouseError(
          'GH_ERR_ROLE_INVALID',
          `${o.file}: ${errors} error${errors === 1 ? '' : 's'}`,
          {
            hint: 'fix the lines above and run gatehouse roles lint again',
          },
        );
      }
      ctx.out(`${o.file}: ok\n`);
    });

  // ----------------------------------------------------------------- locks
  const locks = program.command('locks').description('lock users or roles out of everything');
  locks
    .command('add')
    .description('lock a user or every holder of a role')
    .option('--user <name>', 'user to lock')
    .option('--role <name>', 'role to lock')
    .option('--message <text>', 'shown to the user and in the audit log')
    .option('--ttl <duration>', 'lift the lock after this long, e.g. 1h', flag(durationFlag('--ttl')))
    .addHelpText(
      'after',
      examples(
        '  $ gatehouse locks add --user alice --ttl 1h\n  $ gatehouse locks add --role contractors --message "audit"',
      ),
    )
    .action(async (o: { user?: string; role?: string; message?: string; ttl?: string }, cmd: Command) => {
      if (Boolean(o.user) === Boolean(o.role))
        throw usage('give exactly one of --user or --role', 'e.g. --user alice');
      const target = o.user ? { user: o.user } : { role: o.role! };
      await withAdmin(cmd, ctx, async (t) => {
        const lock = await t.api.createLock({
          target,
          ...(o.message ? { message: o.message } : {}),
          ...(o.ttl ? { ttl: o.ttl } : {}),
        });
        ctx.out(`Lock ${lock.id} created${lock.expires ? ` (until ${lock.expires})` : ''}.\n`);
      });
    });
  locks
    .command('ls')
    .description('list locks')
    .option('--json', 'print JSON')
    .addHelpText('after', examples('  $ gatehouse locks ls'))
    .action(async (o: { json?: boolean }, cmd: Command) => {
      await withAdmin(cmd, ctx, async (t) => {
        const list = await t.api.listLocks();
        if (o.json) return ctx.out(json(list));
        ctx.out(
          table(
            ['ID', 'TARGET', 'EXPIRES', 'BY', 'MESSAGE'],
            list.map((l) => [
              l.id,
              'user' in l.target ? `user:${l.target.user}` : `role:${l.target.role}`,
              l.expires ?? 'never',
              l.createdBy,
              l.message ?? '',
            ]),
          ),
        );
      });
    });
  locks
    .command('rm')
    .description('remove a lock')
    .argument('<id>')
    .addHelpText('after', examples('  $ gatehouse locks rm 01J...'))
    .action(async (id: string, _o: unknown, cmd: Command) => {
      await withAdmin(cmd, ctx, async (t) => {
        await t.api.deleteLock(id);
        ctx.out(`Lock ${id} removed.\n`);
      });
    });

  // ----------------------------------------------------------------- ca
  const ca = program.command('ca').description('certificate authorities');
  ca.command('export')
    .description('print CA public keys/certs in the form a target trusts')
    .addOption(
      new Option(
        '--format <format>',
        'output form (krl: the revoked login certificates, binary, for sshd RevokedKeys)',
      )
        .choices(['sshd', 'known_hosts', 'x509', 'postgres', 'mariadb', 'kube', 'krl'])
        .makeOptionMandatory(),
    )
    .addOption(new Option('--type <type>', 'which CA').choices(['user', 'host', 'db']))
    .option('--hosts <pattern>', 'host pattern for known_hosts lines (default *)')
    .option(
      '--out <file>',
      'write to this file instead of stdout, replacing it atomically (what sshd reads stays whole)',
    )
    .option('--proxy <host:port>', 'ask this proxy without logging in (public keys only)')
    .option('--ca-pin <pin>', "pin of the proxy's CA (with --proxy)")
    .option('--insecure', "trust the proxy's CA without a pin (with --proxy)")
    .addHelpText(
      'after',
      examples(`  $ gatehouse --data-dir /var/lib/gatehouse ca export --format sshd > /etc/ssh/gatehouse_user_ca.pub
  $ gatehouse ca export --format known_hosts --proxy gh.example.com:3080 --ca-pin sha256:... >> ~/.ssh/known_hosts
  $ gatehouse ca export --format postgres --type db > root.crt
  $ gatehouse ca export --format krl --proxy gh.example.com:3080 --ca-pin sha256:... --out /etc/ssh/gatehouse_revoked.krl

A node that trusts the user CA (TrustedUserCAKeys) accepts a certificate until it
expires, even after its user is deleted or locked. sshd also reads RevokedKeys on every
login: point it at the KRL and refresh the file every minute (cron or a systemd timer):
  RevokedKeys /etc/ssh/gatehouse_revoked.krl`),
    )
    .action(
      async (
        o: {
          format: CaExportFormat | 'krl';
          type?: 'user' | 'host' | 'db';
          hosts?: string;
          out?: string;
          proxy?: string;
          caPin?: string;
          insecure?: boolean;
        },
        cmd: Command,
      ) => {
        const g = cmd.optsWithGlobals<GlobalOpts>();
        const emit = async (data: string | Buffer) => {
          if (o.out) writeFileAtomic(o.out, data);
          else if (typeof data === 'string') ctx.out(data);
          else await ctx.write(data);
        };
        if (!o.proxy && wantsLocal(g, ctx.env)) {
          const gw = await openLocalGateway(g, ctx.env);
          try {
            if (o.format === 'krl') await emit(await gw.revocations.krl());
            else {
              await emit(
                ensureNl(
                  gw.exportCa(o.format, {
                    ...(o.type ? { type: o.type } : {}),
                    ...(o.hosts ? { hosts: o.hosts } : {}),
                  }),
                ),
              );
            }
          } finally {
            await gw.close();
          }
          return;
        }
        let client: GatehouseClient;
        if (o.proxy) {
          const trust = await trustProxy(ctx, o.proxy, {
            ...(o.caPin ? { caPin: o.caPin } : {}),
            ...(o.insecure ? { insecure: true } : {}),
          });
          client = new GatehouseClient({ proxy: o.proxy, caPem: trust.caPem });
        } else {
          const t = await openAdmin(g, ctx);
          client = t.api as GatehouseClient;
        }
        try {
          if (o.format === 'krl') await emit(await client.caKrl());
          else {
            const text = await client.caExport(o.format, o.type);
            await emit(ensureNl(o.hosts && o.format === 'known_hosts' ? withHosts(text, o.hosts) : text));
          }
        } finally {
          client.close();
        }
      },
    );

  defineCaSign(ca, ctx);

  ca.command('status')
    .alias('ls')
    .description("each CA's rotation phase and the fingerprints of its trusted keys")
    .option('--json', 'print JSON')
    .addHelpText(
      'after',
      examples('  $ gatehouse ca status\n  $ gatehouse ca status --json | jq ".[] | {type, phase}"'),
    )
    .action(async (o: { json?: boolean }, cmd: Command) => {
      await withAdmin(cmd, ctx, async (t) => {
        const list = await t.api.caStatus();
        if (o.json) return ctx.out(json(list));
        ctx.out(list.map(caStatusText).join('\n'));
      });
    });

  ca.command('rotate')
    .description('rotate a CA in phases: init, update_clients, update_servers, standby (or rollback)')
    .addOption(new Option('--type <type>', 'which CA').choices(['user', 'host', 'db']).makeOptionMandatory())
    .addOption(
      new Option('--phase <phase>', 'move to this phase (manual mode)').choices([...ROTATION_PHASES]),
    )
    .option('--manual', 'start a rotation that moves only when told (--phase); default: automatic')
    .option('--grace <duration>', 'automatic mode: how long the old key stays trusted (default 24h)')
    .option('--json', 'print JSON')
    .addHelpText(
      'after',
      examples(`  $ gatehouse ca rotate --type user --grace 24h          # automatic: walks every phase over 24h
  $ gatehouse ca rotate --type host --manual             # manual: starts at init
  $ gatehouse ca rotate --type host --phase update_clients
  $ gatehouse ca rotate --type host --phase update_servers
  $ gatehouse ca rotate --type host --phase standby
  $ gatehouse ca rotate --type db --phase rollback       # any phase before standby; then --phase standby

Between init and standby both keys are trusted: update what trusts the CA outside
Gatehouse (sshd TrustedUserCAKeys: gatehouse nodes configure; known_hosts: gatehouse
config ssh; databases: gatehouse ca export --format postgres) before standby.`),
    )
    .action(
      async (
        o: { type: 'user' | 'host' | 'db'; phase?: string; manual?: boolean; grace?: string; json?: boolean },
        cmd: Command,
      ) => {
        if (o.grace !== undefined && (o.manual || (o.phase !== undefined && o.phase !== 'init'))) {
          throw usage(
            '--grace is for automatic mode',
            'leave out --manual and --phase to start an automatic rotation with a grace period',
          );
        }
        await withAdmin(cmd, ctx, async (t) => {
          const s = await t.api.rotateCa({
            type: o.type,
            ...(o.phase !== undefined ? { phase: o.phase } : {}),
            ...(o.manual ? { mode: 'manual' as const } : {}),
            ...(o.grace !== undefined ? { grace: o.grace } : {}),
          });
          if (o.json) return ctx.out(json(s));
          ctx.out(`The ${s.type} CA is now in phase ${s.phase}.\n\n${caStatusText(s)}`);
          ctx.out(`\n${nextStep(s)}\n`);
        });
      },
    );

  // ----------------------------------------------------------------- audit
  const audit = program.command('audit').description('the audit log');
  audit
    .command('search')
    .description('search audit events, newest first')
    .option(
      '--since <when>',
      'from this long ago (30s, 15m, 8h, 1h30m, 2d) or an ISO time (2026-01-31T12:00:00Z)',
      flag(timeFlag('--since', () => ctx.now())),
    )
    .option(
      '--until <when>',
      'up to this long ago or an ISO time',
      flag(timeFlag('--until', () => ctx.now())),
    )
    .option('--type <types>', 'event types, comma-separated (user.login,session.start)')
    .option('--user <name>', 'events by this user')
    .option('--query <text>', 'full-text search')
    .option(
      '--limit <n>',
      `events per page, at most ${AUDIT_PAGE_MAX} (default 100, with --all ${AUDIT_PAGE_MAX})`,
      flag(
        parsePositiveInt('--limit', {
          max: AUDIT_PAGE_MAX,
          why: `the gateway hands out at most ${AUDIT_PAGE_MAX} events per page; add --all to follow the pages to the end`,
        }),
      ),
    )
    .option('--all', 'follow the pages to the end')
    .option('--json', 'print JSON ({ events, next_cursor })')
    .addHelpText(
      'after',
      examples(`  $ gatehouse audit search --since 1h
  $ gatehouse audit search --type user.login --user alice --all --json
  $ gatehouse audit search --query "rm -rf" --since 2026-01-01T00:00:00Z`),
    )
    .action(
      async (
        o: {
          since?: string;
          until?: string;
          type?: string;
          user?: string;
          query?: string;
          limit?: number;
          all?: boolean;
          json?: boolean;
        },
        cmd: Command,
      ) => {
        // --since and --until arrive as ISO times, checked as commander parsed them.
        asUsage(() => checkTimeRange(o.since, o.until));
        const q: AuditQuery = {};
        if (o.since !== undefined) q.from = o.since;
        if (o.until !== undefined) q.to = o.until;
        const types = splitList(o.type);
        if (types.length) q.types = types;
        if (o.user) q.user = o.user;
        if (o.query) q.q = o.query;
        // An export takes the largest pages unless told otherwise: fewer round trips.
        if (o.limit !== undefined) q.limit = o.limit;
        else if (o.all) q.limit = AUDIT_PAGE_MAX;
        const eventTable = (events: AuditEvent[]) =>
          table(
            ['TIME', 'CODE', 'TYPE', 'USER', 'SUMMARY'],
            events.map((e) => [e.time, e.code, e.type, e.user ?? '', summarizeEvent(e)]),
          );
        await withAdmin(cmd, ctx, async (t) => {
          if (!o.all) {
            const page = await t.api.searchAudit(q);
            const next = page.next_cursor;
            if (o.json) return ctx.out(json({ events: page.events, ...(next ? { next_cursor: next } : {}) }));
            ctx.out(eventTable(page.events));
            if (next) ctx.err('(more events: add --all, or narrow with --since/--type)\n');
            return;
          }
          if (o.json) {
            // Page by page as the server hands them out: an export of any size, in bounded memory.
            const out = new JsonListWriter('events');
            await ctx.write(out.head());
            for await (const events of auditPages(t.api, q)) await ctx.write(out.items(events));
            await ctx.write(out.end());
            return;
          }
          // A table's columns are as wide as its widest cell, so it needs every row first.
          const events: AuditEvent[] = [];
          for await (const page of auditPages(t.api, q)) events.push(...page);
          ctx.out(eventTable(events));
        });
      },
    );

  audit
    .command('verify')
    .description('check the hash chain of the audit record: what was changed, removed or reordered')
    .option(
      '--since <when>',
      'start at the first file of that day, trusting its signed head (2026-01-31, 30d)',
      flag(timeFlag('--since', () => ctx.now())),
    )
    .option('--json', 'print the full report as JSON')
    .addHelpText(
      'after',
      `
Every line of the JSON-lines record carries the SHA-256 of the line before
it, and each file's start is signed with the cluster's audit key. verify
reads the files (offline with --data-dir; an auditor needs audit:read
through the proxy) and reports each event that was changed, deleted or
reordered and each file removed, with file, line and event id. A last line
cut short by a crash is reported as "truncated", which is not tampering.
Exit status: 0 intact, 1 tampered.

Examples:
  $ gatehouse audit verify --data-dir /var/lib/gatehouse
  $ gatehouse audit verify --since 30d --json`,
    )
    .action(async (o: { since?: string; json?: boolean }, cmd: Command) => {
      await withAdmin(cmd, ctx, async (t) => {
        const r = await t.api.verifyAudit(o.since === undefined ? {} : { since: o.since });
        ctx.out(o.json ? json(r) : formatVerify(r));
        if (!r.ok) ctx.exitCode = 1;
      });
    });
}

/** `audit verify` for people: a verdict, then one line per problem and warning. */
export function formatVerify(r: VerifyChainResult): string {
  const span =
    r.first && r.last ? ` (seq ${r.first.seq}..${r.last.seq}, from ${startedAt(r.first.from)})` : '';
  const n = (k: number, what: string) => `${k} ${what}${k === 1 ? '' : 's'}`;
  const lines = [
    r.ok
      ? `OK: ${n(r.events, 'event')} in ${n(r.files, 'file')} verified${span}`
      : `TAMPERED: ${n(r.problems.length, 'problem')} in ${n(r.files, 'file')}, ${n(r.events, 'event')}${span}`,
  ];
  for (const p of r.problems) lines.push(`${p.kind}: ${p.message}`);
  for (const w of r.warnings) lines.push(`warning: ${w.kind}: ${w.message}`);
  if (r.last) lines.push(`last event: seq ${r.last.seq} sha256 ${r.last.hash} (${r.last.file})`);
  return `${lines.join('\n')}\n`;
}

function startedAt(from: NonNullable<VerifyChainResult['first']>['from']): string {
  switch (from) {
    case 'genesis':
      return 'the first event';
    case 'anchor':
      return 'the retention anchor';
    case 'head':
      return 'the signed head of the first file since the date';
    case 'unverified':
      return 'an unverified start';
    default: {
      const never: never = from;
      return String(never);
    }
  }
}

/** Every page of an audit search, following the server's cursors to the end. */
export async function* auditPages(api: AdminTarget['api'], q: AuditQuery): AsyncGenerator<AuditEvent[]> {
  let cursor: string | undefined;
  do {
    const page = await api.searchAudit(cursor ? { ...q, cursor } : q);
    yield page.events;
    cursor = page.events.length > 0 ? page.next_cursor : undefined;
  } while (cursor);
}

function ensureNl(s: string): string {
  return s.endsWith('\n') ? s : `${s}\n`;
}

/** The HTTP export has no host pattern parameter; rewrite the pattern field of each @cert-authority line. */
export function withHosts(text: string, hosts: string): string {
  return text
    .split('\n')
    .map((l) => {
      const f = l.split(' ');
      return f[0] === '@cert-authority' && f.length >= 4 ? [f[0], hosts, ...f.slice(2)].join(' ') : l;
    })
    .join('\n');
}
