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
 * `gatehouse plugin run jira` (the BUILT binary) against a fixture of the two
 * Jira REST API v2 endpoints it calls, with the shapes of Jira's API
 * reference ("Create issue", "Add comment"):
 *
 *   Authorization: Basic base64(email:api_token)
 *   POST /rest/api/2/issue   JSON {fields: {project: {key}, issuetype: {name}, summary, description, labels}}
 *     -> 201 {"id": "10000", "key": "OPS-1", "self": "https://.../rest/api/2/issue/10000"}
 *   POST /rest/api/2/issue/{issueIdOrKey}/comment   JSON {body}
 *     -> 201 {"id": "10000", "self", "body", "author": {accountId, displayName}, "created", "updated"}
 *   errors: 401, or 400/404 {"errorMessages": [...], "errors": {field: message}}
 *
 * and the webhook Jira sends when an issue is transitioned ("Webhooks":
 * event `jira:issue_updated`): POST JSON {timestamp, webhookEvent:
 * "jira:issue_updated", issue_event_type_name: "issue_generic", user:
 * {accountId, displayName}, issue: {id, key, fields: {labels, status: {name}}},
 * changelog: {id, items: [{field: "status", fieldtype: "jira", from, fromString,
 * to, toString}]}}, with a secret configured: `X-Hub-Signature: sha256=` hex
 * HMAC-SHA256(secret, body).
 */
const USER = 'gatehouse-bot@example.com';
const TOKEN = 'jira-api-token-0123456789';
const SECRET = 'jira-webhook-secret-0123456789';

interface Issue {
  key: string;
  fields: {
    project: { key: string };
    issuetype: { name: string };
    summary: string;
    description: string;
    labels: string[];
  };
}

