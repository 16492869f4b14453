// The web UI's audit page against a store of 1,000,000 events (issue 7):
// seeds the gateway's SQLite audit index, then times filtered page queries
// through the real HTTPS API (what the page calls) and the whole round trip
// in Debian's Chromium (click Search -> rows on screen). Figures are printed,
// not asserted.
import { mkdtemp, rm } from 'node:fs/promises';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createIdGenerator, SqliteAuditIndex } from '@gatehouse/audit';
import { createGateway } from '@gatehouse/core';

export const description =
  'web audit page: filtered page queries over 1,000,000 stored events (API and browser)';

const here = path.dirname(fileURLToPath(import.meta.url));
const PASSWORD = 'bench password 123';

function parseArgs(argv) {
  const o = { events: 1_000_000, runs: 5, browser: true };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--events') o.events = Number(argv[++i]);
    else if (a === '--runs') o.runs = Number(argv[++i]);
    else if (a === '--no-browser') o.browser = false;
    else throw new Error(`unknown option ${a} (use --events N, --runs N, --no-browser)`);
  }
  return o;
}

const TYPES = [
  'user.login',
  'db.session.query',
  'kube.request',
  'session.start',
  'session.end',
  'access.denied',
];
const WORDS = ['select', 'orders', 'invoice', 'deploy', 'payments', 'backup', 'migrate', 'report'];

/** Synthetic events spread over the last 30 days, 100 users, a few types, words for text search. */
function* synthetic(n, cluster) {
  const now = Date.now();
  const span = 30 * 24 * 3600_000;
  const id = createIdGenerator(() => now);
  for (let i = 0; i < n; i++) {
    const time = new Date(now - span + Math.floor((i / n) * span)).toISOString();
    const type = TYPES[i % TYPES.length];
    // A multiplicative hash, so users, servers and words are independent of the type.
    const h = Math.imul(i, 2654435761) >>> 0;
    const user = `user-${(h >>> 7) % 100}`;
    const e = {
      id: id(),
      time,
      type,
      code: 'GH9999I',
      cluster,
      user,
      server: `db-${(h >>> 8) % 40}`,
      session_id: `s-${Math.floor(i / 20)}`,
      message: `${WORDS[(h >>> 12) % WORDS.length]} ${WORDS[(h >>> 16) % WORDS.length]} ${i}`,
    };
    if (type === 'user.login') Object.assign(e, { success: i % 9 !== 0, method: 'password', mfa: false });
    yield e;
  }
}

function request(port, ca, { method = 'GET', pathname, body, cookie }) {
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        host: '127.0.0.1',
        port,
        method,
        path: pathname,
        ca,
        servername: 'localhost',
        headers: {
          accept: 'application/json',
          ...(body ? { 'content-type': 'application/json' } : {}),
          ...(cookie ? { cookie } : {}),
        },
      },
      (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () =>
          resolve({ status: res.statusCode, headers: res.headers, text: Buffer.concat(chunks).toString() }),
        );
      },
    );
    req.on('error', reject);
    req.end(body ? JSON.stringify(body) : undefined);
  });
}

function stats(ms) {
  const s = [...ms].sort((a, b) => a - b);
  return { median: s[Math.floor(s.length / 2)], min: s[0], max: s[s.length - 1] };
}

