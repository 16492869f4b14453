/**
 * A small Kubernetes API server for tests (no kube-apiserver can be
 * installed here). It checks what a real one would for our purposes:
 * - authentication: a client certificate from the fixture CA (user = CN,
 *   groups = O) or Gatehouse's bearer token; anything else is 401;
 * - impersonation: Impersonate-User, -Group, -Uid and -Extra-* are honoured
 *   only for an identity RBAC lets `impersonate` each of them (users, groups,
 *   uids, userextras/<key>), as kube-apiserver's impersonation filter does, and
 *   every such header that arrives is recorded (SeenRequest.uid, .extra) so a
 *   test can prove a client's forged header never got this far;
 * - authorization: the verb comes from the HTTP method the way kube-apiserver
 *   derives it (GET: get, list or watch; POST: create; PUT: update; PATCH:
 *   patch; DELETE: delete or deletecollection), checked against a small RBAC
 *   table for the user and groups the request is served as.
 * Pods live in memory: create, update, patch (incl. server-side apply) and
 * delete change them. exec runs local processes (WebSocket or SPDY);
 * port-forward is served like the kubelet does (test/fixture-portforward.ts),
 * to a TCP echo server.
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
import { parse as parseYaml } from 'yaml';
import { PortForwardServer, type SpdyStream, spdyServer } from './fixture-portforward.js';

export interface RbacRule {
  group?: string;
  user?: string;
  verbs: string[];
  /**
   * `pods`, `pods/exec`, ...; for impersonation `users`, `groups`, `uids` and
   * `userextras/<key>` (`userextras/*`: any key).
   */
  resources: string[];
  /** Where a namespaced resource is allowed; cluster-scoped ones (impersonation) ignore it. */
  namespaces?: string[];
}

/** The group of the fixture's Gatehouse identity (its client certificate's O, and its token). */
export const GATEHOUSE_GROUP = 'gatehouse:proxies';

/**
 * Gatehouse may impersonate anyone and anything (a broad `impersonate`
 * ClusterRole, as deployments often grant): a forged Impersonate-Uid or
 * -Extra that leaked through the gateway would be served, so tests look for
 * leaks in `requests`, not in refusals. It may do nothing as itself.
 * developers: pods in default (read, exec, logs, port-forward); viewers: get
 * pods only; editors: read and write pods, exec.
 */
export const DEFAULT_RBAC: RbacRule[] = [
  { group: GATEHOUSE_GROUP, verbs: ['impersonate'], resources: ['users', 'groups', 'uids', 'userextras/*'] },
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
  {
    group: 'editors',
    verbs: ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete', 'deletecollection'],
    resources: ['pods'],
    namespaces: ['default'],
  },
  {
    group: 'editors',
    verbs: ['create', 'get'],
    resources: ['pods/exec', 'pods/log'],
    namespaces: ['default'],
  },
];

