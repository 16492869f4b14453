import { rm } from 'node:fs/promises';
import { ManualClock } from '@gatehouse/core';
import type { BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type TestGateway, waitFor } from '../../core/test/helpers.js';
import { buildUi, searchAuditLog, signIn, UiBrowser } from './harness.js';

// Access requests in the web UI (docs/decisions/0036-access-requests.md):
// Debian's Chromium on one gateway, second factor off. alice asks for the
// `prod` role on the Requests page; bob, whose role may review `prod`,
// denies it from his inbox with a reason that alice then sees; a second
// request bob approves shows approved; a third one runs out (the gateway's
// clock moves past its end) and shows expired; the audit log page lists the
// access_request events.

const PASSWORD = 'correct horse battery staple';
const clock = new ManualClock(Date.now());

let dist: string;
let ui: UiBrowser;
let tg: TestGateway;
let alice: { context: BrowserContext; page: Page };
let bob: { context: BrowserContext; page: Page };
let carol: { context: BrowserContext; page: Page };
/** alice's request bob denied (first test). */
let deniedId = '';

beforeAll(async () => {
  dist = await buildUi();
  tg = await startGateway({ webDir: dist, clusterName: 'requests.example', clock });
  const gw = tg.gw;
  await gw.admin.putRole('kind: role\nname: asker\nallow:\n  request: { roles: [prod] }\n', { create: true });
  await gw.admin.putRole(
    'kind: role\nname: prod\nallow:\n  db_labels: { env: prod }\n  db_users: [app]\n  db_names: ["*"]\n',
    { create: true },
  );
  await gw.admin.putRole('kind: role\nname: reviewer\nallow:\n  review_requests: { roles: [prod] }\n', {
    create: true,
  });
  await gw.admin.createUser({ name: 'alice', roles: ['asker'], password: PASSWORD });
  // bob reviews, and reads the audit log (the built-in auditor role).
  await gw.admin.createUser({ name: 'bob', roles: ['reviewer', 'auditor'], password: PASSWORD });
  // carol reviews too (she revokes what bob approved); dave reaches a staging database.
  await gw.admin.createUser({ name: 'carol', roles: ['reviewer'], password: PASSWORD });
  await gw.admin.putRole(
    'kind: role\nname: stage\nallow:\n  db_labels: { env: stage }\n  db_users: [app]\n',
    {
      create: true,
    },
  );
  await gw.admin.createUser({ name: 'dave', roles: ['asker', 'stage'], password: PASSWORD });
  await gw.admin.addDatabase({
    name: 'orders-stage',
    protocol: 'postgres',
    uri: 'postgres://127.0.0.1:1/orders',
    labels: { env: 'stage' },
  });
  ui = await UiBrowser.launch([{ port: tg.port, caPem: gw.exportCa('x509', { type: 'host' }) }]);
  alice = await ui.newPage(tg.port);
  bob = await ui.newPage(tg.port);
  await signIn(alice.page, 'alice', PASSWORD);
  await signIn(bob.page, 'bob', PASSWORD);
  carol = await ui.newPage(tg.port);
  await signIn(carol.page, 'carol', PASSWORD);
}, 120_000);

afterAll(async () => {
  await alice?.context.close();
  await bob?.context.close();
  await carol?.context.close();
  await ui?.close();
  await tg?.close();
  if (dist) await rm(dist, { recursive: true, force: true });
});

/** alice asks for `prod` from the Requests page; the id of the row it adds. */
async function requestProd(page: Page, reason: string, ttl = '1h'): Promise<string> {
  await page.goto('/web/requests');
  const form = page.getByRole('form', { name: 'Request access' });
  await form.getByLabel('Roles').fill('prod');
  await form.getByLabel('Reason').fill(reason);
  await form.getByLabel('For').fill(ttl);
  await form.getByRole('button', { name: 'Request access' }).click();
  const row = page.getByTestId('my-requests').locator('tr[data-request]').filter({ hasText: reason });
  await row.getByTestId('request-state').filter({ hasText: 'pending' }).waitFor();
  const id = await row.getAttribute('data-request');
  if (!id) throw new Error('the new request has no row id');
  return id;
}

