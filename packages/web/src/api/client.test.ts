import { describe, expect, it } from 'vitest';
import {
  ApiError,
  auditQueryString,
  fillPath,
  memoryCsrfStore,
  problemToError,
  sessionCsrfStore,
  WebApi,
} from './client';
import { ADMIN_ROUTES, PUBLIC_ROUTES } from './routes';

interface Seen {
  url: string;
  init: RequestInit;
}

/** A fetch that records requests and answers from a list. */
function fakeFetch(answers: (Response | Error | 'hang')[]): { fetch: typeof fetch; seen: Seen[] } {
  const seen: Seen[] = [];
  const f = (async (url: string, init: RequestInit) => {
    seen.push({ url, init });
    const a = answers.shift();
    if (a === undefined) throw new Error('no answer left');
    if (a === 'hang') {
      return new Promise<Response>((_, reject) => {
        init.signal?.addEventListener('abort', () => reject(new DOMException('aborted', 'AbortError')));
      });
    }
    if (a instanceof Error) throw a;
    return a;
  }) as unknown as typeof fetch;
  return { fetch: f, seen };
}

const json = (status: number, body: unknown, type = 'application/json') =>
  new Response(JSON.stringify(body), { status, headers: { 'content-type': type } });

const problem = (status: number, code: string, title: string, extra: Record<string, unknown> = {}) =>
  json(status, { type: `x#${code}`, title, status, code, ...extra }, 'application/problem+json');

