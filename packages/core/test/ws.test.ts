import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { request } from 'node:https';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { AuditEvent } from '@gatehouse/audit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import {
  type FileRequest,
  GatehouseClient,
  GatehouseError,
  isGatehouseError,
  type JoinMode,
  parseTerminalServerFrame,
  type TerminalHandle,
  type TerminalRequest,
  type TerminalServerFrame,
  type TerminalService,
  type TerminalViewer,
} from '../src/index.js';
import { newTlsKey, startGateway, type TestGateway, waitFor } from './helpers.js';

const PASSWORD = 'correct horse battery staple';

/**
 * A stand-in for the SSH adapter's shell: every viewer's input is echoed to
 * all viewers, the owner's resize reaches everyone. It drops nothing by
 * itself, so what core drops (an observer's keystrokes) shows here.
 */
class EchoShell {
  cols: number;
  rows: number;
  readonly viewers = new Set<TerminalViewer>();
  readonly inputs: { user: string; mode: string; text: string }[] = [];
  readonly resizes: { user: string; cols: number; rows: number }[] = [];
  readonly detached: string[] = [];
  unregister = () => {};

  constructor(
    readonly req: TerminalRequest,
    readonly id: string,
  ) {
    this.cols = req.cols;
    this.rows = req.rows;
  }

  attach(user: string, mode: 'owner' | JoinMode, viewer: TerminalViewer): TerminalHandle {
    this.viewers.add(viewer);
    viewer.resize(this.cols, this.rows);
    return {
      sessionId: this.id,
      input: (data) => {
        const text = Buffer.from(data).toString('utf8');
        this.inputs.push({ user, mode, text });
        if (text === 'flood') {
          // 32 MiB at once: far more than a viewer's socket buffers hold.
          const chunk = Buffer.alloc(64 * 1024, 0x41);
          for (let i = 0; i < 512; i++) viewer.output(chunk);
          return;
        }
        for (const v of this.viewers) v.output(data);
      },
      resize: (cols, rows) => {
        this.resizes.push({ user, cols, rows });
        if (mode !== 'owner') return;
        this.cols = cols;
        this.rows = rows;
        for (const v of this.viewers) v.resize(cols, rows);
      },
      detach: () => {
        if (this.viewers.delete(viewer)) this.detached.push(`${user}:${mode}`);
      },
    };
  }

  end(info: { reason?: string; exitCode?: number }): void {
    for (const v of [...this.viewers]) v.end(info);
    this.viewers.clear();
    this.unregister();
  }
}

class EchoService implements TerminalService {
  readonly shells: EchoShell[] = [];
  readonly fileRequests: FileRequest[] = [];
  /**
   * How long a shell takes to end after core terminates it: the SSH
   * adapter's web shell ends its viewers only once its channel has closed.
   */
  endDelayMs = 0;

  constructor(
    private readonly t: TestGateway,
    private readonly root: string,
  ) {}

  async open(req: TerminalRequest, viewer: TerminalViewer): Promise<TerminalHandle> {
    if (req.node !== 'web1') throw new GatehouseError('GH_ERR_NOT_FOUND', `no node "${req.node}"`);
    // As the SSH adapter does: core authorizes, then the session is bound to core's lifecycle.
    const grant = await this.t.gw.authorizer.authorize(
      req.identity,
      { kind: 'node', name: req.node, labels: {}, login: req.login },
      { remoteAddr: req.remoteAddr },
    );
    const shell = new EchoShell(req, grant.sessionId);
    this.shells.push(shell);
    const live = this.t.gw.liveSessions.bind(
      grant,
      { kind: 'ssh', protocol: 'ssh', server: req.node, login: req.login, interactive: true },
      {
        join: (joiner, v) => shell.attach(joiner.user, joiner.mode, v),
        terminate: (r) => {
          if (this.endDelayMs > 0) setTimeout(() => shell.end({ reason: r.message }), this.endDelayMs);
          else shell.end({ reason: r.message });
        },
      },
    );
    shell.unregister = () => live.end();
    return shell.attach(req.identity.user, 'owner', viewer);
  }

  async readFile(req: FileRequest) {
    this.fileRequests.push(req);
    const file = path.join(this.root, req.path);
    return { size: (await stat(file)).size, stream: createReadStream(file) };
  }

