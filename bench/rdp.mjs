// RDP benchmark: weston's RDP backend (a real RDP server) reached directly and
// through Gatehouse in one run.
// 1. Session setup: direct = TCP + X.224 + TLS with the desktop; through Gatehouse =
//    desktop token (HTTPS) + WebSocket + RDCleanPath (the gateway dials, relays X.224,
//    does TLS) until the answer, as IronRDP in a browser goes through it.
// 2. Throughput: xfreerdp under Xvfb watching weston-simple-shm animate, directly and
//    through the gateway (`gatehouse desktops connect`'s local front); MiB/s from the
//    desktop to the client (a counting TCP relay in front of weston for the direct
//    run, the gateway's desktop.session.end for the other) and, through Gatehouse,
//    fast-path update PDUs per second (the direct stream is TLS end to end, so its
//    updates cannot be counted; the bytes can).
// Usage: npm run bench -- rdp [--rounds 20] [--seconds 8]
import { execFile, spawn } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { promisify } from 'node:util';
import {
  decodeConnectionConfirm,
  decodeResponse,
  derMessageLength,
  encodeConnectionRequest,
  encodeRequest,
  PROTOCOL,
  rdp,
  readTpkt,
  startLocalFront,
} from '@gatehouse/adapter-rdp';
import { createGateway } from '@gatehouse/core';
import WebSocket, { createWebSocketStream } from 'ws';
import { ensurePackages, freePort, median, roundOrder } from './lib.mjs';

export const description =
  'RDP session setup (p50/p99) and desktop-to-client MiB/s: direct to weston vs through Gatehouse (RDCleanPath)';

const exec = promisify(execFile);
const PASSWORD = 'correct horse battery staple';

function flag(argv, name, def) {
  const i = argv.indexOf(name);
  return i >= 0 && argv[i + 1] ? Number(argv[i + 1]) : def;
}

function p(xs, q) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? 0;
}

function waitPort(port, ms = 15_000) {
  const end = Date.now() + ms;
  return new Promise((resolve, reject) => {
    const tryOnce = () => {
      const s = net.connect(port, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        resolve();
      });
      s.once('error', () =>
        Date.now() > end ? reject(new Error(`port ${port} not up`)) : setTimeout(tryOnce, 50),
      );
    };
    tryOnce();
  });
}

/** One message framed by `lengthOf` from a socket or stream. */
function readMessage(s, lengthOf) {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const onData = (d) => {
      buf = Buffer.concat([buf, d]);
      const n = lengthOf(buf);
      if (n === undefined || buf.length < n) return;
      s.off('data', onData);
      s.pause();
      resolve(buf.subarray(0, n));
    };
    s.on('data', onData);
    s.once('error', reject);
  });
}

const CR = encodeConnectionRequest({
  cookie: 'bench',
  negotiation: { flags: 0, requestedProtocols: PROTOCOL.SSL },
});

/** The direct path verifies weston's certificate as the gateway does: its pinned SHA-256 fingerprint. */
async function setupDirect(port, certPem) {
  const fingerprint = new X509Certificate(certPem).fingerprint256;
  const t0 = performance.now();
  const sock = net.connect(port, '127.0.0.1');
  await new Promise((r, j) => sock.once('connect', r).once('error', j));
  sock.write(CR);
  const cc = await readMessage(sock, (b) => readTpkt(b)?.length);
  if (decodeConnectionConfirm(cc).type !== 'response') throw new Error('weston refused TLS');
  const t = tls.connect({
    socket: sock,
    ca: certPem,
    checkServerIdentity: (_host, peer) =>
      peer.fingerprint256 === fingerprint ? undefined : new Error('weston presented another certificate'),
  });
  await new Promise((r, j) => t.once('secureConnect', r).once('error', j));
  const ms = performance.now() - t0;
  t.destroy();
  return ms;
}

function api(gwPort, caPem, method, p, headers, body) {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const req = https.request(
      {
        host: '127.0.0.1',
        port: gwPort,
        method,
        path: p,
        ca: caPem,
        headers: { ...headers, ...(data ? { 'content-type': 'application/json' } : {}) },
      },
      (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () =>
          resolve({ headers: res.headers, json: JSON.parse(Buffer.concat(chunks).toString() || '{}') }),
        );
      },
    );
    req.on('error', reject);
    req.end(data);
  });
}

function openDesktopSocket(gwPort, caPem, cookie) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`wss://127.0.0.1:${gwPort}/v1/ws/desktop`, {
      ca: caPem,
      headers: { cookie, origin: `https://127.0.0.1:${gwPort}` },
    });
    ws.once('open', () => resolve(createWebSocketStream(ws)));
    ws.once('error', reject);
  });
}

