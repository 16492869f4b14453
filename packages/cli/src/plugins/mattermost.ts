import type { AccessRequestView, AdminApi } from '@gatehouse/core';
import { type CallbackServer, call, listenCallbacks, reply, secretMatches } from './http.js';
import { type NotifyTarget, type Posted, requestText, reviewFromTool } from './watcher.js';

/**
 * The Mattermost plugin: a post per request in one channel (REST API v4,
 * `POST /api/v4/posts` with the bot account's token), updated as it is
 * reviewed (`PUT /api/v4/posts/{id}`), with Approve and Deny interactive
 * message buttons while it is pending. Mattermost does not sign the action
 * requests it sends to a button's integration URL, so each button carries a
 * shared secret in its integration `context` (which Mattermost keeps on the
 * server side and sends back, never shows to users); a callback without the
 * secret is refused. Only Mattermost users mapped in `reviewers` may review;
 * the review is made by the plugin's bot user with the reviewer named.
 */
export interface MattermostPluginConfig {
  /** The Mattermost server, e.g. https://chat.example.com (a fixture in tests). */
  url: string;
  /** The bot account's access token. */
  token: string;
  channelId: string;
  /** Sent in each button's context and required back on every action callback. */
  actionSecret: string;
  listen: string;
  /** Where Mattermost reaches the action listener; default http://127.0.0.1:PORT/mattermost/actions. */
  actionUrl?: string | undefined;
  /** Mattermost user id -> the Gatehouse user they are. */
  reviewers: Record<string, string>;
}

export const MATTERMOST_ACTIONS_PATH = '/mattermost/actions';

/** What Mattermost posts to the integration URL on a click (the fields used). */
interface ActionRequest {
  user_id?: string;
  post_id?: string;
  context?: { secret?: unknown; request_id?: unknown; verdict?: unknown };
}

function props(cfg: MattermostPluginConfig, actionUrl: string, r: AccessRequestView): object {
  const reviews = r.reviews.map((v) => `${v.author}: ${v.verdict}${v.reason ? ` (${v.reason})` : ''}`);
  const button = (verdict: 'approve' | 'deny', name: string, style: string) => ({
    // Mattermost action ids are alphanumeric.
    id: verdict,
    name,
    style,
    integration: { url: actionUrl, context: { secret: cfg.actionSecret, request_id: r.id, verdict } },
  });
  return {
    attachments: [
      {
        text: reviews.join('\n'),
        actions:
          r.state === 'pending'
            ? [button('approve', 'Approve', 'good'), button('deny', 'Deny', 'danger')]
            : [],
      },
    ],
  };
}

export function mattermostTarget(cfg: MattermostPluginConfig, actionsPort: number): NotifyTarget {
  const base = `${cfg.url.replace(/\/$/, '')}/api/v4`;
  const actionUrl = cfg.actionUrl ?? `http://127.0.0.1:${actionsPort}${MATTERMOST_ACTIONS_PATH}`;
  const headers = { authorization: `Bearer ${cfg.token}` };
  return {
    async notify(r: AccessRequestView, prev: Posted | undefined) {
      const post = { channel_id: cfg.channelId, message: requestText(r), props: props(cfg, actionUrl, r) };
      if (prev?.ref) {
        await call(
          'PUT',
          `${base}/posts/${encodeURIComponent(prev.ref)}`,
          headers,
          JSON.stringify({ id: prev.ref, ...post }),
        );
        return prev.ref;
      }
      const created = JSON.parse(await call('POST', `${base}/posts`, headers, JSON.stringify(post))) as {
        id?: unknown;
      };
      if (typeof created.id !== 'string' || !created.id)
        throw new Error('Mattermost POST /posts answered without an id');
      return created.id;
    },
  };
}

export function startMattermostActions(
  cfg: MattermostPluginConfig,
  api: () => { api: Pick<AdminApi, 'reviewAccessRequest'>; close(): void },
  log: (msg: string) => void,
): Promise<CallbackServer> {
  return listenCallbacks(cfg.listen, MATTERMOST_ACTIONS_PATH, async (body, _headers, remote) => {
    let a: ActionRequest;
    try {
      a = JSON.parse(body) as ActionRequest;
    } catch {
      return reply(400, { message: 'the body is not JSON' });
    }
    if (!secretMatches(a.context?.secret, cfg.actionSecret)) {
      log(`refused a Mattermost action from ${remote}: no or wrong secret in its context`);
      return reply(401, { message: 'no or wrong secret' });
    }
    const { request_id: id, verdict } = a.context ?? {};
    if (typeof id !== 'string' || (verdict !== 'approve' && verdict !== 'deny')) {
      return reply(400, { message: 'not an Approve or Deny action' });
    }
    const who = a.user_id ? cfg.reviewers[a.user_id] : undefined;
    if (!who) {
      log(`Mattermost user ${a.user_id ?? '?'} may not review (not in reviewers)`);
      return reply(200, { ephemeral_text: 'You are not a Gatehouse reviewer.' });
    }
    const done = await reviewFromTool(api, id, verdict, `${who} via Mattermost (${a.user_id})`);
    return reply(200, {
      ephemeral_text: done.ok
        ? `Request ${done.request.id} is ${done.request.state}.`
        : `Not reviewed: ${done.message}`,
    });
  });
}
