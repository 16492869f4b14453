import { writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import type { AuditEvent } from '@gatehouse/audit';
import { MemorySink } from '@gatehouse/audit/testing';
import { afterEach, describe, expect, it } from 'vitest';
import { encodeProxyV2, fetchPinnedCa, GatehouseClient } from '../../src/index.js';
import { Flood } from '../flood.js';
import { newTlsKey, runClient, startGateway, type TestGateway, tlsConnect, waitFor } from '../helpers.js';

/**
 * One address (127.0.0.2: Linux loopback answers for all of 127/8) holds
 * ~1,000 idle connections and trickles slow ones, reconnecting each the
 * moment the gateway closes it. That used to fill the 512 shared handshake
 * slots (every login, ssh and psql from anyone failed) and write one
 * listener.reject per refused connection (~100k a minute here). Real
 * clients from other addresses must keep working, and the audit log must
 * get a handful of events whose counts add up to every refusal.
 */

const PASSWORD = 'correct horse battery staple';
const ATTACKER = '127.0.0.2';

interface Setup {
  t: TestGateway;
  sink: MemorySink;
  caFile: string;
  client(cert?: { certPem: string; keyPem: string }): GatehouseClient;
}

let cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanup.reverse()) await c();
  cleanup = [];
});

async function gateway(listener: Record<string, unknown> = {}): Promise<Setup> {
  const sink = new MemorySink();
  const t = await startGateway({
    values: {
      listener: { first_byte_timeout: '2s', handshake_timeout: '2s', ...listener },
      auth: { second_factor: 'off', login_rate_per_minute: 1000 },
    },
    auditSinks: [sink],
  });
  let closed = false;
  const closeOnce = t.close.bind(t);
  // The tests close the gateway themselves (to read what it wrote on close); cleanup after a failure.
  const close = async () => {
    if (closed) return;
    closed = true;
    await closeOnce();
  };
  cleanup.push(close);
  t.close = close;
  await t.gw.admin.createUser({
    name: 'alice',
    roles: ['access'],
    traits: { logins: ['alice'] },
    password: PASSWORD,
  });
  const caFile = path.join(t.dir, 'ca.pem');
  writeFileSync(caFile, t.caPem.join('\n'));
  return {
    t,
    sink,
    caFile,
    client: (cert) => new GatehouseClient({ proxy: `127.0.0.1:${t.port}`, caPem: t.caPem, ...cert }),
  };
}

function flood(o: ConstructorParameters<typeof Flood>[0]): Flood {
  const f = new Flood(o);
  cleanup.push(async () => f.destroy());
  return f;
}

/** curl (not our client) asks for /v1/ping, from `from`; resolves to curl's exit code and output. */
async function curlPing(s: Setup, from = '127.0.0.1') {
  return runClient(
    'curl',
    [
      '-s',
      '--interface',
      from,
      '--cacert',
      s.caFile,
      '--max-time',
      '10',
      `https://127.0.0.1:${s.t.port}/v1/ping`,
    ],
    { timeoutMs: 15_000 },
  );
}

/** A login through the API: certificates for alice. */
async function login(s: Setup) {
  const key = newTlsKey();
  const res = await s.client().login({ user: 'alice', password: PASSWORD, tls_public_key: key.publicPem });
  return { certPem: res.tls_cert!, keyPem: key.privatePem };
}

/** openssl s_client: a verified TLS handshake and an HTTP request over it. */
async function opensslPing(s: Setup) {
  return runClient(
    'openssl',
    [
      's_client',
      '-connect',
      `127.0.0.1:${s.t.port}`,
      '-servername',
      'localhost',
      '-CAfile',
      s.caFile,
      '-verify_return_error',
      '-alpn',
      'http/1.1',
      '-quiet',
    ],
    {
      input: 'GET /v1/ping HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n',
      timeoutMs: 15_000,
    },
  );
}

