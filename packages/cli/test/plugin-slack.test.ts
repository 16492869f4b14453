import { createHmac } from 'node:crypto';
import { rmSync, writeFileSync } from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { AccessRequestView } from '@gatehouse/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../../core/test/helpers.js';
import { type Daemon, run, startPlugin, startRequestCluster } from './harness.js';

/**
 * `gatehouse plugin run slack` (the BUILT binary) against a fixture of the
 * two Slack Web API methods it calls, with the request and response shapes
 * of Slack's API docs (docs.slack.dev, "chat.postMessage", "chat.update"):
 *
 *   POST /api/chat.postMessage   Authorization: Bearer xoxb-...   JSON {channel, text, blocks}
 *     -> 200 {"ok": true, "channel": "C123ABC456", "ts": "1503435956.000247",
 *             "message": {"text": ..., "type": "message", "subtype": "bot_message", "ts": ...}}
 *   POST /api/chat.update        JSON {channel, ts, text, blocks}
 *     -> 200 {"ok": true, "channel": ..., "ts": ..., "text": ...}
 *   errors: 200 {"ok": false, "error": "invalid_auth" | "channel_not_found" | "message_not_found"}
 *
 * and the interactive callback Slack sends when a button is clicked
 * ("Handling user interaction"): POST to the app's Request URL,
 * `application/x-www-form-urlencoded` with `payload=<JSON {type:
 * "block_actions", user: {id}, actions: [{action_id, value}]}>`, signed
 * ("Verifying requests from Slack") with `X-Slack-Request-Timestamp` and
 * `X-Slack-Signature: v0=` + hex HMAC-SHA256(signing secret, `v0:<timestamp>:<body>`).
 */
const TOKEN = 'xoxb-test-token-0123456789';
const SIGNING = 'slack-signing-secret-0123456789';
const CHANNEL = 'C123ABC456';

interface Call {
  method: string;
  auth: string | undefined;
  body: {
    channel: string;
    ts?: string;
    text: string;
    blocks: { type: string; elements?: { action_id?: string; value?: string }[] }[];
  };
}

