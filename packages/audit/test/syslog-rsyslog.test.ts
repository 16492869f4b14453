import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeServerCa } from '../../adapter-postgres/test/peers.js';
import { type AuditEvent, AuditLog, type ExportSink, JsonlFileSink, syslogSink } from '../src/index.js';
import { type Rsyslog, type SyslogLine, startRsyslog } from '../src/testing/rsyslog.js';

/** Waits for a condition (no timing assertions: the deadline only turns a hang into a failure). */
async function until(what: string, cond: () => boolean, ms = 60_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function records(dir: string): AuditEvent[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.jsonl'))
    .sort()
    .flatMap((f) =>
      readFileSync(join(dir, f), 'utf8')
        .trimEnd()
        .split('\n')
        .map((l) => JSON.parse(l) as AuditEvent),
    );
}

/** The events rsyslog wrote for one input, parsed from MSG, first occurrence of each id kept (dedup by id). */
function received(lines: SyslogLine[], input: string): { events: AuditEvent[]; copies: number } {
  const seen = new Set<string>();
  const events: AuditEvent[] = [];
  let copies = 0;
  for (const l of lines) {
    if (l.input !== input) continue;
    copies++;
    const e = JSON.parse(l.msg) as AuditEvent;
    if (seen.has(e.id)) continue;
    seen.add(e.id);
    events.push(e);
  }
  return { events, copies };
}

describe('syslog sink against a real rsyslogd', () => {
  let dir: string;
  let rs: Rsyslog;
  let ca: ReturnType<typeof makeServerCa>;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'gh-syslog-'));
    ca = makeServerCa(dir, 'localhost');
    rs = await startRsyslog({ dir, caFile: ca.caFile, certFile: ca.certFile, keyFile: ca.keyFile });
  });

  afterAll(async () => {
    await rs?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  function newLog(name: string, sink: ExportSink) {
    const base = join(dir, name);
    return new AuditLog({
      cluster: 'acme',
      sinks: [new JsonlFileSink({ dir: join(base, 'audit') }), sink],
      spoolDir: join(base, 'spool'),
    });
  }

  it.each(['tcp', 'tls', 'udp'] as const)(
    'delivers events over %s as RFC 5424: MSGID the code, structured data with id and type, the event as JSON',
    async (protocol) => {
      const port = protocol === 'tcp' ? rs.tcpPort : protocol === 'tls' ? rs.tlsPort : rs.udpPort;
      const sink = syslogSink({
        name: `syslog-${protocol}`,
        protocol,
        host: protocol === 'tls' ? 'localhost' : '127.0.0.1',
        port,
        ca: ca.caPem,
        dir: join(dir, protocol, 'export'),
      });
      const log = newLog(protocol, sink);
      const sent: AuditEvent[] = [];
      sent.push(
        await log.emit({ type: 'user.login', success: true, method: 'password', mfa: true, user: 'alice' }),
      );
      sent.push(
        await log.emit({
          type: 'exec',
          user: 'bob',
          session_id: 's1',
          login: 'root',
          server: 'web-1',
          // Characters RFC 5424 makes special in structured data, and a newline octet counting must carry.
          command: 'echo "a]b\\c"\nwhoami',
          exit_code: 0,
        } as never),
      );
      // A message that is not plain ASCII, and a W code.
      sent.push(
        await log.emit({
          type: 'access.denied',
          user: 'ève',
          resource_kind: 'node',
          resource: 'web-1',
          reason: 'no role «dev»',
        }),
      );
      await until(`${protocol} lines`, () => received(rs.lines(), protocol).events.length >= sent.length);
      const lines = rs.lines().filter((l) => l.input === protocol);
      const got = received(lines, protocol).events;
      expect(got).toEqual(sent);
      expect(lines.map((l) => l.msgid)).toEqual(sent.map((e) => e.code));
      for (const [i, l] of lines.entries()) {
        expect(l.sd).toBe(`[gatehouse@32473 id="${sent[i]!.id}" type="${sent[i]!.type}" cluster="acme"]`);
      }
      await until('the spool to empty', () => sink.status().queued === 0);
      expect(sink.status()).toMatchObject({ state: 'ok', delivered: sent.length, rejected: 0 });
      await log.close();
    },
  );

  it('tls refuses a receiver whose certificate is not from the configured CA, and says so', async () => {
    const other = makeServerCa(mkdtempSync(join(dir, 'other-ca-')), 'localhost');
    const sink = syslogSink({
      name: 'syslog-badca',
      protocol: 'tls',
      host: 'localhost',
      port: rs.tlsPort,
      ca: other.caPem,
      dir: join(dir, 'badca', 'export'),
      retryInitialMs: 50,
      retryMaxMs: 100,
    });
    const log = newLog('badca', sink);
    const e = await log.emit({ type: 'user.logout', user: 'mallory' });
    await until('the sink to fail', () => sink.status().state === 'failing');
    expect(sink.status().error).toMatch(/certificate/);
    expect(sink.status().queued).toBeGreaterThanOrEqual(1);
    expect(rs.lines().some((l) => l.msg.includes(e.id))).toBe(false);
    // The alarm is in the gateway's own record.
    await until('the alarm', () =>
      records(join(dir, 'badca', 'audit')).some((r) => r.type === 'audit.sink.backlog'),
    );
    const alarm = records(join(dir, 'badca', 'audit')).find(
      (r) => r.type === 'audit.sink.backlog',
    ) as AuditEvent & {
      error: string;
      code: string;
    };
    expect(alarm).toMatchObject({ sink: 'syslog-badca', code: 'GH1220W' });
    expect(alarm.error).toMatch(/certificate/);
    await log.close();
  });

  it('outage: rsyslogd stopped for 30 s while 10,000 events are emitted; all arrive, in order, none missing after dedup by id', async () => {
    const sink = syslogSink({
      name: 'syslog-outage',
      protocol: 'tcp',
      host: '127.0.0.1',
      port: rs.tcpPort,
      dir: join(dir, 'outage', 'export'),
      retryInitialMs: 100,
      retryMaxMs: 1000,
    });
    const log = newLog('outage', sink);
    const ids: string[] = [];
    const emit = async (n: number) => {
      for (let i = 0; i < n; i++) {
        const e = await log.emit({
          type: 'exec',
          user: 'alice',
          session_id: 's',
          login: 'root',
          server: 'n',
          command: `cmd ${ids.length}`,
          exit_code: 0,
        } as never);
        ids.push(e.id);
      }
    };
    await emit(2000);
    await rs.stop();
    // 8,000 more while the receiver is gone, spread over 30 s.
    const outageEnd = Date.now() + 30_000;
    for (let chunk = 0; chunk < 40; chunk++) {
      await emit(200);
      await new Promise((r) => setTimeout(r, Math.max(0, (outageEnd - Date.now()) / (40 - chunk))));
    }
    expect(ids).toHaveLength(10_000);
    // The sink noticed: events wait in its spool, and the alarm is on record.
    expect(sink.status().state).toBe('failing');
    expect(sink.status().queued).toBeGreaterThan(0);
    await rs.start();
    await until(
      'all 10,000 events at rsyslog',
      () => {
        const got = received(rs.lines(), 'tcp').events.filter(
          (e) => e.type === 'exec' && (e as { command?: string }).command?.startsWith('cmd '),
        );
        return got.length >= 10_000;
      },
      120_000,
    );
    const { events } = received(rs.lines(), 'tcp');
    const wanted = new Set(ids);
    const mine = events.filter((e) => wanted.has(e.id));
    expect(mine.map((e) => e.id)).toEqual(ids);
    await until('the spool to drain', () => sink.status().queued === 0);
    const alarms = records(join(dir, 'outage', 'audit')).filter((r) => r.type.startsWith('audit.sink.'));
    expect(alarms.map((a) => a.type)).toContain('audit.sink.backlog');
    await log.close();
  }, 180_000);
});