/** What the audit log says about one source block: its events, and the refusals they stand for by reason. */
function accounted(events: AuditEvent[], source: (s: string) => boolean) {
  let count = 0;
  let refusals = 0;
  const reasons: Record<string, number> = {};
  for (const e of events) {
    let n = 0;
    if (e.type === 'listener.reject' && source(e.source ?? '')) n = 1;
    else if (e.type === 'listener.reject.summary' && source(e.source)) n = e.count;
    else continue;
    count++;
    refusals += n;
    reasons[e.reason] = (reasons[e.reason] ?? 0) + n;
  }
  return { events: count, refusals, reasons };
}

/**
 * Connects (from `from`), writes each step's bytes at its time (ms after
 * connect), and tells whether the gateway closed the connection before
 * `giveUpAt`.
 */
function closedBefore(
  port: number,
  steps: { at: number; bytes: Buffer }[],
  giveUpAt: number,
  from = '127.0.0.1',
): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port, localAddress: from });
    const timers: NodeJS.Timeout[] = [];
    let byServer = false;
    s.on('connect', () => {
      for (const st of steps) timers.push(setTimeout(() => s.writable && s.write(st.bytes), st.at));
      timers.push(setTimeout(() => s.destroy(), giveUpAt));
    });
    s.on('data', () => undefined);
    s.on('end', () => {
      byServer = true;
    });
    s.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'ECONNRESET' || e.code === 'EPIPE') byServer = true;
      else reject(e);
    });
    s.on('close', () => {
      for (const t of timers) clearTimeout(t);
      resolve(byServer);
    });
  });
}

