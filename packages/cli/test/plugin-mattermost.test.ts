import { rmSync, writeFileSync } from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { AccessRequestView } from '@gatehouse/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../../core/test/helpers.js';
import { type Daemon, run, startPlugin, startRequestCluster } from './harness.js';

/**
 * `gatehouse plugin run mattermost` (the BUILT binary) against a fixture of
 * the two Mattermost REST API v4 endpoints it calls, with the shapes of
 * Mattermost's API reference ("Create a post", "Update a post"):
 *
 *   Authorization: Bearer <bot access token>
 *   POST /api/v4/posts        JSON {channel_id, message, props}
 *     -> 201 Post {"id": "<26 chars>", "create_at", "update_at", "edit_at": 0, "delete_at": 0,
 *                  "user_id", "channel_id", "root_id": "", "message", "type": "", "props", ...}
 *   PUT  /api/v4/posts/{id}   JSON {id, channel_id, message, props} (id must match the path)
 *     -> 200 Post
 *   errors: {"id": "api.context.session_expired.app_error" | "app.post.get.app_error", "message",
 *            "detailed_error": "", "request_id", "status_code": 401 | 404}
 *
 * and the interactive message button ("Interactive messages"): `props.attachments[].actions[]`
 * = {id, name, style, integration: {url, context}}; a click makes the Mattermost server POST
 * to `integration.url` JSON {user_id, user_name, channel_id, channel_name, team_id,
 * team_domain, post_id, trigger_id, type, data_source, context} (the button's context,
 * kept server-side: users never see it), unsigned, and expects 200 {update?, ephemeral_text?}.
 * The fixture's `click` does what the server does, from the stored post.
 */
const TOKEN = 'mm-bot-token-0123456789abcdef';
const SECRET = 'mattermost-action-secret-0123456789';
const CHANNEL = '4xp9fdt77pncbef59f4k1qe83o';

interface Action {
  id: string;
  name: string;
  integration: { url: string; context: Record<string, unknown> };
}
interface Post {
  id: string;
  channel_id: string;
  message: string;
  props: { attachments: { text: string; actions: Action[] }[] };
}