describe('the Jira plugin against a Jira API fixture', () => {
  let daemon: Daemon;
  let root: string;
  let jira: http.Server;
  const issues: Issue[] = [];
  const comments: { key: string; body: string }[] = [];
  const auths: (string | undefined)[] = [];
  let plugin: { port: number; stop(): Promise<void> } | undefined;
  const home = (who: string) => ({ GATEHOUSE_HOME: join(root, `home-${who}`) });
  const ok = async (p: ReturnType<typeof run>) => {
    const r = await p;
    expect(r.code, r.stderr).toBe(0);
    return r.stdout;
  };
  const admin = (args: string[], input?: string) =>
    run(['--config', daemon.configFile, ...args], { env: home('admin'), ...(input ? { input } : {}) });
  const show = async (id: string) =>
    JSON.parse(await ok(admin(['request', 'show', id, '--json']))) as AccessRequestView;

  /** The webhook Jira sends after `accountId` moved `issue` to `status`, signed with `secret`. */
  function transition(issue: Issue, accountId: string, status: string, secret = SECRET) {
    const body = JSON.stringify({
      timestamp: Date.now(),
      webhookEvent: 'jira:issue_updated',
      issue_event_type_name: 'issue_generic',
      user: { accountId, displayName: accountId },
      issue: { id: '10000', key: issue.key, fields: { ...issue.fields, status: { name: status } } },
      changelog: {
        id: '10100',
        items: [
          { field: 'status', fieldtype: 'jira', from: '1', fromString: 'To Do', to: '3', toString: status },
        ],
      },
    });
    return fetch(`http://127.0.0.1:${plugin!.port}/jira/webhook`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'x-hub-signature': `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`,
      },
      body,
    });
  }

  beforeAll(async () => {
    jira = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const send = (status: number, o: object) =>
          res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(o));
        auths.push(req.headers.authorization);
        if (req.headers.authorization !== `Basic ${Buffer.from(`${USER}:${TOKEN}`).toString('base64')}`)
          return send(401, { errorMessages: ['You are not authenticated.'], errors: {} });
        const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>;
        const path = req.url ?? '';
        if (req.method === 'POST' && path === '/rest/api/2/issue') {
          const fields = body.fields as Issue['fields'];
          if (fields?.project?.key !== 'OPS')
            return send(400, { errorMessages: [], errors: { project: 'valid project is required' } });
          const id = String(10000 + issues.length);
          const key = `OPS-${issues.length + 1}`;
          issues.push({ key, fields });
          return send(201, { id, key, self: `http://jira/rest/api/2/issue/${id}` });
        }
        const m = /^\/rest\/api\/2\/issue\/([A-Z]+-\d+)\/comment$/.exec(path);
        if (req.method === 'POST' && m) {
          if (!issues.some((i) => i.key === m[1]))
            return send(404, {
              errorMessages: ['Issue does not exist or you do not have permission to see it.'],
              errors: {},
            });
          comments.push({ key: m[1]!, body: String(body.body) });
          return send(201, {
            id: String(20000 + comments.length),
            self: `http://jira/rest/api/2/issue/${m[1]}/comment/${20000 + comments.length}`,
            body: body.body,
            author: { accountId: 'bot', displayName: 'Gatehouse' },
            created: new Date().toISOString(),
            updated: new Date().toISOString(),
          });
        }
        send(404, { errorMessages: ['not found'], errors: {} });
      });
    });
    await new Promise<void>((r) => jira.listen(0, '127.0.0.1', r));

    daemon = await startRequestCluster('jira', [
      ['alice', 'requester'],
      ['jirabot', 'plugin-bot'],
    ]);
    root = daemon.root;
    writeFileSync(join(root, 'jira.token'), `${TOKEN}\n`);
    writeFileSync(join(root, 'jira.webhook'), `${SECRET}\n`);
    writeFileSync(
      join(root, 'jira.yaml'),
      [
        'home: ./home-jirabot',
        'state_file: ./jira-state.json',
        'retry_interval: 200ms',
        'jira:',
        `  url: http://127.0.0.1:${(jira.address() as AddressInfo).port}`,
        `  user: ${USER}`,
        '  token_file: ./jira.token',
        '  project: OPS',
        '  webhook_secret_file: ./jira.webhook',
        '  listen: 127.0.0.1:0',
        '  reviewers: { 5b10ac8d82e05b22cc7d4ef5: bob }',
      ].join('\n'),
    );
  }, 120_000);

  afterAll(async () => {
    await plugin?.stop();
    if (daemon) expect(await daemon.stop(), daemon.err()).toBe(0);
    jira?.closeAllConnections();
    await new Promise((r) => jira?.close(r));
    if (root) rmSync(root, { recursive: true, force: true });
  });

  it('opens an issue per request, approves on a signed transition by a mapped user, and comments the new state', async () => {
    plugin = await startPlugin('jira', join(root, 'jira.yaml'));
    const r = JSON.parse(
      await ok(
        run(['request', 'create', '--roles', 'prod-db', '--reason', 'INC-41', '--json'], {
          env: home('alice'),
        }),
      ),
    ) as AccessRequestView;
    const issue = await waitFor(
      () => issues.find((i) => i.fields.labels.includes(`gatehouse-${r.id}`)),
      'POST /rest/api/2/issue for the request',
      30_000,
    );
    expect(issue.fields).toMatchObject({
      project: { key: 'OPS' },
      issuetype: { name: 'Task' },
      summary: 'Access request from alice for prod-db',
    });
    expect(issue.fields.description).toContain(
      `Access request ${r.id} from alice for prod-db: pending (reason: INC-41)`,
    );

    // A forged webhook (wrong secret), a transition elsewhere, and one by an unmapped account review nothing.
    expect((await transition(issue, '5b10ac8d82e05b22cc7d4ef5', 'Approved', 'not-the-secret')).status).toBe(
      401,
    );
    expect(await (await transition(issue, '5b10ac8d82e05b22cc7d4ef5', 'In Progress')).json()).toEqual({
      message: 'ignored',
    });
    expect(await (await transition(issue, 'eve-account', 'Approved')).json()).toEqual({
      message: 'not a Gatehouse reviewer',
    });
    expect((await show(r.id)).state).toBe('pending');

    expect(await (await transition(issue, '5b10ac8d82e05b22cc7d4ef5', 'Approved')).json()).toEqual({
      message: `request ${r.id} is approved`,
    });
    const shown = await show(r.id);
    expect(shown.state).toBe('approved');
    expect(shown.reviews).toMatchObject([
      {
        author: 'jirabot',
        verdict: 'approve',
        reason: `bob via Jira ${issue.key} (5b10ac8d82e05b22cc7d4ef5)`,
      },
    ]);
    const comment = await waitFor(
      () => comments.find((c) => c.key === issue.key),
      'the state comment',
      30_000,
    );
    expect(comment.body).toBe(
      `Access request ${r.id} from alice for prod-db: approved (reason: INC-41)\njirabot: approve (bob via Jira ${issue.key} (5b10ac8d82e05b22cc7d4ef5))`,
    );
    expect(issues).toHaveLength(1);
    expect(auths.every((a) => a === `Basic ${Buffer.from(`${USER}:${TOKEN}`).toString('base64')}`)).toBe(
      true,
    );
  }, 120_000);
});
