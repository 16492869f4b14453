import * as oidc from 'openid-client';
import { GatehouseError } from '../errors.js';
import { isLoopbackUrl, type SsoConnector } from './connectors.js';

/** Claims of a verified login: the ID token's, over the UserInfo endpoint's. */
export type Claims = Record<string, unknown>;

/** Clock skew tolerated on the ID token's iat/exp/nbf (seconds). */
const CLOCK_TOLERANCE_S = 60;
/** Each request to the provider must answer within this (seconds). */
const IDP_TIMEOUT_S = 10;

/**
 * The OpenID Connect relying party, through openid-client (panva): discovery,
 * the authorization URL with PKCE (S256), state and nonce, and the code
 * exchange. The ID token's JWS signature is verified against the provider's
 * JWKS (enableNonRepudiationChecks: without it openid-client trusts an ID
 * token received over TLS from the token endpoint, as the spec allows; we
 * verify anyway, so a token endpoint answer that was tampered with or a
 * key mix-up cannot log anyone in). HS* and `none` are refused by it.
 */
export class OidcRelyingParty {
  /** Discovery per connector, for a short while (a login reads it twice: start and callback). */
  readonly #cache = new Map<string, { at: number; key: string; config: Promise<oidc.Configuration> }>();

  async #config(c: SsoConnector): Promise<oidc.Configuration> {
    const key = JSON.stringify([c.issuerUrl, c.clientId, c.clientSecret ?? '']);
    const hit = this.#cache.get(c.name);
    if (hit && hit.key === key && Date.now() - hit.at < 60_000) return hit.config;
    const config = this.#discover(c);
    this.#cache.set(c.name, { at: Date.now(), key, config });
    config.catch(() => this.#cache.delete(c.name));
    return config;
  }

  async #discover(c: SsoConnector): Promise<oidc.Configuration> {
    const issuer = new URL(c.issuerUrl);
    const insecure = issuer.protocol === 'http:' && isLoopbackUrl(issuer);
    try {
      const config = await oidc.discovery(
        issuer,
        c.clientId,
        { [oidc.clockTolerance]: CLOCK_TOLERANCE_S },
        c.clientSecret !== undefined ? oidc.ClientSecretPost(c.clientSecret) : oidc.None(),
        { timeout: IDP_TIMEOUT_S, ...(insecure ? { execute: [oidc.allowInsecureRequests] } : {}) },
      );
      oidc.enableNonRepudiationChecks(config);
      return config;
    } catch (e) {
      throw idpUnavailable(c, e);
    }
  }

  /** Where to send the browser. */
  async authorizationUrl(
    c: SsoConnector,
    p: { state: string; nonce: string; codeVerifier: string },
  ): Promise<string> {
    const config = await this.#config(c);
    const url = oidc.buildAuthorizationUrl(config, {
      redirect_uri: c.redirectUrl,
      scope: c.scopes.join(' '),
      state: p.state,
      nonce: p.nonce,
      code_challenge: await oidc.calculatePKCECodeChallenge(p.codeVerifier),
      code_challenge_method: 'S256',
    });
    return url.href;
  }

  /**
   * The callback's code exchanged (with the PKCE verifier) and the ID token
   * verified: signature by the provider's JWKS, issuer, audience, expiry,
   * nonce. Claims from UserInfo (where providers often put groups) are
   * merged under the ID token's, for the same subject only.
   */
  async exchange(
    c: SsoConnector,
    callback: URLSearchParams,
    p: { state: string; nonce: string; codeVerifier: string },
  ): Promise<Claims> {
    const config = await this.#config(c);
    const current = new URL(c.redirectUrl);
    current.search = callback.toString();
    let tokens: Awaited<ReturnType<typeof oidc.authorizationCodeGrant>>;
    try {
      tokens = await oidc.authorizationCodeGrant(config, current, {
        pkceCodeVerifier: p.codeVerifier,
        expectedState: p.state,
        expectedNonce: p.nonce,
        idTokenExpected: true,
      });
    } catch (e) {
      throw classify(c, e);
    }
    const idClaims = tokens.claims();
    if (!idClaims) throw tokenInvalid(c, 'the provider returned no ID token');
    let info: Claims = {};
    try {
      info = await oidc.fetchUserInfo(config, tokens.access_token, idClaims.sub);
    } catch (e) {
      // A provider without a UserInfo endpoint still logs in with the ID token's claims.
      if (!(e instanceof Error && /userinfo_endpoint/.test(e.message))) throw classify(c, e);
    }
    return { ...info, ...idClaims };
  }
}

export function idpUnavailable(c: SsoConnector, cause: unknown): GatehouseError {
  const why = cause instanceof Error ? (causeMessage(cause) ?? cause.message) : String(cause);
  return new GatehouseError(
    'GH_ERR_SSO_IDP_UNAVAILABLE',
    `the identity provider of connector ${c.name} (${c.issuerUrl}) cannot be reached: ${why}`,
    {
      hint: 'check that issuer_url is right and the provider is up, then try again',
      details: { connector: c.name, reason: 'sso_idp_unavailable' },
      cause,
    },
  );
}

function tokenInvalid(c: SsoConnector, why: string, cause?: unknown): GatehouseError {
  return new GatehouseError(
    'GH_ERR_SSO_TOKEN_INVALID',
    `the ID token from connector ${c.name} is not valid: ${why}`,
    {
      hint: "the login was refused; an admin can check the connector's issuer_url and client_id (gatehouse sso test)",
      details: { connector: c.name, reason: 'sso_token_invalid' },
      cause,
    },
  );
}

function causeMessage(e: Error): string | undefined {
  const c = e.cause;
  if (c instanceof Error) return causeMessage(c) ?? c.message;
  return undefined;
}

/** openid-client's failures as ours: the provider down, the provider saying no, or a token that fails a check. */
export function classify(c: SsoConnector, e: unknown): GatehouseError {
  if (e instanceof GatehouseError) return e;
  if (e instanceof oidc.AuthorizationResponseError || e instanceof oidc.ResponseBodyError) {
    const desc = e.error_description ? `: ${e.error_description}` : '';
    return new GatehouseError(
      'GH_ERR_SSO_IDP_ERROR',
      `the identity provider of connector ${c.name} refused the login (${e.error}${desc})`,
      {
        hint: 'try again; if it persists, an admin should check the client registration at the provider',
        details: { connector: c.name, reason: 'sso_idp_error', idp_error: e.error },
        cause: e,
      },
    );
  }
  const code = (e as { code?: unknown }).code;
  if (e instanceof TypeError && (code === undefined || code === 'ECONNREFUSED') && /fetch/i.test(e.message)) {
    return idpUnavailable(c, e);
  }
  if (e instanceof Error && (e.name === 'TimeoutError' || e.name === 'AbortError'))
    return idpUnavailable(c, e);
  // openid-client wraps oauth4webapi's error, whose message names the check ("unexpected JWT "aud" ... claim value").
  const msg = e instanceof Error ? (causeMessage(e) ?? e.message) : String(e);
  const detail =
    (e instanceof Error ? (e.cause as { cause?: { alg?: string } } | undefined)?.cause : undefined) ?? {};
  const extra = detail.alg ? ` (alg ${detail.alg})` : '';
  return tokenInvalid(c, `${msg}${extra}`, e);
}