  async writeFile(req: FileRequest, body: NodeJS.ReadableStream) {
    this.fileRequests.push(req);
    const file = path.join(this.root, req.path);
    let bytes = 0;
    body.on('data', (c: Buffer) => {
      bytes += c.length;
    });
    await pipeline(body, createWriteStream(file));
    return { bytes };
  }
}

/** One client's view of a terminal socket: frames and output as they arrive, and how it closed. */
class Client {
  readonly frames: TerminalServerFrame[] = [];
  output = '';
  outputBytes = 0;
  closed: { code: number; reason: string } | undefined;
  refused: { status: number; body: Record<string, unknown> } | undefined;
  error: Error | undefined;

  constructor(readonly ws: WebSocket) {
    ws.on('message', (data: Buffer, isBinary) => {
      if (isBinary) {
        this.outputBytes += data.length;
        if (this.output.length < 4096) this.output += data.toString('utf8');
      } else {
        const f = parseTerminalServerFrame(data.toString('utf8'));
        if (f) this.frames.push(f);
      }
    });
    ws.on('close', (code, reason) => {
      this.closed = { code, reason: reason.toString() };
    });
    ws.on('error', (e) => {
      this.error = e;
    });
  }

  frame<T extends TerminalServerFrame['type']>(type: T): Promise<Extract<TerminalServerFrame, { type: T }>> {
    return waitFor(
      () => this.frames.find((f) => f.type === type) as Extract<TerminalServerFrame, { type: T }> | undefined,
      `a ${type} frame`,
    );
  }

  async session() {
    return this.frame('session');
  }

  waitOutput(text: string) {
    return waitFor(() => this.output.includes(text) || undefined, `output "${text}"`);
  }

  waitClosed() {
    return waitFor(() => this.closed, 'the socket to close', 10_000);
  }

  input(text: string) {
    this.ws.send(Buffer.from(text), { binary: true });
  }

  resize(cols: number, rows: number) {
    this.ws.send(JSON.stringify({ type: 'resize', cols, rows }));
  }
}

