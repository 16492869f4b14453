import { createHmac } from 'node:crypto';
import type { AccessRequestView, AdminApi } from '@gatehouse/core';
import { type CallbackServer, call, listenCallbacks, reply, secretMatches } from './http.js';
import { type NotifyTarget, type Posted, requestText, reviewFromTool } from './watcher.js';

/**
 * The Jira plugin: an issue per request (REST API v2, `POST
 * /rest/api/2/issue`, labelled `gatehouse-<request id>` so a webhook names
 * its request without any plugin state), then a comment per change (`POST
 * /rest/api/2/issue/{key}/comment`). Approval is a transition: Jira's
 * webhook for `jira:issue_updated` whose changelog moves the status to
 * `approve_status` (or `deny_status`) reviews the request, as the bot user
 * with the Jira user named; only Jira account ids mapped in `reviewers`
 * count. The webhook must carry Jira's secret signature (`X-Hub-Signature:
 * sha256=` hex HMAC-SHA256 of the body with the webhook's secret).
 */
export interface JiraPluginConfig {
  /** https://example.atlassian.net (a fixture in tests). */
  url: string;
  /** Basic auth: the account's email and API token. */
  user: string;
  token: string;
  project: string;
  issueType: string;
  webhookSecret: string;
  listen: string;
  approveStatus: string;
  denyStatus: string;
  /** Jira account id -> the Gatehouse user they are. */
  reviewers: Record<string, string>;
}

export const JIRA_WEBHOOK_PATH = '/jira/webhook';
const LABEL_PREFIX = 'gatehouse-';

function reviewsText(r: AccessRequestView): string {
  return r.reviews.map((v) => `${v.author}: ${v.verdict}${v.reason ? ` (${v.reason})` : ''}`).join('\n');
}

export function jiraTarget(cfg: JiraPluginConfig): NotifyTarget {
  const base = `${cfg.url.replace(/\/$/, '')}/rest/api/2`;
  const headers = {
    authorization: `Basic ${Buffer.from(`${cfg.user}:${cfg.token}`).toString('base64')}`,
    accept: 'application/json',
  };
  return {
    async notify(r: AccessRequestView, prev: Posted | undefined) {
      if (prev?.ref) {
        const body = [requestText(r), reviewsText(r)].filter(Boolean).join('\n');
        await call(
          'POST',
          `${base}/issue/${encodeURIComponent(prev.ref)}/comment`,
          headers,
          JSON.stringify({ body }),
        );
        return prev.ref;
      }
      const issue = {
        fields: {
          project: { key: cfg.project },
          issuetype: { name: cfg.issueType },
          summary: `Access request from ${r.user} for ${[...r.roles, ...(r.resources ?? []).map((x) => `${x.kind}/${x.name}`)].join(', ')}`,
          description: `${requestText(r)}\nTransition to "${cfg.approveStatus}" to approve, "${cfg.denyStatus}" to deny.`,
          labels: [`${LABEL_PREFIX}${r.id}`],
        },
      };
      const created = JSON.parse(await call('POST', `${base}/issue`, headers, JSON.stringify(issue))) as {
        key?: unknown;
      };
      if (typeof created.key !== 'string' || !created.key)
        throw new Error('Jira POST /issue answered without a key');
      return created.key;
    },
  };
}

/** Jira's webhook signature (`X-Hub-Signature: sha256=<hex>`), checked in constant time. */
export function jiraSignatureValid(secret: string, sig: string | undefined, body: string): boolean {
  return secretMatches(sig, `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`);
}

interface IssueUpdated {
  webhookEvent?: string;
  user?: { accountId?: string };
  issue?: { key?: string; fields?: { labels?: unknown } };
  changelog?: { items?: { field?: string; toString?: string }[] };
}

export function startJiraWebhook(
  cfg: JiraPluginConfig,
  api: () => { api: Pick<AdminApi, 'reviewAccessRequest'>; close(): void },
  log: (msg: string) => void,
): Promise<CallbackServer> {
  return listenCallbacks(cfg.listen, JIRA_WEBHOOK_PATH, async (body, headers, remote) => {
    if (!jiraSignatureValid(cfg.webhookSecret, headers['x-hub-signature'], body)) {
      log(`refused a Jira webhook from ${remote}: no or bad X-Hub-Signature`);
      return reply(401, { message: 'no or bad signature' });
    }
    let ev: IssueUpdated;
    try {
      ev = JSON.parse(body) as IssueUpdated;
    } catch {
      return reply(400, { message: 'the body is not JSON' });
    }
    // Other events and edits that do not move the status are none of the plugin's business.
    const to = ev.changelog?.items?.find((i) => i.field === 'status')?.toString;
    const verdict = to === cfg.approveStatus ? 'approve' : to === cfg.denyStatus ? 'deny' : undefined;
    if (ev.webhookEvent !== 'jira:issue_updated' || !verdict) return reply(200, { message: 'ignored' });
    const labels = Array.isArray(ev.issue?.fields?.labels) ? (ev.issue.fields.labels as unknown[]) : [];
    const label = labels.find((l): l is string => typeof l === 'string' && l.startsWith(LABEL_PREFIX));
    if (!label) return reply(200, { message: 'not a Gatehouse access request issue' });
    const account = ev.user?.accountId;
    const who = account ? cfg.reviewers[account] : undefined;
    if (!who) {
      log(
        `Jira user ${account ?? '?'} moved ${ev.issue?.key ?? '?'} to ${to} but may not review (not in reviewers)`,
      );
      return reply(200, { message: 'not a Gatehouse reviewer' });
    }
    const done = await reviewFromTool(
      api,
      label.slice(LABEL_PREFIX.length),
      verdict,
      `${who} via Jira ${ev.issue?.key ?? ''} (${account})`,
    );
    if (!done.ok) log(`Jira review of ${ev.issue?.key ?? '?'} not made: ${done.message}`);
    return reply(200, {
      message: done.ok ? `request ${done.request.id} is ${done.request.state}` : done.message,
    });
  });
}
