/**
 * A small Kubernetes API server for tests (no kube-apiserver can be
 * installed here). It checks what a real one would for our purposes: only
 * Gatehouse's upstream credentials (a client certificate from the fixture CA
 * with CN=gatehouse, or a bearer token) are accepted, each request is served
 * AS the impersonated user and groups, and a small RBAC table decides.
 * exec runs local processes (WebSocket only); port-forward is served like
 * the kubelet does (test/fixture-portforward.ts), to a TCP echo server.
 */
import { execFileSync, spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import https from 'node:https';
import net from 'node:net';
import path from 'node:path';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import { type WebSocket, WebSocketServer } from 'ws';
import { PortForwardServer, type SpdyStream, spdyServer } from './fixture-portforward.js';

export interface RbacRule {
  group?: string;
  user?: string;
  verbs: string[];
  resources: string[];
  namespaces: string[];
}

/** developers: pods in default (read, exec, logs, port-forward); viewers: get pods only. */
export const DEFAULT_RBAC: RbacRule[] = [
  {
    group: 'developers',
    verbs: ['get', 'list', 'watch'],
    resources: ['pods', 'pods/log'],
    namespaces: ['default'],
  },
  {
    group: 'developers',
    verbs: ['create', 'get'],
    resources: ['pods/exec', 'pods/attach', 'pods/portforward'],
    namespaces: ['default'],
  },
  { group: 'viewers', verbs: ['get'], resources: ['pods'], namespaces: ['default'] },
];

export interface SeenRequest {
  method: string;
  path: string;
  /** Who the request was served as. */
  user: string;
  groups: string[];
  code: number;
}

export interface FixtureApiServer {
  port: number;
  url: string;
  caPem: string;
  /** A kubeconfig with Gatehouse's upstream credentials (client cert). */
  kubeconfig: string;
  /** The same cluster with a bearer token instead of a client cert. */
  tokenKubeconfig: string;
  /** A client cert from the fixture CA that is NOT Gatehouse (CN=mallory). */
  otherClient: { cert: string; key: string };
  requests: SeenRequest[];
  /**
   * Holds the next exec, attach or port-forward upgrade before it is
   * answered (a slow kubelet): `reached` resolves once one arrives, and
   * `release` lets it (and any held after it) go on.
   */
  holdUpgrades(): { reached: Promise<void>; release(): void };
  /** A TCP echo server: port-forward to port POD_ECHO_PORT of any pod reaches it. */
  echoPort: number;
  /** Requests answered by closing their connection (closeReusedConnections). */
  closedReused(): number;
  close(): Promise<void>;
}

/** The port every fixture pod "listens" on (served by the echo server); other ports refuse. */
export const POD_ECHO_PORT = 80;

const PODS = [
  { name: 'web-1', namespace: 'default' },
  { name: 'web-2', namespace: 'default' },
  { name: 'db-0', namespace: 'kube-system' },
];

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: 'ignore' });
}

function makeCerts(dir: string) {
  openssl(
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      'ca.key',
      '-out',
      'ca.crt',
      '-subj',
      '/CN=fixture-kube-ca',
      '-days',
      '2',
    ],
    dir,
  );
  const issue = (name: string, subj: string, ext: string) => {
    openssl(
      [
        'req',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:P-256',
        '-nodes',
        '-keyout',
        `${name}.key`,
        '-out',
        `${name}.csr`,
        '-subj',
        subj,
      ],
      dir,
    );
    writeFileSync(path.join(dir, `${name}.ext`), ext);
    openssl(
      [
        'x509',
        '-req',
        '-in',
        `${name}.csr`,
        '-CA',
        'ca.crt',
        '-CAkey',
        'ca.key',
        '-CAcreateserial',
        '-out',
        `${name}.crt`,
        '-days',
        '2',
        '-extfile',
        `${name}.ext`,
      ],
      dir,
    );
  };
  issue(
    'server',
    '/CN=fixture-apiserver',
    'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n',
  );
  issue('gatehouse', '/O=system:masters/CN=gatehouse', 'extendedKeyUsage=clientAuth\n');
  issue('mallory', '/CN=mallory', 'extendedKeyUsage=clientAuth\n');
  const r = (f: string) => readFileSync(path.join(dir, f), 'utf8');
  return {
    ca: r('ca.crt'),
    server: { cert: r('server.crt'), key: r('server.key') },
    gatehouse: { cert: r('gatehouse.crt'), key: r('gatehouse.key') },
    mallory: { cert: r('mallory.crt'), key: r('mallory.key') },
  };
}

