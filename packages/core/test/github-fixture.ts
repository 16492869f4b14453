/**
 * A GitHub-shaped OAuth server and REST API for the GitHub connector's tests
 * (GitHub cannot run here; issue 17 allows this one fixture). It enforces
 * what GitHub does: the OAuth app's client id, secret and registered
 * callback, single-use codes bound to that callback and to the PKCE
 * challenge, and the access token on every API call (401 "Bad credentials"
 * otherwise). Paths as on GitHub Enterprise Server: /login/oauth/* and
 * /api/v3/*.
 */
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface GithubUser {
  id: number;
  login: string;
  name?: string;
  /** "org/team-slug" */
  teams: string[];
}

export interface GithubFixture {
  /** endpoint_url of the connector. */
  url: string;
  /** api_url of the connector. */
  apiUrl: string;
  clientId: string;
  clientSecret: string;
  /** When set, the token endpoint hands out tokens the API does not accept (as after a revocation). */
  revokeTokens: boolean;
  /** API requests seen, with whether they carried a live token. */
  apiCalls: { path: string; authorized: boolean }[];
  stop(): Promise<void>;
}

const html = (body: string) =>
  `<!doctype html><meta charset="utf-8"><title>Authorize application</title><body>${body}</body>`;
const esc = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

export async function startGithubFixture(opts: {
  callbackUrl: string;
  users: GithubUser[];
}): Promise<GithubFixture> {
  const clientId = `Iv1.${randomBytes(8).toString('hex')}`;
  const clientSecret = randomBytes(20).toString('hex');
  const codes = new Map<string, { login: string; redirectUri: string; challenge: string }>();
  const tokens = new Map<string, string>();
  const server = http.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const fx: GithubFixture = {
    url,
    apiUrl: `${url}/api/v3`,
    clientId,
    clientSecret,
    revokeTokens: false,
    apiCalls: [],
    stop: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  const json = (res: http.ServerResponse, status: number, body: unknown) =>
    res.writeHead(status, { 'content-type': 'application/json; charset=utf-8' }).end(JSON.stringify(body));
  const readForm = async (req: http.IncomingMessage) => {
    let text = '';
    for await (const c of req) text += c;
    return new URLSearchParams(text);
  };

  server.on('request', async (req, res) => {
    const u = new URL(req.url ?? '/', url);
    if (req.method === 'GET' && u.pathname === '/login/oauth/authorize') {
      const q = u.searchParams;
      if (q.get('client_id') !== clientId) return json(res, 404, { message: 'Not Found' });
      if (q.get('redirect_uri') !== opts.callbackUrl) {
        res.writeHead(400).end(html('The redirect_uri is not associated with this application.'));
        return;
      }
      if (q.get('code_challenge_method') !== 'S256' || !q.get('code_challenge')) {
        res.writeHead(400).end(html('PKCE S256 required by this fixture.'));
        return;
      }
      const hidden = ['redirect_uri', 'state', 'code_challenge']
        .map((k) => `<input type="hidden" name="${k}" value="${esc(q.get(k) ?? '')}">`)
        .join('');
      res
        .writeHead(200, { 'content-type': 'text/html; charset=utf-8' })
        .end(
          html(
            `<h1>Authorize Gatehouse</h1><form method="post" action="/login/oauth/authorize">${hidden}` +
              `<label>Username or email address <input name="login"></label>` +
              `<button type="submit">Authorize</button></form>`,
          ),
        );
      return;
    }
    if (req.method === 'POST' && u.pathname === '/login/oauth/authorize') {
      const f = await readForm(req);
      const user = opts.users.find((x) => x.login === f.get('login'));
      if (!user) {
        res.writeHead(401).end(html('Incorrect username or password.'));
        return;
      }
      const code = randomBytes(10).toString('hex');
      codes.set(code, {
        login: user.login,
        redirectUri: f.get('redirect_uri') ?? '',
        challenge: f.get('code_challenge') ?? '',
      });
      const back = new URL(f.get('redirect_uri') ?? '');
      back.searchParams.set('code', code);
      back.searchParams.set('state', f.get('state') ?? '');
      res.writeHead(302, { location: back.href }).end();
      return;
    }
    if (req.method === 'POST' && u.pathname === '/login/oauth/access_token') {
      const f = await readForm(req);
      const c = codes.get(f.get('code') ?? '');
      codes.delete(f.get('code') ?? '');
      const verifier = f.get('code_verifier') ?? '';
      // GitHub answers token errors with 200 and an error field.
      if (f.get('client_id') !== clientId || f.get('client_secret') !== clientSecret) {
        return json(res, 200, { error: 'incorrect_client_credentials' });
      }
      if (!c || c.redirectUri !== f.get('redirect_uri'))
        return json(res, 200, { error: 'bad_verification_code' });
      if (createHash('sha256').update(verifier).digest('base64url') !== c.challenge) {
        return json(res, 200, {
          error: 'bad_verification_code',
          error_description: 'PKCE verification failed',
        });
      }
      const token = `gho_${randomBytes(18).toString('hex')}`;
      if (!fx.revokeTokens) tokens.set(token, c.login);
      return json(res, 200, { access_token: token, token_type: 'bearer', scope: 'read:org' });
    }
    if (req.method === 'GET' && u.pathname.startsWith('/api/v3/')) {
      const auth = /^Bearer (\S+)$/.exec(req.headers.authorization ?? '');
      const login = auth ? tokens.get(auth[1]!) : undefined;
      fx.apiCalls.push({ path: u.pathname, authorized: login !== undefined });
      if (!login) return json(res, 401, { message: 'Bad credentials' });
      const user = opts.users.find((x) => x.login === login)!;
      if (u.pathname === '/api/v3/user') {
        return json(res, 200, { id: user.id, login: user.login, name: user.name ?? null, email: null });
      }
      if (u.pathname === '/api/v3/user/teams') {
        const page = Number(u.searchParams.get('page') ?? '1');
        const per = Number(u.searchParams.get('per_page') ?? '30');
        const all = user.teams.map((t) => {
          const [org, slug] = t.split('/');
          return { slug, name: slug, organization: { login: org } };
        });
        return json(res, 200, all.slice((page - 1) * per, page * per));
      }
    }
    json(res, 404, { message: 'Not Found' });
  });
  return fx;
}
