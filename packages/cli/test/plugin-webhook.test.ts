import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { webhookSignature } from '@gatehouse/audit';
import type { AccessRequestView } from '@gatehouse/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../../core/test/helpers.js';
import { auditEvents, type Daemon, run, startPlugin, startRequestCluster } from './harness.js';

/**
 * `gatehouse plugin run webhook` as its own process (the BUILT binary),
 * logged in as a bot user, against a real `gatehouse start` and a real HTTP
 * receiver in this test that checks every signature.
 */
const SECRET = 'webhook-secret-0123456789';
const CALLBACK_SECRET = 'callback-secret-0123456789';

interface Received {
  event: string;
  request: AccessRequestView;
  signatureOk: boolean;
}

describe('the webhook plugin', () => {
  let daemon: Daemon;
  let root: string;
  let receiver: http.Server;
  let receiverUrl = '';
  let receiverDown = false;
  const received: Received[] = [];
  let plugin: { port: number; stop(): Promise<void> } | undefined;
  const home = (who: string) => ({ GATEHOUSE_HOME: join(root, `home-${who}`) });
  const ok = async (p: ReturnType<typeof run>) => {
    const r = await p;
    expect(r.code, r.stderr).toBe(0);
    return r.stdout;
  };
  const admin = (args: string[], input?: string) =>
    run(['--config', daemon.configFile, ...args], { env: home('admin'), ...(input ? { input } : {}) });

  const startWebhookPlugin = () => startPlugin('webhook', join(root, 'plugin.yaml'));

  function callback(body: object, secret: string, ts = String(Math.floor(Date.now() / 1000))) {
    const text = JSON.stringify(body);
    return fetch(`http://127.0.0.1:${plugin!.port}/callback`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'x-gatehouse-timestamp': ts,
        'x-gatehouse-signature': webhookSignature(secret, ts, text),
      },
      body: text,
    });
  }

  const show = async (id: string) =>
    JSON.parse(await ok(admin(['request', 'show', id, '--json']))) as AccessRequestView;

  beforeAll(async () => {
    receiver = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        if (receiverDown) {
          res.writeHead(503).end();
          return;
        }
        const body = Buffer.concat(chunks).toString('utf8');
        const ts = String(req.headers['x-gatehouse-timestamp']);
        const parsed = JSON.parse(body) as Omit<Received, 'signatureOk'>;
        received.push({
          ...parsed,
          signatureOk: req.headers['x-gatehouse-signature'] === webhookSignature(SECRET, ts, body),
        });
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
    receiverUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`;

    daemon = await startRequestCluster('plugins', [
      ['alice', 'requester'],
      ['bot', 'plugin-bot'],
    ]);
    root = daemon.root;
    writeFileSync(join(root, 'webhook.secret'), `${SECRET}\n`);
    writeFileSync(join(root, 'callback.secret'), `${CALLBACK_SECRET}\n`);
    writeFileSync(
      join(root, 'plugin.yaml'),
      [
        'home: ./home-bot',
        'state_file: ./plugin-state.json',
        'retry_interval: 200ms',
        'webhook:',
        `  url: ${receiverUrl}`,
        '  secret_file: ./webhook.secret',
        '  callback_secret_file: ./callback.secret',
        '  listen: 127.0.0.1:0',
      ].join('\n'),
    );
  }, 120_000);

  afterAll(async () => {
    await plugin?.stop();
    if (daemon) expect(await daemon.stop(), daemon.err()).toBe(0);
    receiver?.closeAllConnections();
    await new Promise((r) => receiver?.close(r));
    if (root) rmSync(root, { recursive: true, force: true });
  });

  it('posts signed, catches up after the receiver was down, reviews from a signed callback, refuses a forged one, and does not post twice after a restart', async () => {
    plugin = await startWebhookPlugin();
    // The receiver is down: the request is made and stays reviewable anyway.
    receiverDown = true;
    const r = JSON.parse(
      await ok(
        run(['request', 'create', '--roles', 'prod-db', '--reason', 'INC-7', '--json'], {
          env: home('alice'),
        }),
      ),
    ) as AccessRequestView;
    expect((await show(r.id)).state).toBe('pending');
    receiverDown = false;
    const created = await waitFor(
      () => received.find((e) => e.request.id === r.id),
      'the created event once the receiver is back',
      30_000,
    );
    expect(created).toMatchObject({ event: 'access_request.created', signatureOk: true });
    expect(created.request).toMatchObject({
      user: 'alice',
      roles: ['prod-db'],
      reason: 'INC-7',
      state: 'pending',
    });

    // A forged callback (wrong secret) and a replayed old one are refused; nothing changes.
    const forged = await callback(
      { request_id: r.id, verdict: 'approve', reviewer: 'mallory' },
      'not-the-secret',
    );
    expect(forged.status).toBe(401);
    const stale = await callback(
      { request_id: r.id, verdict: 'approve', reviewer: 'mallory' },
      CALLBACK_SECRET,
      String(Math.floor(Date.now() / 1000) - 3600),
    );
    expect(stale.status).toBe(401);
    expect((await show(r.id)).state).toBe('pending');

    const approved = await callback(
      { request_id: r.id, verdict: 'approve', reviewer: 'bob', reason: 'ok' },
      CALLBACK_SECRET,
    );
    expect(approved.status).toBe(200);
    expect(await approved.json()).toEqual({ message: `request ${r.id} is approved` });
    expect((await show(r.id)).reviews).toMatchObject([
      { author: 'bot', verdict: 'approve', reason: 'bob via webhook: ok' },
    ]);
    await waitFor(
      () => received.find((e) => e.request.id === r.id && e.event === 'access_request.updated'),
      'the updated event',
      30_000,
    );
    expect(
      received.filter((e) => e.request.id === r.id).map((e) => [e.event, e.request.state, e.signatureOk]),
    ).toEqual([
      ['access_request.created', 'pending', true],
      ['access_request.updated', 'approved', true],
    ]);

    // Restart with a request still pending: it is not posted again; the next one is.
    const create = async (reason: string) =>
      JSON.parse(
        await ok(
          run(['request', 'create', '--roles', 'prod-db', '--reason', reason, '--json'], {
            env: home('alice'),
          }),
        ),
      ) as AccessRequestView;
    const second = await create('INC-8');
    await waitFor(
      () => received.find((e) => e.request.id === second.id),
      'the second request posted',
      30_000,
    );
    await plugin.stop();
    // The watch cursor was saved with what was posted; a request made while the plugin is
    // down is told after the restart (from the cursor), once.
    const saved = JSON.parse(readFileSync(join(root, 'plugin-state.json'), 'utf8')) as { cursor: number };
    expect(saved.cursor).toBeGreaterThan(0);
    const third = await create('INC-9');
    plugin = await startWebhookPlugin();
    await waitFor(() => received.find((e) => e.request.id === third.id), 'the third request posted', 30_000);
    const fourth = await create('INC-10');
    await waitFor(
      () => received.find((e) => e.request.id === fourth.id),
      'the fourth request posted',
      30_000,
    );
    expect(received.filter((e) => e.request.id === third.id)).toHaveLength(1);
    expect(received.filter((e) => e.request.id === second.id)).toHaveLength(1);
    expect(received.filter((e) => e.request.id === r.id)).toHaveLength(2);
    const review = auditEvents(daemon).find(
      (e) => e.type === 'access_request.review' && (e as { request_id?: string }).request_id === r.id,
    );
    expect(review).toMatchObject({ user: 'bot', verdict: 'approve', reason: 'bob via webhook: ok' });
  }, 150_000);
});