describe('the Mattermost plugin against a Mattermost API fixture', () => {
  let daemon: Daemon;
  let root: string;
  let mm: http.Server;
  const calls: { method: string; path: string; auth: string | undefined; body: Post }[] = [];
  const posts = new Map<string, Post>();
  let plugin: { port: number; stop(): Promise<void> } | undefined;
  const home = (who: string) => ({ GATEHOUSE_HOME: join(root, `home-${who}`) });
  const ok = async (p: ReturnType<typeof run>) => {
    const r = await p;
    expect(r.code, r.stderr).toBe(0);
    return r.stdout;
  };
  const admin = (args: string[], input?: string) =>
    run(['--config', daemon.configFile, ...args], { env: home('admin'), ...(input ? { input } : {}) });

  /** A click on `post`'s button, POSTed as the Mattermost server does (context possibly replaced). */
  function click(post: Post, actionId: string, userId: string, context?: Record<string, unknown>) {
    const action = post.props.attachments[0]!.actions.find((a) => a.id === actionId)!;
    return fetch(action.integration.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        user_id: userId,
        user_name: 'someone',
        channel_id: CHANNEL,
        channel_name: 'access',
        team_id: 'rcgiyftm7jyrxnma1osd8zswby',
        team_domain: 'ops',
        post_id: post.id,
        trigger_id: 'trigger',
        type: '',
        data_source: '',
        context: context ?? action.integration.context,
      }),
    });
  }

  beforeAll(async () => {
    let n = 0;
    mm = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const path = req.url ?? '';
        const body = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}') as Post;
        calls.push({ method: req.method ?? '', path, auth: req.headers.authorization, body });
        const send = (status: number, o: object) =>
          res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(o));
        const error = (status: number, id: string, message: string) =>
          send(status, { id, message, detailed_error: '', request_id: 'req', status_code: status });
        if (req.headers.authorization !== `Bearer ${TOKEN}`)
          return error(
            401,
            'api.context.session_expired.app_error',
            'Invalid or expired session, please login again.',
          );
        if (body.channel_id !== CHANNEL)
          return error(403, 'api.context.permissions.app_error', 'no permission');
        const stored = (id: string) => ({
          ...posts.get(id)!,
          create_at: 1733558400000,
          update_at: Date.now(),
          edit_at: 0,
          delete_at: 0,
          user_id: 'botuserid00000000000000000',
          root_id: '',
          type: '',
        });
        if (req.method === 'POST' && path === '/api/v4/posts') {
          const id = `post${String(++n).padStart(22, '0')}`;
          posts.set(id, { ...body, id });
          return send(201, stored(id));
        }
        const m = /^\/api\/v4\/posts\/([a-z0-9]+)$/.exec(path);
        if (req.method === 'PUT' && m) {
          if (!posts.has(m[1]!) || body.id !== m[1]) return error(404, 'app.post.get.app_error', 'not found');
          posts.set(m[1]!, { ...body, id: m[1]! });
          return send(200, stored(m[1]!));
        }
        error(404, 'api.context.404.app_error', 'Sorry, we could not find the page.');
      });
    });
    await new Promise<void>((r) => mm.listen(0, '127.0.0.1', r));

    daemon = await startRequestCluster('mattermost', [
      ['alice', 'requester'],
      ['mmbot', 'plugin-bot'],
    ]);
    root = daemon.root;
    writeFileSync(join(root, 'mm.token'), `${TOKEN}\n`);
    writeFileSync(join(root, 'mm.secret'), `${SECRET}\n`);
    writeFileSync(
      join(root, 'mm.yaml'),
      [
        'home: ./home-mmbot',
        'state_file: ./mm-state.json',
        'retry_interval: 200ms',
        'mattermost:',
        `  url: http://127.0.0.1:${(mm.address() as AddressInfo).port}`,
        '  token_file: ./mm.token',
        '  action_secret_file: ./mm.secret',
        `  channel_id: ${CHANNEL}`,
        '  listen: 127.0.0.1:0',
        '  reviewers: { bobuserid: bob }',
      ].join('\n'),
    );
  }, 120_000);

  afterAll(async () => {
    await plugin?.stop();
    if (daemon) expect(await daemon.stop(), daemon.err()).toBe(0);
    mm?.closeAllConnections();
    await new Promise((r) => mm?.close(r));
    if (root) rmSync(root, { recursive: true, force: true });
  });

  it('posts the request, approves it from a button action of a mapped reviewer carrying the secret, and updates the post', async () => {
    plugin = await startPlugin('mattermost', join(root, 'mm.yaml'));
    const r = JSON.parse(
      await ok(
        run(['request', 'create', '--roles', 'prod-db', '--reason', 'INC-31', '--json'], {
          env: home('alice'),
        }),
      ),
    ) as AccessRequestView;
    const created = await waitFor(
      () => calls.find((c) => c.method === 'POST' && c.body.message?.includes(r.id)),
      'POST /api/v4/posts for the request',
      30_000,
    );
    expect(created.auth).toBe(`Bearer ${TOKEN}`);
    expect(created.body.message).toBe(
      `Access request ${r.id} from alice for prod-db: pending (reason: INC-31)`,
    );
    const post = [...posts.values()].find((p) => p.message.includes(r.id))!;
    const actions = post.props.attachments[0]!.actions;
    expect(actions.map((a) => [a.id, a.integration.url])).toEqual([
      ['approve', `http://127.0.0.1:${plugin.port}/mattermost/actions`],
      ['deny', `http://127.0.0.1:${plugin.port}/mattermost/actions`],
    ]);

    // Mattermost does not sign: an action without the context's secret (or with a wrong one) is
    // refused, and a user not mapped in reviewers reviews nothing.
    const { secret: _s, ...noSecret } = actions[0]!.integration.context;
    expect((await click(post, 'approve', 'bobuserid', noSecret)).status).toBe(401);
    expect((await click(post, 'approve', 'bobuserid', { ...noSecret, secret: 'guessed' })).status).toBe(401);
    expect(await (await click(post, 'approve', 'eveuserid')).json()).toEqual({
      ephemeral_text: 'You are not a Gatehouse reviewer.',
    });
    const pending = JSON.parse(await ok(admin(['request', 'show', r.id, '--json']))) as AccessRequestView;
    expect(pending.state).toBe('pending');

    expect(await (await click(post, 'approve', 'bobuserid')).json()).toEqual({
      ephemeral_text: `Request ${r.id} is approved.`,
    });
    const shown = JSON.parse(await ok(admin(['request', 'show', r.id, '--json']))) as AccessRequestView;
    expect(shown.state).toBe('approved');
    expect(shown.reviews).toMatchObject([
      { author: 'mmbot', verdict: 'approve', reason: 'bob via Mattermost (bobuserid)' },
    ]);
    const updated = await waitFor(
      () => calls.find((c) => c.method === 'PUT' && c.body.message?.includes(r.id)),
      'PUT /api/v4/posts/{id} of the post',
      30_000,
    );
    // The post it created is the one updated; the buttons are gone.
    expect(updated.path).toBe(`/api/v4/posts/${post.id}`);
    expect(updated.body.message).toBe(
      `Access request ${r.id} from alice for prod-db: approved (reason: INC-31)`,
    );
    expect(updated.body.props.attachments[0]!.actions).toEqual([]);
    expect(calls.filter((c) => c.method === 'POST')).toHaveLength(1);
  }, 120_000);
});
