/**
 * The web terminal's TerminalService (the gateway's own SSH client through
 * its proxy) and joining live sessions, against a real OpenSSH sshd node,
 * the built-in node service and a real OpenSSH client owning the joined
 * session.
 */
import { randomBytes } from 'node:crypto';
import { chmod, readFile, rm, stat } from 'node:fs/promises';
import { request as httpsRequest } from 'node:https';
import path from 'node:path';
import { Readable } from 'node:stream';
import type { RecordingEvent } from '@gatehouse/audit';
import {
  GatehouseClient,
  type Identity,
  isGatehouseError,
  parseTerminalServerFrame,
  type TerminalHandle,
  type TerminalServerFrame,
  type TerminalService,
  type TerminalViewer,
} from '@gatehouse/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type WebSocket from 'ws';
import { mintClientTicket } from '../../core/src/pki/credentials.js';
import { waitFor } from '../../core/test/helpers.js';
import type { NodeService } from '../src/node/index.js';
import { createUnixUser, type TestUnixUser } from './node-helpers.js';
import { loginUser, sshJ, startEnv, startTestNode, type TestEnv, type UserFiles } from './peers.js';

const PASSWORD = 'correct horse battery staple';
const ADDR = '127.0.0.1';

let env: TestEnv;
let service: TerminalService;
let alice: UserFiles;
let node: NodeService;
let unix: TestUnixUser;

/** The identity core hands the service for a logged-in web user. */
function identity(user: string, roles: string[]): Identity {
  return { user, roles, traits: {}, expires: new Date(Date.now() + 3600e3) };
}
const aliceId = () => identity('alice', ['dev']);

interface TestViewer extends TerminalViewer {
  text(): string;
  sizes: Array<[number, number]>;
  ended: Promise<{ reason?: string | undefined; exitCode?: number | undefined }>;
  /** Resolves once the output contains `s`. */
  sees(s: string, ms?: number): Promise<void>;
}

function viewer(): TestViewer {
  const chunks: Buffer[] = [];
  let endWith!: (info: { reason?: string | undefined; exitCode?: number | undefined }) => void;
  const ended = new Promise<{ reason?: string | undefined; exitCode?: number | undefined }>((r) => {
    endWith = r;
  });
  const v: TestViewer = {
    output: (d) => chunks.push(Buffer.from(d)),
    resize: (cols, rows) => v.sizes.push([cols, rows]),
    end: (info) => endWith(info),
    text: () => Buffer.concat(chunks).toString(),
    sizes: [],
    ended,
    sees: async (s, ms = 20_000) => {
      await waitFor(() => v.text().includes(s), `"${s}" in the viewer's output`, ms);
    },
  };
  return v;
}

const type = (h: TerminalHandle, s: string) => h.input(Buffer.from(s));

async function events(t: string) {
  return (await env.gw.audit.search({ types: [t], limit: 500 })).events;
}

async function recording(id: string): Promise<RecordingEvent[]> {
  const out: RecordingEvent[] = [];
  for await (const e of env.recordings.read(id)) out.push(e);
  return out;
}

/** PUT /v1/files on the gateway's listener with the user's client certificate, as the web UI uploads. */
function upload(
  f: UserFiles,
  q: { node: string; login: string; path: string },
  body: string,
): Promise<{ status: number; bytes?: number }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      {
        method: 'PUT',
        host: ADDR,
        port: env.port,
        path: `/v1/files?${new URLSearchParams(q)}`,
        servername: 'localhost',
        ca: env.gw.authorities.get('host').map((k) => k.x509CertPem),
        cert: f.tlsCertPem,
        key: f.tlsKeyPem,
        headers: { 'content-type': 'application/octet-stream', 'content-length': Buffer.byteLength(body) },
      },
      (res) => {
        let text = '';
        res.on('data', (d) => {
          text += d;
        });
        res.on('end', () => {
          const parsed = JSON.parse(text) as { bytes?: number };
          resolve({
            status: res.statusCode ?? 0,
            ...(parsed.bytes !== undefined ? { bytes: parsed.bytes } : {}),
          });
        });
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

async function rejection(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => {
      throw new Error('expected a rejection');
    },
    (err: unknown) => err,
  );
}

beforeAll(async () => {
  env = await startEnv();
  unix = createUnixUser();
  const { gw } = env;
  node = await startTestNode(env);
  await gw.nodes.add({ name: 'node1', addr: `${ADDR}:${env.sshd.port}`, labels: { env: 'dev' } }, 'test');
  await gw.admin.putRole(
    `kind: role\nname: dev\nallow:\n  logins: [${env.login}, ${unix.name}]\n  node_labels: { env: dev }\n`,
  );
  await gw.admin.createUser({ name: 'alice', roles: ['dev'], password: PASSWORD });
  alice = await loginUser(env, 'alice', PASSWORD);
  const s = gw.terminals.get();
  if (!s) throw new Error('the ssh adapter provided no terminal service');
  service = s;
}, 60_000);

