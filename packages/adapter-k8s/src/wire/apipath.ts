/**
 * What a Kubernetes API request asks for, from its method and URL alone
 * (the same attributes the API server's authorizer sees). Pure: no I/O.
 */
export interface KubeRequestInfo {
  /** get, list, watch, create, update, patch, delete, deletecollection; lowercase method for non-resource paths. */
  verb: string;
  method: string;
  path: string;
  resourceRequest: boolean;
  apiGroup?: string | undefined;
  apiVersion?: string | undefined;
  namespace?: string | undefined;
  /** Resource, e.g. pods. */
  resource?: string | undefined;
  subresource?: string | undefined;
  name?: string | undefined;
}

const VERB_BY_METHOD: Record<string, string> = {
  POST: 'create',
  PUT: 'update',
  PATCH: 'patch',
  DELETE: 'delete',
  GET: 'get',
  HEAD: 'get',
};

/** Streaming subresources: interactive sessions (recorded) and port forwarding. */
export const SESSION_SUBRESOURCES = new Set(['exec', 'attach']);

export function parseKubeRequest(method: string, rawUrl: string): KubeRequestInfo {
  const m = method.toUpperCase();
  const q = rawUrl.indexOf('?');
  const path = q < 0 ? rawUrl : rawUrl.slice(0, q);
  // Decoded before it is split, as the API server (Go's URL.Path) does: "p%2Fexec" is
  // the exec subresource of pod p there, so it must be here too. A path without '%'
  // decodes to itself, so it is split once (the common case, on every request).
  const parts = (
    path.includes('%') ? path.split('/').flatMap((p) => safeDecode(p).split('/')) : path.split('/')
  ).filter((p) => p !== '');
  const nonResource: KubeRequestInfo = { verb: m.toLowerCase(), method: m, path, resourceRequest: false };
  let i: number;
  let apiGroup: string | undefined;
  let apiVersion: string | undefined;
  if (parts[0] === 'api') {
    if (parts.length < 3) return nonResource; // /api, /api/v1 are discovery
    apiGroup = '';
    apiVersion = parts[1];
    i = 2;
  } else if (parts[0] === 'apis') {
    if (parts.length < 4) return nonResource; // /apis, /apis/g, /apis/g/v
    apiGroup = parts[1];
    apiVersion = parts[2];
    i = 3;
  } else {
    return nonResource;
  }
  let rest = parts.slice(i);
  // Deprecated /watch/ prefix path form.
  let watchPath = false;
  if (rest[0] === 'watch') {
    watchPath = true;
    rest = rest.slice(1);
  }
  let namespace: string | undefined;
  if (rest[0] === 'namespaces' && rest.length >= 3) {
    // namespaces/{ns}/{resource}...: a namespaced resource
    namespace = rest[1];
    rest = rest.slice(2);
  } else if (rest[0] === 'namespaces' && rest.length === 2) {
    // namespaces/{name}: the namespace object itself
    namespace = rest[1];
  }
  const resource = rest[0];
  const name = rest[1];
  const subresource = rest[2];
  if (!resource) return nonResource;
  let verb = VERB_BY_METHOD[m] ?? m.toLowerCase();
  if (name === undefined) {
    if (verb === 'get') verb = 'list';
    if (verb === 'delete') verb = 'deletecollection';
  }
  if (
    watchPath ||
    ((verb === 'list' || verb === 'get') && q >= 0 && truthy(queryParam(rawUrl, q, 'watch')))
  ) {
    verb = 'watch';
  }
  return {
    verb,
    method: m,
    path,
    resourceRequest: true,
    apiGroup,
    apiVersion,
    namespace,
    resource,
    subresource,
    name,
  };
}

function truthy(v: string | null): boolean {
  return v !== null && v !== '' && v !== '0' && v.toLowerCase() !== 'false';
}

/** The first value of `name` in the query string after rawUrl[q] ('?'), as URLSearchParams reads it. */
function queryParam(rawUrl: string, q: number, name: string): string | null {
  return new URLSearchParams(rawUrl.slice(q + 1)).get(name);
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

/** exec/attach parameters from the query string (kubectl sends command=...&command=...). */
export function execParams(rawUrl: string): {
  command: string[];
  container?: string | undefined;
  stdin: boolean;
  stdout: boolean;
  stderr: boolean;
  tty: boolean;
  /** port-forward's ports, comma-separated (WebSocket; SPDY names them inside the tunnel). */
  ports?: string | undefined;
} {
  const q = rawUrl.indexOf('?');
  const p = new URLSearchParams(q < 0 ? '' : rawUrl.slice(q + 1));
  return {
    command: p.getAll('command'),
    container: p.get('container') ?? undefined,
    stdin: truthy(p.get('stdin')),
    stdout: truthy(p.get('stdout')),
    stderr: truthy(p.get('stderr')),
    tty: truthy(p.get('tty')),
    ports: p.getAll('ports').join(',') || undefined,
  };
}

/** A shell-like rendering of argv for audit and the player. */
export function formatCommand(argv: string[]): string {
  return argv.map((a) => (/^[A-Za-z0-9_./:=@%+-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(' ');
}
