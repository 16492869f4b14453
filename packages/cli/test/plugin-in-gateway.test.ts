import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { webhookSignature } from '@gatehouse/audit';
import type { AccessRequestView } from '@gatehouse/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../../core/test/helpers.js';
import { auditEvents, type Daemon, run, startRequestCluster } from './harness.js';

/**
 * The webhook plugin inside `gatehouse start` (the gateway config's
 * `plugins:`), against a real HTTP receiver: it acts as its configured
 * user through core, and a plugin that cannot start (its callback port is
 * taken) is started again after a backoff.
 */
const SECRET = 'in-gateway-webhook-secret-0123';
const CALLBACK_SECRET = 'in-gateway-callback-secret-0123';

describe('a plugin inside the gateway process', () => {
  let daemon: Daemon;
  let dir: string;
  let receiver: http.Server;
  let blocker: net.Server;
  let port = 0;
  const received: { event: string; request: AccessRequestView; signatureOk: boolean }[] = [];
  const home = (who: string) => ({ GATEHOUSE_HOME: join(daemon.root, `home-${who}`) });

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'gh-plugin-in-gw-'));
    writeFileSync(join(dir, 'webhook.secret'), `${SECRET}\n`);
    writeFileSync(join(dir, 'callback.secret'), `${CALLBACK_SECRET}\n`);
    receiver = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8');
        const ts = String(req.headers['x-gatehouse-timestamp']);
        received.push({
          ...(JSON.parse(body) as { event: string; request: AccessRequestView }),
          signatureOk: req.headers['x-gatehouse-signature'] === webhookSignature(SECRET, ts, body),
        });
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
    // The plugin's callback port is taken when the gateway starts: the plugin fails to start.
    blocker = net.createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
    port = (blocker.address() as AddressInfo).port;
    daemon = await startRequestCluster(
      'plugins-in-gw',
      [
        ['alice', 'requester'],
        ['bot', 'plugin-bot'],
      ],
      [
        'plugins:',
        '  - user: bot',
        `    state_file: ${join(dir, 'state.json')}`,
        '    retry_interval: 200ms',
        '    webhook:',
        `      url: http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`,
        `      secret_file: ${join(dir, 'webhook.secret')}`,
        `      callback_secret_file: ${join(dir, 'callback.secret')}`,
        `      listen: 127.0.0.1:${port}`,
        '',
      ].join('\n'),
    );
  }, 120_000);

  afterAll(async () => {
    if (daemon) expect(await daemon.stop(), daemon.err()).toBe(0);
    blocker?.close();
    receiver?.closeAllConnections();
    await new Promise((r) => receiver?.close(r));
    if (dir) rmSync(dir, { recursive: true, force: true });
    if (daemon) rmSync(daemon.root, { recursive: true, force: true });
  });

  it('restarts after failing to start, posts signed, and reviews as its user through core', async () => {
    await waitFor(
      () => /plugin webhook \(as bot\): did not start: .*EADDRINUSE/.test(daemon.err()) || undefined,
      'the failed start',
      30_000,
    );
    await new Promise<void>((r) => blocker.close(() => r()));
    await waitFor(
      () =>
        daemon.err().includes(`plugin webhook (as bot): running; callbacks on port ${port}/callback`) ||
        undefined,
      'the plugin started again',
      90_000,
    );
    const made = await run(['request', 'create', '--roles', 'prod-db', '--reason', 'INC-31', '--json'], {
      env: home('alice'),
    });
    expect(made.code, made.stderr).toBe(0);
    const r = JSON.parse(made.stdout) as AccessRequestView;
    const created = await waitFor(
      () => received.find((e) => e.request.id === r.id),
      'the created event',
      30_000,
    );
    expect(created).toMatchObject({ event: 'access_request.created', signatureOk: true });

    const callback = (body: object, secret: string) => {
      const text = JSON.stringify(body);
      const ts = String(Math.floor(Date.now() / 1000));
      return fetch(`http://127.0.0.1:${port}/callback`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'x-gatehouse-timestamp': ts,
          'x-gatehouse-signature': webhookSignature(secret, ts, text),
        },
        body: text,
      });
    };
    expect((await callback({ request_id: r.id, verdict: 'approve', reviewer: 'x' }, 'wrong')).status).toBe(
      401,
    );
    const ok = await callback({ request_id: r.id, verdict: 'approve', reviewer: 'bob' }, CALLBACK_SECRET);
    expect(await ok.json()).toEqual({ message: `request ${r.id} is approved` });
    await waitFor(
      () => received.find((e) => e.request.id === r.id && e.request.state === 'approved'),
      'the updated event',
      30_000,
    );
    // The review is the bot user's, made and audited by core like any review.
    const review = auditEvents(daemon).find(
      (e) => e.type === 'access_request.review' && (e as { request_id?: string }).request_id === r.id,
    );
    expect(review).toMatchObject({ user: 'bot', verdict: 'approve', reason: 'bob via webhook' });
    // A second approval by the same bot is refused by core (one review per reviewer).
    const again = await callback(
      { request_id: r.id, verdict: 'approve', reviewer: 'carol' },
      CALLBACK_SECRET,
    );
    expect(again.status).toBe(409);
  }, 180_000);
});