afterAll(async () => {
  await node?.close();
  await env?.close();
  unix?.remove();
});

describe('TerminalService.open: a web terminal shell through the proxy', () => {
  it('runs a shell on the sshd node: output, exit status, live session, audit and recording', async () => {
    const v = viewer();
    const h = await service.open(
      {
        identity: aliceId(),
        ticket: mintClientTicket(aliceId(), env.login),
        node: 'node1',
        login: env.login,
        cols: 100,
        rows: 30,
        remoteAddr: ADDR,
      },
      v,
    );
    expect(env.gw.liveSessions.get(h.sessionId)).toMatchObject({
      user: 'alice',
      login: env.login,
      server: 'node1',
      interactive: true,
    });
    type(h, 'echo hi-$((6*7)) $COLUMNS\r');
    await v.sees('hi-42 100');
    type(h, 'exit 3\r');
    expect(await v.ended).toEqual({ exitCode: 3 });
    await waitFor(() => env.gw.liveSessions.get(h.sessionId) === undefined, 'the session to unregister');
    const start = (await events('session.start')).find((e) => e.session_id === h.sessionId);
    expect(start).toMatchObject({ user: 'alice', server: 'node1', login: env.login });
    await waitFor(
      async () => (await events('session.end')).find((e) => e.session_id === h.sessionId),
      'session.end',
    );
    const meta = await waitFor(async () => {
      const m = (await env.recordings.list()).find((x) => x.session_id === h.sessionId);
      return m?.ended ? m : undefined;
    }, 'the recording to end');
    expect(meta).toMatchObject({ user: 'alice', server: 'node1', cols: 100, rows: 30 });
    const out = Buffer.concat(
      (await recording(h.sessionId)).flatMap((e) => (e.type === 'output' ? [Buffer.from(e.data)] : [])),
    ).toString();
    expect(out).toContain('hi-42 100');
  });

  it('follows the owner window size (resize reaches the pty)', async () => {
    const v = viewer();
    const h = await service.open(
      {
        identity: aliceId(),
        ticket: mintClientTicket(aliceId(), env.login),
        node: 'node1',
        login: env.login,
        cols: 80,
        rows: 24,
        remoteAddr: ADDR,
      },
      v,
    );
    h.resize(132, 43);
    type(h, 'echo size-$(stty size | tr " " x)\r');
    await v.sees('size-43x132');
    h.detach();
    await waitFor(() => env.gw.liveSessions.get(h.sessionId) === undefined, 'the detached session to end');
  });

  it('runs a shell on the built-in node service', async () => {
    const v = viewer();
    const h = await service.open(
      {
        identity: aliceId(),
        ticket: mintClientTicket(aliceId(), unix.name),
        node: 'node2',
        login: unix.name,
        cols: 80,
        rows: 24,
        remoteAddr: ADDR,
      },
      v,
    );
    expect(env.gw.liveSessions.get(h.sessionId)).toMatchObject({ server: 'node2', login: unix.name });
    type(h, 'echo builtin-$((40+2)); whoami\r');
    await v.sees('builtin-42');
    await v.sees(unix.name);
    type(h, 'exit\r');
    expect(await v.ended).toEqual({ exitCode: 0 });
  });

  it('a login no role allows is refused with the reason, audited as access.denied', async () => {
    const err = await rejection(
      service.open(
        {
          identity: aliceId(),
          ticket: mintClientTicket(aliceId(), 'root'),
          node: 'node1',
          login: 'root',
          cols: 80,
          rows: 24,
          remoteAddr: ADDR,
        },
        viewer(),
      ),
    );
    expect(isGatehouseError(err, 'GH_ERR_ACCESS_DENIED')).toBe(true);
    expect((err as Error).message).toContain('root');
    const denied = await waitFor(
      async () =>
        (await events('access.denied')).find(
          (e) => e.user === 'alice' && 'resource' in e && e.resource === 'node1',
        ),
      'access.denied',
    );
    expect(denied).toBeDefined();
  });

  it('an unknown node is GH_ERR_NOT_FOUND, audited', async () => {
    const err = await rejection(
      service.open(
        {
          identity: aliceId(),
          ticket: mintClientTicket(aliceId(), env.login),
          node: 'nosuch',
          login: env.login,
          cols: 80,
          rows: 24,
          remoteAddr: ADDR,
        },
        viewer(),
      ),
    );
    expect(isGatehouseError(err, 'GH_ERR_NOT_FOUND')).toBe(true);
    expect((err as Error).message).toContain('nosuch');
    const rej = (await events('ssh.reject')).find((e) => 'reason' in e && e.reason === 'unknown_node');
    expect(rej).toMatchObject({ user: 'alice' });
  });

  it('an admin kill ends it: the viewer gets the reason', async () => {
    const v = viewer();
    const h = await service.open(
      {
        identity: aliceId(),
        ticket: mintClientTicket(aliceId(), env.login),
        node: 'node1',
        login: env.login,
        cols: 80,
        rows: 24,
        remoteAddr: ADDR,
      },
      v,
    );
    type(h, 'echo up-$((1+1))\r');
    await v.sees('up-2');
    await env.gw.admin.killSession(h.sessionId);
    const end = await v.ended;
    expect(end.reason).toContain('ended by');
    expect(v.text()).toContain('ended by');
  });
});