export async function run(argv) {
  const o = parseArgs(argv);
  const dir = await mkdtemp(path.join(os.tmpdir(), 'gh-bench-web-audit-'));
  let gw;
  let browser;
  try {
    // 1. Seed the index the gateway will open (same file as createGateway's).
    const t0 = performance.now();
    const index = new SqliteAuditIndex({ path: path.join(dir, 'audit', 'index.db') });
    let batch = [];
    for (const e of synthetic(o.events, 'bench')) {
      batch.push(e);
      if (batch.length === 20_000) {
        index.writeBatch(batch);
        batch = [];
      }
    }
    if (batch.length) index.writeBatch(batch);
    const stored = index.count();
    await index.close();
    const seedS = (performance.now() - t0) / 1000;
    console.log(`seeded ${stored.toLocaleString('en-US')} events in ${seedS.toFixed(1)} s`);

    // 2. A real gateway on that data dir (serving a fresh UI build), an admin, a session cookie.
    const outDir = path.join(dir, 'web-dist');
    if (o.browser) {
      const { build } = await import('vite');
      const webRoot = path.join(here, '..', 'packages', 'web');
      await build({
        configFile: path.join(webRoot, 'vite.config.ts'),
        root: webRoot,
        logLevel: 'error',
        build: { outDir },
      });
    }
    gw = await createGateway({
      dataDir: dir,
      clusterName: 'bench',
      secondFactor: 'off',
      env: {},
      webDir: outDir,
    });
    const { port } = await gw.listen({ host: '127.0.0.1', port: 0 });
    const ca = gw.authorities.get('host').map((k) => k.x509CertPem);
    await gw.admin.createUser({ name: 'admin', roles: ['admin'], password: PASSWORD });
    const login = await request(port, ca, {
      method: 'POST',
      pathname: '/v1/login',
      body: { user: 'admin', password: PASSWORD },
    });
    if (login.status !== 200) throw new Error(`login failed: ${login.status} ${login.text}`);
    const cookie = String(login.headers['set-cookie']).split(';')[0];

    // 3. The page's queries through the HTTPS API.
    const day = new Date(Date.now() - 10 * 24 * 3600_000);
    const from = new Date(day.getTime() - 12 * 3600_000).toISOString();
    const to = new Date(day.getTime() + 12 * 3600_000).toISOString();
    const queries = [
      ['newest page, no filter', 'limit=50'],
      ['type + user', 'types=db.session.query&user=user-42&limit=50'],
      ['type + user + one day', `types=db.session.query&user=user-42&from=${from}&to=${to}&limit=50`],
      ['text + user', 'q=invoice&user=user-7&limit=50'],
      ['rare: failed logins of one user', 'types=user.login&user=user-18&q=password&limit=50'],
    ];
    console.log(`\nGET /v1/audit/events over HTTPS, ${o.runs} runs each (ms):`);
    console.log(
      `${'query'.padEnd(34)} ${'median'.padStart(8)} ${'min'.padStart(8)} ${'max'.padStart(8)}  rows`,
    );
    let cursorQuery;
    for (const [name, qs] of queries) {
      const times = [];
      let rows = 0;
      for (let r = 0; r < o.runs; r++) {
        const t = performance.now();
        const res = await request(port, ca, { pathname: `/v1/audit/events?${qs}`, cookie });
        times.push(performance.now() - t);
        if (res.status !== 200) throw new Error(`${name}: HTTP ${res.status} ${res.text}`);
        const page = JSON.parse(res.text);
        rows = page.events.length;
        if (name === 'type + user' && page.next_cursor)
          cursorQuery = `${qs}&cursor=${encodeURIComponent(page.next_cursor)}`;
      }
      const s = stats(times);
      console.log(
        `${name.padEnd(34)} ${s.median.toFixed(1).padStart(8)} ${s.min.toFixed(1).padStart(8)} ${s.max.toFixed(1).padStart(8)}  ${rows}`,
      );
    }
    if (cursorQuery) {
      const times = [];
      for (let r = 0; r < o.runs; r++) {
        const t = performance.now();
        await request(port, ca, { pathname: `/v1/audit/events?${cursorQuery}`, cookie });
        times.push(performance.now() - t);
      }
      const s = stats(times);
      console.log(
        `${'type + user, next page (cursor)'.padEnd(34)} ${s.median.toFixed(1).padStart(8)} ${s.min.toFixed(1).padStart(8)} ${s.max.toFixed(1).padStart(8)}`,
      );
    }

    // 4. The same filtered search in the browser: click Search -> rows on screen.
    if (o.browser) {
      const { chromium } = await import('playwright-core');
      browser = await chromium.launch({
        executablePath: '/usr/bin/chromium',
        args: [
          '--no-sandbox',
          '--disable-gpu',
          '--disable-background-networking',
          '--disable-component-update',
          '--disable-sync',
          '--no-first-run',
        ],
      });
      // Bench only: the gateway's certificate comes from its own host CA.
      const ctx = await browser.newContext({ ignoreHTTPSErrors: true, baseURL: `https://localhost:${port}` });
      const page = await ctx.newPage();
      await page.goto('/web/login');
      await page.getByLabel('User').fill('admin');
      await page.getByLabel('Password').fill(PASSWORD);
      await page.getByRole('button', { name: 'Sign in' }).click();
      await page.getByTestId('current-user').waitFor();
      await page.goto('/web/audit');
      await page.getByTestId('audit-events').waitFor({ timeout: 60_000 });
      const times = [];
      for (let r = 0; r < o.runs; r++) {
        await page.getByLabel('Event type').selectOption('db.session.query');
        await page.getByLabel('User', { exact: true }).fill(`user-${(r * 6) % 100}`);
        const t = performance.now();
        await page.getByRole('button', { name: 'Search' }).click();
        await page
          .locator(`[data-testid="audit-events"] tbody tr[data-event-type="db.session.query"] >> nth=0`)
          .waitFor({ timeout: 60_000 });
        await page
          .getByText(`user-${(r * 6) % 100}`, { exact: true })
          .first()
          .waitFor();
        times.push(performance.now() - t);
      }
      const s = stats(times);
      console.log(
        `\nbrowser: filtered search, click -> first page on screen (ms): median ${s.median.toFixed(0)}, min ${s.min.toFixed(0)}, max ${s.max.toFixed(0)}`,
      );
    }
  } finally {
    await browser?.close();
    await gw?.close();
    await rm(dir, { recursive: true, force: true });
  }
}
