import { execFile } from 'node:child_process';
import { randomBytes, randomInt, X509Certificate } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { request } from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';
import { promisify } from 'node:util';
import { gunzipSync } from 'node:zlib';
import { createGateway, type Gateway } from '@gatehouse/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket, { createWebSocketStream } from 'ws';
import { subjectPublicKey, tsRequestLength } from '../src/credssp/index.js';
import { FakeTarget } from '../src/credssp/testing.js';
import { rdp, startLocalFront } from '../src/index.js';
import { readFrame } from '../src/io.js';
import {
  decodeResponse,
  derMessageLength,
  encodeRequest,
  type RDCleanPathResponse,
} from '../src/wire/rdcleanpath.js';
import { readTpkt } from '../src/wire/tpkt.js';
import {
  decodeConnectionConfirm,
  decodeConnectionRequest,
  encodeConnectionConfirm,
  encodeConnectionRequest,
  PROTOCOL,
} from '../src/wire/x224.js';
import {
  allStarted,
  countColor,
  selfSigned,
  startShadow,
  startWeston,
  startXfreerdp,
  startXrdp,
  startXvfb,
  type Weston,
} from './peers.js';

const PASSWORD = 'correct horse battery staple';
/** The NLA shadow server's one account (its SAM file), the credential the gateway stores for it. */
const SHADOW_PASSWORD = 'Sh4dow!pw';
const ROLE = `kind: role
name: desk
allow:
  desktop_labels: { env: '*' }
  desktop_logins: [Administrator]
deny:
  desktop_labels: { env: prod }
`;

type Json = Record<string, unknown>;

/** One JSON call to the gateway's API over HTTPS (the host CA trusted). */
function httpsJson(
  port: number,
  caPem: string[],
  method: string,
  p: string,
  headers: Record<string, string>,
  body?: unknown,
): Promise<{ status: number; headers: Record<string, unknown>; json: Json }> {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const req = request(
      {
        host: '127.0.0.1',
        port,
        method,
        path: p,
        ca: caPem,
        agent: false,
        headers: { ...headers, ...(data ? { 'content-type': 'application/json' } : {}) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString();
          resolve({ status: res.statusCode ?? 0, headers: res.headers, json: text ? JSON.parse(text) : {} });
        });
      },
    );
    req.on('error', reject);
    req.end(data);
  });
}

/** A gateway WebSocket as the browser opens it (session cookie, same Origin), as a byte stream. */
function wsStream(
  port: number,
  caPem: string[],
  cookie: string,
  origin = `https://127.0.0.1:${port}`,
  path = '/v1/ws/desktop',
): Promise<Duplex> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`wss://127.0.0.1:${port}${path}`, { ca: caPem, headers: { cookie, origin } });
    ws.once('open', () => resolve(createWebSocketStream(ws)));
    ws.once('unexpected-response', (_req, res) => reject(new Error(`upgrade refused: ${res.statusCode}`)));
    ws.once('error', reject);
  });
}

/**
 * An NLA-only "desktop" that lies in CredSSP: it accepts the gateway's NTLM
 * logon but proves another TLS public key than its own, which is what a man
 * in the middle holding the TLS session would have to do. It records whether
 * the gateway ever sent the sealed credential (authInfo).
 */