describe('joining a live OpenSSH session', () => {
  /** `ssh -J ... -tt` as alice, its output watched as it comes. */
  async function ownerShell(extra: string[] = ['-tt']) {
    const before = new Set(env.gw.liveSessions.list().map((s) => s.id));
    const p = sshJ(env, alice, `${env.login}@node1`, extra, { keepStdinOpenMs: 60_000 });
    let out = '';
    p.child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
    });
    const id = await waitFor(
      () => env.gw.liveSessions.list().find((s) => s.user === 'alice' && !before.has(s.id))?.id,
      'the live session',
      20_000,
    );
    const sees = (s: string) => waitFor(() => out.includes(s), `"${s}" in ssh's output`, 20_000);
    return { p, id, stdout: () => out, sees, write: (s: string) => p.child.stdin!.write(s) };
  }

  it('an observer sees the recent output and what follows; its input is dropped; a peer types', async () => {
    const owner = await ownerShell();
    owner.write('echo READY-$((1+1))\n');
    await owner.sees('READY-2');
    const join = env.gw.liveSessions.joinable(owner.id);
    expect(join).toBeDefined();

    const watcher = viewer();
    const obs = join!({ user: 'admin', mode: 'observer', remoteAddr: ADDR }, watcher);
    expect(obs.sessionId).toBe(owner.id);
    // The tail: what the screen showed before the join.
    await watcher.sees('READY-2');
    expect(watcher.sizes.length).toBe(1);

    type(obs, 'echo from-observer-$((5*5))\r');
    owner.write('echo NEW-$((2+3))\n');
    await watcher.sees('NEW-5');
    await owner.sees('NEW-5');
    // The observer's line was typed first; had it reached the shell it would show before NEW-5.
    expect(owner.stdout()).not.toContain('from-observer');

    const peerView = viewer();
    const peer = join!({ user: 'admin', mode: 'peer', remoteAddr: ADDR }, peerView);
    type(peer, 'echo from-peer-$((3*3))\r');
    await owner.sees('from-peer-9');
    await watcher.sees('from-peer-9');
    await peerView.sees('from-peer-9');

    peer.detach();
    peer.detach(); // idempotent
    owner.write('exit 4\n');
    expect(await watcher.ended).toEqual({ exitCode: 4 });
    expect((await owner.p).code).toBe(4);

    const meta = await waitFor(async () => {
      const m = (await env.recordings.list()).find((x) => x.session_id === owner.id);
      return m?.ended ? m : undefined;
    }, 'the recording to end');
    const markers = (await recording(meta.session_id)).flatMap((e) => (e.type === 'marker' ? [e.text] : []));
    expect(markers).toEqual(['admin joined as observer', 'admin joined as peer', 'admin left']);
  });

  it('a joined viewer ends with the reason when an admin kills the session', async () => {
    const owner = await ownerShell();
    owner.write('echo READY-$((1+1))\n');
    await owner.sees('READY-2');
    const v = viewer();
    env.gw.liveSessions.joinable(owner.id)!({ user: 'admin', mode: 'observer', remoteAddr: ADDR }, v);
    await env.gw.admin.killSession(owner.id);
    expect((await v.ended).reason).toContain('ended by');
    await owner.p;
  });

  it('a web terminal session can be joined too', async () => {
    const ownerView = viewer();
    const h = await service.open(
      {
        identity: aliceId(),
        ticket: mintClientTicket(aliceId(), env.login),
        node: 'node1',
        login: env.login,
        cols: 90,
        rows: 20,
        remoteAddr: ADDR,
      },
      ownerView,
    );
    type(h, 'echo web-$((4+4))\r');
    await ownerView.sees('web-8');
    const v = viewer();
    env.gw.liveSessions.joinable(h.sessionId)!({ user: 'admin', mode: 'observer', remoteAddr: ADDR }, v);
    await v.sees('web-8');
    expect(v.sizes).toEqual([[90, 20]]);
    h.resize(100, 25);
    await waitFor(() => v.sizes.length === 2, 'the resize to reach the joiner');
    expect(v.sizes[1]).toEqual([100, 25]);
    type(h, 'exit 2\r');
    expect(await v.ended).toEqual({ exitCode: 2 });
    expect(await ownerView.ended).toEqual({ exitCode: 2 });
  });

  it('a command without a terminal cannot be joined', async () => {
    const owner = await ownerShell(['--', 'cat']);
    owner.write('relay-runs\n');
    await owner.sees('relay-runs');
    // Listed without a terminal: UIs offer no join for it.
    expect(env.gw.liveSessions.get(owner.id)?.interactive).toBeUndefined();
    let err: unknown;
    try {
      env.gw.liveSessions.joinable(owner.id)!(
        { user: 'admin', mode: 'observer', remoteAddr: ADDR },
        viewer(),
      );
    } catch (e) {
      err = e;
    }
    expect(isGatehouseError(err, 'GH_ERR_BAD_REQUEST')).toBe(true);
    expect((err as Error).message).toBe(
      `session ${owner.id} has no terminal to join (a command or file transfer)`,
    );
    owner.p.child.stdin!.end();
    expect((await owner.p).code).toBe(0);
  });
});

