import { execFileSync } from 'node:child_process';
import { request } from 'node:https';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runClient } from '../../../core/test/helpers.js';
import { type Daemon, startDaemon } from '../harness.js';

/**
 * Unauthenticated inputs that used to take the whole gateway down (and every
 * session on it), replayed against the real daemon: after each one the
 * process must still run and real clients must still be served.
 */

/** POSTs `mib` MiB of body with Transfer-Encoding: chunked (no Content-Length to refuse early). */
function chunkedPost(port: number, path: string, mib: number): Promise<number | string> {
  return new Promise((resolve) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        path,
        method: 'POST',
        rejectUnauthorized: false,
        headers: { 'content-type': 'application/json', 'transfer-encoding': 'chunked' },
      },
      (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      },
    );
    // The server may close its side once it has answered; the status is what counts.
    req.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
    const chunk = Buffer.alloc(1 << 20, 0x61);
    let sent = 0;
    const pump = () => {
      while (sent < mib) {
        sent++;
        if (!req.write(chunk)) {
          req.once('drain', pump);
          return;
        }
      }
      req.end();
    };
    pump();
  });
}

/** curl, a client that is not ours, asks the gateway for /v1/ping. */
async function curlPing(port: number): Promise<string> {
  const r = await runClient('curl', ['-sk', '--max-time', '10', `https://127.0.0.1:${port}/v1/ping`], {
    timeoutMs: 15_000,
  });
  expect(r.code, r.stderr).toBe(0);
  return r.stdout;
}

describe('reliability: unauthenticated inputs do not crash the daemon', () => {
  let d: Daemon;
  let port: number;
  let mysqlPort: number;

  beforeAll(async () => {
    d = await startDaemon({
      cluster: 'crashes',
      extraConfig: 'mysql_listen: 127.0.0.1:0\nlistener:\n  handshake_timeout: 1s\n  max_body_bytes: 65536\n',
    });
    port = Number(d.proxy.split(':').pop());
    const m = /mysql:\s+127\.0\.0\.1:(\d+)/.exec(d.out());
    if (!m) throw new Error(`no MySQL listener in the start output:\n${d.out()}`);
    mysqlPort = Number(m[1]);
  });

  afterAll(async () => {
    await d?.stop();
  });

  it('survives chunked oversized POST /v1/login bodies (a TypeError in the 413 path used to crash it)', async () => {
    const statuses: (number | string)[] = [];
    for (let i = 0; i < 4; i++) statuses.push(await chunkedPost(port, '/v1/login', 50));
    // Each one is refused with 413; none of them may take the process down.
    expect(statuses).toEqual([413, 413, 413, 413]);
    expect(d.alive(), d.err()).toBe(true);
    expect(JSON.parse(await curlPing(port))).toMatchObject({ cluster_name: 'crashes' });
    expect(d.err()).not.toMatch(/TypeError|Unhandled/);
  });

  it('survives MySQL connections that stay silent past the handshake deadline and are then reset', async () => {
    const sockets = await Promise.all(
      Array.from(
        { length: 50 },
        () =>
          new Promise<net.Socket>((resolve, reject) => {
            const s = net.connect({ host: '127.0.0.1', port: mysqlPort }, () => resolve(s));
            s.on('error', reject);
          }),
      ),
    );
    // The greeting arrives, then nothing from us until the gateway's 1 s deadline has passed
    // (its ERR packet is waiting in our receive buffer), then a reset.
    await new Promise((r) => setTimeout(r, 2_000));
    for (const s of sockets) {
      s.on('error', () => undefined);
      s.resetAndDestroy();
    }
    await new Promise((r) => setTimeout(r, 500));
    expect(d.alive(), d.err()).toBe(true);
    expect(d.err()).not.toMatch(/ECONNRESET|Unhandled/);
    // The MySQL listener still answers a real client, in MySQL's own words.
    const r = await runClient(
      'mariadb',
      ['--no-defaults', '-h127.0.0.1', `-P${mysqlPort}`, '-ualice', '--skip-ssl', '-e', 'select 1'],
      { timeoutMs: 15_000 },
    );
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/insecure transport are prohibited/);
    expect(JSON.parse(await curlPing(port))).toMatchObject({ cluster_name: 'crashes' });
  });

  it('survives a flood of idle MySQL connections that are reset together', async () => {
    const sockets: net.Socket[] = [];
    for (let i = 0; i < 1000; i++) {
      const s = net.connect({ host: '127.0.0.1', port: mysqlPort });
      s.on('error', () => undefined);
      sockets.push(s);
    }
    await new Promise((r) => setTimeout(r, 2_500));
    for (const s of sockets) s.resetAndDestroy();
    await new Promise((r) => setTimeout(r, 1_000));
    expect(d.alive(), d.err()).toBe(true);
    expect(JSON.parse(await curlPing(port))).toMatchObject({ cluster_name: 'crashes' });
  });

  it('the daemon is still the same process', () => {
    // kill -0 fails when the pid is gone.
    execFileSync('kill', ['-0', String(d.pid)]);
  });
});
