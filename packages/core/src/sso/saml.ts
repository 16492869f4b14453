import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { DOMParser } from '@xmldom/xmldom';
import samlify from 'samlify';
import { validateXML } from 'xmllint-wasm';
import type { Backend } from '../backend/types.js';
import type { Clock } from '../clock.js';
import { GatehouseError, isGatehouseError } from '../errors.js';
import { MAX_METADATA_BYTES, type SsoConnector } from './connectors.js';
import type { Claims } from './oidc.js';
import type { SsoProtocol } from './service.js';

/** Clock skew tolerated on NotBefore / NotOnOrAfter (ms), as for OIDC tokens. */
export const SAML_CLOCK_SKEW_MS = 60_000;
/** The IdP's metadata is read again after this (ms): a rotated signing key is picked up. */
const METADATA_TTL_MS = 5 * 60_000;
const IDP_TIMEOUT_MS = 10_000;
/** A SAMLResponse larger than this (base64) is refused before it is decoded. */
export const MAX_SAML_RESPONSE_BYTES = 256 * 1024;

const NS_ASSERTION = 'urn:oasis:names:tc:SAML:2.0:assertion';
const NS_PROTOCOL = 'urn:oasis:names:tc:SAML:2.0:protocol';
const POST_BINDING = 'urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST';
const REPLAY = 'sso_saml_assertions/';

/**
 * samlify needs an XML schema validator before it parses anything (its
 * guard against documents shaped to confuse its XPath lookups). Ours runs
 * libxml2 (xmllint-wasm) against the SAML 2.0 protocol schema that
 * @authenio/samlify-xmllint-wasm ships; that package's own validate()
 * logs every failure to the console, so it is not used as is.
 * samlify keeps the validator module-wide; every gateway sets the same one.
 */
const schemas = (() => {
  let cached: { fileName: string; contents: string }[] | undefined;
  return () => {
    if (!cached) {
      const require = createRequire(import.meta.url);
      const dir = join(dirname(require.resolve('@authenio/samlify-xmllint-wasm/package.json')), 'schemas');
      cached = [
        'saml-schema-protocol-2.0.xsd',
        'datatypes.dtd',
        'saml-schema-assertion-2.0.xsd',
        'xmldsig-core-schema.xsd',
        'XMLSchema.dtd',
        'xenc-schema.xsd',
      ].map((fileName) => ({ fileName, contents: readFileSync(join(dir, fileName), 'utf8') }));
    }
    return cached;
  };
})();

async function validateSchema(xml: string): Promise<true> {
  const [schema, ...preload] = schemas();
  const r = await validateXML({
    xml: [{ fileName: 'response.xml', contents: xml }],
    extension: 'schema',
    schema: [schema!],
    preload,
  });
  if (!r.valid) throw new Error(`ERR_SCHEMA: ${r.errors[0]?.message ?? 'not a SAML 2.0 document'}`);
  return true;
}
samlify.setSchemaValidator({ validate: validateSchema });

/** samlify's error names, said for people. */
const SAMLIFY_ERRORS: [RegExp, string][] = [
  [
    /FAILED_TO_VERIFY_SIGNATURE|NO_SELECTED_CERTIFICATE/,
    "no valid signature by the IdP's metadata key (unsigned, or signed by another key)",
  ],
  [
    /UNMATCH_CERTIFICATE_DECLARATION_IN_METADATA/,
    "signed with a certificate that is not the IdP's (not in its metadata)",
  ],
  [
    /POTENTIAL_WRAPPING_ATTACK|ERR_EMPTY_ASSERTION|NO_SIGNATURE_REFERENCES/,
    'the signed assertion is not the one the response carries (signature wrapping)',
  ],
  [/ERR_SUBJECT_UNCONFIRMED|ERR_EXPIRED_SESSION/, 'the assertion has expired or is not valid yet'],
  [/ERR_UNMATCH_ISSUER/, "the assertion's issuer is not the IdP's entity id"],
  [/ERR_SCHEMA|ERR_INVALID_XML|XML (parsing|fatal) error/, 'not a well-formed SAML 2.0 response'],
];

export function assertionInvalid(c: SsoConnector, why: string, cause?: unknown): GatehouseError {
  return new GatehouseError(
    'GH_ERR_SSO_ASSERTION_INVALID',
    `the SAML response from connector ${c.name} is not valid: ${why}`,
    {
      hint: "the login was refused; an admin can check the connector's IdP metadata and entity_id (gatehouse sso test)",
      details: { connector: c.name, reason: 'sso_assertion_invalid' },
      cause,
    },
  );
}

