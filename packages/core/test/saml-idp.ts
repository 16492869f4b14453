/**
 * A real SAML 2.0 identity provider for the SSO tests, built from samlify's
 * IdP side (the library the gateway's SP uses): its metadata at /metadata,
 * an HTTP-Redirect SingleSignOnService at /sso that parses and checks the
 * gateway's AuthnRequest, an HTML login form, and an HTML form that POSTs the
 * signed response to the gateway's ACS (HTTP-POST binding), as Okta or
 * Keycloak do. The SP is read from the gateway's own SP metadata route.
 *
 * `tamper` makes the next responses differ from a good one in one way, as an
 * attacker between the IdP and the browser (or a broken IdP) would: the
 * signature removed, a second (unsigned) assertion injected, the signed
 * assertion moved, another audience, expired, or signed by a key that is not
 * in the metadata. Signing is always samlify's; only the XML around it is
 * changed afterwards.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DOMParser, XMLSerializer } from '@xmldom/xmldom';
import type { Page } from 'playwright-core';
import samlify from 'samlify';

// Importing the gateway's SAML module registers the schema validator samlify insists on.
import '../src/sso/saml.js';

export interface SamlAccount {
  /** The NameID. */
  nameId: string;
  attributes: Record<string, string[]>;
}

export type SamlTamper = 'unsigned' | 'wrap-inject' | 'wrap-move' | 'audience' | 'expired' | 'other-key';

export interface TestSamlIdp {
  /** http://127.0.0.1:PORT */
  url: string;
  metadataUrl: string;
  entityId: string;
  /** The next responses are tampered with until set to undefined. */
  tamper: SamlTamper | undefined;
  /** A response (base64, what the form posts) to the request `requestId`, as after `account` signed in. */
  respond(requestId: string, account: string): Promise<string>;
  stop(): Promise<void>;
}

const NS_ASSERTION = 'urn:oasis:names:tc:SAML:2.0:assertion';
const REDIRECT = 'urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect';

function keyPair(dir: string, name: string): { key: string; cert: string } {
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-subj',
      `/CN=${name}`,
      '-days',
      '2',
      '-keyout',
      join(dir, `${name}.key`),
      '-out',
      join(dir, `${name}.crt`),
    ],
    { stdio: 'ignore' },
  );
  return {
    key: readFileSync(join(dir, `${name}.key`), 'utf8'),
    cert: readFileSync(join(dir, `${name}.crt`), 'utf8'),
  };
}

const esc = (s: string) =>
  s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