describe('TerminalService files (SFTP through the proxy)', () => {
  it('writes and reads back 300 KB; each transfer is audited with its bytes', async () => {
    const data = randomBytes(300_000);
    const remote = `/tmp/gh-web-${randomBytes(4).toString('hex')}.bin`;
    const req = {
      identity: aliceId(),
      ticket: mintClientTicket(aliceId(), env.login),
      node: 'node1',
      login: env.login,
      path: remote,
      remoteAddr: ADDR,
    };
    try {
      expect(
        await service.writeFile(req, Readable.from([data.subarray(0, 100_000), data.subarray(100_000)])),
      ).toEqual({
        bytes: data.length,
      });
      expect((await readFile(remote)).equals(data)).toBe(true);
      const got = await service.readFile(req);
      expect(got.size).toBe(data.length);
      const chunks: Buffer[] = [];
      for await (const c of got.stream) chunks.push(c as Buffer);
      expect(Buffer.concat(chunks).equals(data)).toBe(true);
    } finally {
      await rm(remote, { force: true });
    }
    const files = await waitFor(async () => {
      const e = (await events('sftp')).filter((x) => 'path' in x && x.path === remote);
      return e.length >= 2 ? e : undefined;
    }, 'sftp events');
    const byAction = (a: string) => files.find((e) => 'action' in e && e.action === a);
    expect(byAction('write')).toMatchObject({
      bytes: data.length,
      user: 'alice',
      server: 'node1',
    });
    expect(byAction('read')).toMatchObject({ bytes: data.length, user: 'alice' });
    expect(files.every((e) => !('error' in e))).toBe(true);
  });

  it('an upload through PUT /v1/files gets the default mode of the node (0666 less the umask, as scp), not 0666; an overwrite keeps the mode', async () => {
    // sshd and the node service are children of this process: they have its umask.
    const umask = Number.parseInt(
      /^Umask:\s*([0-7]+)$/m.exec(await readFile('/proc/self/status', 'utf8'))![1]!,
      8,
    );
    const expected = 0o666 & ~umask;
    expect(expected, 'this test needs a umask that takes write bits away').not.toBe(0o666);
    const modeOf = async (p: string) => (await stat(p)).mode & 0o777;
    for (const [node, login] of [
      ['node1', env.login],
      ['node2', unix.name],
    ] as const) {
      const remote = `/tmp/gh-web-mode-${randomBytes(4).toString('hex')}`;
      try {
        expect(await upload(alice, { node, login, path: remote }, 'first')).toEqual({
          status: 200,
          bytes: 5,
        });
        expect(await modeOf(remote), node).toBe(expected);
        await chmod(remote, 0o600);
        expect(await upload(alice, { node, login, path: remote }, 'second')).toEqual({
          status: 200,
          bytes: 6,
        });
        expect(await readFile(remote, 'utf8')).toBe('second');
        expect(await modeOf(remote), node).toBe(0o600);
      } finally {
        await rm(remote, { force: true });
      }
    }
  });

  it('a relative path is in the login home; a missing file is GH_ERR_NOT_FOUND', async () => {
    const name = `gh-web-${randomBytes(4).toString('hex')}.txt`;
    const req = {
      identity: aliceId(),
      ticket: mintClientTicket(aliceId(), env.login),
      node: 'node1',
      login: env.login,
      path: name,
      remoteAddr: ADDR,
    };
    await service.writeFile(req, Readable.from([Buffer.from('in home\n')]));
    const home = path.join('/home', env.login);
    expect(await readFile(path.join(home, name), 'utf8')).toBe('in home\n');
    await rm(path.join(home, name));
    const err = await rejection(service.readFile(req));
    expect(isGatehouseError(err, 'GH_ERR_NOT_FOUND')).toBe(true);
  });

  it('a login no role allows cannot read files', async () => {
    const err = await rejection(
      service.readFile({
        identity: aliceId(),
        ticket: mintClientTicket(aliceId(), 'root'),
        node: 'node1',
        login: 'root',
        path: '/etc/hostname',
        remoteAddr: ADDR,
      }),
    );
    expect(isGatehouseError(err, 'GH_ERR_ACCESS_DENIED')).toBe(true);
  });
});

