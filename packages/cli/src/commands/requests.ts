import { type AccessRequestView, GatehouseClient, GatehouseError } from '@gatehouse/core';
import type { Command } from 'commander';
import { durationFlag, relativeTime } from '../args.js';
import { type AdminTarget, type Ctx, withAdmin } from '../context.js';
import { generateLoginKeys } from '../keys.js';
import { json, table } from '../output.js';
import { splitPems } from '../profile.js';
import { examples, flag, usage } from './usage.js';
import { saveLogin } from './user.js';

/** How often `request create --wait` asks whether the request was reviewed. */
const WAIT_POLL_MS = 1000;

const list = (v: string, prev: string[] = []) => [
  ...prev,
  ...v
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean),
];

/** The `gatehouse request ...` verbs (access requests; docs/decisions/0036-access-requests.md). */
export function registerRequests(program: Command, ctx: Ctx): void {
  const request = program
    .command('request')
    .description('ask for temporary roles or resources, review requests, and see their state')
    .addHelpText(
      'after',
      `
Nobody needs standing access to production: ask for it, a reviewer approves,
and it ends by itself. Your roles say what you may ask for (allow.request)
and what you may review (allow.review_requests).
${examples(`  $ gatehouse request create --roles prod-db --reason "INC-4211: fix stuck orders" --ttl 2h --wait
  $ gatehouse request ls
  $ gatehouse request review 5f0c... --approve --reason "on call"
  $ gatehouse login --request-id 5f0c...`)}`,
    );

  request
    .command('create')
    .description('ask for roles (or resources) for a while; reviewers approve or deny')
    .option('--roles <roles>', 'roles to ask for, comma-separated (repeatable)', list)
    .option('--resource <kind/name>', 'a resource to ask for, e.g. db/orders (repeatable)', list)
    .option('--reason <text>', 'why you need it (some roles require one)')
    .option(
      '--ttl <duration>',
      'how long the access lasts once approved (default 1h)',
      flag(durationFlag('--ttl')),
    )
    .option('--user <name>', 'on the gateway host (--data-dir): ask on behalf of this user')
    .option('--wait', 'wait for the review, then log in with the approved roles')
    .option('--json', 'print JSON')
    .addHelpText(
      'after',
      examples(`  $ gatehouse request create --roles prod-db --reason "INC-4211: fix stuck orders"
  $ gatehouse request create --resource db/orders --reason "read one table" --ttl 30m
  $ gatehouse request create --roles prod-db --reason "deploy" --wait   # then runs gatehouse login --request-id`),
    )
    .action(
      async (
        o: {
          roles?: string[];
          resource?: string[];
          reason?: string;
          ttl?: string;
          user?: string;
          wait?: boolean;
          json?: boolean;
        },
        cmd: Command,
      ) => {
        if (!o.roles?.length && !o.resource?.length) {
          throw usage('nothing to ask for', 'pass --roles ROLE[,ROLE] or --resource KIND/NAME');
        }
        await withAdmin(cmd, ctx, async (t) => {
          if (o.wait && t.kind !== 'remote') {
            throw usage(
              '--wait logs you in, which needs a login, not --data-dir',
              'drop --wait or --data-dir',
            );
          }
          if (o.user && t.kind !== 'local') {
            throw usage(
              '--user is for the operator on the gateway host',
              'drop --user: you ask for yourself',
            );
          }
          let r = await t.api.createAccessRequest({
            ...(o.roles?.length ? { roles: o.roles } : {}),
            ...(o.resource?.length ? { resources: o.resource } : {}),
            ...(o.reason !== undefined ? { reason: o.reason } : {}),
            ...(o.ttl ? { ttl: o.ttl } : {}),
            ...(o.user ? { user: o.user } : {}),
          });
          if (!o.wait) {
            if (o.json) return ctx.out(json(r));
            ctx.out(
              `Access request ${r.id} created (${r.state}; ${needs(r)}).\n` +
                `Reviewers: gatehouse request review ${r.id} --approve\n` +
                `Once approved: gatehouse login --request-id ${r.id}\n`,
            );
            return;
          }
          ctx.err(`Access request ${r.id} created; waiting for its review (${needs(r)})...\n`);
          r = await waitForReview(t, r);
          if (r.state !== 'approved') throw notApproved(r);
          await loginWithRequests(ctx, t, [r.id], { json: o.json });
        });
      },
    );

  request
    .command('ls')
    .description('list access requests: yours, those you may review (all of them for an admin)')
    .option('--state <state>', 'only these: pending, approved, denied, expired, dropped')
    .option('--json', 'print JSON')
    .addHelpText(
      'after',
      examples('  $ gatehouse request ls\n  $ gatehouse request ls --state pending --json'),
    )
    .action(async (o: { state?: string; json?: boolean }, cmd: Command) => {
      await withAdmin(cmd, ctx, async (t) => {
        const all = await t.api.listAccessRequests();
        const shown = o.state ? all.filter((r) => r.state === o.state) : all;
        if (o.json) return ctx.out(json(shown));
        const now = ctx.now();
        ctx.out(
          table(
            ['ID', 'USER', 'ROLES', 'STATE', 'REVIEWS', 'EXPIRES', 'REASON'],
            shown.map((r) => [
              r.id,
              r.user,
              [...r.roles, ...(r.resources ?? []).map((x) => `${x.kind}/${x.name}`)].join(','),
              r.state,
              `${approvals(r)}/${r.thresholds.approve}`,
              relativeTime(new Date(r.expires), now),
              r.reason.length > 40 ? `${r.reason.slice(0, 37)}...` : r.reason,
            ]),
          ),
        );
      });
    });

  request
    .command('show')
    .description('one access request: state, thresholds and every review')
    .argument('<id>', 'the request id (gatehouse request ls)')
    .option('--json', 'print JSON')
    .addHelpText('after', examples('  $ gatehouse request show 5f0c...'))
    .action(async (id: string, o: { json?: boolean }, cmd: Command) => {
      await withAdmin(cmd, ctx, async (t) => {
        const r = await t.api.getAccessRequest(id);
        if (o.json) return ctx.out(json(r));
        ctx.out(describe(r, ctx.now()));
      });
    });

  request
    .command('review')
    .description('approve or deny an access request (never your own)')
    .argument('<id>', 'the request id')
    .option('--approve', 'approve it')
    .option('--deny', 'deny it (also ends access already approved)')
    .option('--reason <text>', 'why (shown to the requester and audited)')
    .option('--json', 'print JSON')
    .addHelpText(
      'after',
      examples(`  $ gatehouse request review 5f0c... --approve --reason "on call this week"
  $ gatehouse request review 5f0c... --deny --reason "use the read replica"`),
    )
    .action(
      async (
        id: string,
        o: { approve?: boolean; deny?: boolean; reason?: string; json?: boolean },
        cmd: Command,
      ) => {
        if (Boolean(o.approve) === Boolean(o.deny))
          throw usage('give exactly one of --approve or --deny', 'e.g. --approve');
        await withAdmin(cmd, ctx, async (t) => {
          const r = await t.api.reviewAccessRequest(id, {
            verdict: o.approve ? 'approve' : 'deny',
            ...(o.reason !== undefined ? { reason: o.reason } : {}),
          });
          if (o.json) return ctx.out(json(r));
          ctx.out(
            `Reviewed access request ${r.id}: ${o.approve ? 'approved' : 'denied'} by you; it is now ${r.state}` +
              (r.state === 'pending' ? ` (${needs(r)})` : '') +
              '.\n',
          );
        });
      },
    );

  request
    .command('drop')
    .description('withdraw an access request; sessions that use it end')
    .argument('<id>', 'the request id')
    .option('--reason <text>', 'why (audited)')
    .option('--json', 'print JSON')
    .addHelpText('after', examples('  $ gatehouse request drop 5f0c... --reason "done"'))
    .action(async (id: string, o: { reason?: string; json?: boolean }, cmd: Command) => {
      await withAdmin(cmd, ctx, async (t) => {
        const r = await t.api.dropAccessRequest(id, o.reason !== undefined ? { reason: o.reason } : {});
        if (o.json) return ctx.out(json(r));
        ctx.out(`Access request ${r.id} dropped.\n`);
      });
    });
}