describe('reliability: one address floods the main port', () => {
  it('keeps serving curl, logins, openssl and certificate clients; a handful of audit events account for every refusal', async () => {
    const s = await gateway();
    // 20 connections that send a ClientHello one byte every 500 ms (the deadlines are 2 s), then
    // 1,000 idle ones from the same address, each replaced the moment the gateway closes it.
    const slow = flood({ port: s.t.port, from: [ATTACKER], idle: 0, trickle: 20, trickleEveryMs: 500 });
    await waitFor(() => slow.stats.trickled >= 20 || undefined, 'the slow connections to trickle');
    const f = flood({ port: s.t.port, from: [ATTACKER], idle: 1_000 });
    await f.until(3_000);
    for (let round = 0; round < 3; round++) {
      const curl = await curlPing(s);
      expect(curl.code, curl.stderr).toBe(0);
      expect(JSON.parse(curl.stdout)).toMatchObject({ cluster_name: 'gatehouse' });
      const cert = await login(s);
      expect((await s.client(cert).whoami()).user).toBe('alice');
      const ossl = await opensslPing(s);
      expect(ossl.code, ossl.stderr).toBe(0);
      expect(ossl.stdout).toMatch(/^HTTP\/1.1 200/);
    }
    // The flood was on all along.
    expect(f.stats.closedByServer).toBeGreaterThan(3_000);
    // stop() returns only once the gateway has closed every connection: trickled bytes extend no deadline.
    const stats = [await slow.stop(), await f.stop()];
    for (const x of stats) expect(x.failed).toEqual({});
    const reached = stats[0]!.reached + stats[1]!.reached;
    await s.t.close();

    const attacker = accounted(s.sink.events, (src) => src === `${ATTACKER}/32`);
    // Every connection the attacker got through to the gateway is one refusal, each accounted for once.
    expect(attacker.refusals).toBe(reached);
    expect(attacker.reasons.too_many_handshakes_from_source).toBeGreaterThan(3_000);
    // Idle ones end at the first-byte deadline, trickling ones at the handshake deadline.
    expect(attacker.reasons.first_byte_timeout).toBeGreaterThan(0);
    expect(attacker.reasons.handshake_timeout).toBeGreaterThanOrEqual(20);
    // Never the whole table: one source holds at most its 32.
    expect(attacker.reasons.too_many_handshakes).toBeUndefined();
    // One event at once and one summary per reason (the window is longer than the test).
    expect(attacker.events).toBeLessThanOrEqual(2 * Object.keys(attacker.reasons).length);
    const all = s.sink.events.filter(
      (e) => e.type === 'listener.reject' || e.type === 'listener.reject.summary',
    );
    expect(all.length).toBeLessThanOrEqual(attacker.events + 2);
    // The real clients were never refused.
    expect(accounted(s.sink.events, (src) => src === '127.0.0.1/32').refusals).toBe(0);
  });

  it('behind a trusted load balancer counts each client, never the balancer, as the source', async () => {
    const LB = '127.0.0.3';
    const s = await gateway({ proxy_protocol_trusted: [`${LB}/32`] });
    const header = (client: string) =>
      encodeProxyV2({ address: client, port: 40_000 }, { address: '127.0.0.1', port: s.t.port });
    // 100 connections from the balancer whose headers are not there yet: none is refused as "one source".
    const held: net.Socket[] = [];
    let closed = 0;
    for (let i = 0; i < 100; i++) {
      const c = net.connect({ host: '127.0.0.1', port: s.t.port, localAddress: LB });
      c.on('error', () => undefined);
      c.on('close', () => closed++);
      held.push(c);
    }
    cleanup.push(async () => {
      for (const c of held) c.destroy();
    });
    await Promise.all(held.map((c) => new Promise((r) => c.once('connect', r))));
    // An honest client through the balancer, and one straight from 127.0.0.1, while those wait.
    const viaLb = net.connect({ host: '127.0.0.1', port: s.t.port, localAddress: LB });
    await new Promise((r) => viaLb.once('connect', r));
    viaLb.write(header('198.51.100.10'));
    const tlsViaLb = await tlsConnect(0, { socket: viaLb, ca: s.t.caPem, ALPNProtocols: ['http/1.1'] });
    tlsViaLb.end('GET /v1/ping HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n');
    let answer = '';
    for await (const chunk of tlsViaLb) answer += chunk;
    expect(answer).toMatch(/^HTTP\/1.1 200/);
    expect(closed).toBe(0);
    // Now the headers arrive, all naming one client: it gets its 32, the other 68 are refused as its own.
    for (const c of held) c.write(header('198.51.100.66'));
    await waitFor(() => closed === 68 || undefined, '68 refusals');
    expect((await curlPing(s)).code).toBe(0);
    // The 32 it holds end at the first-byte deadline.
    await waitFor(() => closed === 100 || undefined, 'the first-byte deadline');
    await s.t.close();
    const client = accounted(s.sink.events, (src) => src === '198.51.100.66/32');
    expect(client.reasons).toEqual({ too_many_handshakes_from_source: 68, first_byte_timeout: 32 });
    const refused = s.sink.events.find(
      (e) => e.type === 'listener.reject' && e.source === '198.51.100.66/32',
    );
    expect(refused?.addr?.remote).toBe('198.51.100.66:40000');
    expect(accounted(s.sink.events, (src) => src.startsWith(LB)).refusals).toBe(0);
  });

  it('keeps slots for addresses that logged in or showed a certificate while many addresses flood', async () => {
    // 64 slots: 16 kept for known sources, 48 open to any address; 8 per source.
    const s = await gateway({ max_concurrent_handshakes: 64, per_source_max_handshakes: 8 });
    // 127.0.0.1 logs in; 127.0.0.5 only shows its certificate once, on a TLS connection of its own.
    const cert = await login(s);
    const shown = await tlsConnect(s.t.port, {
      ...{ localAddress: '127.0.0.5' },
      ca: s.t.caPem,
      cert: cert.certPem,
      key: cert.keyPem,
      ALPNProtocols: ['http/1.1'],
    });
    shown.end('GET /v1/whoami HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n');
    let who = '';
    for await (const chunk of shown) who += chunk;
    expect(who).toMatch(/^HTTP\/1.1 200[\s\S]*"alice"/);
    // Twenty addresses, ten connections each: far more than the 48 open slots.
    const from = Array.from({ length: 20 }, (_, i) => `127.0.0.${10 + i}`);
    const f = flood({ port: s.t.port, from, idle: 200 });
    await f.until(2_000);
    for (let round = 0; round < 3; round++) {
      const known = await curlPing(s, '127.0.0.1');
      expect(known.code, known.stderr).toBe(0);
      const byCert = await curlPing(s, '127.0.0.5');
      expect(byCert.code, byCert.stderr).toBe(0);
      expect((await s.client(cert).whoami()).user).toBe('alice');
    }
    // An address that never authenticated waits for the flood to end, like the flood itself.
    const stranger = await curlPing(s, '127.0.0.254');
    expect(stranger.code).not.toBe(0);
    const stats = await f.stop();
    expect(stats.failed).toEqual({});
    await s.t.close();
    const attackers = accounted(s.sink.events, (src) => from.some((a) => src === `${a}/32`));
    expect(attackers.refusals).toBe(stats.reached);
    expect(attackers.reasons.too_many_handshakes).toBeGreaterThan(0);
    expect(accounted(s.sink.events, (src) => src === '127.0.0.1/32' || src === '127.0.0.5/32').refusals).toBe(
      0,
    );
    const strangerEvent = s.sink.events.find(
      (e) => e.type === 'listener.reject' && e.source === '127.0.0.254/32',
    );
    expect(strangerEvent).toMatchObject({ reason: 'too_many_handshakes' });
    expect(strangerEvent?.type === 'listener.reject' && strangerEvent.error).toMatch(
      /16 are kept for addresses/,
    );
  });
});

