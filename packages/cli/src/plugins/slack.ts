import { createHmac } from 'node:crypto';
import type { AccessRequestView, AdminApi } from '@gatehouse/core';
import { type CallbackServer, listenCallbacks, post, reply, secretMatches } from './http.js';
import { type NotifyTarget, type Posted, reviewFromTool, requestText as text } from './watcher.js';

/**
 * The Slack plugin: a message per request in one channel
 * (`chat.postMessage`), updated as it is reviewed (`chat.update`, by the
 * message `ts` the plugin keeps), with Approve and Deny buttons while it is
 * pending. A click comes back as an interactive callback signed with the
 * app's signing secret (v0: HMAC-SHA256 of `v0:<timestamp>:<body>`); only
 * Slack users mapped in `reviewers` may review, and the review is made by
 * the plugin's bot user with the reviewer named in the reason.
 */
export interface SlackPluginConfig {
  /** https://slack.com/api (a fixture in tests). */
  apiUrl: string;
  /** Bot token (xoxb-...). */
  token: string;
  channel: string;
  signingSecret: string;
  listen: string;
  /** Slack user id -> the Gatehouse user they are (who may review from Slack). */
  reviewers: Record<string, string>;
}

const MAX_SKEW_S = 300;
export const SLACK_INTERACTIVE_PATH = '/slack/interactive';

function blocks(r: AccessRequestView): unknown[] {
  const out: unknown[] = [{ type: 'section', text: { type: 'mrkdwn', text: text(r) } }];
  if (r.reviews.length > 0) {
    out.push({
      type: 'context',
      elements: r.reviews.map((v) => ({
        type: 'mrkdwn',
        text: `${v.author}: ${v.verdict}${v.reason ? ` (${v.reason})` : ''}`,
      })),
    });
  }
  if (r.state === 'pending') {
    out.push({
      type: 'actions',
      block_id: `gatehouse-${r.id}`,
      elements: [
        {
          type: 'button',
          action_id: 'approve',
          style: 'primary',
          text: { type: 'plain_text', text: 'Approve' },
          value: r.id,
        },
        {
          type: 'button',
          action_id: 'deny',
          style: 'danger',
          text: { type: 'plain_text', text: 'Deny' },
          value: r.id,
        },
      ],
    });
  }
  return out;
}

/** One Web API call; Slack answers HTTP 200 with `ok: false` and an `error` code when it refuses. */
async function slackCall(cfg: SlackPluginConfig, method: string, args: object): Promise<{ ts?: string }> {
  const answer = JSON.parse(
    await post(`${cfg.apiUrl.replace(/\/$/, '')}/${method}`, JSON.stringify(args), {
      authorization: `Bearer ${cfg.token}`,
      'content-type': 'application/json; charset=utf-8',
    }),
  ) as { ok?: boolean; error?: string; ts?: string };
  if (answer.ok !== true) throw new Error(`Slack ${method} failed: ${answer.error ?? 'no error code'}`);
  return answer;
}

export function slackTarget(cfg: SlackPluginConfig): NotifyTarget {
  return {
    async notify(r: AccessRequestView, prev: Posted | undefined) {
      const body = { channel: cfg.channel, text: text(r), blocks: blocks(r) };
      if (prev?.ref) {
        await slackCall(cfg, 'chat.update', { ...body, ts: prev.ref });
        return prev.ref;
      }
      const posted = await slackCall(cfg, 'chat.postMessage', body);
      if (!posted.ts) throw new Error('Slack chat.postMessage answered without a ts');
      return posted.ts;
    },
  };
}

/** Slack's request signature (v0), checked in constant time; the timestamp must be recent. */
export function slackSignatureValid(
  secret: string,
  ts: string | undefined,
  sig: string | undefined,
  body: string,
): boolean {
  if (!ts || !sig || !/^\d{1,12}$/.test(ts)) return false;
  if (Math.abs(Date.now() / 1000 - Number(ts)) > MAX_SKEW_S) return false;
  return secretMatches(sig, `v0=${createHmac('sha256', secret).update(`v0:${ts}:${body}`).digest('hex')}`);
}

export function startSlackInteractions(
  cfg: SlackPluginConfig,
  api: () => { api: Pick<AdminApi, 'reviewAccessRequest'>; close(): void },
  log: (msg: string) => void,
): Promise<CallbackServer> {
  return listenCallbacks(cfg.listen, SLACK_INTERACTIVE_PATH, async (body, headers, remote) => {
    if (
      !slackSignatureValid(
        cfg.signingSecret,
        headers['x-slack-request-timestamp'],
        headers['x-slack-signature'],
        body,
      )
    ) {
      log(`refused a Slack callback from ${remote}: bad or stale signature`);
      return reply(401, { message: 'bad or stale signature' });
    }
    let payload: {
      type?: string;
      user?: { id?: string };
      actions?: { action_id?: string; value?: string }[];
    };
    try {
      payload = JSON.parse(new URLSearchParams(body).get('payload') ?? '') as typeof payload;
    } catch {
      return reply(400, { message: 'no payload' });
    }
    const action = payload.actions?.[0];
    const verdict =
      action?.action_id === 'approve' ? 'approve' : action?.action_id === 'deny' ? 'deny' : undefined;
    if (payload.type !== 'block_actions' || !verdict || !action?.value) {
      return reply(400, { message: 'not an Approve or Deny click' });
    }
    const who = payload.user?.id ? cfg.reviewers[payload.user.id] : undefined;
    if (!who) {
      log(`Slack user ${payload.user?.id ?? '?'} may not review (not in reviewers)`);
      return reply(200, { response_type: 'ephemeral', text: 'You are not a Gatehouse reviewer.' });
    }
    const done = await reviewFromTool(api, action.value, verdict, `${who} via Slack (${payload.user!.id})`);
    return reply(200, {
      response_type: 'ephemeral',
      text: done.ok
        ? `Request ${done.request.id} is ${done.request.state}.`
        : `Not reviewed: ${done.message}`,
    });
  });
}
