import { type ChildProcess, spawn } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../../core/test/helpers.js';
import { POD_ECHO_PORT } from './fixture-apiserver.js';
import { type KubeEnv, startKubeEnv } from './peers.js';

let env: KubeEnv;
let alice: string;

const identity = (user: string, roles: string[]) => ({ user, roles, traits: {} });

beforeAll(async () => {
  env = await startKubeEnv();
  await env.gw.admin.createUser({ name: 'alice', roles: ['kube-dev'], password: 'correct horse battery' });
  await env.gw.admin.createUser({ name: 'vic', roles: ['kube-view'], password: 'correct horse battery' });
  await env.gw.admin.createUser({ name: 'val', roles: ['kube-view'], password: 'correct horse battery' });
  await env.gw.admin.createUser({ name: 'lena', roles: ['kube-dev'], password: 'correct horse battery' });
  await env.gw.admin.createUser({ name: 'lars', roles: ['kube-dev'], password: 'correct horse battery' });
  alice = await env.kubeconfigFor(identity('alice', ['kube-dev']));
}, 120_000);

/** kubectl processes started by a test; each is killed and awaited after it. */
const running = new Set<PortForward>();

afterEach(async () => {
  for (const pf of running) await pf.stop();
});

afterAll(async () => {
  await env?.close();
});

const events = (type: string) => env.events(type);

async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const { port } = srv.address() as net.AddressInfo;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

interface PortForward {
  child: ChildProcess;
  localPort: number;
  stdout(): string;
  stderr(): string;
  /** Resolves with kubectl's exit code (null when killed by a signal). */
  exited: Promise<number | null>;
  stop(): Promise<number | null>;
}

/** Starts the real `kubectl port-forward pod/<pod> <free port>:<remote>` on 127.0.0.1. */
async function portForward(
  kubeconfig: string,
  o: { pod?: string; remote?: number; env?: NodeJS.ProcessEnv; cacheDir?: string } = {},
): Promise<PortForward> {
  const localPort = await freePort();
  const child = spawn(
    '/usr/bin/kubectl',
    [
      '--kubeconfig',
      kubeconfig,
      '--cache-dir',
      path.join(env.dir, o.cacheDir ?? 'kcache'),
      'port-forward',
      `pod/${o.pod ?? 'web-1'}`,
      `${localPort}:${o.remote ?? POD_ECHO_PORT}`,
      '--address',
      '127.0.0.1',
    ],
    { env: { PATH: process.env.PATH, HOME: env.dir, ...o.env }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  let err = '';
  child.stdout?.on('data', (d: Buffer) => {
    out += d.toString();
  });
  child.stderr?.on('data', (d: Buffer) => {
    err += d.toString();
  });
  const exited = new Promise<number | null>((r) => child.once('close', (code) => r(code)));
  const pf: PortForward = {
    child,
    localPort,
    stdout: () => out,
    stderr: () => err,
    exited,
    async stop() {
      running.delete(pf);
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      return exited;
    },
  };
  running.add(pf);
  return pf;
}

/** Waits until kubectl listens (or exits). */
async function ready(pf: PortForward): Promise<void> {
  const line = `Forwarding from 127.0.0.1:${pf.localPort} -> `;
  const deadline = Date.now() + 30_000;
  let exited = false;
  void pf.exited.then(() => {
    exited = true;
  });
  while (!pf.stdout().includes(line) && !exited && Date.now() < deadline)
    await new Promise((r) => setTimeout(r, 50));
  expect(pf.stdout(), pf.stderr()).toContain(line);
}

/** Connects to the forwarded port, sends `data`, half-closes and returns everything read back. */
function roundTrip(port: number, data: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1');
    const got: Buffer[] = [];
    sock.on('data', (d: Buffer) => got.push(d));
    sock.on('error', reject);
    sock.on('end', () => resolve(Buffer.concat(got)));
    sock.end(data);
  });
}

/** kubectl 1.32 tunnels SPDY in a WebSocket by default and falls back to a SPDY upgrade when that fails. */
const MODES = [
  {
    name: 'WebSocket tunnel (the default)',
    env: {},
    method: 'GET',
    refused: ['GET', 'POST'],
    viewer: 'vic',
    dev: 'lena',
  },
  {
    name: 'SPDY upgrade (KUBECTL_PORT_FORWARD_WEBSOCKETS=false)',
    env: { KUBECTL_PORT_FORWARD_WEBSOCKETS: 'false' },
    method: 'POST',
    refused: ['POST'],
    viewer: 'val',
    dev: 'lars',
  },
];