export async function startSamlIdp(opts: {
  accounts: Record<string, SamlAccount>;
  /** The gateway's SP metadata (GET /v1/sso/saml/NAME/metadata). */
  spMetadata: () => Promise<string>;
}): Promise<TestSamlIdp> {
  const dir = mkdtempSync(join(tmpdir(), 'gh-saml-idp-'));
  const real = keyPair(dir, 'idp');
  const other = keyPair(dir, 'attacker');
  const server = http.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const entityId = `${url}/metadata`;
  const idpWith = (k: { key: string; cert: string }) =>
    samlify.IdentityProvider({
      entityID: entityId,
      privateKey: k.key,
      signingCert: k.cert,
      wantAuthnRequestsSigned: false,
      nameIDFormat: ['urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress'],
      singleSignOnService: [{ Binding: REDIRECT, Location: `${url}/sso` }],
    });
  const idp = idpWith(real);
  // Same entity id, another key: what the metadata does not vouch for.
  const attacker = idpWith(other);
  let sp: samlify.ServiceProviderInstance | undefined;
  const spEntity = async () => {
    sp ??= samlify.ServiceProvider({ metadata: await opts.spMetadata() });
    return sp;
  };

  const state: TestSamlIdp = {
    url,
    metadataUrl: `${url}/metadata`,
    entityId,
    tamper: undefined,
    respond: (requestId, account) => respond(requestId, opts.accounts[account]!, state.tamper),
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
        rmSync(dir, { recursive: true, force: true });
      }),
  };

  async function respond(
    requestId: string,
    account: SamlAccount,
    tamper: SamlTamper | undefined,
  ): Promise<string> {
    const s = await spEntity();
    const now = Date.now();
    const iso = (ms: number) => new Date(ms).toISOString();
    const expired = tamper === 'expired';
    const acs = s.entityMeta.getAssertionConsumerService('post') as string;
    const values = {
      ID: `_${randomBytes(16).toString('hex')}`,
      AssertionID: `_${randomBytes(16).toString('hex')}`,
      Destination: acs,
      Audience: tamper === 'audience' ? 'https://someone-else.example.com/saml' : s.entityMeta.getEntityID(),
      SubjectRecipient: acs,
      Issuer: entityId,
      IssueInstant: iso(expired ? now - 20 * 60_000 : now),
      StatusCode: 'urn:oasis:names:tc:SAML:2.0:status:Success',
      ConditionsNotBefore: iso(expired ? now - 20 * 60_000 : now - 5_000),
      ConditionsNotOnOrAfter: iso(expired ? now - 10 * 60_000 : now + 5 * 60_000),
      SubjectConfirmationDataNotOnOrAfter: iso(expired ? now - 10 * 60_000 : now + 5 * 60_000),
      NameIDFormat: 'urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress',
      NameID: account.nameId,
      InResponseTo: requestId,
      AuthnStatement: `<saml:AuthnStatement AuthnInstant="${iso(now)}" SessionIndex="_s${randomBytes(6).toString('hex')}"><saml:AuthnContext><saml:AuthnContextClassRef>urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport</saml:AuthnContextClassRef></saml:AuthnContext></saml:AuthnStatement>`,
      AttributeStatement: `<saml:AttributeStatement>${Object.entries(account.attributes)
        .map(
          ([name, vals]) =>
            `<saml:Attribute Name="${esc(name)}" NameFormat="urn:oasis:names:tc:SAML:2.0:attrname-format:basic">${vals
              .map((v) => `<saml:AttributeValue xsi:type="xs:string">${esc(v)}</saml:AttributeValue>`)
              .join('')}</saml:Attribute>`,
        )
        .join('')}</saml:AttributeStatement>`,
    };
    const signer = tamper === 'other-key' ? attacker : idp;
    const r = (await signer.createLoginResponse(
      s,
      { extract: { request: { id: requestId } } },
      'post',
      { email: account.nameId },
      {
        customTagReplacement: (template: string) => ({
          id: values.ID,
          // AuthnStatement and AttributeStatement are markup built above; every other value is escaped.
          context: template.replace(/\{(\w+)\}/g, (_, k: keyof typeof values) =>
            k === 'AuthnStatement' || k === 'AttributeStatement' ? values[k] : esc(values[k] ?? ''),
          ),
        }),
      },
    )) as { context: string };
    const xml = Buffer.from(r.context, 'base64').toString('utf8');
    return Buffer.from(tamperWith(xml, tamper)).toString('base64');
  }

  server.on('request', (req, res) => {
    void (async () => {
      const u = new URL(req.url ?? '/', url);
      if (req.method === 'GET' && u.pathname === '/metadata') {
        res.writeHead(200, { 'content-type': 'application/samlmetadata+xml' }).end(idp.getMetadata());
        return;
      }
      if (req.method === 'GET' && u.pathname === '/sso') {
        // The AuthnRequest parsed and checked by samlify's IdP (issuer, ACS) before the form is shown.
        const parsed = await idp.parseLoginRequest(await spEntity(), 'redirect', {
          query: Object.fromEntries(u.searchParams),
          octetString: '',
        });
        const extract = parsed.extract as { request: { id: string } };
        res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(
          `<!doctype html><title>Test IdP</title><h1>Sign in to the test IdP</h1>
<form method="post" action="/login">
<input type="hidden" name="request_id" value="${esc(extract.request.id)}">
<input type="hidden" name="relay_state" value="${esc(u.searchParams.get('RelayState') ?? '')}">
<label>User <input name="login"></label> <label>Password <input name="password" type="password"></label>
<button type="submit">Sign in</button></form>`,
        );
        return;
      }
      if (req.method === 'POST' && u.pathname === '/login') {
        let body = '';
        for await (const chunk of req) body += chunk;
        const form = new URLSearchParams(body);
        const account = opts.accounts[form.get('login') ?? ''];
        if (!account || !form.get('password')) {
          res.writeHead(401, { 'content-type': 'text/html' }).end('<p>Unknown user</p>');
          return;
        }
        const samlResponse = await respond(form.get('request_id') ?? '', account, state.tamper);
        const acs = (await spEntity()).entityMeta.getAssertionConsumerService('post') as string;
        res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(
          `<!doctype html><title>Signing in</title><body onload="document.forms[0].submit()">
<form method="post" action="${esc(acs)}">
<input type="hidden" name="SAMLResponse" value="${esc(samlResponse)}">
<input type="hidden" name="RelayState" value="${esc(form.get('relay_state') ?? '')}">
<noscript><button type="submit">Continue</button></noscript></form></body>`,
        );
        return;
      }
      res.writeHead(404).end();
    })().catch((e: unknown) => {
      if (!res.headersSent) res.writeHead(400, { 'content-type': 'text/plain' });
      res.end(`test IdP: ${(e as Error).message}`);
    });
  });
  return state;
}