describe('WebApi', () => {
  it('stores the CSRF token from login and sends it on state changes only', async () => {
    const { fetch, seen } = fakeFetch([
      json(200, { user: 'alice', csrf_token: 'tok-1' }),
      json(200, []),
      json(201, { user: { name: 'bob' } }),
    ]);
    const csrf = memoryCsrfStore();
    const api = new WebApi({ fetch, csrf });
    expect(api.hasSession()).toBe(false);
    await api.login({ user: 'alice', password: 'pw' });
    expect(csrf.get()).toBe('tok-1');
    expect(api.hasSession()).toBe(true);
    await api.listUsers();
    await api.createUser({ name: 'bob', roles: ['access'] });
    expect(seen.map((s) => `${s.init.method} ${s.url}`)).toEqual([
      `POST ${PUBLIC_ROUTES.login[1]}`,
      `GET ${ADMIN_ROUTES.listUsers[1]}`,
      `POST ${ADMIN_ROUTES.createUser[1]}`,
    ]);
    const h = (i: number) => seen[i]!.init.headers as Record<string, string>;
    expect(h(1)['x-csrf-token']).toBeUndefined();
    expect(h(2)['x-csrf-token']).toBe('tok-1');
    expect(h(2)['content-type']).toBe('application/json');
    expect(JSON.parse(String(seen[2]!.init.body))).toEqual({ name: 'bob', roles: ['access'] });
    expect(seen.every((s) => s.init.credentials === 'same-origin')).toBe(true);
  });

  it('escapes path parameters so a name cannot change the route', async () => {
    const { fetch, seen } = fakeFetch([new Response(null, { status: 204 })]);
    const api = new WebApi({ fetch, csrf: memoryCsrfStore() });
    await expect(api.deleteUser('../roles/admin')).resolves.toBeUndefined();
    expect(seen[0]!.url).toBe('/v1/users/..%2Froles%2Fadmin');
    expect(seen[0]!.init.method).toBe('DELETE');
  });

  it('access requests: list, create, review and drop on their routes, state changes with CSRF', async () => {
    const { fetch, seen } = fakeFetch([json(200, []), json(201, {}), json(200, {}), json(200, {})]);
    const csrf = memoryCsrfStore();
    csrf.set('tok-r');
    const api = new WebApi({ fetch, csrf });
    await api.listAccessRequests();
    await api.createAccessRequest({ roles: ['prod'], reason: 'INC-1', ttl: '1h' });
    await api.reviewAccessRequest('r/1', { verdict: 'deny', reason: 'no' });
    await api.dropAccessRequest('r1');
    expect(seen.map((s) => `${s.init.method} ${s.url}`)).toEqual([
      'GET /v1/requests',
      'POST /v1/requests',
      'POST /v1/requests/r%2F1/reviews',
      'POST /v1/requests/r1/drop',
    ]);
    expect(seen.map((s) => (s.init.headers as Record<string, string>)['x-csrf-token'])).toEqual([
      undefined,
      'tok-r',
      'tok-r',
      'tok-r',
    ]);
    expect(
      seen.map((s) => (s.init.body === undefined ? undefined : JSON.parse(String(s.init.body)))),
    ).toEqual([
      undefined,
      { roles: ['prod'], reason: 'INC-1', ttl: '1h' },
      { verdict: 'deny', reason: 'no' },
      {},
    ]);
  });

  it('turns problem JSON into ApiError with code, hint and details', async () => {
    const { fetch } = fakeFetch([
      problem(429, 'GH_ERR_LOGIN_BACKOFF', 'too many failed login attempts', {
        hint: 'wait 2 min and try again',
        retry_after_s: 120,
      }),
    ]);
    let ended = 0;
    const api = new WebApi({ fetch, csrf: memoryCsrfStore(), onSessionEnded: () => ended++ });
    const err = await api.login({ user: 'a', password: 'b' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect(err).toMatchObject({
      status: 429,
      code: 'GH_ERR_LOGIN_BACKOFF',
      message: 'too many failed login attempts',
      hint: 'wait 2 min and try again',
      details: { retry_after_s: 120 },
    });
    expect(ended).toBe(0);
  });

  it('a wrong password on login is not a session end; a 401 elsewhere is', async () => {
    const { fetch } = fakeFetch([
      problem(401, 'GH_ERR_BAD_CREDENTIALS', 'invalid user name or password'),
      problem(401, 'GH_ERR_UNAUTHENTICATED', 'not logged in'),
    ]);
    const csrf = memoryCsrfStore();
    csrf.set('old');
    const ended: string[] = [];
    const api = new WebApi({ fetch, csrf, onSessionEnded: (e) => ended.push(e.code) });
    await expect(api.login({ user: 'a', password: 'b' })).rejects.toMatchObject({
      code: 'GH_ERR_BAD_CREDENTIALS',
    });
    expect(ended).toEqual([]);
    await expect(api.listRoles()).rejects.toMatchObject({ code: 'GH_ERR_UNAUTHENTICATED' });
    expect(ended).toEqual(['GH_ERR_UNAUTHENTICATED']);
    expect(csrf.get()).toBeUndefined();
  });

  it('a wrong per-session MFA code is not a session end; a 401 from the same route without a second-factor code is', async () => {
    const { fetch } = fakeFetch([
      problem(401, 'GH_ERR_SECOND_FACTOR_INVALID', 'the authenticator code is not valid'),
      problem(401, 'GH_ERR_UNAUTHENTICATED', 'not logged in'),
    ]);
    const ended: string[] = [];
    const api = new WebApi({ fetch, csrf: memoryCsrfStore(), onSessionEnded: (e) => ended.push(e.code) });
    const answer = { challenge_id: 'c'.repeat(32), response: { method: 'totp', code: '123456' } } as const;
    await expect(api.sessionMfaCerts(answer)).rejects.toMatchObject({ code: 'GH_ERR_SECOND_FACTOR_INVALID' });
    expect(ended).toEqual([]);
    await expect(api.sessionMfaCerts(answer)).rejects.toMatchObject({ code: 'GH_ERR_UNAUTHENTICATED' });
    expect(ended).toEqual(['GH_ERR_UNAUTHENTICATED']);
  });

  it('a 401 for a request sent under a session replaced meanwhile (assuming an access request) does not end the new one', async () => {
    let answer: (r: Response) => void = () => undefined;
    const f = ((_url: string, _init: RequestInit) =>
      new Promise<Response>((resolve) => {
        answer = resolve;
      })) as unknown as typeof fetch;
    const csrf = memoryCsrfStore();
    csrf.set('old');
    const ended: string[] = [];
    const api = new WebApi({ fetch: f, csrf, onSessionEnded: (e) => ended.push(e.code) });
    const stale = api.listRoles();
    // The session is replaced (new token) while that request is on its way; its answer is for the old one.
    csrf.set('new');
    answer(problem(401, 'GH_ERR_UNAUTHENTICATED', 'not logged in'));
    await expect(stale).rejects.toMatchObject({ code: 'GH_ERR_UNAUTHENTICATED' });
    expect(ended).toEqual([]);
    expect(csrf.get()).toBe('new');
  });

  it('a CSRF refusal ends the session too (the tab lost its token)', async () => {
    const { fetch } = fakeFetch([problem(403, 'GH_ERR_CSRF', 'missing or wrong X-CSRF-Token header')]);
    const ended: string[] = [];
    const api = new WebApi({ fetch, csrf: memoryCsrfStore(), onSessionEnded: (e) => ended.push(e.code) });
    await expect(api.deleteRole('dev')).rejects.toMatchObject({ code: 'GH_ERR_CSRF', status: 403 });
    expect(ended).toEqual(['GH_ERR_CSRF']);
  });

  it('gives up after the timeout instead of spinning forever', async () => {
    const { fetch } = fakeFetch(['hang']);
    const api = new WebApi({ fetch, csrf: memoryCsrfStore(), timeoutMs: 20 });
    await expect(api.ping()).rejects.toMatchObject({ code: 'GH_WEB_TIMEOUT', status: 0 });
  });

  it('reports an unreachable gateway and a non-JSON answer clearly', async () => {
    const { fetch } = fakeFetch([
      new TypeError('Failed to fetch'),
      new Response('<html>bad gateway</html>', { status: 502, statusText: 'Bad Gateway' }),
      new Response('<html>ok?</html>', { status: 200, headers: { 'content-type': 'text/html' } }),
    ]);
    const api = new WebApi({ fetch, csrf: memoryCsrfStore() });
    await expect(api.ping()).rejects.toMatchObject({ code: 'GH_WEB_NETWORK' });
    await expect(api.ping()).rejects.toMatchObject({
      code: 'GH_WEB_HTTP',
      status: 502,
      message: 'the gateway answered HTTP 502 Bad Gateway',
    });
    await expect(api.whoami()).rejects.toMatchObject({ code: 'GH_WEB_HTTP', status: 200 });
  });

  it('logout forgets the CSRF token even when the server call fails', async () => {
    const { fetch } = fakeFetch([new TypeError('offline')]);
    const csrf = memoryCsrfStore();
    csrf.set('tok');
    const api = new WebApi({ fetch, csrf });
    await expect(api.logout()).rejects.toMatchObject({ code: 'GH_WEB_NETWORK' });
    expect(csrf.get()).toBeUndefined();
  });

  it('sends audit searches as query strings and role texts as JSON bodies', async () => {
    const { fetch, seen } = fakeFetch([
      json(200, { events: [] }),
      json(200, []),
      json(200, { role: {}, created: true }),
    ]);
    const api = new WebApi({ fetch, csrf: memoryCsrfStore() });
    await api.searchAudit({ types: ['user.login', 'user.logout'], user: 'al ice', limit: 50, cursor: 'c1' });
    await api.lintRole('kind: role');
    await api.putRole('kind: role', { create: true });
    expect(seen[0]!.url).toBe(
      '/v1/audit/events?types=user.login%2Cuser.logout&user=al+ice&limit=50&cursor=c1',
    );
    expect(seen[0]!.init.body).toBeUndefined();
    expect(JSON.parse(String(seen[1]!.init.body))).toEqual({ text: 'kind: role' });
    expect(JSON.parse(String(seen[2]!.init.body))).toEqual({ text: 'kind: role', create: true });
  });
});

describe('recordings', () => {
  it('lists with a query string and reads events as raw JSON lines', async () => {
    const lines = '{"t":0,"type":"output","data":"aGk="}\n';
    const { fetch, seen } = fakeFetch([
      json(200, []),
      new Response(lines, { status: 200, headers: { 'content-type': 'application/x-ndjson' } }),
      problem(404, 'GH_ERR_NOT_FOUND', 'no recording'),
    ]);
    const api = new WebApi({ fetch, csrf: memoryCsrfStore() });
    await api.listRecordings({ user: 'bob', kind: 'ssh', limit: 5 });
    expect(seen[0]!.url).toBe('/v1/recordings?user=bob&kind=ssh&limit=5');
    expect(await api.recordingText('s/1')).toBe(lines);
    expect(seen[1]!.url).toBe('/v1/recordings/s%2F1/events?format=json');
    await expect(api.recordingText('gone')).rejects.toMatchObject({ code: 'GH_ERR_NOT_FOUND', status: 404 });
  });
});

describe('WebApi.downloadFile', () => {
  it('streams the file with progress, and turns a refusal into the problem it carries', async () => {
    const body = new Uint8Array(3000).fill(7);
    const { fetch, seen } = fakeFetch([
      new Response(body, { status: 200, headers: { 'content-length': '3000' } }),
      problem(403, 'GH_ERR_ACCESS_DENIED', 'login root is not allowed on n1'),
    ]);
    const api = new WebApi({ fetch, csrf: memoryCsrfStore() });
    const progress: [number, number | undefined][] = [];
    const blob = await api.downloadFile({ node: 'n1', login: 'gh-test', path: 'a b.txt' }, (d, t) =>
      progress.push([d, t]),
    );
    expect(seen[0]!.url).toBe('/v1/files?node=n1&login=gh-test&path=a+b.txt');
    expect(new Uint8Array(await blob.arrayBuffer())).toEqual(body);
    expect(progress[0]).toEqual([0, 3000]);
    expect(progress.at(-1)).toEqual([3000, 3000]);
    await expect(api.downloadFile({ node: 'n1', login: 'root', path: 'x' })).rejects.toMatchObject({
      code: 'GH_ERR_ACCESS_DENIED',
      status: 403,
    });
  });

  it('reports a download cut short instead of saving part of the file', async () => {
    // The server promised 10 bytes and sent 4.
    const short = new Response(new Uint8Array(4), { status: 200 });
    Object.defineProperty(short, 'headers', { value: new Headers({ 'content-length': '10' }) });
    const { fetch } = fakeFetch([short]);
    const api = new WebApi({ fetch, csrf: memoryCsrfStore() });
    await expect(api.downloadFile({ node: 'n1', login: 'u', path: 'x' })).rejects.toMatchObject({
      code: 'GH_WEB_NETWORK',
      message: 'the download stopped after 4 of 10 bytes',
    });
  });
});

describe('client helpers', () => {
  it('fillPath refuses a missing parameter', () => {
    expect(fillPath('/v1/users/:name/lock', { name: 'a b' })).toBe('/v1/users/a%20b/lock');
    expect(() => fillPath('/v1/users/:name', {})).toThrow('missing path parameter name');
  });

  it('auditQueryString leaves out empty fields', () => {
    expect(auditQueryString({})).toBe('');
    expect(auditQueryString({ types: [], q: 'x' })).toBe('q=x');
  });

  it('problemToError falls back to the HTTP status for a body that is not problem JSON', () => {
    expect(problemToError(500, '', { nope: true })).toMatchObject({ code: 'GH_WEB_HTTP', status: 500 });
    expect(problemToError(500, '', undefined).hint).toContain('try again');
  });

  it('sessionCsrfStore keeps the token under one key and removes it', () => {
    const m = new Map<string, string>();
    const storage = {
      getItem: (k: string) => m.get(k) ?? null,
      setItem: (k: string, v: string) => void m.set(k, v),
      removeItem: (k: string) => void m.delete(k),
    };
    const s = sessionCsrfStore(storage);
    s.set('abc');
    expect([...m.entries()]).toEqual([['gatehouse.csrf', 'abc']]);
    expect(s.get()).toBe('abc');
    s.set(undefined);
    expect(m.size).toBe(0);
    expect(s.get()).toBeUndefined();
  });
});