async function startLyingTarget(
  dir: string,
): Promise<{ port: number; sentAuthInfo(): boolean; close(): void }> {
  const { cert, key } = await selfSigned(dir, 'liar');
  const certPem = await readFile(cert, 'utf8');
  const publicKey = subjectPublicKey(
    new X509Certificate(certPem).publicKey.export({ type: 'spki', format: 'der' }),
  );
  let authInfo = false;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((raw) => {
    sockets.add(raw);
    raw.on('error', () => raw.destroy());
    void (async () => {
      const cr = decodeConnectionRequest(await readFrame(raw, (b) => readTpkt(b)?.length, 'request', 5000));
      if (!((cr.negotiation?.requestedProtocols ?? 0) & PROTOCOL.HYBRID)) {
        raw.end(encodeConnectionConfirm({ type: 'failure', failureCode: 5 }));
        return;
      }
      raw.write(encodeConnectionConfirm({ type: 'response', flags: 0, selectedProtocol: PROTOCOL.HYBRID }));
      const s = new tls.TLSSocket(raw, { isServer: true, cert: certPem, key: await readFile(key, 'utf8') });
      const target = new FakeTarget({
        user: 'Administrator',
        domain: '',
        password: SHADOW_PASSWORD,
        publicKey,
        version: 6,
        serverChallenge: randomBytes(8),
        proveKey: randomBytes(publicKey.length),
      });
      s.write(target.onNegotiate(await readFrame(s, tsRequestLength, 'negotiate', 5000)));
      s.write(target.onAuthenticate(await readFrame(s, tsRequestLength, 'authenticate', 5000)));
      s.resume();
      s.on('data', () => (authInfo = true));
    })().catch(() => raw.destroy());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as net.AddressInfo).port,
    sentAuthInfo: () => authInfo,
    close: () => {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}

describe('RDCleanPath relay through the gateway to a real RDP server (weston)', () => {
  let dir: string;
  let gw: Gateway;
  let port: number;
  let weston: Weston;
  let xvfb: { display: string; stop(): Promise<void> };
  let caPem: string[];
  let shadow: { port: number; stop(): Promise<void> };
  let liar: Awaited<ReturnType<typeof startLyingTarget>>;
  /** The display the shadow server shares, painted its own colour. */
  let shadowX: { display: string; stop(): Promise<void> };
  const color: [number, number, number] = [randomInt(40, 200), randomInt(40, 200), randomInt(40, 200)];
  const shadowColor: [number, number, number] = [randomInt(40, 200), randomInt(40, 200), randomInt(40, 200)];
  /**
   * Paints the shadow server's display. The shadow server sends what changed
   * (X damage) after a client is active, so the test paints while it waits.
   */
  const paintShadow = () =>
    promisify(execFile)(
      'xsetroot',
      ['-solid', `#${shadowColor.map((c) => c.toString(16).padStart(2, '0')).join('')}`],
      { env: { ...process.env, DISPLAY: shadowX.display } },
    );
  const cookies: Record<string, { cookie: string; csrf: string }> = {};
  const sockets: Duplex[] = [];
  /** Sessions a test has already looked at. */
  const recorded = new Set<string>();

  const https = (method: string, p: string, headers: Record<string, string>, body?: unknown) =>
    httpsJson(port, caPem, method, p, headers, body);

  async function token(user: string, desktop: string, login = 'Administrator'): Promise<string> {
    const r = await https(
      'POST',
      `/v1/desktops/${desktop}/token`,
      { cookie: cookies[user]!.cookie, 'x-csrf-token': cookies[user]!.csrf },
      { login },
    );
    if (r.status !== 200) throw new Error(`token: ${r.status} ${JSON.stringify(r.json)}`);
    return r.json.token as string;
  }

  /** The desktop WebSocket as the browser opens it (session cookie, same Origin). */
  async function openSocket(user: string, origin?: string, path?: string): Promise<Duplex> {
    const s = await wsStream(port, caPem, cookies[user]!.cookie, origin, path);
    sockets.push(s);
    return s;
  }

  /**
   * Sends one RDCleanPath message and reads the answer, leaving the socket
   * open (a `for await` over it would destroy it on the way out, and the
   * gateway would see the client leave).
   */
  function exchange(s: Duplex, message: Buffer): Promise<RDCleanPathResponse> {
    return new Promise((resolve, reject) => {
      let buf = Buffer.alloc(0);
      const onData = (chunk: Buffer) => {
        buf = Buffer.concat([buf, chunk]);
        const len = derMessageLength(buf, 1 << 20);
        if (len === undefined || buf.length < len) return;
        s.off('data', onData);
        s.off('close', onClose);
        s.pause();
        resolve(decodeResponse(buf.subarray(0, len)));
      };
      const onClose = () => reject(new Error(`the gateway closed without an answer (${buf.length} bytes)`));
      s.on('data', onData);
      s.once('close', onClose);
      s.write(message);
    });
  }

  const clientRequest = () =>
    encodeConnectionRequest({
      cookie: 'alice',
      negotiation: { flags: 0, requestedProtocols: PROTOCOL.SSL | PROTOCOL.HYBRID },
    });

  type Ev = Record<string, unknown>;
  async function events(type: string): Promise<Ev[]> {
    return (await gw.audit.search({ types: [type], limit: 1000 })).events as unknown as Ev[];
  }
  async function waitForEvent(type: string, match: (e: Ev) => boolean): Promise<Ev> {
    const deadline = Date.now() + 15_000;
    while (Date.now() < deadline) {
      const e = (await events(type)).find(match);
      if (e) return e;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`no ${type} event`);
  }

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'gh-rdp-'));
    weston = await startWeston(dir, color);
    xvfb = await startXvfb();
    shadowX = await startXvfb();
    shadow = await startShadow(dir, shadowX.display, { user: 'Administrator', password: SHADOW_PASSWORD });
    gw = await createGateway({ dataDir: dir, secondFactor: 'off', webDir: false, env: {} });
    // A short request deadline so the stalled-client case is quick.
    gw.use(rdp({ requestTimeoutMs: 1500 }));
    port = (await gw.listen({ host: '127.0.0.1', port: 0 })).port;
    caPem = gw.authorities.get('host').map((k) => k.x509CertPem);
    await gw.admin.putRole(ROLE, { create: true });
    for (const name of ['alice', 'bob']) {
      await gw.admin.createUser({ name, roles: ['desk'], password: PASSWORD });
      const r = await https('POST', '/v1/login', {}, { user: name, password: PASSWORD });
      expect(r.status).toBe(200);
      cookies[name] = {
        cookie: String(r.headers['set-cookie']).split(';')[0]!,
        csrf: String(r.json.csrf_token),
      };
    }
    const fp = new X509Certificate(weston.certPem).fingerprint256;
    await gw.admin.addDesktop({
      name: 'dev1',
      addr: `127.0.0.1:${weston.port}`,
      labels: { env: 'dev' },
      tls_fingerprint: fp,
      credentials: [{ login: 'Administrator', password: 'Win-P@ss-1' }],
    });
    await gw.admin.addDesktop({
      name: 'wrongpin',
      addr: `127.0.0.1:${weston.port}`,
      labels: { env: 'dev' },
      tls_fingerprint: '00'.repeat(32),
    });
    // freerdp-shadow with NLA required, as Windows hosts are by default (its certificate is made at start).
    await gw.admin.addDesktop({
      name: 'nla-stored',
      addr: `127.0.0.1:${shadow.port}`,
      labels: { env: 'dev' },
      insecure_skip_verify: true,
      credentials: [{ login: 'Administrator', password: SHADOW_PASSWORD }],
    });
    liar = await startLyingTarget(dir);
    await gw.admin.addDesktop({
      name: 'nla-mitm',
      addr: `127.0.0.1:${liar.port}`,
      labels: { env: 'dev' },
      insecure_skip_verify: true,
      credentials: [{ login: 'Administrator', password: SHADOW_PASSWORD }],
    });
    await gw.admin.addDesktop({
      name: 'nla-wrong',
      addr: `127.0.0.1:${shadow.port}`,
      labels: { env: 'dev' },
      insecure_skip_verify: true,
      credentials: [{ login: 'Administrator', password: 'not-the-password' }],
    });
    await gw.admin.addDesktop({
      name: 'nla-own',
      addr: `127.0.0.1:${shadow.port}`,
      labels: { env: 'dev' },
      insecure_skip_verify: true,
    });
    await gw.admin.addDesktop({
      name: 'prod1',
      addr: `127.0.0.1:${weston.port}`,
      labels: { env: 'prod' },
      insecure_skip_verify: true,
    });
  }, 60_000);

  afterAll(async () => {
    for (const s of sockets) s.destroy();
    await gw?.close();
    liar?.close();
    await shadow?.stop();
    await shadowX?.stop();
    await xvfb?.stop();
    await weston?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('answers with the desktop confirm (TLS selected) and its certificate; the session is live and audited', async () => {
    const s = await openSocket('alice');
    const answer = await exchange(
      s,
      encodeRequest({ destination: 'dev1', proxyAuth: await token('alice', 'dev1'), x224: clientRequest() }),
    );
    expect(answer.type, JSON.stringify(answer) + JSON.stringify(await events('desktop.session.start'))).toBe(
      'response',
    );
    if (answer.type !== 'response') return;
    expect(decodeConnectionConfirm(answer.x224)).toMatchObject({
      type: 'response',
      selectedProtocol: PROTOCOL.SSL,
    });
    expect(answer.serverCertChain[0]!.equals(new X509Certificate(weston.certPem).raw)).toBe(true);
    expect(answer.serverAddr).toBe(`127.0.0.1:${weston.port}`);
    const start = await waitForEvent(
      'desktop.session.start',
      (e) => e.server === 'dev1' && e.success === true,
    );
    expect(start).toMatchObject({
      user: 'alice',
      login: 'Administrator',
      tls_verify: 'fingerprint',
      security: 'ssl',
      code: 'GH2300I',
    });
    const live = (await gw.admin.listSessions()).sessions;
    expect(
      live.find((l) => l.id === start.session_id),
      JSON.stringify(await events('desktop.session.end')),
    ).toMatchObject({
      kind: 'desktop',
      protocol: 'rdp',
      server: 'dev1',
      user: 'alice',
    });
    s.destroy();
    const end = await waitForEvent('desktop.session.end', (e) => e.session_id === start.session_id);
    expect(end).toMatchObject({ reason: 'client_closed', code: 'GH2301I' });
  });

  it('xfreerdp reaches the remote screen through the gateway, no Windows password typed; a lock ends it', async () => {
    const { cert, key } = await selfSigned(dir, 'front');
    const front = await startLocalFront({
      desktop: 'dev1',
      token: () => token('alice', 'dev1'),
      openSocket: () => openSocket('alice'),
      cert: await readFile(cert, 'utf8'),
      key: await readFile(key, 'utf8'),
    });
    const xf = startXfreerdp(xvfb.display, front.address, 'nobody');
    try {
      // The remote desktop is one colour chosen by this run: most of the 800x600 window shows it.
      const deadline = Date.now() + 30_000;
      let seen = 0;
      while (Date.now() < deadline && seen < 0.8 * 800 * 600) {
        if (xf.child.exitCode !== null) throw new Error(`xfreerdp exited: ${xf.output()}`);
        await new Promise((r) => setTimeout(r, 250));
        seen = await countColor(xvfb.display, dir, color);
      }
      expect(seen, xf.output()).toBeGreaterThan(0.8 * 800 * 600);
      const start = await waitForEvent(
        'desktop.session.start',
        (e) => e.server === 'dev1' && e.success === true && e.user === 'alice',
      );
      await gw.admin.lockUser('alice', { message: 'rdp lock test' });
      const end = await waitForEvent('desktop.session.end', (e) => e.session_id === start.session_id);
      expect(end.reason).toMatch(/rdp lock test/);
      expect(end.bytes_out).toBeGreaterThan(10_000);
      await xf.exited;
    } finally {
      await gw.admin.unlockUser('alice');
      xf.child.kill('SIGKILL');
      await front.close();
    }
  });

  it('the recording of a session replays what the browser was sent, to its owner only', async () => {
    const s = await openSocket('alice');
    const answer = await exchange(
      s,
      encodeRequest({ destination: 'dev1', proxyAuth: await token('alice', 'dev1'), x224: clientRequest() }),
    );
    expect(answer.type).toBe('response');
    const start = await waitForEvent(
      'desktop.session.start',
      (e) => e.server === 'dev1' && e.success === true && !recorded.has(String(e.session_id)),
    );
    const id = String(start.session_id);
    recorded.add(id);
    s.destroy();
    await waitForEvent('desktop.session.end', (e) => e.session_id === id);
    await expect(openSocket('bob', undefined, `/v1/ws/recordings/${id}/desktop`)).rejects.toThrow(/403/);
    await waitForEvent('access.denied', (e) => e.user === 'bob' && e.resource_kind === 'recording');
    const replay = await openSocket('alice', undefined, `/v1/ws/recordings/${id}/desktop?speed=4`);
    const first = await exchange(replay, Buffer.alloc(0));
    expect(first).toEqual(answer);
    replay.destroy();
  });

  it('sessions kill ends a desktop session; its user sees the socket close and the end says who', async () => {
    const s = await openSocket('alice');
    const answer = await exchange(
      s,
      encodeRequest({ destination: 'dev1', proxyAuth: await token('alice', 'dev1'), x224: clientRequest() }),
    );
    expect(answer.type).toBe('response');
    const start = await waitForEvent(
      'desktop.session.start',
      (e) => e.server === 'dev1' && e.success === true && !recorded.has(String(e.session_id)),
    );
    recorded.add(String(start.session_id));
    // The WebSocket's close shows as the end of the stream (ws's stream emits no 'close' by
    // itself); exchange() left it paused, so let it flow.
    const closed = new Promise((r) => s.once('end', r));
    s.resume();
    await gw.admin.killSession(String(start.session_id));
    await closed;
    const end = await waitForEvent('desktop.session.end', (e) => e.session_id === start.session_id);
    expect(String(end.reason)).toMatch(/ended by|killed|terminated/i);
    expect((await gw.admin.listSessions()).sessions.some((l) => l.id === start.session_id)).toBe(false);
  });

  it('logging out of the web UI ends an open desktop session', async () => {
    // A second web session of alice's, so the others in this file stay signed in.
    const r = await https('POST', '/v1/login', {}, { user: 'alice', password: PASSWORD });
    const mine = { cookie: String(r.headers['set-cookie']).split(';')[0]!, csrf: String(r.json.csrf_token) };
    const tok = await https(
      'POST',
      '/v1/desktops/dev1/token',
      { cookie: mine.cookie, 'x-csrf-token': mine.csrf },
      { login: 'Administrator' },
    );
    const s = await wsStream(port, caPem, mine.cookie);
    sockets.push(s);
    const answer = await exchange(
      s,
      encodeRequest({ destination: 'dev1', proxyAuth: String(tok.json.token), x224: clientRequest() }),
    );
    expect(answer.type).toBe('response');
    const start = await waitForEvent(
      'desktop.session.start',
      (e) => e.server === 'dev1' && e.success === true && !recorded.has(String(e.session_id)),
    );
    recorded.add(String(start.session_id));
    const out = await https('POST', '/v1/logout', { cookie: mine.cookie, 'x-csrf-token': mine.csrf }, {});
    expect(out.status).toBe(204);
    const end = await waitForEvent('desktop.session.end', (e) => e.session_id === start.session_id);
    expect(end.reason).toBe('client_closed');
  });

  it('a desktop whose certificate does not match its pin is refused with a TLS alert, audited', async () => {
    const s = await openSocket('alice');
    const answer = await exchange(
      s,
      encodeRequest({
        destination: 'wrongpin',
        proxyAuth: await token('alice', 'wrongpin'),
        x224: clientRequest(),
      }),
    );
    expect(answer).toMatchObject({ type: 'error', error: { errorCode: 1, tlsAlertCode: 42 } });
    const fail = await waitForEvent('desktop.session.start', (e) => e.server === 'wrongpin' && !e.success);
    expect(fail.error).toMatch(/not the pinned one/);
  });

  it('an NLA-only desktop with a stored credential: the gateway runs CredSSP and tells the client TLS was selected; xfreerdp shows the remote screen, no password typed; the recording has no CredSSP and no password', async () => {
    const s = await openSocket('alice');
    const answer = await exchange(
      s,
      encodeRequest({
        destination: 'nla-stored',
        proxyAuth: await token('alice', 'nla-stored'),
        x224: clientRequest(),
      }),
    );
    expect(answer.type, JSON.stringify(answer)).toBe('response');
    if (answer.type !== 'response') return;
    // The desktop selected HYBRID; the client is told SSL, so it never runs CredSSP.
    expect(decodeConnectionConfirm(answer.x224)).toMatchObject({
      type: 'response',
      selectedProtocol: PROTOCOL.SSL,
    });
    const start = await waitForEvent(
      'desktop.session.start',
      (e) => e.server === 'nla-stored' && e.success === true,
    );
    expect(start).toMatchObject({ tls_verify: 'skipped', security: 'hybrid', login: 'Administrator' });
    s.destroy();
    await waitForEvent('desktop.session.end', (e) => e.session_id === start.session_id);

    const { cert, key } = await selfSigned(dir, 'front-nla');
    const front = await startLocalFront({
      desktop: 'nla-stored',
      token: () => token('alice', 'nla-stored'),
      openSocket: () => openSocket('alice'),
      cert: await readFile(cert, 'utf8'),
      key: await readFile(key, 'utf8'),
    });
    const xf = startXfreerdp(xvfb.display, front.address, 'nobody');
    let sessionId = '';
    try {
      const deadline = Date.now() + 30_000;
      let seen = 0;
      while (Date.now() < deadline && seen < 0.5 * 800 * 600) {
        if (xf.child.exitCode !== null) throw new Error(`xfreerdp exited: ${xf.output()}`);
        await new Promise((r) => setTimeout(r, 250));
        await paintShadow();
        seen = await countColor(xvfb.display, dir, shadowColor);
      }
      // The shadow server mirrors its display (one colour chosen by this run) into the window.
      expect(seen, xf.output()).toBeGreaterThan(0.5 * 800 * 600);
      const live = await waitForEvent(
        'desktop.session.start',
        (e) => e.server === 'nla-stored' && e.success === true && e.session_id !== start.session_id,
      );
      sessionId = String(live.session_id);
    } finally {
      xf.child.kill('SIGKILL');
      await xf.exited;
      await front.close();
    }
    const end = await waitForEvent('desktop.session.end', (e) => e.session_id === sessionId);
    // A one-colour screen compresses to a few KiB: what matters is that the desktop's stream flowed.
    expect(end.bytes_out).toBeGreaterThan(1000);
    // What was recorded: no stored password (UTF-16LE or UTF-8), no NTLM message, no TSRequest.
    const data: Buffer[] = [];
    for await (const ev of gw.recordings.read(sessionId))
      if (ev.type === 'output' || ev.type === 'input') data.push(Buffer.from(ev.data));
    const files = await readdir(path.join(dir, 'recordings', sessionId));
    for (const f of files.filter((n) => n.endsWith('.gz')))
      data.push(gunzipSync(await readFile(path.join(dir, 'recordings', sessionId, f))));
    const all = Buffer.concat(data);
    expect(all.length).toBeGreaterThan(1000);
    for (const secret of [
      Buffer.from(SHADOW_PASSWORD, 'utf16le'),
      Buffer.from(SHADOW_PASSWORD),
      Buffer.from('NTLMSSP\0', 'latin1'),
    ]) {
      expect(all.includes(secret)).toBe(false);
    }
  });

  it('an NLA-only desktop whose stored password is wrong: a clear refusal that says how to update it, audited, no session', async () => {
    const refused = await exchange(
      await openSocket('alice'),
      encodeRequest({
        destination: 'nla-wrong',
        proxyAuth: await token('alice', 'nla-wrong'),
        x224: clientRequest(),
      }),
    );
    expect(refused).toMatchObject({ type: 'error', error: { errorCode: 1, httpStatusCode: 502 } });
    const failed = await waitForEvent(
      'desktop.session.start',
      (e) => e.server === 'nla-wrong' && e.success === false,
    );
    expect(failed.error).toMatch(/refused the stored credential for login "Administrator"/);
    expect(failed.error).toMatch(/--password-file/);
    expect(String(failed.error)).not.toContain('not-the-password');
    expect((await gw.admin.listSessions()).sessions.filter((l) => l.server === 'nla-wrong')).toEqual([]);
  });

  it('a desktop whose CredSSP answer proves another TLS key (a man in the middle) is refused with a TLS alert, audited, and never gets the password', async () => {
    const refused = await exchange(
      await openSocket('alice'),
      encodeRequest({
        destination: 'nla-mitm',
        proxyAuth: await token('alice', 'nla-mitm'),
        x224: clientRequest(),
      }),
    );
    expect(refused).toMatchObject({ type: 'error', error: { errorCode: 1, tlsAlertCode: 42 } });
    const failed = await waitForEvent(
      'desktop.session.start',
      (e) => e.server === 'nla-mitm' && e.success === false,
    );
    expect(failed.error).toMatch(/public key proof does not match .*man in the middle/);
    expect(liar.sentAuthInfo()).toBe(false);
  });

  it('an NLA-only desktop without a stored credential: the browser gets the HYBRID confirm and runs CredSSP itself; a native client (TLS only) is refused with the negotiation error', async () => {
    const own = await exchange(
      await openSocket('alice'),
      encodeRequest({
        destination: 'nla-own',
        proxyAuth: await token('alice', 'nla-own'),
        x224: clientRequest(),
      }),
    );
    expect(own.type).toBe('response');
    if (own.type !== 'response') return;
    expect(decodeConnectionConfirm(own.x224)).toMatchObject({
      type: 'response',
      selectedProtocol: PROTOCOL.HYBRID,
    });
    const start = await waitForEvent(
      'desktop.session.start',
      (e) => e.server === 'nla-own' && e.success === true,
    );
    expect(start).toMatchObject({ tls_verify: 'skipped', security: 'hybrid' });

    // What the native front sends: TLS security only.
    const refused = await exchange(
      await openSocket('alice'),
      encodeRequest({
        destination: 'nla-own',
        proxyAuth: await token('alice', 'nla-own'),
        x224: encodeConnectionRequest({
          cookie: 'alice',
          negotiation: { flags: 0, requestedProtocols: PROTOCOL.SSL },
        }),
      }),
    );
    expect(refused).toMatchObject({ type: 'error', error: { errorCode: 2 } });
    if (refused.type !== 'error' || !refused.x224)
      throw new Error('no server confirm in the negotiation error');
    // The server's own answer: HYBRID_REQUIRED_BY_SERVER (5), as IronRDP reports it.
    expect(decodeConnectionConfirm(refused.x224)).toEqual({ type: 'failure', failureCode: 5 });
    const failed = await waitForEvent(
      'desktop.session.start',
      (e) => e.server === 'nla-own' && e.success === false,
    );
    expect(failed.error).toMatch(/requires NLA .* no credential stored .*--password-file/);
  });

  it('malformed and oversized requests get an RDCleanPath error and a desktop.reject, never a crash', async () => {
    const bad = await exchange(await openSocket('alice'), Buffer.from('300a0203011111deadbeef00', 'hex'));
    expect(bad).toMatchObject({ type: 'error', error: { httpStatusCode: 400 } });
    const s = await openSocket('alice');
    const huge = await exchange(s, Buffer.from([0x30, 0x83, 0x10, 0x00, 0x00]));
    expect(huge).toMatchObject({ type: 'error', error: { httpStatusCode: 413 } });
    await waitForEvent('desktop.reject', (e) => e.reason === 'malformed' && e.user === 'alice');
    await waitForEvent('desktop.reject', (e) => e.reason === 'oversized' && e.user === 'alice');
  });

  it('a client that opens the socket and sends nothing is answered 408 and audited', async () => {
    const s = await openSocket('bob');
    let buf = Buffer.alloc(0);
    for await (const chunk of s) buf = Buffer.concat([buf, chunk as Buffer]);
    expect(decodeResponse(buf)).toMatchObject({ type: 'error', error: { httpStatusCode: 408 } });
    await waitForEvent('desktop.reject', (e) => e.reason === 'timeout' && e.user === 'bob');
  });

  it("a replayed token, or another user's, is refused (403) and audited", async () => {
    const t = await token('alice', 'dev1');
    const first = await exchange(
      await openSocket('alice'),
      encodeRequest({ destination: 'dev1', proxyAuth: t, x224: clientRequest() }),
    );
    expect(first.type).toBe('response');
    const again = await exchange(
      await openSocket('alice'),
      encodeRequest({ destination: 'dev1', proxyAuth: t, x224: clientRequest() }),
    );
    expect(again).toMatchObject({ type: 'error', error: { httpStatusCode: 403 } });
    const stolen = await exchange(
      await openSocket('bob'),
      encodeRequest({ destination: 'dev1', proxyAuth: await token('alice', 'dev1'), x224: clientRequest() }),
    );
    expect(stolen).toMatchObject({ type: 'error', error: { httpStatusCode: 403 } });
    expect(
      (await events('desktop.reject')).filter((e) => e.reason === 'token_invalid').length,
    ).toBeGreaterThanOrEqual(2);
  });

  it('a denied desktop gets no token (audited); a foreign Origin gets no WebSocket', async () => {
    await expect(token('alice', 'prod1')).rejects.toThrow(/403/);
    await waitForEvent('access.denied', (e) => e.resource === 'prod1' && e.user === 'alice');
    await expect(openSocket('alice', 'https://evil.example')).rejects.toThrow(/upgrade refused: 403/);
  });
});