function approvals(r: AccessRequestView): number {
  return r.reviews.filter((v) => v.verdict === 'approve').length;
}

function needs(r: AccessRequestView): string {
  const left = Math.max(0, r.thresholds.approve - approvals(r));
  return `needs ${left} more approval${left === 1 ? '' : 's'} from distinct reviewers`;
}

function describe(r: AccessRequestView, now: Date): string {
  const lines = [
    `id:          ${r.id}`,
    `user:        ${r.user}`,
    `roles:       ${r.roles.join(', ')}`,
    ...(r.resources?.length
      ? [`resources:   ${r.resources.map((x) => `${x.kind}/${x.name}`).join(', ')}`]
      : []),
    `state:       ${r.state}${r.resolved ? ` (${r.resolved.by}, ${r.resolved.time})` : ''}`,
    `reason:      ${r.reason || '-'}`,
    `thresholds:  ${r.thresholds.approve} approval(s), ${r.thresholds.deny} denial(s)`,
    `created:     ${r.created}`,
    `expires:     ${r.expires} (${relativeTime(new Date(r.expires), now)})`,
    `reviews:     ${r.reviews.length === 0 ? 'none yet' : ''}`,
    ...r.reviews.map((v) => `  ${v.time}  ${v.author}  ${v.verdict}${v.reason ? `: ${v.reason}` : ''}`),
  ];
  return `${lines.join('\n')}\n`;
}