function metadataUnavailable(c: SsoConnector, why: string, cause?: unknown): GatehouseError {
  return new GatehouseError(
    'GH_ERR_SSO_IDP_UNAVAILABLE',
    `the SAML metadata of connector ${c.name} (${c.issuerUrl}) cannot be read: ${why}`,
    {
      hint: 'check that idp_metadata_url is right and the identity provider is up, then try again',
      details: { connector: c.name, reason: 'sso_idp_unavailable' },
      cause,
    },
  );
}

/** A parser that throws on any error or warning (an entity, a DTD, broken markup) instead of repairing. */
function parseStrict(xml: string): Document {
  const fail = (msg: string) => {
    throw new Error(`XML parsing error: ${msg}`);
  };
  return new DOMParser({ errorHandler: { warning: fail, error: fail, fatalError: fail } }).parseFromString(
    xml,
    'text/xml',
  ) as unknown as Document;
}

const localElements = (root: Document | Element, ns: string, name: string): Element[] =>
  Array.from(root.getElementsByTagNameNS(ns, name) as unknown as ArrayLike<Element>);

/**
 * SAML 2.0 Web Browser SSO as a service provider, through samlify: the
 * AuthnRequest (HTTP-Redirect binding) and the IdP's response (HTTP-POST
 * binding) verified against the signing certificate of the IdP's metadata.
 * samlify checks the XML signature (xml-crypto) and reads the assertion from
 * what the signature covers; on top of it this refuses what it would let
 * through or what it cannot know (docs/decisions/0027-sso.md, SAML):
 * a response with more or fewer than one assertion, an encrypted assertion,
 * a DTD, an audience that is not our entity id, an InResponseTo (on the
 * response and in the signed SubjectConfirmationData) that is not the
 * attempt's request id, a missing or passed NotOnOrAfter (by the gateway's
 * clock), and an assertion id seen before.
 */
export class SamlRelyingParty implements SsoProtocol {
  readonly #backend: Backend;
  readonly #clock: Clock;
  readonly #metadata = new Map<string, { at: number; url: string; xml: Promise<string> }>();

  constructor(deps: { backend: Backend; clock: Clock }) {
    this.#backend = deps.backend;
    this.#clock = deps.clock;
  }

  /** The attempt's request id: derived from its nonce (sealed in the attempt), so nothing else is stored. */
  static requestId(nonce: string): string {
    return `_${nonce}`;
  }

