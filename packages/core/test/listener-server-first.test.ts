/**
 * Clients that wait for the server to speak (ssh-keyscan waits for the SSH
 * banner) on the one sniffed port: after listener.ssh_banner_after of
 * silence the connection goes to SSH, while clients that speak first are
 * routed as before (docs/decisions/0024-server-first-clients.md).
 */
import { spawn } from 'node:child_process';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Adapter, type ConnectionInfo, encodeProxyV2, GatehouseClient } from '../src/index.js';
import { rawExchange, startGateway, type TestGateway, waitFor } from './helpers.js';

/** A stand-in SSH route: speaks first like an SSH server, then echoes what the client says. */
function sshLike(seen: ConnectionInfo[]): Adapter {
  return {
    name: 'ssh-like',
    register(ctx) {
      ctx.routes.ssh((socket, info) => {
        seen.push(info);
        socket.write('SSH-2.0-Stand-in\r\n');
        socket.on('data', (d) => socket.write(Buffer.concat([Buffer.from('echo:'), d])));
        socket.resume();
      });
    },
  };
}

async function rejects(t: TestGateway, reason: string): Promise<number> {
  const page = await t.gw.audit.search({ types: ['listener.reject', 'listener.reject.summary'], limit: 500 });
  let n = 0;
  for (const e of page.events) {
    if (e.type === 'listener.reject' && e.reason === reason) n++;
    if (e.type === 'listener.reject.summary' && e.reason === reason) n += e.count;
  }
  return n;
}

/** Connects, waits for the first bytes the server sends, then (optionally) answers and collects the reply. */
function silentClient(
  port: number,
  answer?: string,
): Promise<{ first: string; reply: string; closedByServer: boolean }> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host: '127.0.0.1' });
    let first = '';
    let reply = '';
    let closedByServer = false;
    s.on('data', (d) => {
      if (!first) {
        first = d.toString();
        if (answer === undefined) return;
        s.write(answer);
        return;
      }
      reply += d.toString();
      if (reply.length > 0) s.end();
    });
    s.on('end', () => {
      closedByServer = !reply;
    });
    s.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'ECONNRESET') closedByServer = true;
      else reject(e);
    });
    s.on('close', () => resolve({ first, reply, closedByServer }));
  });
}

describe('listener: a silent client is handed to SSH, which speaks first', () => {
  let t: TestGateway;
  const seen: ConnectionInfo[] = [];

  beforeAll(async () => {
    t = await startGateway({
      values: {
        listener: {
          first_byte_timeout: '3s',
          ssh_banner_after: '200ms',
          proxy_protocol_trusted: ['127.0.0.2/32'],
          reject_audit: { window: '1s' },
        },
        auth: { second_factor: 'off' },
      },
    });
    t.gw.use(sshLike(seen));
    await t.gw.ready();
  });
  afterAll(() => t.close());

  it('gets the SSH banner after the silence, and its answer reaches the SSH route', async () => {
    const r = await silentClient(t.port, 'SSH-2.0-keyscan\r\n');
    expect(r.first).toBe('SSH-2.0-Stand-in\r\n');
    expect(r.reply).toBe('echo:SSH-2.0-keyscan\r\n');
  });

  it('a silent client that never answers the banner is still dropped at first_byte_timeout and audited', async () => {
    const before = await rejects(t, 'first_byte_timeout');
    const r = await silentClient(t.port);
    expect(r.first).toBe('SSH-2.0-Stand-in\r\n');
    expect(r.closedByServer).toBe(true);
    await waitFor(
      async () => (await rejects(t, 'first_byte_timeout')) > before,
      'first_byte_timeout for the silent client',
    );
  });

  it('clients that speak first are routed as before: TLS (the API) and an SSH client sending its banner', async () => {
    const ping = await new GatehouseClient({ proxy: `127.0.0.1:${t.port}`, caPem: t.caPem }).ping();
    expect(ping.cluster_name).toBe('gatehouse');
    const r = await rawExchange(t.port, 'SSH-2.0-OpenSSH_9.2\r\n', { wait: 1_000 });
    expect(r.data.toString()).toBe('SSH-2.0-Stand-in\r\necho:SSH-2.0-OpenSSH_9.2\r\n');
  });

  it('bytes that arrived in time count even when the gateway was too busy to read them before the deadline', async () => {
    // The client is another process: it connects, says it did (by then the
    // gateway has accepted), and writes 100 ms later, well inside
    // ssh_banner_after (200 ms). This process, the gateway's, is busy from
    // that moment past the deadline, so its next turn finds the timer expired
    // and the bytes waiting, and must not take the client for a silent one.
    const client = spawn(
      process.execPath,
      [
        '-e',
        `const s = require('node:net').connect(${t.port}, '127.0.0.1', () => {
           setTimeout(() => process.stderr.write('connected\\n'), 20);
           setTimeout(() => s.write('GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n'), 100);
         });
         s.once('data', (d) => { process.stdout.write(d); s.destroy(); });`,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let reply = '';
    client.stdout.on('data', (d) => {
      reply += d;
    });
    client.stderr.once('data', () =>
      setImmediate(() => {
        const until = Date.now() + 500;
        while (Date.now() < until) {
          // A busy event loop: nothing is read until this ends.
        }
      }),
    );
    await new Promise((resolve) => client.once('close', resolve));
    expect(reply).toMatch(/^HTTP\/1\.1 400/);
  });

  it('a PostgreSQL client that goes quiet after its GSSENC request is not handed to SSH', async () => {
    const gssenc = Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30]);
    const r = await rawExchange(t.port, gssenc, { wait: 5_000 });
    expect(r.data.toString()).toBe('N');
    expect(r.closedByServer).toBe(true);
  });

  it('behind a trusted PROXY balancer, silence after the header goes to SSH with the client address', async () => {
    const hdr = encodeProxyV2({ address: '203.0.113.7', port: 4444 }, { address: '127.0.0.1', port: t.port });
    const r = await new Promise<string>((resolve, reject) => {
      const s = net.connect({ port: t.port, host: '127.0.0.1', localAddress: '127.0.0.2' }, () =>
        s.write(hdr),
      );
      let got = '';
      s.on('data', (d) => {
        got += d;
        s.end();
      });
      s.on('error', reject);
      s.on('close', () => resolve(got));
    });
    expect(r).toBe('SSH-2.0-Stand-in\r\n');
    expect(seen.at(-1)).toMatchObject({ remoteAddr: '203.0.113.7', proxied: true });
  });
});

describe('listener: without an SSH route, or with ssh_banner_after 0s, a silent client gets nothing', () => {
  it('is dropped at first_byte_timeout with no bytes sent', async () => {
    const t = await startGateway({
      values: { listener: { first_byte_timeout: '600ms', ssh_banner_after: '100ms' } },
    });
    const t0 = await startGateway({
      values: { listener: { first_byte_timeout: '600ms', ssh_banner_after: '0s' } },
    });
    try {
      t0.gw.use(sshLike([]));
      await t0.gw.ready();
      for (const g of [t, t0]) {
        const r = await rawExchange(g.port, '', { wait: 5_000 });
        expect(r.data.length).toBe(0);
        expect(r.closedByServer).toBe(true);
        await waitFor(async () => (await rejects(g, 'first_byte_timeout')) > 0, 'first_byte_timeout');
      }
    } finally {
      await t.close();
      await t0.close();
    }
  });
});