function notApproved(r: AccessRequestView): GatehouseError {
  const last = r.reviews.at(-1);
  return new GatehouseError(
    'GH_ERR_ACCESS_DENIED',
    `access request ${r.id} was ${r.state === 'expired' ? 'not approved before it expired' : r.state}` +
      (r.state === 'denied' && last ? ` by ${last.author}${last.reason ? `: ${last.reason}` : ''}` : ''),
    {
      hint: 'see gatehouse request show ID; ask again with gatehouse request create',
      details: { state: r.state },
    },
  );
}

/** Polls until the request leaves `pending` (approved, denied, dropped, or expired). */
async function waitForReview(t: AdminTarget, r: AccessRequestView): Promise<AccessRequestView> {
  let cur = r;
  while (cur.state === 'pending') {
    await new Promise((res) => setTimeout(res, WAIT_POLL_MS));
    cur = await t.api.getAccessRequest(r.id);
  }
  return cur;
}

/**
 * `gatehouse login --request-id`: the current login's certificate is
 * re-issued (on new keys) with the roles of the approved requests; no
 * password, and it ends no later than the login it comes from.
 */
export async function loginWithRequests(
  ctx: Ctx,
  t: AdminTarget | undefined,
  ids: string[],
  o: { json?: boolean | undefined },
): Promise<void> {
  const profile = t?.kind === 'remote' ? t.profile : ctx.home.current();
  if (!profile) {
    throw new GatehouseError('GH_ERR_UNAUTHENTICATED', 'not logged in', {
      hint: 'log in first (gatehouse login --proxy HOST:PORT --user NAME), then add --request-id',
    });
  }
  const keys = ctx.home.readKeys(profile);
  const client =
    t?.kind === 'remote'
      ? t.api
      : new GatehouseClient({
          proxy: profile.proxy,
          caPem: splitPems(keys.cas),
          certPem: keys.tlsCert,
          keyPem: keys.tlsKey,
        });
  try {
    const fresh = generateLoginKeys(`${profile.user}@${profile.cluster}`);
    const res = await client.requestCerts({
      request_ids: ids,
      ssh_public_key: fresh.sshPublicKey,
      tls_public_key: fresh.tlsPublicKey,
    });
    saveLogin(ctx, profile.proxy, { caPem: splitPems(keys.cas), pin: profile.caPin }, fresh, res, o);
  } finally {
    if (t?.kind !== 'remote') client.close();
  }
}