  #sp(c: SsoConnector, requestId?: string): samlify.ServiceProviderInstance {
    return samlify.ServiceProvider({
      entityID: settings(c).entityId,
      assertionConsumerService: [{ Binding: POST_BINDING, Location: c.redirectUrl }],
      authnRequestsSigned: false,
      wantAssertionsSigned: true,
      wantMessageSigned: false,
      clockDrifts: [-SAML_CLOCK_SKEW_MS, SAML_CLOCK_SKEW_MS],
      ...(requestId ? { generateID: () => requestId } : {}),
    });
  }

  async #idp(c: SsoConnector): Promise<samlify.IdentityProviderInstance> {
    const xml = await this.#metadataXml(c);
    try {
      const idp = samlify.IdentityProvider({ metadata: xml });
      if (!idp.entityMeta.getEntityID()) throw new Error('no entityID');
      if (!idp.entityMeta.getX509Certificate('signing')) throw new Error('no signing certificate');
      return idp;
    } catch (e) {
      throw metadataUnavailable(c, `it is not SAML 2.0 IdP metadata (${(e as Error).message})`, e);
    }
  }

  async #metadataXml(c: SsoConnector): Promise<string> {
    const s = settings(c);
    if (s.metadataXml !== undefined) return s.metadataXml;
    const url = s.metadataUrl ?? '';
    const hit = this.#metadata.get(c.name);
    if (hit && hit.url === url && Date.now() - hit.at < METADATA_TTL_MS) return hit.xml;
    const xml = this.#fetchMetadata(c, url);
    this.#metadata.set(c.name, { at: Date.now(), url, xml });
    xml.catch(() => this.#metadata.delete(c.name));
    return xml;
  }

  async #fetchMetadata(c: SsoConnector, url: string): Promise<string> {
    let res: Response;
    try {
      res = await fetch(url, {
        headers: { accept: 'application/samlmetadata+xml, application/xml, text/xml' },
        signal: AbortSignal.timeout(IDP_TIMEOUT_MS),
        redirect: 'error',
      });
    } catch (e) {
      const cause = (e as { cause?: { message?: string } }).cause?.message;
      throw metadataUnavailable(c, cause ?? (e as Error).message, e);
    }
    if (!res.ok) throw metadataUnavailable(c, `HTTP ${res.status}`);
    const text = await res.text();
    if (Buffer.byteLength(text) > MAX_METADATA_BYTES) {
      throw metadataUnavailable(c, `larger than ${MAX_METADATA_BYTES} bytes`);
    }
    return text;
  }

  /** The SP metadata the IdP is given: entity id, ACS URL (HTTP-POST), signed assertions wanted. */
  async metadata(c: SsoConnector): Promise<string> {
    return this.#sp(c).getMetadata();
  }

  async authorizationUrl(c: SsoConnector, p: { state: string; nonce: string }): Promise<string> {
    const idp = await this.#idp(c);
    try {
      const r = this.#sp(c, SamlRelyingParty.requestId(p.nonce)).createLoginRequest(idp, 'redirect', {
        relayState: p.state,
      }) as { context: string };
      return r.context;
    } catch (e) {
      throw metadataUnavailable(
        c,
        `no AuthnRequest can be made for it (${(e as Error).message}); it needs an HTTP-Redirect SingleSignOnService and unsigned requests`,
        e,
      );
    }
  }

  /**
   * The IdP's POSTed SAMLResponse verified; its claims are the NameID
   * (`sub`, `name_id`) and the assertion's attributes by Name.
   */
  async exchange(c: SsoConnector, callback: URLSearchParams, p: { nonce: string }): Promise<Claims> {
    const encoded = callback.get('SAMLResponse') ?? '';
    if (!encoded) throw assertionInvalid(c, 'the IdP sent no SAMLResponse');
    if (encoded.length > MAX_SAML_RESPONSE_BYTES) throw assertionInvalid(c, 'the SAMLResponse is too large');
    const xml = Buffer.from(encoded, 'base64').toString('utf8');
    const expectedId = SamlRelyingParty.requestId(p.nonce);
    const s = settings(c);

    // Shape first, on the whole document: what samlify would tolerate or never look at.
    let doc: Document;
    try {
      if (/<!DOCTYPE|<!ENTITY/i.test(xml)) throw new Error('a DTD is not allowed');
      doc = parseStrict(xml);
    } catch (e) {
      throw assertionInvalid(c, `not a well-formed SAML 2.0 response (${(e as Error).message})`, e);
    }
    const root = doc.documentElement;
    if (!root || root.namespaceURI !== NS_PROTOCOL || root.localName !== 'Response') {
      throw assertionInvalid(c, 'not a SAML 2.0 Response');
    }
    const status = localElements(doc, NS_PROTOCOL, 'StatusCode')[0]?.getAttribute('Value') ?? '';
    if (!status.endsWith(':Success')) {
      const message = localElements(doc, NS_PROTOCOL, 'StatusMessage')[0]?.textContent?.trim();
      throw new GatehouseError(
        'GH_ERR_SSO_IDP_ERROR',
        `the identity provider of connector ${c.name} refused the login (${status.split(':').pop() || 'no status'}${message ? `: ${message}` : ''})`,
        {
          hint: 'try again; if it persists, an admin should check the application at the provider (ACS URL, entity id, assigned users)',
          details: { connector: c.name, reason: 'sso_idp_error', idp_error: status },
        },
      );
    }
    if (localElements(doc, NS_ASSERTION, 'EncryptedAssertion').length > 0) {
      throw assertionInvalid(
        c,
        'encrypted assertions are not supported; turn assertion encryption off at the IdP',
      );
    }
    // Exactly one assertion anywhere: a second one (injected, or the signed one moved elsewhere) is wrapping.
    const assertions = localElements(doc, NS_ASSERTION, 'Assertion');
    if (assertions.length !== 1) {
      throw assertionInvalid(
        c,
        assertions.length === 0
          ? 'the response carries no assertion'
          : `the response carries ${assertions.length} assertions (signature wrapping)`,
      );
    }
    if (assertions[0]!.parentNode !== root) {
      throw assertionInvalid(c, 'the assertion is not where a response carries it (signature wrapping)');
    }

    const idp = await this.#idp(c);
    let extract: SamlExtract;
    try {
      const r = await this.#sp(c).parseLoginResponse(idp, 'post', { body: { SAMLResponse: encoded } });
      extract = r.extract as SamlExtract;
    } catch (e) {
      if (isGatehouseError(e)) throw e;
      const msg = e instanceof Error ? e.message : String(e);
      const said = SAMLIFY_ERRORS.find(([re]) => re.test(msg))?.[1] ?? msg;
      throw assertionInvalid(c, said, e);
    }

    // The assertion whose signature verified (samlify read the claims from it), for its subject confirmation.
    const [, verified] = samlify.SamlLib.verifySignature(xml, { metadata: idp.entityMeta });
    if (!verified) throw assertionInvalid(c, 'the signed assertion is not the one the response carries');
    const assertion = parseStrict(verified).documentElement;
    if (assertion.getAttribute('ID') !== assertions[0]!.getAttribute('ID')) {
      throw assertionInvalid(
        c,
        'the signed assertion is not the one the response carries (signature wrapping)',
      );
    }

    const audiences = [extract.audience ?? []].flat();
    if (!audiences.includes(s.entityId)) {
      throw assertionInvalid(
        c,
        `the audience is ${audiences.length ? audiences.map((a) => JSON.stringify(a)).join(', ') : 'missing'}, not this gateway's entity id ${JSON.stringify(s.entityId)}`,
      );
    }
    const destination = root.getAttribute('Destination');
    if (destination && destination !== c.redirectUrl) {
      throw assertionInvalid(
        c,
        `the response is for ${destination}, not this gateway's ACS URL ${c.redirectUrl}`,
      );
    }
    // InResponseTo binds the answer to this attempt's AuthnRequest: unsolicited (IdP-initiated) or other logins' responses are refused.
    const inResponseTo = root.getAttribute('InResponseTo') ?? '';
    const confirmation = localElements(assertion, NS_ASSERTION, 'SubjectConfirmationData')[0];
    const confirmedFor = confirmation?.getAttribute('InResponseTo') ?? '';
    if (inResponseTo !== expectedId || confirmedFor !== expectedId) {
      throw assertionInvalid(
        c,
        `the response answers ${JSON.stringify(confirmedFor || inResponseTo || 'no request')}, not this login's request`,
      );
    }
    const recipient = confirmation?.getAttribute('Recipient');
    if (recipient && recipient !== c.redirectUrl) {
      throw assertionInvalid(
        c,
        `the assertion is for ${recipient}, not this gateway's ACS URL ${c.redirectUrl}`,
      );
    }
    // Times by the gateway's clock (samlify reads the system clock), with the same bounded skew.
    const now = this.#clock.now().getTime();
    const conditions = localElements(assertion, NS_ASSERTION, 'Conditions')[0];
    const notBefore = conditions?.getAttribute('NotBefore');
    const ends = [conditions?.getAttribute('NotOnOrAfter'), confirmation?.getAttribute('NotOnOrAfter')]
      .filter((v): v is string => !!v)
      .map((v) => Date.parse(v));
    if (ends.length === 0 || ends.some((t) => Number.isNaN(t))) {
      throw assertionInvalid(c, 'the assertion has no NotOnOrAfter');
    }
    const end = Math.min(...ends);
    if (now >= end + SAML_CLOCK_SKEW_MS) {
      throw assertionInvalid(c, `the assertion expired at ${new Date(end).toISOString()}`);
    }
    if (notBefore && !(Date.parse(notBefore) - SAML_CLOCK_SKEW_MS <= now)) {
      throw assertionInvalid(c, `the assertion is not valid before ${notBefore}`);
    }
    // Each assertion logs in once, even if a response reached us under another attempt.
    const replayKey = REPLAY + sha256(`${idp.entityMeta.getEntityID()}\n${assertion.getAttribute('ID')}`);
    try {
      await this.#backend.create(replayKey, '1', { ttlMs: Math.max(end + SAML_CLOCK_SKEW_MS - now, 1000) });
    } catch (e) {
      if (isGatehouseError(e) && e.code === 'GH_ERR_ALREADY_EXISTS') {
        throw assertionInvalid(c, 'this assertion was already used (replay)');
      }
      throw e;
    }

    const nameId = typeof extract.nameID === 'string' ? extract.nameID.trim() : '';
    const claims: Claims = {};
    for (const [k, v] of Object.entries(extract.attributes ?? {})) {
      if (k === 'sub' || k === 'name_id') continue;
      claims[k] = v;
    }
    return { ...claims, sub: nameId, name_id: nameId };
  }
}

interface SamlExtract {
  audience?: string | string[];
  nameID?: string;
  attributes?: Record<string, string | string[]>;
}

function settings(c: SsoConnector) {
  if (!c.saml) throw new Error(`connector ${c.name} is not a SAML connector`);
  return c.saml;
}

const sha256 = (s: string) => createHash('sha256').update(s).digest('base64url');
