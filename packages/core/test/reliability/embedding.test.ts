import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createGateway, GatehouseClient, type Gateway } from '../../src/index.js';
import { rawExchange, tlsConnect, waitFor } from '../helpers.js';

/**
 * The README offers `server.on('connection', (s) => gw.handle(s))` as the
 * alternative to `gw.listen()`. A library must never crash its host: the
 * first TLS client used to make core throw "TLS is not ready: call listen()
 * first" inside a socket handler, and the embedding application exited.
 */
describe('reliability: a gateway embedded with handle() and no listen()', () => {
  let dir: string;
  let gw: Gateway;
  let server: net.Server;
  let port: number;
  const hostErrors: unknown[] = [];
  const onHostError = (e: unknown) => hostErrors.push(e);

  beforeAll(async () => {
    process.on('uncaughtException', onHostError);
    process.on('unhandledRejection', onHostError);
    dir = await mkdtemp(path.join(os.tmpdir(), 'gh-embed-'));
    gw = await createGateway({ dataDir: dir, secondFactor: 'off', env: {} });
    // The host's own server; the gateway never listens by itself.
    server = net.createServer((s) => gw.handle(s));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as net.AddressInfo).port;
  });

  afterAll(async () => {
    process.off('uncaughtException', onHostError);
    process.off('unhandledRejection', onHostError);
    await new Promise<void>((r) => server.close(() => r()));
    await gw.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('serves the first TLS client (the API over the host server) instead of crashing the host', async () => {
    // The CA a client pins is only known once the gateway is ready; handle() must not need it first.
    const first = tlsConnect(port, { rejectUnauthorized: false, ALPNProtocols: ['http/1.1'] });
    const s = await first;
    expect(s.getPeerCertificate().subject?.CN).toBeTruthy();
    s.destroy();
    const client = new GatehouseClient({
      proxy: `127.0.0.1:${port}`,
      caPem: gw.authorities.get('host').map((k) => k.x509CertPem),
    });
    const ping = await client.ping();
    expect(ping.cluster_name).toBe(gw.config.clusterName);
    expect(hostErrors).toEqual([]);
  });

  it('ends only the offending socket on garbage and resets, and keeps serving', async () => {
    const garbage = await rawExchange(port, Buffer.from('\x00\xff garbage that is no protocol\r\n'), {
      wait: 15_000,
    });
    expect(garbage.closedByServer).toBe(true);
    const reset = net.connect({ host: '127.0.0.1', port });
    reset.on('error', () => undefined);
    await new Promise<void>((r) => reset.once('connect', () => r()));
    reset.write(Buffer.from([0x16, 0x03, 0x01]));
    reset.resetAndDestroy();
    await new Promise((r) => setTimeout(r, 200));
    const client = new GatehouseClient({
      proxy: `127.0.0.1:${port}`,
      caPem: gw.authorities.get('host').map((k) => k.x509CertPem),
    });
    expect((await client.ping()).cluster_name).toBe(gw.config.clusterName);
    expect(hostErrors).toEqual([]);
  });
});

/**
 * A host may hand over sockets of a Unix-domain server (behind its own
 * reverse proxy). Those have no address to count per source, and cannot be
 * reset: a refusal used to call resetAndDestroy(), which throws for them
 * inside the host's 'connection' handler.
 */
describe('reliability: a gateway embedded behind a Unix socket', () => {
  it('refuses past max_concurrent_handshakes without throwing in the host, and serves again after', async () => {
    const errors: unknown[] = [];
    const onError = (e: unknown) => errors.push(e);
    process.on('uncaughtException', onError);
    const dir = await mkdtemp(path.join(os.tmpdir(), 'gh-embed-unix-'));
    const gw = await createGateway({
      dataDir: dir,
      secondFactor: 'off',
      env: {},
      values: { listener: { max_concurrent_handshakes: 2, first_byte_timeout: '2s' } },
    });
    const sock = path.join(dir, 'gw.sock');
    const server = net.createServer((s) => gw.handle(s));
    await new Promise<void>((r) => server.listen(sock, r));
    try {
      await gw.ready();
      const connect = () =>
        new Promise<net.Socket>((resolve) => {
          const c = net.connect(sock, () => resolve(c));
          c.on('error', () => undefined);
        });
      const idle = [await connect(), await connect()];
      const third = await connect();
      let refused = false;
      third.once('close', () => {
        refused = true;
      });
      await waitFor(() => refused || undefined, 'the third connection to be refused');
      expect(errors).toEqual([]);
      for (const c of idle) c.destroy();
      const tls = await import('node:tls');
      const ping = async () => {
        const c = tls.connect({
          path: sock,
          ca: gw.authorities.get('host').map((k) => k.x509CertPem),
          servername: 'localhost',
        });
        c.on('error', () => undefined);
        c.end('GET /v1/ping HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n');
        let answer = '';
        for await (const chunk of c) answer += chunk;
        return answer;
      };
      // Once the gateway has seen the idle ones close, their slots are free again.
      const answer = await waitFor(async () => {
        const a = await ping().catch(() => '');
        return a.startsWith('HTTP/1.1 200') ? a : undefined;
      }, 'a ping over the Unix socket');
      expect(answer).toContain('"cluster_name"');
    } finally {
      process.off('uncaughtException', onError);
      await new Promise<void>((r) => server.close(() => r()));
      await gw.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