describe('the Slack plugin against a Slack API fixture', () => {
  let daemon: Daemon;
  let root: string;
  let slack: http.Server;
  const calls: Call[] = [];
  let plugin: { port: number; stop(): Promise<void> } | undefined;
  const home = (who: string) => ({ GATEHOUSE_HOME: join(root, `home-${who}`) });
  const ok = async (p: ReturnType<typeof run>) => {
    const r = await p;
    expect(r.code, r.stderr).toBe(0);
    return r.stdout;
  };
  const admin = (args: string[], input?: string) =>
    run(['--config', daemon.configFile, ...args], { env: home('admin'), ...(input ? { input } : {}) });

  /** A button click as Slack sends it, signed with `secret`. */
  function click(userId: string, actionId: string, requestId: string, secret = SIGNING) {
    const payload = {
      type: 'block_actions',
      user: { id: userId, username: 'someone', team_id: 'T0001' },
      channel: { id: CHANNEL },
      actions: [
        { type: 'button', action_id: actionId, block_id: `gatehouse-${requestId}`, value: requestId },
      ],
    };
    const body = new URLSearchParams({ payload: JSON.stringify(payload) }).toString();
    const ts = String(Math.floor(Date.now() / 1000));
    return fetch(`http://127.0.0.1:${plugin!.port}/slack/interactive`, {
      method: 'POST',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        'x-slack-request-timestamp': ts,
        'x-slack-signature': `v0=${createHmac('sha256', secret).update(`v0:${ts}:${body}`).digest('hex')}`,
      },
      body,
    });
  }

  beforeAll(async () => {
    let n = 0;
    slack = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const method = (req.url ?? '').replace('/api/', '');
        const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Call['body'];
        calls.push({ method, auth: req.headers.authorization, body });
        const send = (o: object) =>
          res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(o));
        if (req.headers.authorization !== `Bearer ${TOKEN}`)
          return send({ ok: false, error: 'invalid_auth' });
        if (body.channel !== CHANNEL) return send({ ok: false, error: 'channel_not_found' });
        if (method === 'chat.postMessage') {
          const ts = `1503435956.${String(++n).padStart(6, '0')}`;
          return send({
            ok: true,
            channel: CHANNEL,
            ts,
            message: { text: body.text, type: 'message', subtype: 'bot_message', bot_id: 'B123ABC456', ts },
          });
        }
        if (method === 'chat.update') {
          if (!body.ts) return send({ ok: false, error: 'message_not_found' });
          return send({ ok: true, channel: CHANNEL, ts: body.ts, text: body.text });
        }
        send({ ok: false, error: 'unknown_method' });
      });
    });
    await new Promise<void>((r) => slack.listen(0, '127.0.0.1', r));

    daemon = await startRequestCluster('slack', [
      ['alice', 'requester'],
      ['slackbot', 'plugin-bot'],
    ]);
    root = daemon.root;
    writeFileSync(join(root, 'slack.token'), `${TOKEN}\n`);
    writeFileSync(join(root, 'slack.signing'), `${SIGNING}\n`);
    writeFileSync(
      join(root, 'slack.yaml'),
      [
        'home: ./home-slackbot',
        'state_file: ./slack-state.json',
        'retry_interval: 200ms',
        'slack:',
        `  api_url: http://127.0.0.1:${(slack.address() as AddressInfo).port}/api`,
        '  token_file: ./slack.token',
        '  signing_secret_file: ./slack.signing',
        `  channel: ${CHANNEL}`,
        '  listen: 127.0.0.1:0',
        '  reviewers: { U0BOB: bob }',
      ].join('\n'),
    );
  }, 120_000);

  afterAll(async () => {
    await plugin?.stop();
    if (daemon) expect(await daemon.stop(), daemon.err()).toBe(0);
    slack?.closeAllConnections();
    await new Promise((r) => slack?.close(r));
    if (root) rmSync(root, { recursive: true, force: true });
  });

  it('posts the request, approves it from a signed button click of a mapped reviewer, and updates the message', async () => {
    plugin = await startPlugin('slack', join(root, 'slack.yaml'));
    const r = JSON.parse(
      await ok(
        run(['request', 'create', '--roles', 'prod-db', '--reason', 'INC-11', '--json'], {
          env: home('alice'),
        }),
      ),
    ) as AccessRequestView;
    const posted = await waitFor(
      () => calls.find((c) => c.method === 'chat.postMessage' && c.body.text.includes(r.id)),
      'chat.postMessage for the request',
      30_000,
    );
    expect(posted.auth).toBe(`Bearer ${TOKEN}`);
    expect(posted.body.text).toBe(`Access request ${r.id} from alice for prod-db: pending (reason: INC-11)`);
    const buttons = posted.body.blocks.find((b) => b.type === 'actions')?.elements;
    expect(buttons?.map((b) => [b.action_id, b.value])).toEqual([
      ['approve', r.id],
      ['deny', r.id],
    ]);

    // A forged click (wrong signing secret) and a click by an unmapped Slack user review nothing.
    expect((await click('U0BOB', 'approve', r.id, 'not-the-signing-secret')).status).toBe(401);
    const stranger = await click('U0EVE', 'approve', r.id);
    expect(await stranger.json()).toEqual({
      response_type: 'ephemeral',
      text: 'You are not a Gatehouse reviewer.',
    });
    const pending = JSON.parse(await ok(admin(['request', 'show', r.id, '--json']))) as AccessRequestView;
    expect(pending.state).toBe('pending');

    const approved = await click('U0BOB', 'approve', r.id);
    expect(await approved.json()).toEqual({
      response_type: 'ephemeral',
      text: `Request ${r.id} is approved.`,
    });
    const shown = JSON.parse(await ok(admin(['request', 'show', r.id, '--json']))) as AccessRequestView;
    expect(shown.state).toBe('approved');
    expect(shown.reviews).toMatchObject([
      { author: 'slackbot', verdict: 'approve', reason: 'bob via Slack (U0BOB)' },
    ]);
    const updated = await waitFor(
      () => calls.find((c) => c.method === 'chat.update' && c.body.text.includes(r.id)),
      'chat.update of the message',
      30_000,
    );
    // The message it posted is the one updated; the buttons are gone.
    expect(updated.body.ts).toBe('1503435956.000001');
    expect(updated.body.text).toBe(
      `Access request ${r.id} from alice for prod-db: approved (reason: INC-11)`,
    );
    expect(updated.body.blocks.some((b) => b.type === 'actions')).toBe(false);
  }, 120_000);
});