describe.each(MODES)('kubectl port-forward through Gatehouse: $name', (mode) => {
  it('forwards TCP connections byte for byte, served as the impersonated user and audited', async () => {
    const pf = await portForward(alice, { env: mode.env });
    await ready(pf);
    const small = await roundTrip(pf.localPort, Buffer.from('hello through the tunnel\n'));
    expect(small.toString()).toBe('hello through the tunnel\n');
    // Several connections at once share the one upgraded connection (a SPDY stream pair each), and a
    // payload far beyond SPDY's initial 64 KiB window passes intact.
    const big = Buffer.alloc(1024 * 1024);
    for (let i = 0; i < big.length; i++) big[i] = (i * 7 + (i >> 10)) & 0xff;
    const [a, b, c] = await Promise.all([
      roundTrip(pf.localPort, big),
      roundTrip(pf.localPort, Buffer.from('second')),
      roundTrip(pf.localPort, Buffer.from('third')),
    ]);
    expect(a.equals(big)).toBe(true);
    expect(b.toString()).toBe('second');
    expect(c.toString()).toBe('third');
    expect(pf.stdout()).toContain(`Handling connection for ${pf.localPort}`);
    expect(pf.stderr()).toBe('');

    // One upgrade in the mode's protocol (GET for the WebSocket, POST for SPDY: the SPDY-mode test
    // finds no POST from the WebSocket mode, so that one did not fall back), served as alice with
    // her role's group.
    const PATH = '/api/v1/namespaces/default/pods/web-1/portforward';
    const served = env.fixture.requests.filter((q) => q.path === PATH && q.user === 'alice');
    expect(served.filter((q) => q.method === mode.method)).toEqual([
      {
        method: mode.method,
        path: PATH,
        // A connect's verb is its method's (kube-apiserver): the WebSocket's GET is get, SPDY's POST create.
        verb: mode.method === 'GET' ? 'get' : 'create',
        by: 'gatehouse',
        user: 'alice',
        groups: ['developers', 'system:authenticated'],
        code: 101,
      },
    ]);
    const audited = (await events('kube.request')).filter(
      (e) => e.resource === 'pods/portforward' && e.user === 'alice' && e.method === mode.method,
    );
    expect(audited).toEqual([
      expect.objectContaining({
        verb: 'connect',
        path: PATH,
        response_code: 101,
        namespace: 'default',
        name: 'web-1',
        kube_cluster: 'prod',
        kube_user: 'alice',
        kube_groups: ['developers'],
        success: true,
      }),
    ]);
    // port-forward is relayed, not a recorded session.
    expect((await events('kube.exec.start')).filter((e) => e.user === 'alice')).toEqual([]);
    expect(await pf.stop()).toBe(null);
    // Its end is audited with what it carried: the 1 MiB each way.
    const ended = await waitFor(async () => {
      const e = (await events('kube.portforward.end')).filter(
        (x) => x.user === 'alice' && x.method === mode.method,
      );
      return e.length > 0 ? e : undefined;
    }, 'kube.portforward.end');
    expect(ended).toEqual([
      expect.objectContaining({
        path: PATH,
        namespace: 'default',
        name: 'web-1',
        kube_cluster: 'prod',
        kube_user: 'alice',
        reason: 'client disconnected',
        // The id sessions ls listed it under.
        session_id: expect.stringMatching(/^[0-9a-f-]{36}$/),
      }),
    ]);
    const [end] = ended as [{ bytes_in: number; bytes_out: number; duration_ms: number; ports?: string }];
    expect(end.bytes_in).toBeGreaterThan(big.length);
    expect(end.bytes_out).toBeGreaterThan(big.length);
    expect(end.duration_ms).toBeGreaterThan(0);
    // kubectl names the ports inside the tunnel (SPDY stream headers), not in the URL.
    expect(end.ports).toBeUndefined();
  });

  it("a pod port nothing listens on: the kubelet's error reaches kubectl on the error stream", async () => {
    const pf = await portForward(alice, { env: mode.env, remote: 81 });
    await ready(pf);
    const got = await roundTrip(pf.localPort, Buffer.from('anyone there?'));
    expect(got.length).toBe(0);
    expect(await pf.exited).toBe(1);
    expect(pf.stderr()).toContain(
      `an error occurred forwarding ${pf.localPort} -> 81: error forwarding port 81 to pod web-1, uid uid-web-1: ` +
        'failed to connect to localhost:81 inside namespace \\"default\\": dial tcp4 127.0.0.1:81: connect: connection refused',
    );
    expect(pf.stderr()).toContain('error: lost connection to pod');
  });

  it("a user whose groups may not port-forward gets the API server's refusal from kubectl", async () => {
    const viewer = await env.kubeconfigFor(identity(mode.viewer, ['kube-view']));
    const pf = await portForward(viewer, { env: mode.env });
    expect(await pf.exited).toBe(1);
    expect(pf.stderr()).toBe(
      'error: error upgrading connection: pods "web-1" is forbidden: User "' +
        mode.viewer +
        '" cannot create resource "pods/portforward" in API group "" in the namespace "default"\n',
    );
    expect(pf.stdout()).toBe('');
    // Each upgrade kubectl tried (the WebSocket one, then its SPDY fallback) was refused upstream and audited.
    const refused = (await events('kube.request'))
      .filter((e) => e.user === mode.viewer && e.resource === 'pods/portforward')
      .map((e) => `${e.method} ${e.response_code} ${e.success}`)
      .sort();
    expect(refused).toEqual(mode.refused.map((m) => `${m} 403 false`).sort());
    expect(
      env.fixture.requests
        .filter((q) => q.user === mode.viewer && q.path.endsWith('/portforward'))
        .map((q) => q.code),
    ).toEqual(mode.refused.map(() => 403));
  });

  it('locking the user ends a live port-forward: the open connection closes, kubectl exits', async () => {
    const dev = await env.kubeconfigFor(identity(mode.dev, ['kube-dev']));
    const pf = await portForward(dev, { env: mode.env, cacheDir: `kc-${mode.dev}` });
    await ready(pf);
    const sock = net.connect(pf.localPort, '127.0.0.1');
    let echoed = '';
    const closed = new Promise<void>((r) => sock.once('close', () => r()));
    sock.on('error', () => undefined); // the reset, if any, is the point; 'close' is asserted
    sock.on('data', (d: Buffer) => {
      echoed += d.toString();
    });
    sock.write('before the lock');
    const deadline = Date.now() + 20_000;
    while (echoed !== 'before the lock' && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(echoed).toBe('before the lock');
    await env.gw.admin.lockUser(mode.dev, { message: 'incident 9' });
    await closed;
    expect(await pf.exited).toBe(1);
    expect(pf.stderr()).toContain('error: lost connection to pod');
    const ended = await waitFor(async () => {
      const e = (await events('kube.portforward.end')).filter((x) => x.user === mode.dev);
      return e.length > 0 ? e : undefined;
    }, 'kube.portforward.end');
    expect(ended).toEqual([expect.objectContaining({ reason: expect.stringContaining('incident 9') })]);
    // kubectl closed its listener when it exited.
    await expect(roundTrip(pf.localPort, Buffer.from('x'))).rejects.toThrow(/ECONNREFUSED/);
  });
});

it('the end of the access (certificate expiry) ends a live port-forward', async () => {
  // A whole second: X.509 validity has no fractions.
  const expires = new Date(Math.ceil((env.gw.clock.now().getTime() + 4000) / 1000) * 1000);
  const k = await env.kubeconfigFor({ ...identity('alice', ['kube-dev']), expires });
  const pf = await portForward(k, { cacheDir: 'kc-expiring' });
  await ready(pf);
  const sock = net.connect(pf.localPort, '127.0.0.1');
  const closed = new Promise<void>((r) => sock.once('close', () => r()));
  sock.on('error', () => undefined); // 'close' is asserted
  sock.resume(); // read to the end, or 'close' never comes
  sock.write('still here');
  await closed;
  expect(Date.now()).toBeGreaterThanOrEqual(expires.getTime());
  expect(await pf.exited).toBe(1);
  expect(pf.stderr()).toContain('error: lost connection to pod');
}, 30_000);