describe('end to end through the terminal WebSocket (core) and this service', () => {
  /** A WebSocket's frames and output as they arrive. */
  function watch(ws: WebSocket) {
    const frames: TerminalServerFrame[] = [];
    let out = '';
    let closed: number | undefined;
    ws.on('message', (data: Buffer, binary) => {
      if (binary) out += data.toString();
      else {
        const f = parseTerminalServerFrame(data.toString());
        if (f) frames.push(f);
      }
    });
    ws.on('close', (code) => {
      closed = code;
    });
    return {
      frame: <T extends TerminalServerFrame['type']>(t: T) =>
        waitFor(
          () => frames.find((f) => f.type === t) as Extract<TerminalServerFrame, { type: T }> | undefined,
          `a ${t} frame`,
          20_000,
        ),
      sees: (text: string) => waitFor(() => out.includes(text), `"${text}" over the socket`, 20_000),
      closed: () => waitFor(() => closed, 'the socket to close', 10_000),
      type: (text: string) => ws.send(Buffer.from(text), { binary: true }),
    };
  }

  it('a shell opened over wss with a client certificate, joined over wss by an admin', async () => {
    await env.gw.admin.createUser({ name: 'ops', roles: ['admin'], password: PASSWORD });
    const ops = await loginUser(env, 'ops', PASSWORD);
    const client = (f: UserFiles) =>
      new GatehouseClient({
        proxy: `127.0.0.1:${env.port}`,
        caPem: env.gw.authorities.get('host').map((k) => k.x509CertPem),
        certPem: f.tlsCertPem,
        keyPem: f.tlsKeyPem,
      });
    const aliceApi = client(alice);
    const opsApi = client(ops);
    try {
      const owner = watch(aliceApi.openTerminal({ node: 'node1', login: env.login, cols: 100, rows: 30 }));
      const session = await owner.frame('session');
      expect(session).toMatchObject({ mode: 'owner', cols: 100, rows: 30 });
      expect(env.gw.liveSessions.get(session.session_id)).toMatchObject({ user: 'alice', server: 'node1' });
      owner.type('echo ws-$((8*8))\r');
      await owner.sees('ws-64');

      const joiner = watch(opsApi.joinSession(session.session_id, 'observer'));
      expect(await joiner.frame('session')).toMatchObject({
        session_id: session.session_id,
        mode: 'observer',
        cols: 100,
        rows: 30,
      });
      await joiner.sees('ws-64');
      owner.type('echo after-$((9*9))\r');
      await joiner.sees('after-81');

      owner.type('exit 5\r');
      expect(await owner.frame('end')).toEqual({ type: 'end', exit_code: 5 });
      expect(await joiner.frame('end')).toEqual({ type: 'end', exit_code: 5 });
      expect(await owner.closed()).toBe(1000);
      expect(await joiner.closed()).toBe(1000);
      const joined = await waitFor(
        async () => (await events('session.join')).find((e) => e.user === 'ops'),
        'session.join',
      );
      expect(joined).toMatchObject({ session_id: session.session_id, owner: 'alice', mode: 'observer' });
      await waitFor(
        async () => (await events('session.end')).find((e) => e.session_id === session.session_id),
        'session.end',
      );
    } finally {
      aliceApi.close();
      opsApi.close();
    }
  });
});