/** bob reviews request `id` from his inbox. */
async function review(id: string, verdict: 'Approve' | 'Deny', reason: string): Promise<void> {
  const { page } = bob;
  await page.goto('/web/requests');
  const row = page.getByTestId('review-inbox').locator(`tr[data-request="${id}"]`);
  await row.getByLabel('Review reason').fill(reason);
  await row.getByRole('button', { name: verdict }).click();
  await page
    .locator('.notice')
    .filter({ hasText: `${verdict === 'Approve' ? 'Approved' : 'Denied'} alice's request` })
    .waitFor();
}

/** alice's row for request `id`, after a reload. */
async function myRow(id: string) {
  await alice.page.goto('/web/requests');
  const row = alice.page.getByTestId('my-requests').locator(`tr[data-request="${id}"]`);
  await row.waitFor();
  return row;
}

describe('access requests in the web UI', () => {
  it('the Resources page leads to the request form', async () => {
    const { page } = alice;
    await page.goto('/web/resources');
    await page.getByRole('link', { name: 'request access', exact: true }).click();
    await page.getByRole('form', { name: 'Request access' }).waitFor();
    expect(new URL(page.url()).pathname).toBe('/web/requests');
  });

  it("alice asks, bob denies with a reason from his inbox, alice sees denied with bob's reason", async () => {
    const id = await requestProd(alice.page, 'INC-4211: fix stuck orders');
    deniedId = id;
    // The requester has no inbox entry for her own request.
    expect(await alice.page.getByTestId('review-inbox').locator(`tr[data-request="${id}"]`).count()).toBe(0);

    await bob.page.goto('/web/requests');
    const inboxRow = bob.page.getByTestId('review-inbox').locator(`tr[data-request="${id}"]`);
    await inboxRow.waitFor();
    await expect(inboxRow.innerText()).resolves.toContain('INC-4211: fix stuck orders');
    await expect(inboxRow.innerText()).resolves.toContain('alice');
    await review(id, 'Deny', 'not during the freeze');
    await ui.shot(bob.page, 'requests-reviewer');

    const row = await myRow(id);
    await row.getByTestId('request-state').filter({ hasText: 'denied' }).waitFor();
    await expect(row.getByTestId('review').innerText()).resolves.toBe('bob denied: not during the freeze');
    // A closed request offers no Drop.
    expect(await row.getByRole('button', { name: 'Drop' }).count()).toBe(0);
    await ui.shot(alice.page, 'requests-denied');
  });

  it('a request bob approves shows approved, with the command that uses it', async () => {
    const id = await requestProd(alice.page, 'INC-4212: rotate the orders password');
    await review(id, 'Approve', 'ok for today');
    const row = await myRow(id);
    await row.getByTestId('request-state').filter({ hasText: 'approved' }).waitFor();
    await expect(row.getByTestId('review').innerText()).resolves.toBe('bob approved: ok for today');
    await expect(row.innerText()).resolves.toContain(`gatehouse login --request-id ${id}`);
    // Once reviewed it leaves bob's inbox.
    await bob.page.goto('/web/requests');
    await bob.page.getByRole('heading', { name: 'Your requests' }).waitFor();
    expect(await bob.page.locator(`[data-testid="review-inbox"] tr[data-request="${id}"]`).count()).toBe(0);
  });

  it("Assume roles gives the browser session an approved request's roles (audited); dropping it ends that session", async () => {
    const { page } = alice;
    const id = await requestProd(page, 'INC-4215: restart the orders worker');
    await review(id, 'Approve', 'go ahead');
    const row = await myRow(id);
    await row.getByRole('button', { name: 'Assume roles' }).click();
    // The page reloads itself once the session is swapped: wait for that reload to show the mark
    // (a navigation of our own at the same moment was aborted by it).
    await alice.page
      .getByTestId('my-requests')
      .locator(`tr[data-request="${id}"]`)
      .getByTestId('assumed')
      .waitFor();
    const who = await page.evaluate(async () => (await fetch('/v1/whoami')).json());
    expect(who.roles).toEqual(['asker', 'prod']);
    expect(who.access_requests).toEqual([id]);
    const assumed = await tg.gw.audit.search({ types: ['access_request.assume'] });
    expect(assumed.events.map((e) => [e.user, e.type === 'access_request.assume' && e.request_id])).toEqual([
      ['alice', id],
    ]);

    // Refused by core: a denied request, and (for bob) someone else's.
    const tryAssume = (p: Page, rid: string) =>
      p.evaluate(async (rid) => {
        const res = await fetch(`/v1/requests/${rid}/assume`, {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            'x-csrf-token': sessionStorage.getItem('gatehouse.csrf') ?? '',
          },
          body: '{}',
        });
        return { status: res.status, body: await res.json() };
      }, rid);
    const denied = await tryAssume(page, deniedId);
    expect([denied.status, denied.body.code, denied.body.title]).toEqual([
      403,
      'GH_ERR_ACCESS_DENIED',
      expect.stringContaining('was denied by bob'),
    ]);
    const notHis = await tryAssume(bob.page, id);
    expect([notHis.status, notHis.body.code]).toEqual([403, 'GH_ERR_ACCESS_DENIED']);

    // alice drops it: the session that used it ends (the list after the drop is refused), and she signs in again.
    await (await myRow(id)).getByRole('button', { name: 'Drop' }).click();
    await page.waitForURL(/\/web\/login/);
    await signIn(page, 'alice', PASSWORD, undefined, { stay: true });
    const again = await page.evaluate(async () => (await fetch('/v1/whoami')).json());
    expect(again.roles).toEqual(['asker']);
  });

  it('a request whose time runs out shows expired, and may no longer be dropped', async () => {
    // A few real seconds: the gateway's expiry timer runs on real time and records
    // the expiry (access_request.expire) once the gateway's clock says it is over.
    const id = await requestProd(alice.page, 'INC-4213: look at the slow query', '3s');
    await (await myRow(id)).getByRole('button', { name: 'Drop' }).waitFor();
    clock.advance(60_000);
    const row = await myRow(id);
    await row.getByTestId('request-state').filter({ hasText: 'expired' }).waitFor();
    expect(await row.getByRole('button', { name: 'Drop' }).count()).toBe(0);
    await waitFor(
      async () =>
        (await tg.gw.audit.search({ types: ['access_request.expire'] })).events.find(
          (e) => e.type === 'access_request.expire' && e.request_id === id,
        ),
      'the access_request.expire event',
      20_000,
    );
  });

  it("a refused review shows the API's message: reviewing a request that was dropped meanwhile", async () => {
    const id = await requestProd(alice.page, 'INC-4214: one more look');
    await bob.page.goto('/web/requests');
    const inboxRow = bob.page.getByTestId('review-inbox').locator(`tr[data-request="${id}"]`);
    await inboxRow.waitFor();
    // alice withdraws it while bob's inbox still shows it.
    const mine = await myRow(id);
    await mine.getByRole('button', { name: 'Drop' }).click();
    await mine.getByTestId('request-state').filter({ hasText: 'dropped' }).waitFor();
    await inboxRow.getByLabel('Review reason').fill('late');
    await inboxRow.getByRole('button', { name: 'Approve' }).click();
    const alert = bob.page.getByRole('alert');
    await alert.waitFor();
    await expect(alert.innerText()).resolves.toMatch(/dropped/);
  });

  it('the audit log page lists the access_request events with their reasons', async () => {
    const { page } = bob;
    await page.goto('/web/audit');
    const table = page.getByTestId('audit-events');
    await table.waitFor();
    // The review search last: its rows are opened below.
    for (const type of ['access_request.create', 'access_request.expire', 'access_request.review']) {
      await page.getByLabel('Event type').selectOption(type);
      await searchAuditLog(page, (q) => q.get('types') === type);
      await table.locator(`tbody tr[data-event-type="${type}"]`).first().waitFor();
    }
    // bob's denial carries his reason: the expanded event shows it.
    const reviews = table.locator('tbody tr[data-event-type="access_request.review"]');
    const texts: string[] = [];
    for (let i = 0; i < (await reviews.count()); i++) {
      const eventId = await reviews.nth(i).getAttribute('data-event-id');
      await reviews.nth(i).click();
      // The panel shows the event just clicked (not the one before) once its id is in it.
      const json = page.getByTestId('event-json').filter({ hasText: eventId ?? 'no event id' });
      texts.push(await json.innerText());
    }
    // bob's three reviews: the denial, and the two approvals.
    expect(texts).toHaveLength(3);
    expect(texts.filter((t) => t.includes('not during the freeze'))).toEqual([
      expect.stringMatching(/"verdict": "deny"/),
    ]);
  });

  it('a reviewer revokes an approved request from the inbox: the browser session that assumed it ends', async () => {
    const { page } = alice;
    const id = await requestProd(page, 'INC-4216: replay the failed payments');
    await tg.gw.authorizedAdmin('bob').reviewAccessRequest(id, { verdict: 'approve', reason: 'ok' });
    await (await myRow(id)).getByRole('button', { name: 'Assume roles' }).click();
    await page
      .getByTestId('my-requests')
      .locator(`tr[data-request="${id}"]`)
      .getByTestId('assumed')
      .waitFor();

    // carol did not review it: it is in her inbox as approved, with Revoke only.
    await carol.page.goto('/web/requests');
    const row = carol.page.getByTestId('review-inbox').locator(`tr[data-request="${id}"]`);
    await row.getByTestId('inbox-state').filter({ hasText: 'approved' }).waitFor();
    expect(await row.getByRole('button', { name: 'Approve' }).count()).toBe(0);
    await row.getByLabel('Review reason').fill('the incident is over');
    await row.getByRole('button', { name: 'Revoke' }).click();
    await carol.page.locator('.notice').filter({ hasText: "Revoked alice's request" }).waitFor();
    await ui.shot(carol.page, 'requests-revoked');
    // bob approved it: it was never in his inbox to revoke (one review per reviewer).
    await bob.page.goto('/web/requests');
    await bob.page.getByRole('heading', { name: 'Your requests' }).waitFor();
    expect(await bob.page.locator(`[data-testid="review-inbox"] tr[data-request="${id}"]`).count()).toBe(0);

    // alice's session carried the request: the Requests page's next refresh is refused, which
    // sends her to sign in again.
    await page.waitForURL(/\/web\/login/);
    await signIn(page, 'alice', PASSWORD, undefined, { stay: true });
    const again = await page.evaluate(async () => (await fetch('/v1/whoami')).json());
    expect(again.roles).toEqual(['asker']);
    const mine = await myRow(id);
    await mine.getByTestId('request-state').filter({ hasText: 'denied' }).waitFor();
    await expect(mine.getByTestId('request-state').innerText()).resolves.toContain('the incident is over');
    const review = (await tg.gw.audit.search({ types: ['access_request.review'] })).events.find(
      (e) => e.type === 'access_request.review' && e.request_id === id && e.user === 'carol',
    );
    expect(review).toMatchObject({ verdict: 'deny', state: 'denied', reason: 'the incident is over' });
  });

  it("a resource's Request access button opens the request form with the resource filled in", async () => {
    const { context, page } = await ui.newPage(tg.port);
    try {
      await signIn(page, 'dave', PASSWORD);
      await page.goto('/web/resources');
      const row = page.getByTestId('resources').locator('tr[data-resource="orders-stage"]');
      await row.getByRole('link', { name: 'Request access to db/orders-stage' }).click();
      const form = page.getByRole('form', { name: 'Request access' });
      await form.waitFor();
      expect(new URL(page.url()).pathname).toBe('/web/requests');
      await expect(form.getByLabel('Resources').inputValue()).resolves.toBe('db/orders-stage');
    } finally {
      await context.close();
    }
  });
});
