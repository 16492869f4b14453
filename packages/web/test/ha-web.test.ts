import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { PostgresRecordingStore } from '@gatehouse/audit';
import { createGateway, GatehouseClient, type Gateway } from '@gatehouse/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Postgres, startPostgres } from '../../adapter-postgres/test/peers.js';
import { newTlsKey } from '../../core/test/helpers.js';
import { buildUi, searchAuditLog, signIn, UiBrowser } from './harness.js';

// The web UI of gateway C, with three gateways on one real PostgreSQL: its
// audit page finds what A and B wrote, and its player plays a recording B made.
// (The same across `gatehouse start` processes: packages/cli/test/ha-postgres.test.ts.)

const PASSWORD = 'correct horse battery staple';
let server: Postgres;
let dist: string;
let ui: UiBrowser;
const gws: { gw: Gateway; port: number; dir: string; caPem: string[] }[] = [];

beforeAll(async () => {
  dist = await buildUi();
  server = await startPostgres({});
  await server.sql('CREATE DATABASE haweb');
  const key = randomBytes(32).toString('base64');
  for (const name of ['a', 'b', 'c']) {
    const dir = await mkdtemp(path.join(os.tmpdir(), `gh-haweb-${name}-`));
    const gw = await createGateway({
      dataDir: dir,
      webDir: dist,
      clusterName: 'ha.example',
      secondFactor: 'off',
      values: {
        backend: {
          type: 'postgres',
          uri: `postgres://postgres@localhost:${server.port}/haweb?host=${server.dir}`,
        },
      },
      // Gateways sharing a backend share the key that seals the CAs in it.
      env: { GATEHOUSE_SECRETS_KEY: key },
    });
    const { port } = await gw.listen({ host: '127.0.0.1', port: 0 });
    gws.push({ gw, port, dir, caPem: gw.authorities.get('host').map((k) => k.x509CertPem) });
  }
  await gws[0]!.gw.admin.createUser({ name: 'admin', roles: ['admin', 'access'], password: PASSWORD });
  await gws[0]!.gw.admin.createUser({
    name: 'quinn',
    roles: ['access'],
    traits: { logins: ['root'] },
    password: PASSWORD,
  });
  ui = await UiBrowser.launch(
    gws.map((g) => ({ port: g.port, caPem: g.gw.exportCa('x509', { type: 'host' }) })),
  );
}, 180_000);

afterAll(async () => {
  await ui?.close();
  for (const g of gws) {
    await g.gw.close();
    await rm(g.dir, { recursive: true, force: true });
  }
  await server?.stop();
  if (dist) await rm(dist, { recursive: true, force: true });
});

async function loginOn(g: (typeof gws)[number]): Promise<void> {
  const api = new GatehouseClient({ proxy: `127.0.0.1:${g.port}`, caPem: g.caPem });
  try {
    await api.login({ user: 'quinn', password: PASSWORD, tls_public_key: newTlsKey().publicPem });
  } finally {
    api.close();
  }
}

describe('web UI of gateway C with three gateways on one PostgreSQL', () => {
  it("the audit page finds A's and B's events; the player plays a recording made on B", async () => {
    const [a, b, c] = gws as [(typeof gws)[number], (typeof gws)[number], (typeof gws)[number]];
    await loginOn(a);
    await loginOn(b);
    const ids = async (g: Gateway) =>
      (await g.audit.search({ types: ['user.login'], user: 'quinn' })).events.map((e) => e.id);
    // Each gateway's own record (its JSON-lines files) holds its login; the index is shared.
    const local = async (g: (typeof gws)[number]) => {
      const dir = path.join(g.dir, 'audit');
      const out: string[] = [];
      for (const f of (await readdir(dir)).filter((n) => /^events-.*\.jsonl$/.test(n))) {
        for (const line of (await readFile(path.join(dir, f), 'utf8')).split('\n')) {
          if (!line) continue;
          const e = JSON.parse(line) as { id: string; type: string; user?: string };
          if (e.type === 'user.login' && e.user === 'quinn') out.push(e.id);
        }
      }
      return out;
    };
    const [fromA, fromB] = [await local(a), await local(b)];
    expect(fromA).toHaveLength(1);
    expect(fromB).toHaveLength(1);
    // Read-your-writes holds on the gateway that wrote; another gateway's events reach the shared
    // index when that gateway's index writer gets to them (a moment later).
    await expect
      .poll(() => ids(c.gw), { timeout: 15_000 })
      .toEqual(expect.arrayContaining([...fromA, ...fromB]));

    // A recording made on B (its store uploads it when it ends).
    const rec = await b.gw.recordings.create({
      session_id: 'ha-web-1',
      kind: 'ssh',
      user: 'quinn',
      login: 'root',
      server: 'node1',
      cols: 80,
      rows: 24,
    });
    rec.output(new TextEncoder().encode('$ echo made-on-b\r\nmade-on-b\r\n$ '));
    await rec.close();
    await (b.gw.recordings as PostgresRecordingStore).flush();

    const { context, page } = await ui.newPage(c.port);
    try {
      await signIn(page, 'admin', PASSWORD);
      await page.getByRole('link', { name: 'Audit log' }).click();
      await page.getByTestId('audit-events').waitFor();
      await page.getByLabel('Event type').selectOption('user.login');
      await page.getByLabel('User', { exact: true }).fill('quinn');
      const isThisSearch = (q: URLSearchParams) =>
        q.get('types') === 'user.login' && q.get('user') === 'quinn';
      const answered = page.waitForResponse((r) => {
        const url = new URL(r.url());
        return url.pathname === '/v1/audit/events' && isThisSearch(url.searchParams);
      });
      await searchAuditLog(page, isThisSearch);
      const body = (await (await answered).json()) as { events: { id: string }[] };
      expect(body.events.map((e) => e.id)).toEqual(expect.arrayContaining([...fromA, ...fromB]));
      await page.locator('tbody tr[data-event-type="user.login"]').nth(1).waitFor();
      expect(await page.locator('tbody tr[data-event-type="user.login"]').count()).toBe(body.events.length);

      await page.goto('/web/recordings/ha-web-1');
      // The output came a few ms after the start (real clock): play to it.
      await page.getByRole('button', { name: 'Play' }).click();
      await page.getByTestId('terminal').locator('.xterm-rows').filter({ hasText: 'made-on-b' }).waitFor();
      await ui.shot(page, 'ha-player-on-c');
    } finally {
      await context.close();
    }
  });
});