describe('the gateway logs in to xrdp (TLS, no NLA) with the stored credential: the client types no password', () => {
  let dir: string;
  let gw: Gateway;
  let port: number;
  let xvfb: { display: string; stop(): Promise<void> };
  let xrdp: { port: number; user: string; password: string; stop(): Promise<void> };
  const color: [number, number, number] = [randomInt(40, 200), randomInt(40, 200), randomInt(40, 200)];
  let caPem: string[];
  let cookie = { cookie: '', csrf: '' };

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'gh-xrdp-'));
    // Every peer that starts is kept (and stopped in afterAll) even when another fails to start.
    await allStarted([startXvfb().then((x) => (xvfb = x)), startXrdp(dir, color).then((x) => (xrdp = x))]);
    gw = await createGateway({ dataDir: dir, secondFactor: 'off', webDir: false, env: {} });
    gw.use(rdp());
    port = (await gw.listen({ host: '127.0.0.1', port: 0 })).port;
    caPem = gw.authorities.get('host').map((k) => k.x509CertPem);
    // The built-in access role: desktop_logins come from the user's traits.
    await gw.admin.createUser({
      name: 'alice',
      roles: ['access'],
      traits: { desktop_logins: [xrdp.user] },
      password: PASSWORD,
    });
    const r = await httpsJson(port, caPem, 'POST', '/v1/login', {}, { user: 'alice', password: PASSWORD });
    cookie = { cookie: String(r.headers['set-cookie']).split(';')[0]!, csrf: String(r.json.csrf_token) };
    const certPem = await readFile(path.join(dir, 'xrdp', 'xrdp.crt'), 'utf8');
    const pin = new X509Certificate(certPem).fingerprint256;
    await gw.admin.addDesktop({
      name: 'xrdp1',
      addr: `127.0.0.1:${xrdp.port}`,
      labels: { env: 'dev' },
      tls_fingerprint: pin,
      credentials: [{ login: xrdp.user, password: xrdp.password }],
    });
  }, 60_000);

  afterAll(async () => {
    await gw?.close();
    await xrdp?.stop();
    await xvfb?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('xfreerdp with no password lands in the logged-in session (its ~/.xsession colour), not the login dialog', async () => {
    const { cert, key } = await selfSigned(dir, 'front');
    const front = await startLocalFront({
      desktop: 'xrdp1',
      token: async () =>
        String(
          (
            await httpsJson(
              port,
              caPem,
              'POST',
              '/v1/desktops/xrdp1/token',
              { cookie: cookie.cookie, 'x-csrf-token': cookie.csrf },
              { login: xrdp.user },
            )
          ).json.token,
        ),
      openSocket: () => wsStream(port, caPem, cookie.cookie),
      cert: await readFile(cert, 'utf8'),
      key: await readFile(key, 'utf8'),
    });
    const xf = startXfreerdp(xvfb.display, front.address, 'nobody');
    try {
      const deadline = Date.now() + 45_000;
      let seen = 0;
      while (Date.now() < deadline && seen < 0.8 * 800 * 600) {
        if (xf.child.exitCode !== null) throw new Error(`xfreerdp exited: ${xf.output()}`);
        await new Promise((r) => setTimeout(r, 300));
        seen = await countColor(xvfb.display, dir, color);
      }
      expect(seen, xf.output()).toBeGreaterThan(0.8 * 800 * 600);
    } finally {
      xf.child.kill('SIGKILL');
      await front.close();
    }
  }, 90_000);
});