export interface SeenRequest {
  method: string;
  path: string;
  /** The verb the request was authorized as (resource requests); the lowercase method otherwise. */
  verb: string;
  /** Who authenticated (the certificate's CN, or gatehouse for the token); '' when nobody did. */
  by: string;
  /** Who the request was served as. */
  user: string;
  groups: string[];
  /** Impersonate-Uid, when one arrived (Gatehouse never sends one). */
  uid?: string;
  /** Impersonate-Extra-<key> headers that arrived, by decoded key (Gatehouse never sends one). */
  extra?: Record<string, string[]>;
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
  /** Gatehouse's client certificate (CN=gatehouse, O=gatehouse:proxies), as in `kubeconfig`. */
  gatehouseClient: { cert: string; key: string };
  /** A client cert from the fixture CA that is NOT Gatehouse (CN=mallory): authenticated, allowed nothing. */
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

interface Pod {
  name: string;
  namespace: string;
  labels?: Record<string, string>;
  image?: string;
  /** The resourceVersion of its last change. */
  rv?: number;
}

/** The pods every fixture starts with (each fixture has its own copy to change). */
const PODS: readonly Pod[] = [
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
  issue('gatehouse', `/O=${GATEHOUSE_GROUP}/CN=gatehouse`, 'extendedKeyUsage=clientAuth\n');
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

function podObject(p: Pod) {
  return {
    kind: 'Pod',
    apiVersion: 'v1',
    metadata: {
      name: p.name,
      namespace: p.namespace,
      uid: `uid-${p.name}`,
      creationTimestamp: '2026-01-01T00:00:00Z',
      resourceVersion: String(p.rv ?? 1),
      ...(p.labels ? { labels: p.labels } : {}),
    },
    // stdin: true, as for a container started with `kubectl run -i`, so attach -i may send input.
    spec: { containers: [{ name: 'app', image: p.image ?? 'fixture/app:1', stdin: true }] },
    status: {
      phase: 'Running',
      containerStatuses: [{ name: 'app', ready: true, restartCount: 0, image: p.image ?? 'fixture/app:1' }],
    },
  };
}

/** The server-side table kubectl asks for (`as=Table`): without it kubectl prints only NAME and AGE. */
function podTable(list: Pod[], resourceVersion: number) {
  return {
    kind: 'Table',
    apiVersion: 'meta.k8s.io/v1',
    metadata: { resourceVersion: String(resourceVersion) },
    columnDefinitions: [
      { name: 'Name', type: 'string', format: 'name', description: 'Name', priority: 0 },
      { name: 'Ready', type: 'string', format: '', description: 'ready', priority: 0 },
      { name: 'Status', type: 'string', format: '', description: 'status', priority: 0 },
      { name: 'Restarts', type: 'string', format: '', description: 'restarts', priority: 0 },
      { name: 'Age', type: 'string', format: '', description: 'age', priority: 0 },
    ],
    rows: list.map((x) => ({
      cells: [x.name, '1/1', 'Running', '0', '5m'],
      object: {
        kind: 'PartialObjectMetadata',
        apiVersion: 'meta.k8s.io/v1',
        metadata: podObject(x).metadata,
      },
    })),
  };
}

/** kube-apiserver's verb for a resource request (k8s.io/apiserver RequestInfoFactory). */
export function verbOf(method: string, named: boolean, watch: boolean): string {
  switch (method.toUpperCase()) {
    case 'GET':
    case 'HEAD':
      return watch ? 'watch' : named ? 'get' : 'list';
    case 'POST':
      return 'create';
    case 'PUT':
      return 'update';
    case 'PATCH':
      return 'patch';
    case 'DELETE':
      return named ? 'delete' : 'deletecollection';
    default:
      return method.toLowerCase();
  }
}

function isTrue(v: string | null): boolean {
  return v === 'true' || v === '1';
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

/** A request body, at most 1 MiB. */
function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > 1 << 20) {
        req.destroy();
        reject(new Error('request body over 1 MiB'));
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
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
  /**
   * kube-apiserver 1.35's AuthorizePodWebsocketUpgradeCreatePermission (beta,
   * on by default): a WebSocket upgrade (GET) to pods/exec, attach or
   * portforward needs `create` besides the `get` its method maps to, as the
   * SPDY one (POST) always did. false: before 1.35, `get` was enough.
   * Default true.
   */
  websocketUpgradeNeedsCreate?: boolean;
}): Promise<FixtureApiServer> {
  const certs = makeCerts(opts.dir);
  const rbac = opts.rbac ?? DEFAULT_RBAC;
  const token = opts.token ?? 'fixture-gatehouse-token';
  const websocketUpgradeNeedsCreate = opts.websocketUpgradeNeedsCreate ?? true;
  const requests: SeenRequest[] = [];
  const pods: Pod[] = PODS.map((p) => ({ ...p }));
  /** The store's resourceVersion: one more per change. */
  let rv = 1;
  interface Watcher {
    ns: string;
    name: string | undefined;
    table: boolean;
    res: ServerResponse;
  }
  const watchers = new Set<Watcher>();
  const event = (w: Watcher, type: string, pod: Pod) =>
    `${JSON.stringify({ type, object: w.table ? podTable([pod], rv) : podObject(pod) })}\n`;
  /** Records a change and tells the watches that see it. */
  const changed = (type: 'ADDED' | 'MODIFIED' | 'DELETED', pod: Pod) => {
    rv++;
    pod.rv = rv;
    for (const w of watchers) {
      if (w.ns === pod.namespace && (w.name === undefined || w.name === pod.name))
        w.res.write(event(w, type, pod));
    }
  };
  const echo = net.createServer((s) => s.pipe(s));
  await new Promise<void>((r) => echo.listen(0, '127.0.0.1', () => r()));
  const echoPort = (echo.address() as net.AddressInfo).port;

  /** Who authenticated, or who a request is served as. */
  interface Who {
    user: string;
    groups: string[];
  }
  /** A request past authentication and impersonation. */
  interface Served extends Who {
    by: string;
    uid?: string;
    extra?: Record<string, string[]>;
  }
  /** A refusal before authorization (401, a forbidden impersonation, a malformed one). */
  interface Refused {
    code: number;
    body: object;
    seen: Omit<Served, 'user' | 'groups'> & Partial<Who>;
  }

  // Decided once per connection, as kube-apiserver does: decoding the peer certificate on every
  // keep-alive request made the fixture, not the proxy, what a bench measured.
  const certIdentity = new WeakMap<TLSSocket, Who | null>();
  const fromCert = (sock: TLSSocket): Who | null => {
    let who = certIdentity.get(sock);
    if (who === undefined) {
      who = null;
      const subject = sock.authorized ? sock.getPeerCertificate()?.subject : undefined;
      const cn = subject?.CN;
      if (typeof cn === 'string' && cn) {
        const o = subject?.O ?? [];
        who = { user: cn, groups: [...(Array.isArray(o) ? o : [o]), 'system:authenticated'] };
      }
      certIdentity.set(sock, who);
    }
    return who;
  };
  /** Client certificate first, then the bearer token (kube-apiserver's authenticator order). */
  const authenticate = (req: IncomingMessage): Who | undefined => {
    const cert = fromCert(req.socket as TLSSocket);
    if (cert) return cert;
    if (req.headers.authorization === `Bearer ${token}`)
      return { user: 'gatehouse', groups: [GATEHOUSE_GROUP, 'system:authenticated'] };
    return undefined;
  };

  const allowed = (who: Who, verb: string, resource: string, ns: string | undefined): boolean =>
    rbac.some(
      (r) =>
        (r.group ? who.groups.includes(r.group) : r.user === who.user) &&
        r.verbs.includes(verb) &&
        (r.resources.includes(resource) ||
          (resource.startsWith('userextras/') && r.resources.includes('userextras/*'))) &&
        // A rule with namespaces is a RoleBinding's: it grants nothing at the cluster scope.
        (r.namespaces === undefined || (ns !== undefined && r.namespaces.includes(ns))),
    );

  /** kube-apiserver's Forbidden Status: `<resource> "<name>" is forbidden: User "<u>" cannot <verb> resource ...`. */
  const forbidden = (
    who: Who,
    verb: string,
    resource: string,
    o: { ns?: string | undefined; name?: string | undefined; apiGroup?: string } = {},
  ) => {
    const kind = resource.split('/')[0] ?? resource;
    const group = o.apiGroup ?? '';
    const qualified = group ? `${kind}.${group}` : kind;
    const scope = o.ns ? `in the namespace "${o.ns}"` : 'at the cluster scope';
    return status(
      403,
      'Forbidden',
      `${qualified}${o.name !== undefined ? ` "${o.name}"` : ''} is forbidden: User "${who.user}" cannot ${verb} resource "${resource}" in API group "${group}" ${scope}`,
      { details: { kind, ...(o.name !== undefined ? { name: o.name } : {}), ...(group ? { group } : {}) } },
    );
  };

  /**
   * Authentication, then impersonation as kube-apiserver's filter does it:
   * every Impersonate-* header needs `impersonate` on what it names, and the
   * request is then served as the impersonated user alone (its groups plus
   * system:authenticated), never with the impersonator's rights.
   */
  const identify = (req: IncomingMessage): Served | Refused => {
    const authn = authenticate(req);
    const h = req.headersDistinct;
    const users = h['impersonate-user'] ?? [];
    const groups = h['impersonate-group'] ?? [];
    const uids = h['impersonate-uid'] ?? [];
    let extra: Record<string, string[]> | undefined;
    for (const [k, v] of Object.entries(h)) {
      if (!k.startsWith('impersonate-extra-') || !v) continue;
      extra ??= {};
      extra[safeDecode(k.slice('impersonate-extra-'.length))] = v;
    }
    const seen = {
      by: authn?.user ?? '',
      ...(uids[0] !== undefined ? { uid: uids[0] } : {}),
      ...(extra ? { extra } : {}),
    };
    if (!authn) return { code: 401, body: status(401, 'Unauthorized', 'Unauthorized'), seen };
    if (users.length === 0 && groups.length === 0 && uids.length === 0 && !extra)
      return { ...authn, by: authn.user };
    if (users.length !== 1 || uids.length > 1) {
      // kube-apiserver answers these with an internal error, not a 4xx.
      const what =
        users.length === 0 ? 'groups, uid or user-extra without a user' : 'more than one user or uid';
      return {
        code: 500,
        body: status(500, 'InternalError', `Internal error occurred: requested impersonation of ${what}`),
        seen: { ...seen, user: users.join(',') },
      };
    }
    const user = users[0]!;
    const checks: { resource: string; name: string; apiGroup: string }[] = [
      { resource: 'users', name: user, apiGroup: '' },
      ...groups.map((g) => ({ resource: 'groups', name: g, apiGroup: '' })),
      ...uids.map((u) => ({ resource: 'uids', name: u, apiGroup: 'authentication.k8s.io' })),
      ...Object.entries(extra ?? {}).flatMap(([k, vs]) =>
        vs.map((v) => ({ resource: `userextras/${k}`, name: v, apiGroup: 'authentication.k8s.io' })),
      ),
    ];
    for (const c of checks) {
      if (!allowed(authn, 'impersonate', c.resource, undefined)) {
        return {
          code: 403,
          body: forbidden(authn, 'impersonate', c.resource, { name: c.name, apiGroup: c.apiGroup }),
          seen: { ...seen, user, groups },
        };
      }
    }
    const asGroups = groups.includes('system:authenticated') ? groups : [...groups, 'system:authenticated'];
    return { ...seen, user, groups: asGroups };
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

  const seenBy = (method: string, path: string, verb: string, who: Served | Refused, code: number) =>
    requests.push({
      method,
      path,
      verb,
      ...('seen' in who ? { user: '', groups: [], ...who.seen } : who),
      code,
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
    const method = req.method ?? 'GET';
    const p = url.pathname;
    const m = /^\/api\/v1\/namespaces\/([^/]+)\/pods(?:\/([^/]+)(?:\/([^/]+))?)?$/.exec(p);
    const verb = m
      ? verbOf(method, m[2] !== undefined, isTrue(url.searchParams.get('watch')))
      : method.toLowerCase();
    const who = identify(req);
    const record = (code: number) => seenBy(method, p, verb, who, code);
    const answer = (code: number, body: unknown) => {
      record(code);
      send(res, code, body);
    };
    if ('seen' in who) return answer(who.code, who.body);
    if (!m) {
      const body = discovery(p);
      if (!body)
        return answer(
          404,
          status(404, 'NotFound', `the server could not find the requested resource (${p})`),
        );
      // Discovery is every authenticated user's (the system:discovery role), for reading only.
      if (method !== 'GET' && method !== 'HEAD') {
        return answer(
          403,
          status(403, 'Forbidden', `forbidden: User "${who.user}" cannot ${verb} path "${p}"`),
        );
      }
      return answer(200, body);
    }
    const [, ns, name, sub] = m as unknown as [string, string, string | undefined, string | undefined];
    const resource = sub ? `pods/${sub}` : 'pods';
    if (!allowed(who, verb, resource, ns)) return answer(403, forbidden(who, verb, resource, { ns, name }));
    void servePods(req, res, { ns, name, sub, verb, url, record, answer }).catch((err: Error) =>
      answer(400, status(400, 'BadRequest', `fixture: ${err.message}`)),
    );
  });

  const discovery = (p: string): object | undefined => {
    if (p === '/version')
      return { major: '1', minor: '32', gitVersion: 'v1.32.0-fixture', platform: 'linux/amd64' };
    if (p === '/api') {
      return {
        kind: 'APIVersions',
        versions: ['v1'],
        serverAddressByClientCIDRs: [{ clientCIDR: '0.0.0.0/0', serverAddress: `127.0.0.1:${port}` }],
      };
    }
    if (p === '/apis') return { kind: 'APIGroupList', apiVersion: 'v1', groups: [] };
    // Just enough OpenAPI v3 for kubectl create/apply to see that the server validates fields
    // itself (the fieldValidation parameter) instead of downloading a schema to validate with.
    if (p === '/openapi/v3')
      return { paths: { 'api/v1': { serverRelativeURL: '/openapi/v3/api/v1?hash=fixture' } } };
    if (p === '/openapi/v3/api/v1') {
      const gvk = { 'x-kubernetes-group-version-kind': { group: '', version: 'v1', kind: 'Pod' } };
      const op = (action: string) => ({
        ...gvk,
        'x-kubernetes-action': action,
        parameters: [{ name: 'fieldValidation', in: 'query', schema: { type: 'string', uniqueItems: true } }],
        responses: {},
      });
      return {
        openapi: '3.0.0',
        info: { title: 'Kubernetes', version: 'v1.32.0-fixture' },
        paths: {
          '/api/v1/namespaces/{namespace}/pods': { post: op('post') },
          '/api/v1/namespaces/{namespace}/pods/{name}': { put: op('put'), patch: op('patch') },
        },
        components: { schemas: {} },
      };
    }
    if (p === '/api/v1') {
      return {
        kind: 'APIResourceList',
        groupVersion: 'v1',
        resources: [
          {
            name: 'pods',
            singularName: 'pod',
            namespaced: true,
            kind: 'Pod',
            verbs: ['create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch'],
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
      };
    }
    return undefined;
  };

  const notFound = (name: string) =>
    status(404, 'NotFound', `pods "${name}" not found`, { details: { name, kind: 'pods' } });

  /** A Pod from a request body (JSON, or YAML for server-side apply): its name, labels and image. */
  const podFrom = (text: string, yaml: boolean, ns: string, name: string | undefined): Pod => {
    const obj = (yaml ? parseYaml(text) : JSON.parse(text)) as {
      kind?: string;
      metadata?: { name?: string; namespace?: string; labels?: Record<string, string> };
      spec?: { containers?: { image?: string }[] };
    } | null;
    if (obj?.kind !== 'Pod') throw new Error(`expected a Pod, got ${obj?.kind}`);
    const n = obj.metadata?.name;
    if (!n || (name !== undefined && n !== name))
      throw new Error('the name in the body does not match the URL');
    if (obj.metadata?.namespace && obj.metadata.namespace !== ns)
      throw new Error('the namespace does not match');
    const image = obj.spec?.containers?.[0]?.image;
    return {
      name: n,
      namespace: ns,
      ...(obj.metadata?.labels ? { labels: obj.metadata.labels } : {}),
      ...(image ? { image } : {}),
    };
  };

  const servePods = async (
    req: IncomingMessage,
    res: ServerResponse,
    r: {
      ns: string;
      name: string | undefined;
      sub: string | undefined;
      verb: string;
      url: URL;
      record: (code: number) => void;
      answer: (code: number, body: unknown) => void;
    },
  ): Promise<void> => {
    const { ns, name, sub, verb, url, answer } = r;
    // kubectl wait and delete --wait select one pod by name.
    const only = /^metadata\.name=(.+)$/.exec(url.searchParams.get('fieldSelector') ?? '')?.[1];
    const inNs = pods.filter((x) => x.namespace === ns && (only === undefined || x.name === only));
    const table = (req.headers.accept ?? '').includes('as=Table');
    const contentType = String(req.headers['content-type'] ?? '');
    if (name === undefined) {
      if (verb === 'create') {
        const pod = podFrom(await readBody(req), false, ns, undefined);
        if (inNs.some((x) => x.name === pod.name)) {
          return answer(
            409,
            status(409, 'AlreadyExists', `pods "${pod.name}" already exists`, {
              details: { name: pod.name, kind: 'pods' },
            }),
          );
        }
        pods.push(pod);
        changed('ADDED', pod);
        return answer(201, podObject(pod));
      }
      if (verb === 'deletecollection') {
        for (const x of inNs) {
          pods.splice(pods.indexOf(x), 1);
          changed('DELETED', x);
        }
        return answer(200, {
          kind: 'PodList',
          apiVersion: 'v1',
          metadata: { resourceVersion: String(rv) },
          items: inNs.map(podObject),
        });
      }
      if (verb === 'watch') {
        // A watch from a resourceVersion sees the changes after it; without one, everything there is first.
        r.record(200);
        res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-cache' });
        const w: Watcher = { ns, name: only, table, res };
        const from = Number(url.searchParams.get('resourceVersion') || '0');
        if (!from) for (const x of inNs) res.write(event(w, 'ADDED', x));
        res.flushHeaders();
        watchers.add(w);
        res.on('close', () => watchers.delete(w));
        return;
      }
      if (verb !== 'list') return answer(405, status(405, 'MethodNotAllowed', `${verb} is not supported`));
      if (table) return answer(200, podTable(inNs, rv));
      return answer(200, {
        kind: 'PodList',
        apiVersion: 'v1',
        metadata: { resourceVersion: String(rv) },
        items: inNs.map(podObject),
      });
    }
    const pod = inNs.find((x) => x.name === name);
    // Server-side apply creates what is not there yet.
    if (verb === 'patch' && !sub && contentType.startsWith('application/apply-patch')) {
      const applied = podFrom(await readBody(req), true, ns, name);
      if (pod) Object.assign(pod, applied);
      else pods.push(applied);
      changed(pod ? 'MODIFIED' : 'ADDED', pod ?? applied);
      return answer(pod ? 200 : 201, podObject(pod ?? applied));
    }
    if (!pod) return answer(404, notFound(name));
    if (sub === 'log') {
      if (verb !== 'get')
        return answer(405, status(405, 'MethodNotAllowed', `${verb} is not supported on pods/log`));
      const follow = isTrue(url.searchParams.get('follow'));
      const lines = Number(url.searchParams.get('tailLines') ?? '') || 5;
      r.record(200);
      res.writeHead(200, { 'content-type': 'text/plain' });
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
    if (sub) return answer(400, status(400, 'BadRequest', 'Upgrade request required'));
    switch (verb) {
      case 'get':
        return answer(200, podObject(pod));
      case 'delete':
        pods.splice(pods.indexOf(pod), 1);
        changed('DELETED', pod);
        return answer(200, podObject(pod));
      case 'update':
        Object.assign(pod, podFrom(await readBody(req), false, ns, name));
        changed('MODIFIED', pod);
        return answer(200, podObject(pod));
      case 'patch': {
        // Merge and strategic-merge patches: only labels are kept by the fixture.
        const patch = JSON.parse(await readBody(req)) as {
          metadata?: { labels?: Record<string, string | null> };
        };
        const labels = { ...pod.labels };
        for (const [k, v] of Object.entries(patch.metadata?.labels ?? {})) {
          if (v === null) delete labels[k];
          else labels[k] = v;
        }
        pod.labels = labels;
        changed('MODIFIED', pod);
        return answer(200, podObject(pod));
      }
      default:
        return answer(405, status(405, 'MethodNotAllowed', `${verb} is not supported`));
    }
  };

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
    const method = req.method ?? 'GET';
    const refuse = (code: number, body: unknown) => {
      const text = JSON.stringify(body);
      socket.end(
        `HTTP/1.1 ${code} Refused\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(text)}\r\n\r\n${text}`,
      );
    };
    const m = /^\/api\/v1\/namespaces\/([^/]+)\/pods\/([^/]+)\/(exec|attach|portforward)$/.exec(url.pathname);
    // A connect request's verb is its method's: GET (WebSocket) is get, POST (SPDY) is create.
    const verb = verbOf(method, true, false);
    const who = identify(req);
    const record = (code: number) => seenBy(method, url.pathname, verb, who, code);
    if ('seen' in who) {
      record(who.code);
      return refuse(who.code, who.body);
    }
    const upgrade = String(req.headers.upgrade).toLowerCase();
    const spdy = upgrade === 'spdy/3.1';
    if (!m || (upgrade !== 'websocket' && !spdy)) {
      record(400);
      return refuse(400, status(400, 'BadRequest', 'fixture: only WebSocket and SPDY upgrades are served'));
    }
    const [, ns, name, sub] = m as unknown as [string, string, string, string];
    const resource = `pods/${sub}`;
    // 1.35+: the WebSocket upgrade needs create too (websocketUpgradeNeedsCreate); asked after get, as there.
    const verbs = verb === 'get' && websocketUpgradeNeedsCreate ? ['get', 'create'] : [verb];
    const denied = verbs.find((v) => !allowed(who, v, resource, ns));
    if (denied) {
      record(403);
      return refuse(403, forbidden(who, denied, resource, { ns, name }));
    }
    const pod = pods.find((x) => x.namespace === ns && x.name === name);
    if (!pod) {
      record(404);
      return refuse(404, notFound(name));
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
    gatehouseClient: certs.gatehouse,
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