async function setupGateway(gwPort, caPem, web) {
  const t0 = performance.now();
  const tok = await api(gwPort, caPem, 'POST', '/v1/desktops/bench1/token', web.headers, {
    login: 'Administrator',
  });
  const s = await openDesktopSocket(gwPort, caPem, web.cookie);
  s.write(encodeRequest({ destination: 'bench1', proxyAuth: tok.json.token, x224: CR }));
  const answer = decodeResponse(await readMessage(s, (b) => derMessageLength(b, 1 << 20)));
  const ms = performance.now() - t0;
  if (answer.type !== 'response') throw new Error(`gateway refused: ${JSON.stringify(answer)}`);
  s.destroy();
  return ms;
}

/** A TCP relay that counts the bytes the server sends (for the direct throughput run). */
async function countingRelay(targetPort) {
  let down = 0;
  const server = net.createServer((c) => {
    const u = net.connect(targetPort, '127.0.0.1');
    u.on('data', (d) => {
      down += d.length;
    });
    c.pipe(u).pipe(c);
    c.on('error', () => u.destroy());
    u.on('error', () => c.destroy());
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return { port: server.address().port, bytes: () => down, close: () => new Promise((r) => server.close(r)) };
}

async function watch(display, address, seconds) {
  const child = spawn(
    '/usr/bin/xfreerdp',
    [`/v:${address}`, '/u:bench', '/p:', '/cert:ignore', '/sec:tls', '/size:800x600', '-grab-keyboard'],
    { env: { ...process.env, DISPLAY: display }, stdio: 'ignore' },
  );
  await new Promise((r) => setTimeout(r, seconds * 1000));
  child.kill('SIGTERM');
  await new Promise((r) => child.once('exit', r));
}

/**
 * Counts fast-path output PDUs (first byte's action bits 0) in what the gateway sends the
 * client, after the RDCleanPath answer that opens the stream.
 */
function fastPathCounter() {
  let updates = 0;
  let buf = Buffer.alloc(0);
  let answered = false;
  return {
    feed(d) {
      buf = Buffer.concat([buf, d]);
      if (!answered) {
        const n = derMessageLength(buf, 1 << 20);
        if (n === undefined || buf.length < n) return;
        buf = buf.subarray(n);
        answered = true;
      }
      for (;;) {
        if (buf.length < 2) return;
        let len;
        if (buf[0] === 3) {
          if (buf.length < 4) return;
          len = buf.readUInt16BE(2);
        } else {
          const b1 = buf[1];
          if (b1 & 0x80) {
            if (buf.length < 3) return;
            len = ((b1 & 0x7f) << 8) | buf[2];
          } else len = b1;
          if ((buf[0] & 0x3) === 0) updates++;
        }
        if (len < 2 || buf.length < len) return;
        buf = buf.subarray(len);
      }
    },
    updates: () => updates,
  };
}

export async function run(argv) {
  const rounds = flag(argv, '--rounds', 20);
  const seconds = flag(argv, '--seconds', 8);
  ensurePackages([
    ['/usr/bin/weston', 'weston'],
    ['/usr/bin/xfreerdp', 'freerdp2-x11'],
    ['/usr/bin/Xvfb', 'xvfb'],
  ]);
  const dir = await mkdtemp(path.join(os.tmpdir(), 'gh-bench-rdp-'));
  const procs = [];
  try {
    const wdir = path.join(dir, 'weston');
    await mkdir(path.join(wdir, 'run'), { recursive: true, mode: 0o700 });
    const cert = path.join(wdir, 'c.pem');
    const key = path.join(wdir, 'k.pem');
    await exec('openssl', [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-days',
      '1',
      '-subj',
      '/CN=weston',
      '-keyout',
      key,
      '-out',
      cert,
    ]);
    const westonPort = await freePort();
    const env = { ...process.env, XDG_RUNTIME_DIR: path.join(wdir, 'run') };
    procs.push(
      spawn(
        '/usr/bin/weston',
        [
          '--backend=rdp-backend.so',
          '--address=127.0.0.1',
          `--port=${westonPort}`,
          `--rdp-tls-cert=${cert}`,
          `--rdp-tls-key=${key}`,
          '--socket=gh-bench',
          '--no-config',
        ],
        { env, stdio: 'ignore' },
      ),
    );
    await waitPort(westonPort);
    procs.push(
      spawn('/usr/bin/weston-simple-shm', [], {
        env: { ...env, WAYLAND_DISPLAY: 'gh-bench' },
        stdio: 'ignore',
      }),
    );
    let display;
    for (let n = 500; n < 600 && !display; n++) {
      if (existsSync(`/tmp/.X11-unix/X${n}`)) continue;
      procs.push(
        spawn('/usr/bin/Xvfb', [`:${n}`, '-screen', '0', '1024x768x24', '-nolisten', 'tcp'], {
          stdio: 'ignore',
        }),
      );
      display = `:${n}`;
    }
    const gw = await createGateway({ dataDir: dir, secondFactor: 'off', webDir: false, env: {} });
    gw.use(rdp());
    const { port: gwPort } = await gw.listen({ host: '127.0.0.1', port: 0 });
    const caPem = gw.authorities.get('host').map((k) => k.x509CertPem);
    const certPem = await readFile(cert, 'utf8');
    await gw.admin.createUser({
      name: 'bench',
      roles: ['access'],
      traits: { desktop_logins: ['Administrator'] },
      password: PASSWORD,
    });
    await gw.admin.addDesktop({
      name: 'bench1',
      addr: `127.0.0.1:${westonPort}`,
      tls_fingerprint: new X509Certificate(certPem).fingerprint256,
      credentials: [{ login: 'Administrator', password: 'x' }],
    });
    const login = await api(gwPort, caPem, 'POST', '/v1/login', {}, { user: 'bench', password: PASSWORD });
    const cookie = String(login.headers['set-cookie']).split(';')[0];
    const web = { cookie, headers: { cookie, 'x-csrf-token': login.json.csrf_token } };

    // 1. setup
    const times = { direct: [], gatehouse: [] };
    await setupDirect(westonPort, certPem);
    await setupGateway(gwPort, caPem, web);
    for (let r = 0; r < rounds; r++) {
      for (const t of roundOrder(['direct', 'gatehouse'], r)) {
        times[t].push(
          t === 'direct' ? await setupDirect(westonPort, certPem) : await setupGateway(gwPort, caPem, web),
        );
      }
    }
    const row = (name, xs) =>
      `  ${name.padEnd(10)} p50 ${median(xs).toFixed(1).padStart(6)} ms   p99 ${p(xs, 0.99).toFixed(1).padStart(6)} ms`;
    process.stdout.write(
      `session setup (${rounds} rounds, X.224 + TLS; through Gatehouse also token + WebSocket + RDCleanPath)\n`,
    );
    process.stdout.write(`${row('direct', times.direct)}\n${row('gatehouse', times.gatehouse)}\n`);
    process.stdout.write(`  ratio p50 ${(median(times.gatehouse) / median(times.direct)).toFixed(2)}x\n`);

    // 2. throughput
    const relay = await countingRelay(westonPort);
    await watch(display, `127.0.0.1:${relay.port}`, seconds);
    const directBytes = relay.bytes();
    await relay.close();
    const counter = fastPathCounter();
    const front = await startLocalFront({
      desktop: 'bench1',
      token: async () =>
        (
          await api(gwPort, caPem, 'POST', '/v1/desktops/bench1/token', web.headers, {
            login: 'Administrator',
          })
        ).json.token,
      openSocket: async () => {
        const s = await openDesktopSocket(gwPort, caPem, cookie);
        s.on('data', (d) => counter.feed(d));
        return s;
      },
      cert: certPem,
      key: await readFile(key, 'utf8'),
    });
    const before = (await gw.audit.search({ types: ['desktop.session.end'], limit: 1000 })).events.length;
    await watch(display, front.address, seconds);
    await front.close();
    let end;
    for (let i = 0; i < 100 && !end; i++) {
      const evs = (await gw.audit.search({ types: ['desktop.session.end'], limit: 1000 })).events;
      end = evs.length > before ? evs.find((e) => e.server === 'bench1' && e.bytes_out > 100_000) : undefined;
      if (!end) await new Promise((r) => setTimeout(r, 100));
    }
    const mib = (b) => (b / seconds / 1048576).toFixed(2);
    process.stdout.write(`desktop -> client, ${seconds} s of xfreerdp watching weston-simple-shm\n`);
    process.stdout.write(`  direct     ${mib(directBytes).padStart(6)} MiB/s  (TLS bytes)\n`);
    process.stdout.write(
      `  gatehouse  ${mib(end?.bytes_out ?? 0).padStart(6)} MiB/s  (plaintext RDP), ${(counter.updates() / seconds).toFixed(0)} fast-path update PDUs/s\n`,
    );
    await gw.close();
  } finally {
    for (const c of procs.reverse()) c.kill('SIGTERM');
    await rm(dir, { recursive: true, force: true });
  }
}