describe('terminal WebSockets and /v1/files', () => {
  let t: TestGateway;
  let service: EchoService;
  let root: string;
  const certs: Record<string, { certPem: string; keyPem: string }> = {};
  const cookies: Record<string, { cookie: string; csrf: string }> = {};
  const open: Client[] = [];

  const origin = () => `https://127.0.0.1:${t.port}`;
  const query = (q: Record<string, string | number>) =>
    new URLSearchParams(Object.entries(q).map(([k, v]): [string, string] => [k, String(v)])).toString();
  const termPath = (q: Record<string, string | number> = {}) =>
    `/v1/ws/terminal?${query({ node: 'web1', login: 'gh-test', cols: 100, rows: 30, ...q })}`;

  function clientFor(user?: string): GatehouseClient {
    return new GatehouseClient({
      proxy: `127.0.0.1:${t.port}`,
      caPem: t.caPem,
      ...(user ? certs[user] : {}),
    });
  }

  /** A WebSocket as a browser opens it: the session cookie, and Origin unless told otherwise. */
  function browser(
    pathAndQuery: string,
    opts: { user?: string; cookie?: string; origin?: string | null } = {},
  ): Client {
    const headers: Record<string, string> = {};
    if (opts.user) headers.cookie = cookies[opts.user]!.cookie;
    if (opts.cookie) headers.cookie = opts.cookie;
    const o = opts.origin === undefined ? origin() : opts.origin;
    if (o !== null) headers.origin = o;
    const ws = new WebSocket(`wss://127.0.0.1:${t.port}${pathAndQuery}`, { ca: t.caPem, headers });
    const c = new Client(ws);
    ws.on('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (d: Buffer) => {
        body += d;
      });
      res.on('end', () => {
        c.refused = { status: res.statusCode ?? 0, body: JSON.parse(body) };
        ws.terminate();
      });
    });
    open.push(c);
    return c;
  }

  function cli(ws: WebSocket): Client {
    const c = new Client(ws);
    open.push(c);
    return c;
  }

  async function refusal(c: Client) {
    return waitFor(() => c.refused, 'the upgrade to be refused');
  }

  async function audit(type: string, match: (e: AuditEvent) => boolean): Promise<AuditEvent> {
    return waitFor(async () => {
      const page = await t.gw.audit.search({ types: [type], limit: 1000 });
      return page.events.find(match);
    }, `a ${type} audit event`);
  }

  function https(
    method: string,
    pathAndQuery: string,
    headers: Record<string, string | number>,
    body?: Buffer,
  ): Promise<{ status: number; headers: Record<string, unknown>; body: Buffer }> {
    return new Promise((resolve, reject) => {
      const req = request(
        { host: '127.0.0.1', port: t.port, method, path: pathAndQuery, ca: t.caPem, headers, agent: false },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () =>
            resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }),
          );
        },
      );
      req.on('error', reject);
      req.end(body);
    });
  }

  beforeAll(async () => {
    t = await startGateway({ webDir: false });
    root = path.join(t.dir, 'files');
    await mkdir(root);
    service = new EchoService(t, root);
    t.gw.terminals.provide(service);
    for (const [name, roles] of [
      ['alice', ['access']],
      ['bob', ['access']],
      ['carol', ['auditor']],
      ['root-admin', ['admin', 'access']],
    ] as const) {
      await t.gw.admin.createUser({
        name,
        roles: [...roles],
        traits: { logins: ['gh-test'] },
        password: PASSWORD,
      });
      const key = newTlsKey();
      const res = await clientFor().login({ user: name, password: PASSWORD, tls_public_key: key.publicPem });
      certs[name] = { certPem: res.tls_cert!, keyPem: key.privatePem };
      cookies[name] = await webLogin(name);
    }
  });

  /** A new web session (the cookie and CSRF token the web UI keeps). */
  async function webLogin(name: string): Promise<{ cookie: string; csrf: string }> {
    const web = await https(
      'POST',
      '/v1/login',
      { 'content-type': 'application/json' },
      Buffer.from(JSON.stringify({ user: name, password: PASSWORD })),
    );
    expect(web.status).toBe(200);
    return {
      cookie: String(web.headers['set-cookie']).split(';')[0]!,
      csrf: JSON.parse(web.body.toString()).csrf_token,
    };
  }

  afterAll(async () => {
    for (const c of open) c.ws.terminate();
    await t.close();
  });

  /** alice's web terminal, open and running. */
  async function aliceShell(): Promise<{ owner: Client; shell: EchoShell }> {
    const owner = browser(termPath(), { user: 'alice' });
    const s = await owner.session();
    const shell = service.shells.find((x) => x.id === s.session_id)!;
    return { owner, shell };
  }

  it('opens a shell for a cookie session with a same-host Origin; identity carries the user record traits', async () => {
    const { owner, shell } = await aliceShell();
    expect(owner.frames[0]).toEqual({
      type: 'session',
      session_id: shell.id,
      mode: 'owner',
      cols: 100,
      rows: 30,
    });
    expect(shell.req).toMatchObject({ node: 'web1', login: 'gh-test', cols: 100, rows: 30 });
    expect(shell.req.identity.user).toBe('alice');
    expect(shell.req.identity.traits).toEqual({ logins: ['gh-test'] });
    expect(shell.req.identity.expires.getTime()).toBeGreaterThan(Date.now());
    owner.input('hello');
    await owner.waitOutput('hello');
    expect(shell.inputs).toEqual([{ user: 'alice', mode: 'owner', text: 'hello' }]);
  });

  it('refuses a cookie without Origin or with another site as Origin: 403 and http.reject', async () => {
    for (const o of [null, 'https://evil.example', `http://127.0.0.1:${t.port}`, 'null']) {
      const c = browser(termPath(), { user: 'alice', origin: o });
      const r = await refusal(c);
      expect(r.status).toBe(403);
      expect(r.body.code).toBe('GH_ERR_CSRF');
    }
    const e = await audit(
      'http.reject',
      (x) => x.type === 'http.reject' && x.path === '/v1/ws/terminal' && x.status === 403,
    );
    expect(e).toMatchObject({ method: 'GET', addr: { remote: '127.0.0.1' } });
  });

  it('refuses an upgrade without credentials (401) and bad parameters (400), both audited', async () => {
    const anon = await refusal(browser(termPath()));
    expect(anon.status).toBe(401);
    expect(anon.body.code).toBe('GH_ERR_UNAUTHENTICATED');
    await audit('http.reject', (x) => x.type === 'http.reject' && x.status === 401);
    for (const bad of [{ cols: 0 }, { rows: 1001 }, { node: '' }, { cols: '80x' }] as Record<
      string,
      string | number
    >[]) {
      const r = await refusal(browser(termPath(bad), { user: 'alice' }));
      expect(r.status).toBe(400);
    }
    await audit('http.reject', (x) => x.type === 'http.reject' && x.status === 400);
    const nowhere = await refusal(browser('/v1/ws/elsewhere', { user: 'alice' }));
    expect(nowhere.status).toBe(404);
    // Nothing was opened for any of them.
    expect(service.shells.every((s) => s.req.identity.user === 'alice' && s.req.node === 'web1')).toBe(true);
  });

  it('opens a shell with a client certificate (GatehouseClient.openTerminal); the node refusing is an error frame', async () => {
    const c = cli(clientFor('bob').openTerminal({ node: 'web1', login: 'gh-test', cols: 80, rows: 24 }));
    const s = await c.session();
    const shell = service.shells.find((x) => x.id === s.session_id)!;
    expect(shell.req.identity.user).toBe('bob');
    c.input('from the cli');
    await c.waitOutput('from the cli');

    const gone = cli(clientFor('bob').openTerminal({ node: 'nope', login: 'gh-test', cols: 80, rows: 24 }));
    expect(await gone.frame('error')).toMatchObject({ code: 'GH_ERR_NOT_FOUND', message: 'no node "nope"' });
    expect((await gone.waitClosed()).code).toBe(1011);
  });

  it('a refused upgrade reaches GatehouseClient as the server error', async () => {
    const c = cli(new GatehouseClient({ proxy: `127.0.0.1:${t.port}`, caPem: t.caPem }).joinSession('x'));
    await c.waitClosed();
    expect(isGatehouseError(c.error, 'GH_ERR_UNAUTHENTICATED')).toBe(true);
  });

  it('lets the owner join their own session in any mode; unknown sessions 404, unknown modes 400', async () => {
    const { owner, shell } = await aliceShell();
    const peer = cli(clientFor('alice').joinSession(shell.id, 'peer'));
    expect(await peer.session()).toEqual({
      type: 'session',
      session_id: shell.id,
      mode: 'peer',
      cols: 100,
      rows: 30,
    });
    peer.input('typed by the second tab');
    await owner.waitOutput('typed by the second tab');
    await audit(
      'session.join',
      (e) => e.type === 'session.join' && e.session_id === shell.id && e.success && e.mode === 'peer',
    );
    const missing = await refusal(browser('/v1/ws/sessions/no-such-session/join', { user: 'alice' }));
    expect(missing.status).toBe(404);
    const badMode = await refusal(browser(`/v1/ws/sessions/${shell.id}/join?mode=owner`, { user: 'alice' }));
    expect(badMode.status).toBe(400);
  });

  it("denies an access-role user joining someone else's session: 403, access.denied and a failed session.join", async () => {
    const { shell } = await aliceShell();
    const c = cli(clientFor('bob').joinSession(shell.id, 'observer'));
    await c.waitClosed();
    expect(isGatehouseError(c.error, 'GH_ERR_ACCESS_DENIED')).toBe(true);
    const byBrowser = await refusal(browser(`/v1/ws/sessions/${shell.id}/join`, { user: 'bob' }));
    expect(byBrowser.status).toBe(403);
    const join = await audit(
      'session.join',
      (e) => e.type === 'session.join' && e.user === 'bob' && e.session_id === shell.id,
    );
    expect(join).toMatchObject({
      success: false,
      owner: 'alice',
      server: 'web1',
      session_kind: 'ssh',
      mode: 'observer',
    });
    expect(join.type === 'session.join' && !join.success && join.error).toMatch(/join/);
    await audit(
      'access.denied',
      (e) => e.type === 'access.denied' && e.user === 'bob' && e.resource === shell.id,
    );
    expect(shell.viewers.size).toBe(1);
  });

  it('lets an auditor observe but not type: observer input dropped, peer input delivered, peer denied to the auditor', async () => {
    const { owner, shell } = await aliceShell();
    const watcher = cli(clientFor('carol').joinSession(shell.id));
    expect((await watcher.session()).mode).toBe('observer');
    const asPeer = cli(clientFor('carol').joinSession(shell.id, 'peer'));
    await asPeer.waitClosed();
    expect(isGatehouseError(asPeer.error, 'GH_ERR_ACCESS_DENIED')).toBe(true);
    await audit(
      'session.join',
      (e) => e.type === 'session.join' && e.user === 'carol' && e.mode === 'peer' && !e.success,
    );

    const admin = cli(clientFor('root-admin').joinSession(shell.id, 'peer'));
    await admin.session();
    watcher.input('observer keys');
    admin.input('peer keys');
    owner.input('owner keys');
    // Frames from different sockets may arrive in any order: wait for both that must arrive.
    await watcher.waitOutput('peer keys');
    await watcher.waitOutput('owner keys');
    expect(shell.inputs.map((i) => `${i.user}:${i.text}`).sort()).toEqual([
      'alice:owner keys',
      'root-admin:peer keys',
    ]);
    expect(watcher.output).not.toContain('observer keys');
  });

  it('drops a joiner whose access is locked while watching; the session goes on', async () => {
    const { owner, shell } = await aliceShell();
    const watcher = cli(clientFor('carol').joinSession(shell.id));
    await watcher.session();
    const lock = await t.gw.admin.lockUser('carol', { message: 'incident 42' });
    try {
      expect(await watcher.frame('error')).toMatchObject({ code: 'GH_ERR_USER_LOCKED' });
      expect((await watcher.waitClosed()).code).toBe(1011);
      await audit(
        'session.leave',
        (e) => e.type === 'session.leave' && e.session_id === shell.id && e.user === 'carol',
      );
      owner.input('still here');
      await owner.waitOutput('still here');
      expect(owner.closed).toBeUndefined();
    } finally {
      await t.gw.admin.unlockUser('carol');
    }
    expect(lock.target).toEqual({ user: 'carol' });
  });

  it('logging out closes the terminals and joins that web session opened; other sessions and certificates go on', async () => {
    const aliceTab = await webLogin('alice');
    const carolTab = await webLogin('carol');
    const owner = browser(termPath(), { cookie: aliceTab.cookie });
    const s = await owner.session();
    const shell = service.shells.find((x) => x.id === s.session_id)!;
    const watcher = browser(`/v1/ws/sessions/${shell.id}/join?mode=observer`, { cookie: carolTab.cookie });
    await watcher.session();
    // The same users elsewhere: carol with her certificate, alice in another browser.
    const carolCli = cli(clientFor('carol').joinSession(shell.id));
    await carolCli.session();
    const otherTab = browser(termPath(), { user: 'alice' });
    await otherTab.session();

    const logout = (tab: { cookie: string; csrf: string }) =>
      https('POST', '/v1/logout', { cookie: tab.cookie, 'x-csrf-token': tab.csrf });
    expect((await logout(carolTab)).status).toBe(204);
    expect(await watcher.frame('error')).toMatchObject({ code: 'GH_ERR_UNAUTHENTICATED' });
    expect((await watcher.waitClosed()).code).toBe(1011);
    await audit(
      'session.leave',
      (e) =>
        e.type === 'session.leave' &&
        e.session_id === shell.id &&
        e.user === 'carol' &&
        e.mode === 'observer',
    );
    owner.input('after carol left');
    await owner.waitOutput('after carol left');
    await carolCli.waitOutput('after carol left');

    expect((await logout(aliceTab)).status).toBe(204);
    expect(await owner.frame('error')).toMatchObject({
      code: 'GH_ERR_UNAUTHENTICATED',
      message: 'your web session ended (logged out)',
    });
    expect((await owner.waitClosed()).code).toBe(1011);
    otherTab.input('still signed in');
    await otherTab.waitOutput('still signed in');
    expect(otherTab.closed).toBeUndefined();
    expect(carolCli.closed).toBeUndefined();
  });

  it('deleting a user ends their cookie terminal naming the deletion, not a logout (the web session goes with the user)', async () => {
    await t.gw.admin.createUser({
      name: 'dave',
      roles: ['access'],
      traits: { logins: ['gh-test'] },
      password: PASSWORD,
    });
    const owner = browser(termPath(), { cookie: (await webLogin('dave')).cookie });
    await owner.session();
    service.endDelayMs = 300;
    try {
      await t.gw.admin.deleteUser('dave');
      await owner.waitClosed();
    } finally {
      service.endDelayMs = 0;
    }
    // Whichever comes first, the shell's end or the socket's own check, names why.
    const last = owner.frames.filter((f) => f.type === 'end' || f.type === 'error').at(-1);
    const said = last?.type === 'end' ? last.reason : last?.type === 'error' ? last.message : undefined;
    expect(said).toBe('user "dave" no longer exists');
  });

  it('passes resizes: the viewer size goes to the session, the session size to every viewer; out of range closes 1008', async () => {
    const { owner, shell } = await aliceShell();
    const watcher = cli(clientFor('root-admin').joinSession(shell.id));
    await watcher.session();
    owner.resize(132, 43);
    expect(await watcher.frame('resize')).toEqual({ type: 'resize', cols: 132, rows: 43 });
    await waitFor(() => shell.resizes.length > 0 || undefined, 'the resize');
    expect(shell.resizes).toEqual([{ user: 'alice', cols: 132, rows: 43 }]);
    watcher.resize(0, 10);
    expect(await watcher.frame('error')).toMatchObject({ code: 'GH_ERR_BAD_REQUEST' });
    expect((await watcher.waitClosed()).code).toBe(1008);
    expect(shell.resizes).toHaveLength(1);
  });

  it('closes 1008 on a text frame that is not a message, and 1009 on a frame above 1 MiB', async () => {
    const a = await aliceShell();
    a.owner.ws.send('{"type":"paste","data":"x"}');
    expect(await a.owner.frame('error')).toMatchObject({ code: 'GH_ERR_BAD_REQUEST' });
    expect((await a.owner.waitClosed()).code).toBe(1008);
    await waitFor(() => a.shell.detached.includes('alice:owner') || undefined, 'the owner to be detached');

    const b = await aliceShell();
    b.owner.ws.send(Buffer.alloc(1024 * 1024 + 1), { binary: true });
    expect((await b.owner.waitClosed()).code).toBe(1009);
    await waitFor(() => b.shell.detached.includes('alice:owner') || undefined, 'the owner to be detached');
    expect(b.shell.inputs).toEqual([]);
  });

  it('ends with an end frame and close 1000 for every viewer, and audits session.leave', async () => {
    const { owner, shell } = await aliceShell();
    const watcher = cli(clientFor('root-admin').joinSession(shell.id));
    await watcher.session();
    const leaver = cli(clientFor('root-admin').joinSession(shell.id));
    await leaver.session();
    leaver.ws.close();
    const left = await audit(
      'session.leave',
      (e) => e.type === 'session.leave' && e.session_id === shell.id && e.user === 'root-admin',
    );
    expect(left).toMatchObject({ owner: 'alice', mode: 'observer', server: 'web1' });
    expect(left.type === 'session.leave' && left.duration_ms).toBeGreaterThanOrEqual(0);

    shell.end({ exitCode: 3 });
    for (const c of [owner, watcher]) {
      expect(await c.frame('end')).toEqual({ type: 'end', exit_code: 3 });
      expect((await c.waitClosed()).code).toBe(1000);
    }
    await waitFor(async () => {
      const page = await t.gw.audit.search({ types: ['session.leave'], limit: 1000 });
      const n = page.events.filter((e) => e.type === 'session.leave' && e.session_id === shell.id).length;
      return n === 2 || undefined;
    }, 'both joiners to be audited as leaving');
  });

  it('drops a viewer that does not keep up with the output, with an error frame (no unbounded buffering)', async () => {
    const { owner, shell } = await aliceShell();
    owner.input('flood');
    expect(await owner.frame('error')).toMatchObject({ code: 'GH_ERR_RATE_LIMITED' });
    expect((await owner.waitClosed()).code).toBe(1011);
    expect(owner.outputBytes).toBeLessThan(32 * 1024 * 1024);
    expect(shell.detached).toContain('alice:owner');
  });

  it('GET /v1/files downloads and PUT uploads through the terminal service (round trip)', async () => {
    const data = Buffer.from('line one\nzwei: ü\n');
    const q = (p: string) => `/v1/files?${query({ node: 'web1', login: 'gh-test', path: p })}`;
    const { cookie, csrf } = cookies.alice!;
    const put = await https(
      'PUT',
      q('up load.txt'),
      { cookie, 'x-csrf-token': csrf, 'content-type': 'application/octet-stream' },
      data,
    );
    expect(put.status).toBe(200);
    expect(JSON.parse(put.body.toString())).toEqual({ bytes: data.length });
    expect(await readFile(path.join(root, 'up load.txt'))).toEqual(data);
    const get = await https('GET', q('up load.txt'), { cookie });
    expect(get.status).toBe(200);
    expect(get.headers['content-type']).toBe('application/octet-stream');
    expect(get.headers['content-disposition']).toBe(
      `attachment; filename="up load.txt"; filename*=UTF-8''up%20load.txt`,
    );
    expect(get.headers['content-length']).toBe(String(data.length));
    expect(get.body).toEqual(data);
    const last = service.fileRequests.at(-1)!;
    expect(last).toMatchObject({ node: 'web1', login: 'gh-test', path: 'up load.txt' });
    expect(last.identity.user).toBe('alice');
  });

  it('refuses PUT /v1/files without the CSRF header, above 1 GiB, and without credentials', async () => {
    await writeFile(path.join(root, 'keep.txt'), 'original');
    const q = `/v1/files?${query({ node: 'web1', login: 'gh-test', path: 'keep.txt' })}`;
    const noCsrf = await https('PUT', q, { cookie: cookies.alice!.cookie }, Buffer.from('overwritten'));
    expect(noCsrf.status).toBe(403);
    expect(JSON.parse(noCsrf.body.toString()).code).toBe('GH_ERR_CSRF');
    const big = await https('PUT', q, {
      cookie: cookies.alice!.cookie,
      'x-csrf-token': cookies.alice!.csrf,
      'content-length': 2 * 1024 ** 3,
    });
    expect(big.status).toBe(413);
    const anon = await https('GET', q, {});
    expect(anon.status).toBe(401);
    const missing = await https('GET', '/v1/files?node=web1', { cookie: cookies.alice!.cookie });
    expect(missing.status).toBe(400);
    expect(await readFile(path.join(root, 'keep.txt'), 'utf8')).toBe('original');
    await audit('http.reject', (e) => e.type === 'http.reject' && e.path === '/v1/files' && e.status === 413);
  });
});