function b64(s: string): string {
  return Buffer.from(s).toString('base64');
}

function status(code: number, reason: string, message: string, extra: Record<string, unknown> = {}) {
  return {
    kind: 'Status',
    apiVersion: 'v1',
    metadata: {},
    status: 'Failure',
    message,
    reason,
    code,
    ...extra,
  };
}

function send(res: ServerResponse, code: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(code, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function podObject(p: { name: string; namespace: string }) {
  return {
    kind: 'Pod',
    apiVersion: 'v1',
    metadata: {
      name: p.name,
      namespace: p.namespace,
      uid: `uid-${p.name}`,
      creationTimestamp: '2026-01-01T00:00:00Z',
      resourceVersion: '1',
    },
    // stdin: true, as for a container started with `kubectl run -i`, so attach -i may send input.
    spec: { containers: [{ name: 'app', image: 'fixture/app:1', stdin: true }] },
    status: {
      phase: 'Running',
      containerStatuses: [{ name: 'app', ready: true, restartCount: 0, image: 'fixture/app:1' }],
    },
  };
}

export async function startFixtureApiServer(opts: {
  dir: string;
  rbac?: RbacRule[];
  token?: string;
  /**
   * Close a keep-alive connection when a second request arrives on it, as
   * happens when an API server (or a load balancer in front of it) closes an
   * idle connection just as the client sends the next request on it.
   */
  closeReusedConnections?: boolean;
}): Promise<FixtureApiServer> {
  const certs = makeCerts(opts.dir);
  const rbac = opts.rbac ?? DEFAULT_RBAC;
  const token = opts.token ?? 'fixture-gatehouse-token';
  const requests: SeenRequest[] = [];
  const echo = net.createServer((s) => s.pipe(s));
  await new Promise<void>((r) => echo.listen(0, '127.0.0.1', () => r()));
  const echoPort = (echo.address() as net.AddressInfo).port;

  type Who = { user: string; groups: string[] };
  // Decided once per connection, as kube-apiserver does: decoding the peer certificate on every
  // keep-alive request made the fixture, not the proxy, what a bench measured.
  const certAuthed = new WeakMap<TLSSocket, boolean>();
  const gatehouseCert = (sock: TLSSocket): boolean => {
    let ok = certAuthed.get(sock);
    if (ok === undefined) {
      ok = sock.authorized && sock.getPeerCertificate()?.subject?.CN === 'gatehouse';
      certAuthed.set(sock, ok);
    }
    return ok;
  };
  const authenticate = (req: IncomingMessage): Who | { error: string } => {
    const sock = req.socket as TLSSocket;
    let authed = false;
    if (gatehouseCert(sock)) authed = true;
    if (req.headers.authorization === `Bearer ${token}`) authed = true;
    if (!authed) return { error: 'Unauthorized' };
    const user = req.headers['impersonate-user'];
    if (typeof user !== 'string') return { user: 'gatehouse', groups: ['system:masters'] };
    const groups = req.headersDistinct['impersonate-group'] ?? [];
    return { user, groups: [...groups, 'system:authenticated'] };
  };

  const allowed = (who: Who, verb: string, resource: string, ns: string | undefined): boolean => {
    if (who.groups.includes('system:masters')) return false; // Gatehouse must always impersonate in these tests
    return rbac.some(
      (r) =>
        (r.group ? who.groups.includes(r.group) : r.user === who.user) &&
        r.verbs.includes(verb) &&
        r.resources.includes(resource) &&
        (ns === undefined || r.namespaces.includes(ns)),
    );
  };

  const forbidden = (who: Who, verb: string, resource: string, ns: string | undefined) => {
    const [res, sub] = resource.split('/');
    return status(
      403,
      'Forbidden',
      `${res}${sub ? `${''}` : ''} is forbidden: User "${who.user}" cannot ${verb} resource "${res}"${sub ? ` subresource "${sub}"` : ''} in API group "" ${ns ? `in the namespace "${ns}"` : 'at the cluster scope'}`,
      { details: { kind: res } },
    );
  };

  const server = https.createServer({
    key: certs.server.key,
    cert: certs.server.cert,
    ca: certs.ca,
    // Client certificates are optional, as on kube-apiserver (a bearer token
    // is the other way in); authenticate() accepts a certificate only when
    // TLS verified it against the CA (socket.authorized).
    requestCert: true,
    rejectUnauthorized: false,
  });

  const served = new WeakSet<Duplex>();
  let closedReused = 0;
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    if (opts.closeReusedConnections) {
      if (served.has(req.socket)) {
        closedReused++;
        req.socket.destroy();
        return;
      }
      served.add(req.socket);
    }
    const url = new URL(req.url ?? '/', 'https://fixture');
    const who = authenticate(req);
    const record = (code: number) =>
      requests.push({
        method: req.method ?? '',
        path: url.pathname,
        user: 'user' in who ? who.user : '',
        groups: 'groups' in who ? who.groups : [],
        code,
      });
    if ('error' in who) {
      record(401);
      send(res, 401, status(401, 'Unauthorized', 'Unauthorized'));
      return;
    }
    const p = url.pathname;
    const discovery = (body: unknown) => {
      record(200);
      send(res, 200, body);
    };
    if (p === '/version')
      return discovery({ major: '1', minor: '32', gitVersion: 'v1.32.0-fixture', platform: 'linux/amd64' });
    if (p === '/api') {
      return discovery({
        kind: 'APIVersions',
        versions: ['v1'],
        serverAddressByClientCIDRs: [{ clientCIDR: '0.0.0.0/0', serverAddress: `127.0.0.1:${port}` }],
      });
    }
    if (p === '/apis') return discovery({ kind: 'APIGroupList', apiVersion: 'v1', groups: [] });
    if (p === '/api/v1') {
      return discovery({
        kind: 'APIResourceList',
        groupVersion: 'v1',
        resources: [
          {
            name: 'pods',
            singularName: 'pod',
            namespaced: true,
            kind: 'Pod',
            verbs: ['get', 'list', 'watch'],
            shortNames: ['po'],
          },
          {
            name: 'pods/exec',
            singularName: '',
            namespaced: true,
            kind: 'PodExecOptions',
            verbs: ['create', 'get'],
          },
          {
            name: 'pods/attach',
            singularName: '',
            namespaced: true,
            kind: 'PodAttachOptions',
            verbs: ['create', 'get'],
          },
          { name: 'pods/log', singularName: '', namespaced: true, kind: 'Pod', verbs: ['get'] },
          {
            name: 'pods/portforward',
            singularName: '',
            namespaced: true,
            kind: 'PodPortForwardOptions',
            verbs: ['create', 'get'],
          },
        ],
      });
    }
    const m = /^\/api\/v1\/namespaces\/([^/]+)\/pods(?:\/([^/]+)(?:\/([^/]+))?)?$/.exec(p);
    if (!m) {
      record(404);
      send(res, 404, status(404, 'NotFound', `the server could not find the requested resource (${p})`));
      return;
    }
    const [, ns, name, sub] = m;
    const resource = sub ? `pods/${sub}` : 'pods';
    const verb = name ? 'get' : url.searchParams.get('watch') === 'true' ? 'watch' : 'list';
    if (!allowed(who, verb, resource, ns)) {
      record(403);
      send(res, 403, forbidden(who, verb, resource, ns));
      return;
    }
    const pods = PODS.filter((x) => x.namespace === ns);
    if (!name) {
      record(200);
      if ((req.headers.accept ?? '').includes('as=Table')) {
        send(res, 200, {
          kind: 'Table',
          apiVersion: 'meta.k8s.io/v1',
          metadata: { resourceVersion: '1' },
          columnDefinitions: [
            { name: 'Name', type: 'string', format: 'name', description: 'Name', priority: 0 },
            { name: 'Ready', type: 'string', format: '', description: 'ready', priority: 0 },
            { name: 'Status', type: 'string', format: '', description: 'status', priority: 0 },
            { name: 'Restarts', type: 'string', format: '', description: 'restarts', priority: 0 },
            { name: 'Age', type: 'string', format: '', description: 'age', priority: 0 },
          ],
          rows: pods.map((x) => ({
            cells: [x.name, '1/1', 'Running', '0', '5m'],
            object: {
              kind: 'PartialObjectMetadata',
              apiVersion: 'meta.k8s.io/v1',
              metadata: podObject(x).metadata,
            },
          })),
        });
      } else {
        send(res, 200, {
          kind: 'PodList',
          apiVersion: 'v1',
          metadata: { resourceVersion: '1' },
          items: pods.map(podObject),
        });
      }
      return;
    }
    const pod = pods.find((x) => x.name === name);
    if (!pod) {
      record(404);
      send(
        res,
        404,
        status(404, 'NotFound', `pods "${name}" not found`, { details: { name, kind: 'pods' } }),
      );
      return;
    }
    if (sub === 'log') {
      record(200);
      res.writeHead(200, { 'content-type': 'text/plain' });
      const follow = url.searchParams.get('follow') === 'true';
      const lines = Number(url.searchParams.get('tailLines') ?? '') || 5;
      if (!follow) {
        for (let i = 1; i <= lines; i++) res.write(`log line ${i} of ${name}\n`);
        res.end();
        return;
      }
      // One line at a time, a while apart: a buffering proxy would deliver them all at the end.
      let i = 0;
      const timer = setInterval(() => {
        i++;
        res.write(`log line ${i} of ${name}\n`);
        if (i >= 6) {
          clearInterval(timer);
          res.end();
        }
      }, 300);
      res.on('close', () => clearInterval(timer));
      return;
    }
    if (sub) {
      record(400);
      send(res, 400, status(400, 'BadRequest', `${sub} needs an upgrade`));
      return;
    }
    record(200);
    send(res, 200, podObject(pod));
  });

  const wss = new WebSocketServer({
    noServer: true,
    handleProtocols: (protocols) => {
      for (const p of ['v5.channel.k8s.io', 'v4.channel.k8s.io']) if (protocols.has(p)) return p;
      return false;
    },
  });

  const portForwards = new PortForwardServer();

  let upgradeHold: { reached: () => void; released: Promise<void> } | undefined;
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const hold = upgradeHold;
    if (!hold) return onUpgrade(req, socket, head);
    hold.reached();
    void hold.released.then(() => onUpgrade(req, socket, head));
  });
  const onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const url = new URL(req.url ?? '/', 'https://fixture');
    const who = authenticate(req);
    const refuse = (code: number, body: unknown) => {
      const text = JSON.stringify(body);
      socket.end(
        `HTTP/1.1 ${code} Refused\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(text)}\r\n\r\n${text}`,
      );
    };
    const m = /^\/api\/v1\/namespaces\/([^/]+)\/pods\/([^/]+)\/(exec|attach|portforward)$/.exec(url.pathname);
    const record = (code: number) =>
      requests.push({
        method: req.method ?? '',
        path: url.pathname,
        user: 'user' in who ? who.user : '',
        groups: 'groups' in who ? who.groups : [],
        code,
      });
    if ('error' in who) {
      record(401);
      return refuse(401, status(401, 'Unauthorized', 'Unauthorized'));
    }
    const upgrade = String(req.headers.upgrade).toLowerCase();
    const spdy = upgrade === 'spdy/3.1';
    if (!m || (upgrade !== 'websocket' && !spdy)) {
      record(400);
      return refuse(400, status(400, 'BadRequest', 'fixture: only WebSocket and SPDY upgrades are served'));
    }
    const [, ns, name, sub] = m;
    // kube-apiserver authorizes a GET (WebSocket) connect as "get" and a POST (SPDY) as "create"; the
    // fixture asks for "create" either way, which its RBAC table grants together with "get".
    if (!allowed(who, 'create', `pods/${sub}`, ns)) {
      record(403);
      return refuse(403, forbidden(who, 'create', `pods/${sub}`, ns));
    }
    const pod = PODS.find((x) => x.namespace === ns && x.name === name);
    if (!pod) {
      record(404);
      return refuse(
        404,
        status(404, 'NotFound', `pods "${name}" not found`, { details: { name, kind: 'pods' } }),
      );
    }
    if (sub === 'portforward') {
      const target = {
        pod: pod.name,
        namespace: pod.namespace,
        uid: podObject(pod).metadata.uid,
        ports: { [POD_ECHO_PORT]: echoPort },
      };
      const refused = portForwards.upgrade(req, socket, head, target);
      if (refused) {
        record(refused.code);
        return refuse(refused.code, status(refused.code, refused.reason, refused.message));
      }
      record(101);
      return;
    }
    record(101);
    // attach joins the container's main process; the fixture's is `cat`, one per attach (stdin echoed).
    const command = sub === 'attach' ? ['cat'] : url.searchParams.getAll('command');
    if (spdy) return spdyExec(req, socket, head, url, name!, command);
    wss.handleUpgrade(req, socket, head, (ws) => wsExec(ws, name!, command));
  };

  /** What a command's I/O goes through: WebSocket channels or SPDY streams. */
  interface ExecIo {
    stdout(d: Buffer): void;
    stderr(d: Buffer): void;
    /** The final Status (the error channel), then the end of the session. */
    finish(st: object): void;
    /** Stdin data and its end, for the command once it runs. */
    onStdin(data: (d: Buffer) => void, end: () => void): void;
    onClose(cb: () => void): void;
  }

  const children = new Set<ReturnType<typeof spawn>>();
  const runCommand = (io: ExecIo, command: string[], pod: string) => {
    if (command.length === 1 && command[0] === 'true') {
      // `true` is answered without a process: forking costs 50-400 ms on a loaded machine and would
      // measure the fork, not the proxy (the bench runs thousands of these).
      io.finish({ metadata: {}, status: 'Success' });
      return;
    }
    const child = spawn(command[0] ?? 'true', command.slice(1), {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', POD_NAME: pod },
    });
    children.add(child);
    child.stdout.on('data', (d: Buffer) => io.stdout(d));
    child.stderr.on('data', (d: Buffer) => io.stderr(d));
    child.stdin.on('error', () => {});
    child.on('error', (err) => io.finish(status(500, 'InternalError', `exec failed: ${err.message}`)));
    child.on('close', (code) => {
      children.delete(child);
      io.finish(
        code === 0
          ? { metadata: {}, status: 'Success' }
          : {
              metadata: {},
              status: 'Failure',
              message: `command terminated with non-zero exit code: exit status ${code}`,
              reason: 'NonZeroExitCode',
              details: { causes: [{ reason: 'ExitCode', message: String(code) }] },
            },
      );
    });
    io.onStdin(
      (d) => child.stdin.write(d),
      () => child.stdin.end(),
    );
    io.onClose(() => {
      if (child.exitCode === null) child.kill('SIGKILL');
    });
  };

  const wsExec = (ws: WebSocket, pod: string, command: string[]) => {
    const sendCh = (ch: number, data: Buffer) => {
      if (ws.readyState === ws.OPEN) ws.send(Buffer.concat([Buffer.from([ch]), data]));
    };
    runCommand(
      {
        stdout: (d) => sendCh(1, d),
        stderr: (d) => sendCh(2, d),
        finish: (st) => {
          sendCh(3, Buffer.from(JSON.stringify(st)));
          ws.close(1000);
        },
        onStdin: (data, end) =>
          ws.on('message', (m: Buffer) => {
            if (m[0] === 0) data(m.subarray(1));
            else if (m[0] === 255 && m[1] === 0) end();
          }),
        onClose: (cb) => ws.on('close', cb),
      },
      command,
      pod,
    );
  };

  /**
   * The kubelet's SPDY exec (client-go remotecommand before WebSockets): the
   * client opens one stream per channel, named by `streamtype`; the command
   * starts once every stream the query asked for is open.
   */
  const spdyExec = (
    req: IncomingMessage,
    socket: Duplex,
    head: Buffer,
    url: URL,
    pod: string,
    command: string[],
  ) => {
    const offered = (req.headersDistinct['x-stream-protocol-version'] ?? []).flatMap((v) =>
      v.split(',').map((x) => x.trim()),
    );
    const protocol = ['v4.channel.k8s.io', 'v3.channel.k8s.io', 'v2.channel.k8s.io', 'channel.k8s.io'].find(
      (p) => offered.includes(p),
    );
    if (!protocol) {
      socket.end('HTTP/1.1 403 Forbidden\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
      return;
    }
    socket.write(
      'HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n' +
        `X-Stream-Protocol-Version: ${protocol}\r\n\r\n`,
    );
    if (head.length > 0) socket.unshift(head);
    const q = url.searchParams;
    const wanted = ['error'];
    if (q.get('stdin') === 'true') wanted.push('stdin');
    if (q.get('stdout') === 'true') wanted.push('stdout');
    if (q.get('stderr') === 'true') wanted.push('stderr');
    if (q.get('tty') === 'true') wanted.push('resize');
    const streams = new Map<string, SpdyStream>();
    const conn = spdyServer(socket);
    conn.on('stream', (stream) => {
      streams.set(stream.headers.streamtype ?? '', stream);
      if (!wanted.every((t) => streams.has(t)) || streams.size > wanted.length) return;
      const write = (t: string, d: Buffer) => {
        const s = streams.get(t);
        if (s && !s.writableEnded) s.write(d);
      };
      streams.get('resize')?.resume();
      runCommand(
        {
          stdout: (d) => write('stdout', d),
          stderr: (d) => write(q.get('tty') === 'true' ? 'stdout' : 'stderr', d),
          finish: (st) => {
            const error = streams.get('error')!;
            error.write(JSON.stringify(st));
            for (const s of streams.values()) if (!s.writableEnded) s.end();
            setTimeout(() => socket.destroy(), 100).unref();
          },
          onStdin: (data, end) => {
            const stdin = streams.get('stdin');
            stdin?.on('data', data);
            stdin?.on('end', end);
          },
          onClose: (cb) => socket.once('close', cb),
        },
        command,
        pod,
      );
    });
  };

  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as net.AddressInfo).port;
  const url = `https://127.0.0.1:${port}`;
  const kubeconfig = (user: string) => `apiVersion: v1
kind: Config
clusters:
- name: fixture
  cluster:
    server: ${url}
    certificate-authority-data: ${b64(certs.ca)}
contexts:
- name: fixture
  context: { cluster: fixture, user: gatehouse }
current-context: fixture
users:
- name: gatehouse
  user:
${user}
`;
  return {
    port,
    url,
    caPem: certs.ca,
    kubeconfig: kubeconfig(
      `    client-certificate-data: ${b64(certs.gatehouse.cert)}\n    client-key-data: ${b64(certs.gatehouse.key)}`,
    ),
    tokenKubeconfig: kubeconfig(`    token: ${token}`),
    otherClient: certs.mallory,
    requests,
    holdUpgrades() {
      let reached!: () => void;
      let release!: () => void;
      const r = new Promise<void>((resolve) => {
        reached = resolve;
      });
      upgradeHold = {
        reached,
        released: new Promise<void>((resolve) => {
          release = resolve;
        }),
      };
      return {
        reached: r,
        release: () => {
          upgradeHold = undefined;
          release();
        },
      };
    },
    echoPort,
    closedReused: () => closedReused,
    async close() {
      for (const c of children) c.kill('SIGKILL');
      for (const c of wss.clients) c.terminate();
      portForwards.close();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
      await new Promise<void>((r) => echo.close(() => r()));
    },
  };
}
