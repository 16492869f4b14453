/**
 * A real OpenID Provider for the SSO tests: panva's oidc-provider on a free
 * loopback port, with one confidential client, accounts with groups, and its
 * own dev login and consent pages (a browser fills them). An attacker
 * between the provider and the gateway can be simulated: `tamper` rewrites
 * the ID token in the token endpoint's answer (re-signed with the
 * provider's real key, another key, or none), so each check of the relying
 * party is exercised against tokens that differ from good ones in one way.
 */
import { generateKeyPairSync, type JsonWebKey, randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { decodeJwt, decodeProtectedHeader, importJWK, SignJWT } from 'jose';
import Provider from 'oidc-provider';
import type { BrowserContext, Page } from 'playwright-core';

export interface IdpAccount {
  sub: string;
  email: string;
  groups: string[];
  /** Unix logins (a custom claim roles use as {{external.unix_login}}). */
  unix_login?: string[];
}

export type Tamper =
  | { kind: 'wrong-key' }
  | { kind: 'alg-none' }
  | { kind: 'claims'; claims: Record<string, unknown> };

export interface TestIdp {
  issuer: string;
  clientId: string;
  clientSecret: string;
  /** Rewrites the next token responses' ID tokens until set to undefined. */
  tamper: Tamper | undefined;
  stop(): Promise<void>;
}

export async function startTestIdp(opts: {
  redirectUris: string[];
  accounts: Record<string, IdpAccount>;
}): Promise<TestIdp> {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const kid = `k${randomBytes(4).toString('hex')}`;
  const jwk = { ...(privateKey.export({ format: 'jwk' }) as JsonWebKey), kid, alg: 'RS256', use: 'sig' };
  const clientId = 'gatehouse';
  const clientSecret = randomBytes(24).toString('base64url');
  const server = http.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: clientId,
        client_secret: clientSecret,
        redirect_uris: opts.redirectUris,
        grant_types: ['authorization_code'],
        response_types: ['code'],
        token_endpoint_auth_method: 'client_secret_post',
      },
    ],
    jwks: { keys: [jwk as never] },
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      groups: ['groups'],
      unix: ['unix_login'],
    },
    // Claims in the ID token itself (as many providers do for groups), not only at UserInfo.
    conformIdTokenClaims: false,
    findAccount: async (_ctx, id) => {
      const a = opts.accounts[id];
      if (!a) return undefined;
      return {
        accountId: id,
        claims: async () => ({ ...a, email_verified: true }),
      };
    },
    pkce: { required: () => true },
    cookies: { keys: [randomBytes(16).toString('hex')] },
  });
  // The dev interactions print a warning per start; tests read stderr of other processes only.
  provider.on('server_error', (_ctx, err) => {
    process.stderr.write(`oidc-provider: ${err.stack ?? err}\n`);
  });
  const idp: TestIdp = {
    issuer,
    clientId,
    clientSecret,
    tamper: undefined,
    stop: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  const handler = provider.callback();
  const signer = await importJWK(jwk, 'RS256');
  server.on('request', (req, res) => {
    const t = idp.tamper;
    if (t && req.method === 'POST' && req.url?.startsWith('/token')) {
      const end = res.end.bind(res) as (chunk?: unknown) => http.ServerResponse;
      // Koa answers with one res.end(body): the body is rewritten before it goes out.
      res.end = ((chunk?: unknown) => {
        void rewrite(String(chunk ?? ''), t, signer, kid).then(
          (body) => {
            res.setHeader('content-length', Buffer.byteLength(body));
            end(body);
          },
          (e: unknown) => {
            res.statusCode = 500;
            end(String(e));
          },
        );
        return res;
      }) as typeof res.end;
    }
    handler(req, res);
  });
  return idp;
}

const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');

async function rewrite(
  body: string,
  t: Tamper,
  signer: Awaited<ReturnType<typeof importJWK>>,
  kid: string,
): Promise<string> {
  const json = JSON.parse(body) as { id_token?: string };
  if (!json.id_token) return body;
  const claims = decodeJwt(json.id_token);
  const header = decodeProtectedHeader(json.id_token);
  switch (t.kind) {
    case 'alg-none':
      json.id_token = `${b64({ alg: 'none', typ: 'JWT' })}.${b64(claims)}.`;
      break;
    case 'wrong-key': {
      // Same kid as the provider's key, so the verifier finds "its" key and the signature must fail.
      const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
      json.id_token = await new SignJWT(claims)
        .setProtectedHeader({ alg: 'RS256', kid: header.kid ?? kid })
        .sign(privateKey);
      break;
    }
    case 'claims':
      json.id_token = await new SignJWT({ ...claims, ...t.claims })
        .setProtectedHeader({ alg: 'RS256', kid })
        .sign(signer);
      break;
    default: {
      const never: never = t;
      throw new Error(`unknown tamper ${String(never)}`);
    }
  }
  return JSON.stringify(json);
}

/** Nothing the provider's pages load may leave the machine (its dev pages @import a web font). */
export async function keepLocal(context: BrowserContext): Promise<void> {
  await context.route(/^https?:\/\/(?!127\.0\.0\.1|localhost)/, (r) => r.abort());
}

/** The user at the provider's own pages (a page already on its login form): signs in as `account` and consents. */
export async function providerSignIn(page: Page, account: string): Promise<void> {
  await page.fill('input[name=login]', account);
  await page.fill('input[name=password]', 'any');
  await page.click('button[type=submit]');
  await page.click('button:has-text("Continue")');
}