describe('reliability: slow clients get no more than the deadlines, counted from accept', () => {
  it('a PROXY header or a TLS record started late does not restart the clock', async () => {
    const LB = '127.0.0.3';
    const s = await gateway({ proxy_protocol_trusted: [`${LB}/32`] });
    const hdr = encodeProxyV2(
      { address: '198.51.100.20', port: 1 },
      { address: '127.0.0.1', port: s.t.port },
    );
    // first_byte_timeout and handshake_timeout are 2 s. Each stage starts at 1.2 s; a clock restarted
    // by it would let the connection live until 3.2 s, past the 2.8 s this client waits.
    const [proxyThenNothing, tlsLate, trickled] = await Promise.all([
      closedBefore(s.t.port, [{ at: 1_200, bytes: hdr }], 2_800, LB),
      closedBefore(s.t.port, [{ at: 1_200, bytes: Buffer.from([0x16, 0x03, 0x01]) }], 2_800),
      closedBefore(
        s.t.port,
        [0x16, 0x03, 0x01, 0x00, 0x50, 0x01, 0x00, 0x00, 0x4c].map((b, i) => ({
          at: i * 300,
          bytes: Buffer.from([b]),
        })),
        2_800,
      ),
    ]);
    expect({ proxyThenNothing, tlsLate, trickled }).toEqual({
      proxyThenNothing: true,
      tlsLate: true,
      trickled: true,
    });
    await s.t.close();
    expect(accounted(s.sink.events, (src) => src === '198.51.100.20/32').reasons).toEqual({
      first_byte_timeout: 1,
    });
    expect(accounted(s.sink.events, (src) => src === '127.0.0.1/32').reasons).toEqual({
      handshake_timeout: 2,
    });
  });

  it('a client that hangs up mid-handshake (the CA-pin check) is not audited as a handshake timeout', async () => {
    const s = await gateway();
    for (let i = 0; i < 3; i++) {
      const pinned = await fetchPinnedCa({ host: '127.0.0.1', port: s.t.port, pin: s.t.gw.caPin() });
      expect(pinned.caPem.length).toBeGreaterThan(0);
    }
    // Past the 2 s deadline of those connections: a timer left running would fire now.
    await new Promise((r) => setTimeout(r, 2_500));
    expect((await s.client().ping()).cluster_name).toBe('gatehouse');
    await s.t.close();
    expect(accounted(s.sink.events, () => true).reasons).toEqual({});
  });
});
