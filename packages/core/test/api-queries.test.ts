import { request } from 'node:https';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GatehouseClient, isGatehouseError } from '../src/index.js';
import { newTlsKey, startGateway, type TestGateway } from './helpers.js';

/**
 * The admin API's list queries over real HTTPS (a listening gateway, an
 * admin's client certificate) and in process: page sizes and time bounds
 * are checked where requests come in.
 */

const PASSWORD = 'correct horse battery staple';
const EVENTS = 2100;

let t: TestGateway;
let cert: { certPem: string; keyPem: string };

function client(): GatehouseClient {
  return new GatehouseClient({ proxy: `127.0.0.1:${t.port}`, caPem: t.caPem, ...cert });
}

/** GET `path` with the admin's certificate, as any HTTP client could send it. */
function get(path: string): Promise<{ status: number; body: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port: t.port,
        path,
        servername: 'localhost',
        ca: t.caPem,
        cert: cert.certPem,
        key: cert.keyPem,
      },
      (res) => {
        let text = '';
        res.on('data', (d) => {
          text += d;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

async function rejection(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => {
      throw new Error('expected a rejection');
    },
    (err: unknown) => err,
  );
}

beforeAll(async () => {
  t = await startGateway();
  await t.gw.admin.createUser({ name: 'admin', roles: ['admin'], password: PASSWORD });
  const key = newTlsKey();
  const res = await new GatehouseClient({ proxy: `127.0.0.1:${t.port}`, caPem: t.caPem }).login({
    user: 'admin',
    password: PASSWORD,
    tls_public_key: key.publicPem,
  });
  cert = { certPem: res.tls_cert!, keyPem: key.privatePem };
  await Promise.all(
    Array.from({ length: EVENTS }, (_, i) =>
      t.gw.audit.emit({ type: 'user.logout', user: `user${i % 7}`, message: `event ${i}` }),
    ),
  );
}, 60_000);

afterAll(async () => {
  await t?.close();
});

describe('audit search limit', () => {
  it('limit=1e9 is a GH_ERR_VALIDATION naming the largest page, not a search (was taken as a page size)', async () => {
    for (const limit of ['1e9', '1000000000', '1001', '0', '-5', '0x10', '2.5', 'lots']) {
      const r = await get(`/v1/audit/events?limit=${encodeURIComponent(limit)}`);
      expect(r.status, limit).toBe(400);
      expect(r.body.code, limit).toBe('GH_ERR_VALIDATION');
      expect(String(r.body.title), limit).toMatch(/^limit must be a whole number/);
    }
    const big = await get('/v1/audit/events?limit=1000000000');
    expect(big.body.title).toBe('limit must be a whole number from 1 to 1000, got 1000000000');
    expect(String(big.body.hint)).toContain('next_cursor');
  });

  it('the same through the client and the in-process admin API', async () => {
    const c = client();
    try {
      const err = await rejection(c.searchAudit({ limit: 1_000_000_000 }));
      expect(isGatehouseError(err, 'GH_ERR_VALIDATION')).toBe(true);
    } finally {
      c.close();
    }
    const local = await rejection(t.gw.admin.searchAudit({ limit: 5000 }));
    expect(isGatehouseError(local, 'GH_ERR_VALIDATION')).toBe(true);
  });

  it('pages of the largest size, followed by their cursors, give every event once', async () => {
    const c = client();
    const ids = new Set<string>();
    let pages = 0;
    try {
      let cursor: string | undefined;
      do {
        const page = await c.searchAudit({
          types: ['user.logout'],
          limit: 1000,
          ...(cursor ? { cursor } : {}),
        });
        for (const e of page.events) ids.add(e.id);
        pages++;
        cursor = page.next_cursor;
      } while (cursor);
    } finally {
      c.close();
    }
    expect(ids.size).toBe(EVENTS);
    expect(pages).toBe(3);
  });
});

describe('time bounds', () => {
  it('an audit search with from=zzz or a date that does not exist is refused', async () => {
    for (const q of ['from=zzz', 'to=2026-02-30', 'from=', 'from=1']) {
      const r = await get(`/v1/audit/events?${q}`);
      expect(r.status, q).toBe(400);
      expect(r.body.code, q).toBe('GH_ERR_VALIDATION');
    }
  });

  it('a recording listing with from=1 or a rolled-over date is refused (Date.parse read "1" as 2001)', async () => {
    for (const q of [
      'from=1',
      'from=zzz',
      'to=2026-02-30T10:00:00Z',
      'from=2026-01-31T10:00',
      'limit=1e9',
      'limit=10001',
    ]) {
      const r = await get(`/v1/recordings?${q}`);
      expect(r.status, q).toBe(400);
      expect(r.body.code, q).toBe('GH_ERR_VALIDATION');
    }
    const ok = await get('/v1/recordings?from=2026-01-31T10:00:00Z&limit=10000');
    expect(ok.status).toBe(200);
    const local = await rejection(t.gw.admin.listRecordings({ from: '1' }));
    expect(isGatehouseError(local, 'GH_ERR_VALIDATION')).toBe(true);
  });
});