describe('terminal WebSockets without an SSH adapter', () => {
  it('answers the upgrade and /v1/files with a problem, not a hang', async () => {
    const t = await startGateway({ webDir: false });
    try {
      await t.gw.admin.createUser({ name: 'dave', roles: ['access'], password: PASSWORD });
      const key = newTlsKey();
      const client = new GatehouseClient({ proxy: `127.0.0.1:${t.port}`, caPem: t.caPem });
      const res = await client.login({ user: 'dave', password: PASSWORD, tls_public_key: key.publicPem });
      const dave = new GatehouseClient({
        proxy: `127.0.0.1:${t.port}`,
        caPem: t.caPem,
        certPem: res.tls_cert!,
        keyPem: key.privatePem,
      });
      const ws = dave.openTerminal({ node: 'web1', login: 'dave', cols: 80, rows: 24 });
      const err = await new Promise<unknown>((resolve) => ws.on('error', resolve));
      expect(isGatehouseError(err, 'GH_ERR_UPSTREAM_UNAVAILABLE')).toBe(true);
      expect((err as GatehouseError).message).toMatch(/no SSH adapter/);
      const files = await new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = request(
          {
            host: '127.0.0.1',
            port: t.port,
            path: '/v1/files?node=web1&login=dave&path=x',
            ca: t.caPem,
            cert: res.tls_cert!,
            key: key.privatePem,
          },
          (r) => {
            let body = '';
            r.on('data', (d: Buffer) => {
              body += d;
            });
            r.on('end', () => resolve({ status: r.statusCode ?? 0, body }));
          },
        );
        req.on('error', reject);
        req.end();
      });
      expect(files.status).toBe(502);
      expect(JSON.parse(files.body)).toMatchObject({ code: 'GH_ERR_UPSTREAM_UNAVAILABLE' });
      client.close();
      dave.close();
    } finally {
      await t.close();
    }
  });
});
