import { createHmac } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  type AuditEvent,
  AuditLog,
  AuditUnavailableError,
  type ExportSink,
  elasticsearchSink,
  JsonlFileSink,
  lokiSink,
  SshSessionAudit,
  webhookSink,
} from '../src/index.js';
import { decodeLokiPush, parseBulk, type Receiver, startReceiver } from './receivers.js';

async function until(what: string, cond: () => boolean, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function records(dir: string): AuditEvent[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((f) => f.endsWith('.jsonl'))
    .sort()
    .flatMap((f) =>
      readFileSync(join(dir, f), 'utf8')
        .trimEnd()
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => JSON.parse(l) as AuditEvent),
    );
}

const login = (user: string) => ({
  type: 'user.login' as const,
  success: true as const,
  method: 'password' as const,
  mfa: true,
  user,
});

describe('HTTP export sinks against receivers that decode what the real APIs accept', () => {
  let dir: string;
  let receivers: Receiver[];
  let logs: AuditLog[];

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'gh-http-sinks-'));
    receivers = [];
    logs = [];
  });

  afterEach(async () => {
    for (const l of logs) await l.close().catch(() => undefined);
    for (const r of receivers) await r.close();
    rmSync(dir, { recursive: true, force: true });
  });

  async function receiver(h: Parameters<typeof startReceiver>[0]): Promise<Receiver> {
    const r = await startReceiver(h);
    receivers.push(r);
    return r;
  }

  function newLog(sink: ExportSink): AuditLog {
    const log = new AuditLog({
      cluster: 'acme',
      sinks: [new JsonlFileSink({ dir: join(dir, 'audit') }), sink],
      spoolDir: join(dir, 'spool'),
    });
    logs.push(log);
    return log;
  }

  const exportDir = () => join(dir, 'spool', 'export');
  const alarms = (type: string) => records(join(dir, 'audit')).filter((e) => e.type === type);

  it.each(['protobuf', 'json'] as const)(
    'loki (%s): one stream per event type, low-cardinality labels, lines in order',
    async (encoding) => {
      const loki = await receiver((r) => {
        decodeLokiPush(r); // a body Loki could not read is answered 400
        return { status: 204 };
      });
      const sink = lokiSink({ url: loki.url, encoding, dir: exportDir(), labels: { env: 'test' } });
      const log = newLog(sink);
      // Emitted together (one group commit): a few large pushes, not one per event.
      const sent: AuditEvent[] = await Promise.all(
        Array.from({ length: 300 }, (_, i) =>
          log.emit(i % 3 === 2 ? { type: 'user.logout', user: `u${i}` } : login(`u${i}`)),
        ),
      );
      await until('delivery', () => sink.status().queued === 0 && sink.status().delivered >= sent.length);
      expect(sink.status().rejected).toBe(0);
      const pushes = loki.requests.filter((r) => r.path === '/loki/api/v1/push');
      expect(pushes.every((r) => r.method === 'POST')).toBe(true);
      const streams = pushes.flatMap(decodeLokiPush);
      const labels = new Set(streams.map((s) => s.labels));
      // No user in any label: three streams for 300 users (two types, two severities).
      expect([...labels].sort()).toEqual([
        '{cluster="acme", env="test", severity="I", source="gatehouse", type="user.login"}',
        '{cluster="acme", env="test", severity="I", source="gatehouse", type="user.logout"}',
      ]);
      const lines = streams.flatMap((s) =>
        s.entries.map((e) => ({ ...e, event: JSON.parse(e.line) as AuditEvent })),
      );
      for (const l of lines) expect(l.ns).toBe(BigInt(Date.parse(l.event.time)) * 1_000_000n);
      // Per type, in emit order; together, every event once.
      for (const type of ['user.login', 'user.logout']) {
        expect(lines.filter((l) => l.event.type === type).map((l) => l.event.id)).toEqual(
          sent.filter((e) => e.type === type).map((e) => e.id),
        );
      }
      expect(lines.map((l) => l.line).sort()).toEqual(sent.map((e) => JSON.stringify(e)).sort());
    },
  );

  it('loki: a 400 (e.g. entries too old) rejects that batch with an alarm; a 429 is retried', async () => {
    let calls = 0;
    const loki = await receiver(() => {
      calls++;
      if (calls === 1) return { status: 429, body: 'slow down' };
      if (calls === 2) return { status: 400, body: 'entry too far behind' };
      return { status: 204 };
    });
    const sink = lokiSink({ url: loki.url, dir: exportDir(), retryInitialMs: 10 });
    const log = newLog(sink);
    const first = await log.emit(login('a'));
    await until('the rejection', () => sink.status().rejected === 1);
    const second = await log.emit(login('b'));
    const pushedLines = () =>
      loki.requests
        .slice(2)
        .flatMap(decodeLokiPush)
        .flatMap((s) => s.entries.map((e) => e.line));
    // The receiver takes the next batch again: the rejected one did not block the queue.
    await until('the next delivery', () => pushedLines().some((l) => l.includes(second.id)));
    // Not sent again (only the alarm about it names its id).
    expect(pushedLines().some((l) => (JSON.parse(l) as AuditEvent).id === first.id)).toBe(false);
    await until('the alarm', () => alarms('audit.sink.rejected').length === 1);
    expect(alarms('audit.sink.rejected')[0]).toMatchObject({
      code: 'GH1223E',
      sink: 'loki',
      rejected: 1,
      ids: [first.id],
      status: '400',
    });
    // What was refused is kept for an operator, not thrown away.
    expect(readFileSync(join(exportDir(), 'loki.rejected.jsonl'), 'utf8')).toContain(first.id);
  });

  it('elasticsearch: installs the index template, then _bulk; retries only the items that failed retryably, rejects the others with an alarm', async () => {
    const stored = new Map<string, Record<string, unknown>>();
    let template:
      | { path: string; body: { index_patterns: string[]; template: { mappings: { dynamic: boolean } } } }
      | undefined;
    const bulks: string[][] = [];
    const es = await receiver((r) => {
      if (r.method === 'PUT' && r.path.startsWith('/_index_template/')) {
        template = { path: r.path, body: JSON.parse(r.body.toString()) };
        return { status: 200, body: '{"acknowledged":true}' };
      }
      if (r.method !== 'POST' || r.path !== '/_bulk') return { status: 404 };
      if (r.headers['content-type'] !== 'application/x-ndjson') return { status: 406 };
      if (!template) return { status: 500, body: 'no template yet' };
      const ops = parseBulk(r.body);
      bulks.push(ops.map((o) => o.id));
      const items = ops.map((op) => {
        const user = String(op.doc.user);
        // The first attempt at u3 meets a full write queue (429: retry); u5 never fits the mapping (400).
        let status = 201;
        if (stored.has(op.id)) status = 409;
        else if (user === 'u3' && !bulks.slice(0, -1).some((b) => b.includes(op.id))) status = 429;
        else if (user === 'u5') status = 400;
        if (status === 201) stored.set(op.id, op.doc);
        return {
          [op.action]: {
            _index: op.index,
            _id: op.id,
            status,
            ...(status >= 400 && status !== 409
              ? {
                  error: {
                    type: status === 429 ? 'es_rejected_execution_exception' : 'mapper_parsing_exception',
                    reason: `failed on ${user}`,
                  },
                }
              : {}),
          },
        };
      });
      return {
        status: 200,
        body: JSON.stringify({
          took: 1,
          errors: items.some((i) => Object.values(i)[0]!.status >= 300),
          items,
        }),
      };
    });
    const sink = elasticsearchSink({
      url: es.url,
      index: 'gh-audit',
      username: 'gatehouse',
      password: 's3cret',
      dir: exportDir(),
      retryInitialMs: 10,
    });
    const log = newLog(sink);
    const sent: AuditEvent[] = [];
    for (let i = 0; i < 8; i++) sent.push(await log.emit(login(`u${i}`)));
    await until('delivery', () => sink.status().queued === 0 && stored.size >= 7);
    expect(template?.path).toBe('/_index_template/gh-audit');
    expect(template?.body.index_patterns).toEqual(['gh-audit-*']);
    expect(template?.body.template.mappings.dynamic).toBe(false);
    const auth = es.requests.find((r) => r.path === '/_bulk')?.headers.authorization;
    expect(auth).toBe(`Basic ${Buffer.from('gatehouse:s3cret').toString('base64')}`);
    // Everything but u5 is stored, under its event id, in the daily index.
    const want = sent.filter((e) => e.user !== 'u5');
    for (const e of want) expect(stored.get(e.id)).toEqual(JSON.parse(JSON.stringify(e)));
    // The retry carried only u3, not the batch again.
    const u3 = sent[3]!.id;
    const retryBulk = bulks.filter((b) => b.includes(u3)).at(-1);
    expect(retryBulk).toEqual([u3]);
    await until('the alarm', () => alarms('audit.sink.rejected').length > 0);
    expect(alarms('audit.sink.rejected')[0]).toMatchObject({
      sink: 'elasticsearch',
      rejected: 1,
      ids: [sent[5]!.id],
      status: '400',
      error: 'mapper_parsing_exception: failed on u5',
    });
    expect(sink.status()).toMatchObject({ rejected: 1, state: 'ok' });
  });

  it('webhook: signs each batch (HMAC-SHA256 over timestamp and body), and retries a 503', async () => {
    let calls = 0;
    const hook = await receiver((r) => {
      calls++;
      const ts = String(r.headers['x-gatehouse-timestamp']);
      const mac = createHmac('sha256', 'k3y').update(`${ts}.`).update(r.body).digest('hex');
      if (r.headers['x-gatehouse-signature'] !== `sha256=${mac}`)
        return { status: 401, body: 'bad signature' };
      if (Math.abs(Date.now() / 1000 - Number(ts)) > 300) return { status: 401, body: 'stale' };
      return calls === 1 ? { status: 503 } : { status: 200 };
    });
    const sink = webhookSink({
      url: `${hook.url}/intake?source=gh`,
      secret: 'k3y',
      dir: exportDir(),
      retryInitialMs: 10,
    });
    const log = newLog(sink);
    const sent = [await log.emit(login('a')), await log.emit(login('b'))];
    await until('delivery', () => sink.status().delivered >= 2 && sink.status().queued === 0);
    expect(sink.status().rejected).toBe(0);
    expect(hook.requests[0]!.path).toBe('/intake?source=gh');
    // After the 503, the same events again, in order (the alarm about the 503 comes after them).
    const delivered = hook.requests
      .slice(1)
      .flatMap((r) => (JSON.parse(r.body.toString()) as { events: AuditEvent[] }).events)
      .filter((e) => e.type === 'user.login');
    expect(delivered).toEqual(JSON.parse(JSON.stringify(sent)));
    // A wrong key is refused by the receiver: rejected with an alarm, not retried forever.
    const bad = webhookSink({
      name: 'bad',
      url: hook.url,
      secret: 'wrong',
      dir: exportDir(),
      retryInitialMs: 10,
    });
    const log2 = newLog(bad);
    await log2.emit(login('c'));
    await until('the rejection', () => bad.status().rejected >= 1);
  });

  it('a slow sink does not slow the audit path: emits resolve while the receiver has answered nothing', async () => {
    const slow = await receiver(() => 'hang');
    const sink = webhookSink({
      url: slow.url,
      secret: 'k',
      dir: exportDir(),
      timeoutMs: 60_000,
      batchMax: 10,
    });
    const log = newLog(sink);
    for (let i = 0; i < 2000; i++) await log.emit(login(`u${i}`));
    // Every emit resolved; the receiver holds one request and answered none; the rest waits in the spool.
    await until('the first request', () => slow.requests.length === 1);
    expect(sink.status()).toMatchObject({ delivered: 0, state: 'ok' });
    expect(sink.status().queued).toBeGreaterThanOrEqual(2000);
    expect(log.available()).toBe(true);
    expect(records(join(dir, 'audit')).filter((e) => e.type === 'user.login')).toHaveLength(2000);
  });

  it('on_full block: a dead receiver fills the spool, new work is refused saying the sink is full, and it all drains when the receiver returns', async () => {
    let up = false;
    const got: string[] = [];
    const hook = await receiver((r) => {
      if (!up) return { status: 503 };
      for (const e of (JSON.parse(r.body.toString()) as { events: AuditEvent[] }).events) got.push(e.id);
      return { status: 200 };
    });
    const sink = webhookSink({
      url: hook.url,
      secret: 'k',
      dir: exportDir(),
      maxSpoolBytes: 64 * 1024,
      retryInitialMs: 10,
      retryMaxMs: 50,
    });
    const log = newLog(sink);
    const sent: string[] = [];
    while (log.available()) sent.push((await log.emit(login(`u${sent.length}`))).id);
    expect(sink.status().state).toBe('full');
    const refusal = (() => {
      try {
        log.assertAvailable();
      } catch (err) {
        return err;
      }
    })();
    expect(refusal).toBeInstanceOf(AuditUnavailableError);
    expect((refusal as Error).message).toMatch(/audit sink 'webhook' is full/);
    expect(log.unavailableReason().message).toBe(
      "the audit sink 'webhook' is full, so new sessions are refused",
    );
    // A new command on an SSH connection that is already up is refused the same way.
    const ssh = new SshSessionAudit(log, { session_id: 's', user: 'a', server: 'n', login: 'root' });
    expect(() => ssh.assertAvailable()).toThrow(
      "the audit sink 'webhook' is full, so new commands are refused",
    );
    // Events of work already running are still kept (spooled past the bound), never dropped.
    const late = await log.emit({
      type: 'session.end',
      user: 'a',
      session_id: 's',
      login: 'root',
      server: 'n',
      duration_ms: 1,
    } as never);
    await until(
      'the alarms',
      () => alarms('audit.sink.full').length === 1 && alarms('audit.sink.backlog').length >= 2,
    );
    expect(alarms('audit.sink.full')[0]).toMatchObject({ code: 'GH1221E', on_full: 'block' });
    expect(alarms('audit.sink.backlog').map((a) => (a as unknown as { percent: number }).percent)).toEqual(
      expect.arrayContaining([expect.any(Number)]),
    );
    up = true;
    sink.retryNow();
    await until('the drain', () => sink.status().queued === 0 && log.available());
    const order = got.filter((id) => sent.includes(id) || id === late.id);
    expect(order).toEqual([...sent, late.id]);
    await until('recovered', () => alarms('audit.sink.recovered').length === 1);
  });

  it('on_full drop_oldest: the oldest events go, counted in an alarm; the newest arrive', async () => {
    let up = false;
    const got: AuditEvent[] = [];
    const hook = await receiver((r) => {
      if (!up) return { status: 503 };
      got.push(...(JSON.parse(r.body.toString()) as { events: AuditEvent[] }).events);
      return { status: 200 };
    });
    const sink = webhookSink({
      url: hook.url,
      secret: 'k',
      dir: exportDir(),
      maxSpoolBytes: 32 * 1024,
      onFull: 'drop_oldest',
      retryInitialMs: 10,
      retryMaxMs: 50,
    });
    const log = newLog(sink);
    const sent: AuditEvent[] = [];
    for (let i = 0; i < 1000; i++) sent.push(await log.emit(login(`u${i}`)));
    expect(log.available()).toBe(true);
    await until('the drop alarm', () => alarms('audit.sink.dropped').length > 0);
    const dropped = alarms('audit.sink.dropped').reduce(
      (n, a) => n + (a as unknown as { dropped: number }).dropped,
      0,
    );
    expect(dropped).toBe(sink.status().dropped);
    expect(dropped).toBeGreaterThan(0);
    up = true;
    sink.retryNow();
    await until('the drain', () => sink.status().queued === 0);
    const mine = got.filter((e) => e.type === 'user.login').map((e) => e.id);
    // What arrived is the newest part, in order, with nothing missing in between.
    const ids = sent.map((e) => e.id);
    expect(mine).toEqual(ids.slice(ids.length - mine.length));
    // Every login is accounted for: delivered or counted as dropped (alarm events were spooled and dropped too).
    expect(mine.length + dropped).toBeGreaterThanOrEqual(sent.length);
    // The spool file was compacted, not left growing with dead bytes.
    expect(existsSync(join(exportDir(), 'webhook.spool.jsonl'))).toBe(false);
  });

  it('a restart keeps the spool: a new process delivers what the last one could not', async () => {
    let up = false;
    const got: string[] = [];
    const hook = await receiver((r) => {
      if (!up) return { status: 502 };
      for (const e of (JSON.parse(r.body.toString()) as { events: AuditEvent[] }).events) got.push(e.id);
      return { status: 200 };
    });
    const opts = {
      url: hook.url,
      secret: 'k',
      dir: exportDir(),
      retryInitialMs: 10,
      retryMaxMs: 50,
      closeTimeoutMs: 0,
    };
    const first = webhookSink(opts);
    const log = newLog(first);
    const sent = [await log.emit(login('a')), await log.emit(login('b'))].map((e) => e.id);
    await log.close();
    up = true;
    const second = webhookSink(opts);
    newLog(second);
    await until('the backlog', () => sent.every((id) => got.includes(id)));
    // At least once: a request the closing process aborted may still have reached the receiver,
    // so the receiver deduplicates by id; after that, each event once and in order.
    expect([...new Set(got.filter((id) => sent.includes(id)))]).toEqual(sent);
  });
});