/** The XML of a good signed response, changed the way `tamper` says. */
function tamperWith(xml: string, tamper: SamlTamper | undefined): string {
  if (tamper !== 'unsigned' && tamper !== 'wrap-inject' && tamper !== 'wrap-move') return xml;
  const doc = new DOMParser().parseFromString(xml, 'text/xml');
  const response = doc.documentElement!;
  const signed = doc.getElementsByTagNameNS(NS_ASSERTION, 'Assertion')[0]!;
  if (tamper === 'unsigned') {
    const sig = signed.getElementsByTagNameNS('http://www.w3.org/2000/09/xmldsig#', 'Signature')[0]!;
    signed.removeChild(sig);
    return new XMLSerializer().serializeToString(doc);
  }
  // The attacker's assertion: a copy of the real one without its signature, for another user in the ops group.
  const evil = signed.cloneNode(true) as typeof signed;
  const sig = evil.getElementsByTagNameNS('http://www.w3.org/2000/09/xmldsig#', 'Signature')[0]!;
  evil.removeChild(sig);
  evil.getElementsByTagNameNS(NS_ASSERTION, 'NameID')[0]!.textContent = 'mallory@example.com';
  for (const v of Array.from(evil.getElementsByTagNameNS(NS_ASSERTION, 'AttributeValue'))) {
    if ((v.parentNode as unknown as { getAttribute(n: string): string }).getAttribute('Name') === 'groups') {
      v.textContent = 'ops';
    }
  }
  if (tamper === 'wrap-inject') {
    // Both in the response, the forged one first (what a naive "first assertion" reader takes).
    evil.setAttribute('ID', `_evil${randomBytes(8).toString('hex')}`);
    response.insertBefore(evil, signed);
  } else {
    // The signed assertion moved into the forged one (its id kept, so its reference still resolves).
    const confirmation = evil.getElementsByTagNameNS(NS_ASSERTION, 'SubjectConfirmationData')[0]!;
    response.replaceChild(evil, signed);
    confirmation.appendChild(signed);
  }
  return new XMLSerializer().serializeToString(doc);
}

/** The user at the IdP's login form (a page already on it). */
export async function samlIdpSignIn(page: Page, account: string): Promise<void> {
  await page.fill('input[name=login]', account);
  await page.fill('input[name=password]', 'any');
  await page.click('button[type=submit]');
}
