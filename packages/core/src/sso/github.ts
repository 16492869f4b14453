import * as oidc from 'openid-client';
import { GatehouseError } from '../errors.js';
import { isLoopbackUrl, type SsoConnector } from './connectors.js';
import { type Claims, classify, idpUnavailable } from './oidc.js';
import type { SsoProtocol } from './service.js';

const IDP_TIMEOUT_MS = 10_000;
/** Teams read per login (GitHub pages at 100); more than this is refused rather than cut short. */
const MAX_TEAM_PAGES = 10;

/**
 * GitHub as an identity provider: an OAuth app (GitHub speaks OAuth 2.0, not
 * OpenID Connect, so there is no ID token to verify). The code is exchanged
 * by openid-client (state and PKCE S256, as with OIDC); who the user is and
 * which teams they are in come from the REST API with the access token, over
 * TLS to the configured API URL. Claims: sub (the numeric user id), login,
 * name, email, organizations, teams ("org/team-slug").
 */
export class GithubRelyingParty implements SsoProtocol {
  #config(c: SsoConnector): oidc.Configuration {
    const endpoint = new URL(c.issuerUrl);
    const config = new oidc.Configuration(
      {
        issuer: c.issuerUrl,
        authorization_endpoint: `${c.issuerUrl}/login/oauth/authorize`,
        token_endpoint: `${c.issuerUrl}/login/oauth/access_token`,
      },
      c.clientId,
      {},
      oidc.ClientSecretPost(c.clientSecret ?? ''),
    );
    if (endpoint.protocol === 'http:' && isLoopbackUrl(endpoint)) oidc.allowInsecureRequests(config);
    config.timeout = IDP_TIMEOUT_MS / 1000;
    return config;
  }

  async authorizationUrl(c: SsoConnector, p: { state: string; codeVerifier: string }): Promise<string> {
    return oidc.buildAuthorizationUrl(this.#config(c), {
      redirect_uri: c.redirectUrl,
      scope: c.scopes.join(' '),
      state: p.state,
      code_challenge: await oidc.calculatePKCECodeChallenge(p.codeVerifier),
      code_challenge_method: 'S256',
    }).href;
  }

  async exchange(
    c: SsoConnector,
    callback: URLSearchParams,
    p: { state: string; codeVerifier: string },
  ): Promise<Claims> {
    const current = new URL(c.redirectUrl);
    current.search = callback.toString();
    let token: string;
    try {
      const tokens = await oidc.authorizationCodeGrant(this.#config(c), current, {
        pkceCodeVerifier: p.codeVerifier,
        expectedState: p.state,
      });
      token = tokens.access_token;
    } catch (e) {
      throw tokenEndpointError(c, e) ?? classify(c, e);
    }
    const user = (await this.#api(c, token, '/user')) as {
      id?: unknown;
      login?: unknown;
      name?: unknown;
      email?: unknown;
    };
    if (typeof user.id !== 'number' || typeof user.login !== 'string') {
      throw apiError(c, '/user', 'the answer has no id and login');
    }
    const teams: string[] = [];
    for (let page = 1; ; page++) {
      if (page > MAX_TEAM_PAGES) throw apiError(c, '/user/teams', `more than ${MAX_TEAM_PAGES * 100} teams`);
      const batch = await this.#api(c, token, `/user/teams?per_page=100&page=${page}`);
      if (!Array.isArray(batch)) throw apiError(c, '/user/teams', 'the answer is not a list');
      for (const t of batch as { slug?: unknown; organization?: { login?: unknown } }[]) {
        if (typeof t?.slug === 'string' && typeof t.organization?.login === 'string') {
          teams.push(`${t.organization.login}/${t.slug}`);
        }
      }
      if (batch.length < 100) break;
    }
    return {
      sub: String(user.id),
      login: user.login,
      ...(typeof user.name === 'string' ? { name: user.name } : {}),
      ...(typeof user.email === 'string' ? { email: user.email } : {}),
      organizations: [...new Set(teams.map((t) => t.slice(0, t.indexOf('/'))))],
      teams,
    };
  }

  async #api(c: SsoConnector, token: string, path: string): Promise<unknown> {
    let res: Response;
    try {
      res = await fetch(`${c.apiUrl}${path}`, {
        headers: {
          accept: 'application/vnd.github+json',
          authorization: `Bearer ${token}`,
          'user-agent': 'gatehouse',
          'x-github-api-version': '2022-11-28',
        },
        signal: AbortSignal.timeout(IDP_TIMEOUT_MS),
        redirect: 'error',
      });
    } catch (e) {
      throw idpUnavailable(c, e);
    }
    const text = await res.text();
    if (!res.ok) {
      let message = text.slice(0, 200);
      try {
        message = String((JSON.parse(text) as { message?: unknown }).message ?? message);
      } catch {
        // Not JSON (a proxy's error page): its first bytes are the message.
      }
      throw apiError(c, path.split('?')[0]!, `HTTP ${res.status}: ${message}`);
    }
    try {
      return JSON.parse(text);
    } catch (e) {
      throw apiError(c, path.split('?')[0]!, 'the answer is not JSON', e);
    }
  }
}

/** GitHub answers a refused code exchange with 200 and `{error, error_description}` (not an OAuth 400). */
function tokenEndpointError(c: SsoConnector, e: unknown): GatehouseError | undefined {
  let cur: unknown = e;
  for (let i = 0; i < 4 && cur instanceof Error; i++) {
    const body = (cur as { cause?: { body?: { error?: unknown; error_description?: unknown } } }).cause?.body;
    if (typeof body?.error === 'string') {
      const desc = typeof body.error_description === 'string' ? `: ${body.error_description}` : '';
      return new GatehouseError(
        'GH_ERR_SSO_IDP_ERROR',
        `GitHub refused the login code of connector ${c.name} (${body.error}${desc})`,
        {
          hint: 'try again; if it persists, an admin should check client_id, the client secret and the callback URL of the OAuth app',
          details: { connector: c.name, reason: 'sso_idp_error', idp_error: body.error },
          cause: e,
        },
      );
    }
    cur = cur.cause;
  }
  return undefined;
}

function apiError(c: SsoConnector, path: string, why: string, cause?: unknown): GatehouseError {
  return new GatehouseError(
    'GH_ERR_SSO_IDP_ERROR',
    `the GitHub API of connector ${c.name} refused ${path}: ${why}`,
    {
      hint: 'try again; if it persists, an admin should check the OAuth app and api_url (gatehouse sso test)',
      details: { connector: c.name, reason: 'sso_idp_error' },
      cause,
    },
  );
}
