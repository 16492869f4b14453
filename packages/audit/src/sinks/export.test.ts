import { appendFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MemoryAuditLog } from '../testing/index.js';
import { type ExportItem, ExportSink, type SendResult, type Transport } from './export.js';

/** A receiver in the same process: takes batches while `up`, records what it took. */
class Receiver implements Transport {
  up = true;
  got: ExportItem[][] = [];
  answer: (items: ExportItem[]) => SendResult | undefined = () => undefined;
  async send(items: ExportItem[]) {
    if (!this.up) throw new Error('connection refused');
    this.got.push(items);
    return this.answer(items);
  }
}

async function until(what: string, cond: () => boolean): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('ExportSink: the queue every export sink shares', () => {
  let dir: string;
  let log: MemoryAuditLog;
  const sinks: ExportSink[] = [];

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'gh-export-'));
    log = new MemoryAuditLog({ cluster: 'acme' });
  });

  afterEach(async () => {
    for (const s of sinks.splice(0)) await s.close();
    rmSync(dir, { recursive: true, force: true });
  });

  function sink(rx: Receiver, opts: Partial<ConstructorParameters<typeof ExportSink>[2]> = {}): ExportSink {
    const s = new ExportSink('test', rx, { name: 'x', dir, retryInitialMs: 5, retryMaxMs: 20, ...opts });
    s.attach(log);
    sinks.push(s);
    return s;
  }

  async function events(n: number, from = 0) {
    const out = [];
    for (let i = 0; i < n; i++) out.push(await log.emit({ type: 'user.logout', user: `u${from + i}` }));
    return out;
  }

  it('a spool left by a crash (torn last line) is delivered in order, the torn line kept aside', async () => {
    const before = await events(3);
    mkdirSync(dir, { recursive: true });
    appendFileSync(
      join(dir, 'x.spool.jsonl'),
      `${before.map((e) => JSON.stringify(e)).join('\n')}\n{"id":"torn`,
    );
    const rx = new Receiver();
    const s = sink(rx);
    const after = await events(1, 3);
    s.writeBatch(after);
    await until('delivery', () => s.status().queued === 0);
    expect(rx.got.flat().map((i) => i.id)).toEqual([...before, ...after].map((e) => e.id));
    expect(readFileSync(join(dir, 'x.rejected.jsonl'), 'utf8')).toBe('{"id":"torn\n');
  });

  it('raises each alarm once per episode: failing, 50%, 90%, full; recovered when the spool is empty', async () => {
    const rx = new Receiver();
    rx.up = false;
    const s = sink(rx, { maxSpoolBytes: 4096 });
    log.clear();
    // Each event is ~110 bytes as JSON: 40 of them pass the 4 KiB bound.
    const all = await events(40);
    s.writeBatch([all[0]!]);
    await until('the failure', () => s.status().state === 'failing');
    for (const e of all.slice(1)) s.writeBatch([e]);
    await until(
      'the failure alarm',
      () => s.status().state === 'full' && log.find('audit.sink.backlog').length === 3,
    );
    const backlog = log.find('audit.sink.backlog');
    expect(backlog.map((a) => a.percent >= 90)).toEqual([false, false, true]);
    expect(backlog[0]?.error).toBe('connection refused');
    expect(log.find('audit.sink.full')).toHaveLength(1);
    expect(s.available()).toBe(false);
    rx.up = true;
    s.retryNow();
    await until('the drain', () => s.status().queued === 0);
    await until('recovered', () => log.find('audit.sink.recovered').length === 1);
    expect(s.available()).toBe(true);
    expect(rx.got.flat()).toHaveLength(40);
    expect(log.find('audit.sink.backlog')).toHaveLength(3);
  });

  it('retries only the items the receiver asked to retry, and does not count refused ones as delivered', async () => {
    const rx = new Receiver();
    let round = 0;
    rx.answer = () => {
      round++;
      // First: u1 may be retried, u2 is refused; then the retried u1 is refused after all.
      if (round === 1) return { retry: [1], rejected: [{ index: 2, status: '400', reason: 'bad' }] };
      if (round === 2) return { rejected: [{ index: 0, status: '413', reason: 'too large' }] };
      return undefined;
    };
    const s = sink(rx);
    const sent = await events(4);
    s.writeBatch(sent);
    await until('delivery', () => s.status().queued === 0);
    expect(rx.got.map((b) => b.map((i) => i.event.user))).toEqual([['u0', 'u1', 'u2', 'u3'], ['u1']]);
    expect(s.status()).toMatchObject({ delivered: 2, rejected: 2 });
    expect(log.find('audit.sink.rejected').map((a) => a.ids)).toEqual([[sent[2]!.id], [sent[1]!.id]]);
  });
});
