import type { AuditEmitter } from '@gatehouse/audit';
import { parse } from 'yaml';
import { z } from 'zod';
import type { LintMessage } from '../api/types.js';
import type { Backend } from '../backend/types.js';
import type { Sealer } from '../crypto/seal.js';
import { GatehouseError, isGatehouseError } from '../errors.js';
import { parseDuration } from '../util/duration.js';
import { validateYaml } from '../util/yaml-validate.js';

const NAME_RE = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
const CLAIM_RE = /^[A-Za-z0-9_.:/-]{1,128}$/;
/** An IdP metadata document larger than this is refused (Entra's, with several certificates, is ~20 KB). */
export const MAX_METADATA_BYTES = 512 * 1024;

/** Loopback issuers may use plain HTTP (a provider on the gateway's own machine); all others need HTTPS. */
export function isLoopbackUrl(u: URL): boolean {
  const h = u.hostname.replace(/^\[|\]$/g, '');
  return h === 'localhost' || h === '::1' || /^127\.\d+\.\d+\.\d+$/.test(h);
}

/**
 * A CLI's loopback callback (`http://127.0.0.1:PORT/PATH`), where the browser
 * is sent back to (an SSO login's code, a security key's answer): only the
 * machine the browser runs on, never a host an attacker names.
 */
export function cliRedirectUrl(value: unknown): URL {
  let u: URL;
  try {
    u = new URL(String(value));
  } catch {
    u = new URL('invalid:');
  }
  if (u.protocol !== 'http:' || !isLoopbackUrl(u) || u.username || u.password) {
    throw new GatehouseError('GH_ERR_VALIDATION', 'redirect_url must be an http://127.0.0.1:PORT/ URL', {
      hint: 'the CLI listens on a loopback port for the browser to come back to',
    });
  }
  return u;
}

const httpsUrl = (what: string) =>
  z
    .string()
    .max(2048)
    .refine(
      (v) => {
        try {
          const u = new URL(v);
          return u.protocol === 'https:' || (u.protocol === 'http:' && isLoopbackUrl(u));
        } catch {
          return false;
        }
      },
      { message: `${what} must be an https:// URL (http:// only for localhost)` },
    );

/**
 * An OIDC connector document (YAML or JSON): what `gatehouse sso add -f`
 * reads and the config file's `sso_connectors:` holds. snake_case like roles.
 */
export const oidcConnectorSchema = z.strictObject({
  kind: z.literal('oidc'),
  /** Name users pick with `gatehouse login --auth NAME`. */
  name: z.string().regex(NAME_RE, 'use lowercase letters, digits and dashes (a DNS label)'),
  /** Label of the web UI's button ("Sign in with <display>"); default: the name. */
  display: z.string().min(1).max(64).optional(),
  /** The provider's issuer; its /.well-known/openid-configuration is read from here. */
  issuer_url: httpsUrl('issuer_url'),
  client_id: z.string().min(1).max(512),
  /** The client secret in clear: prefer client_secret_file. Sealed at rest either way. */
  client_secret: z.string().min(1).max(4096).optional(),
  /** A file holding the client secret (first line), read by the CLI or the config loader. */
  client_secret_file: z.string().min(1).max(4096).optional(),
  /** This gateway's callback as registered at the provider: https://HOST:PORT/v1/sso/oidc/callback. */
  redirect_url: httpsUrl('redirect_url'),
  /** Scopes to ask for; "openid" is always added. */
  scopes: z
    .array(z.string().regex(/^[\x21\x23-\x5b\x5d-\x7e]{1,128}$/, 'not a scope token'))
    .max(32)
    .optional(),
  /** The claim that names the user (default: email, then preferred_username, then sub). */
  username_claim: z.string().regex(CLAIM_RE, 'not a claim name').optional(),
  /** Caps the certificates an SSO login gets (the roles' max_session_ttl caps them too). */
  max_session_ttl: z
    .string()
    .max(32)
    .refine((v) => validDuration(v), { message: 'not a duration like 8h or 30m' })
    .optional(),
  /** A claim value -> roles. A login whose claims match no entry is refused. */
  claims_to_roles: z
    .array(
      z.strictObject({
        claim: z.string().regex(CLAIM_RE, 'not a claim name'),
        value: z.string().min(1).max(512),
        roles: z.array(z.string().min(1).max(128)).min(1).max(64),
      }),
    )
    .min(1, 'map at least one claim value to roles, or nobody can log in')
    .max(256),
});

const GH_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$/;

/**
 * A GitHub connector document (an OAuth app; GitHub speaks OAuth 2.0, not
 * OIDC): organization/team membership -> roles. GitHub Enterprise Server:
 * endpoint_url https://HOST and api_url https://HOST/api/v3.
 */
export const githubConnectorSchema = z.strictObject({
  kind: z.literal('github'),
  name: oidcConnectorSchema.shape.name,
  display: oidcConnectorSchema.shape.display,
  client_id: oidcConnectorSchema.shape.client_id,
  client_secret: oidcConnectorSchema.shape.client_secret,
  client_secret_file: oidcConnectorSchema.shape.client_secret_file,
  /** This gateway's callback as registered on the OAuth app: https://HOST:PORT/v1/sso/github/callback. */
  redirect_url: httpsUrl('redirect_url'),
  /** Where users authorize the app and codes are exchanged (default https://github.com). */
  endpoint_url: httpsUrl('endpoint_url').optional(),
  /** The REST API (default https://api.github.com). */
  api_url: httpsUrl('api_url').optional(),
  max_session_ttl: oidcConnectorSchema.shape.max_session_ttl,
  /** Membership of a team of an organization -> roles. A login in no listed team is refused. */
  teams_to_roles: z
    .array(
      z.strictObject({
        organization: z.string().regex(GH_NAME_RE, 'not a GitHub organization name'),
        team: z.string().regex(GH_NAME_RE, 'not a team slug'),
        roles: z.array(z.string().min(1).max(128)).min(1).max(64),
      }),
    )
    .min(1, 'map at least one team to roles, or nobody can log in')
    .max(256),
});

/**
 * A SAML 2.0 connector document: the IdP's metadata (a URL or a file), this
 * gateway's Assertion Consumer Service URL, and attribute values -> roles.
 * Assertions (or the whole response) must be signed by the metadata's key.
 */
export const samlConnectorSchema = z.strictObject({
  kind: z.literal('saml'),
  name: oidcConnectorSchema.shape.name,
  display: oidcConnectorSchema.shape.display,
  /** The IdP's metadata document (EntityDescriptor), read by the gateway; re-read every 5 minutes. */
  idp_metadata_url: httpsUrl('idp_metadata_url').optional(),
  /** A file holding the IdP's metadata, read by the CLI (`sso add -f`) or the config loader. */
  idp_metadata_file: z.string().min(1).max(4096).optional(),
  /** The IdP's metadata XML itself (what the CLI sends after reading idp_metadata_file). */
  idp_metadata: z.string().min(1).max(MAX_METADATA_BYTES).optional(),
  /** This gateway's Assertion Consumer Service as registered at the IdP: https://HOST:PORT/v1/sso/saml/acs. */
  acs_url: httpsUrl('acs_url'),
  /** This gateway's SP entity id (the audience the IdP must name); default: the metadata URL, https://HOST:PORT/v1/sso/saml/NAME/metadata. */
  entity_id: z.string().min(1).max(1024).optional(),
  /** The attribute that names the user (default: email, then the NameID). */
  username_attribute: z.string().regex(CLAIM_RE, 'not an attribute name').optional(),
  max_session_ttl: oidcConnectorSchema.shape.max_session_ttl,
  /** An attribute value -> roles. A login whose attributes match no entry is refused. */
  attributes_to_roles: z
    .array(
      z.strictObject({
        name: z.string().regex(CLAIM_RE, 'not an attribute name'),
        value: z.string().min(1).max(512),
        roles: z.array(z.string().min(1).max(128)).min(1).max(64),
      }),
    )
    .min(1, 'map at least one attribute value to roles, or nobody can log in')
    .max(256),
});

/** Any kind, by `kind`. */
export const ssoConnectorSchema = z.discriminatedUnion('kind', [
  oidcConnectorSchema,
  githubConnectorSchema,
  samlConnectorSchema,
]);

export type SsoConnectorDoc = z.output<typeof ssoConnectorSchema>;

function validDuration(v: string): boolean {
  try {
    return parseDuration(v) > 0;
  } catch {
    return false;
  }
}

export type SsoKind = SsoConnectorDoc['kind'];

/** What a SAML connector needs beyond the common fields. */
export interface SamlSettings {
  /** Where the IdP's metadata is read from (or undefined when it is inline). */
  metadataUrl?: string | undefined;
  metadataXml?: string | undefined;
  /** This gateway's SP entity id (the audience). */
  entityId: string;
}

/** A connector as core uses it (the secret in clear, in memory only). */
export interface SsoConnector {
  kind: SsoKind;
  name: string;
  display: string;
  /** OIDC: the issuer. GitHub: where users authorize the app (https://github.com). */
  issuerUrl: string;
  /** GitHub: the REST API. */
  apiUrl?: string | undefined;
  clientId: string;
  clientSecret?: string | undefined;
  redirectUrl: string;
  scopes: string[];
  usernameClaim?: string | undefined;
  maxSessionTtlMs?: number | undefined;
  claimsToRoles: { claim: string; value: string; roles: string[] }[];
  /** kind saml only. */
  saml?: SamlSettings | undefined;
  source: 'config' | 'dynamic';
}

/** A connector as listed: never its secret. */
export interface SsoConnectorView {
  kind: SsoKind;
  name: string;
  display: string;
  issuer_url: string;
  client_id: string;
  has_client_secret: boolean;
  redirect_url: string;
  scopes: string[];
  username_claim?: string | undefined;
  max_session_ttl?: string | undefined;
  claims_to_roles: { claim: string; value: string; roles: string[] }[];
  /** kind saml: the SP metadata URL to give the IdP (entity id and ACS URL in it). */
  sp_metadata_url?: string | undefined;
  source: 'config' | 'dynamic';
}

/** What the login page needs to draw a button: no issuer, no client id. */
export interface SsoConnectorButton {
  name: string;
  display: string;
  kind: SsoKind;
}

/**
 * Lints a connector document: every problem with its line, column and key.
 * `clientSecret` (from a file the caller read) counts as the document's secret.
 */
export function lintConnector(
  text: string,
  opts: { clientSecret?: string | undefined } = {},
): { doc?: SsoConnectorDoc | undefined; messages: LintMessage[] } {
  // The schema of the document's kind (a union would lose the "did you mean" for misspelled keys).
  let kind: unknown;
  try {
    kind = (parse(text, { maxAliasCount: 100 }) as { kind?: unknown } | null)?.kind;
  } catch {
    kind = undefined; // validateYaml reports the syntax error with its line
  }
  const res = validateYaml(
    text,
    kind === 'github' ? githubConnectorSchema : kind === 'saml' ? samlConnectorSchema : oidcConnectorSchema,
  );
  if (!res.value) return { messages: res.messages };
  const doc = res.value as SsoConnectorDoc;
  if (doc.kind === 'saml') {
    const given = [doc.idp_metadata_url, doc.idp_metadata_file, doc.idp_metadata].filter(
      (v) => v !== undefined,
    );
    if (given.length !== 1) {
      return {
        messages: [
          {
            line: 1,
            column: 1,
            key: 'idp_metadata_url',
            message:
              given.length === 0
                ? "the IdP's metadata is missing"
                : "the IdP's metadata is given more than once (idp_metadata_url, idp_metadata_file, idp_metadata)",
            suggestion: 'give exactly one of idp_metadata_url and idp_metadata_file',
            severity: 'error',
          },
        ],
      };
    }
    return { doc, messages: res.messages };
  }
  if (doc.client_secret !== undefined && opts.clientSecret !== undefined) {
    return {
      messages: [
        {
          line: 1,
          column: 1,
          key: 'client_secret',
          message: 'the secret is given twice (client_secret and a secret file)',
          suggestion: 'keep client_secret_file and remove client_secret',
          severity: 'error',
        },
      ],
    };
  }
  return { doc, messages: res.messages };
}

/** The document as a connector; the secret file must already have been read into `clientSecret`. */
export function connectorFromDoc(
  doc: SsoConnectorDoc,
  source: SsoConnector['source'],
  clientSecret?: string | undefined,
): SsoConnector {
  if (doc.kind === 'saml') {
    const acs = new URL(doc.acs_url);
    const entityId = doc.entity_id ?? `${acs.origin}/v1/sso/saml/${doc.name}/metadata`;
    return {
      kind: 'saml',
      name: doc.name,
      display: doc.display ?? doc.name,
      issuerUrl: doc.idp_metadata_url ?? 'idp_metadata (inline)',
      clientId: entityId,
      redirectUrl: doc.acs_url,
      scopes: [],
      usernameClaim: doc.username_attribute,
      maxSessionTtlMs: doc.max_session_ttl ? parseDuration(doc.max_session_ttl) : undefined,
      claimsToRoles: doc.attributes_to_roles.map((m) => ({
        claim: m.name,
        value: m.value,
        roles: [...m.roles],
      })),
      saml: { metadataUrl: doc.idp_metadata_url, metadataXml: doc.idp_metadata, entityId },
      source,
    };
  }
  const common = {
    name: doc.name,
    display: doc.display ?? doc.name,
    clientId: doc.client_id,
    clientSecret: clientSecret ?? doc.client_secret,
    redirectUrl: doc.redirect_url,
    maxSessionTtlMs: doc.max_session_ttl ? parseDuration(doc.max_session_ttl) : undefined,
    source,
  };
  if (doc.kind === 'github') {
    return {
      ...common,
      kind: 'github',
      issuerUrl: (doc.endpoint_url ?? 'https://github.com').replace(/\/+$/, ''),
      apiUrl: (doc.api_url ?? 'https://api.github.com').replace(/\/+$/, ''),
      // read:org lists the teams of organizations that have not granted the app access too.
      scopes: ['read:org'],
      usernameClaim: 'login',
      claimsToRoles: doc.teams_to_roles.map((m) => ({
        claim: 'teams',
        value: `${m.organization}/${m.team}`,
        roles: [...m.roles],
      })),
    };
  }
  return {
    ...common,
    kind: 'oidc',
    issuerUrl: doc.issuer_url,
    scopes: [...new Set(['openid', ...(doc.scopes ?? ['email', 'profile'])])],
    usernameClaim: doc.username_claim,
    claimsToRoles: doc.claims_to_roles.map((m) => ({ ...m, roles: [...m.roles] })),
  };
}

export function connectorView(c: SsoConnector): SsoConnectorView {
  return {
    kind: c.kind,
    name: c.name,
    display: c.display,
    issuer_url: c.issuerUrl,
    client_id: c.clientId,
    has_client_secret: c.clientSecret !== undefined,
    redirect_url: c.redirectUrl,
    scopes: [...c.scopes],
    ...(c.usernameClaim ? { username_claim: c.usernameClaim } : {}),
    ...(c.maxSessionTtlMs ? { max_session_ttl: `${Math.round(c.maxSessionTtlMs / 1000)}s` } : {}),
    claims_to_roles: c.claimsToRoles.map((m) => ({ ...m, roles: [...m.roles] })),
    ...(c.kind === 'saml'
      ? { sp_metadata_url: `${new URL(c.redirectUrl).origin}/v1/sso/saml/${c.name}/metadata` }
      : {}),
    source: c.source,
  };
}

/** Stored at `sso_connectors/<name>`: the document without its secret, and the secret sealed. */
interface StoredConnector {
  /** A SAML document holds its metadata inline (idp_metadata), never a file name. */
  doc: Record<string, unknown>;
  /** Sealed with the record's key as AAD, so it does not open under another connector. */
  sealedClientSecret?: string | undefined;
}

const PREFIX = 'sso_connectors/';

export function connectorInvalid(messages: readonly LintMessage[]): GatehouseError {
  const errors = messages.filter((m) => m.severity === 'error');
  const shown = errors
    .slice(0, 3)
    .map((m) => `line ${m.line}:${m.column}${m.key ? ` ${m.key}` : ''}: ${m.message}`);
  const more = errors.length > 3 ? `; and ${errors.length - 3} more` : '';
  return new GatehouseError('GH_ERR_VALIDATION', `invalid SSO connector: ${shown.join('; ')}${more}`, {
    hint: 'fix the connector document and try again (the messages name each line and key)',
    details: { messages },
  });
}

/**
 * SSO connectors: static ones (config `sso_connectors:`, embedding options)
 * and dynamic ones in the backend (`gatehouse sso add`, the API), whose
 * client secret is sealed with the gateway's at-rest key like the other
 * stored secrets.
 */
export class SsoConnectorRegistry {
  readonly #backend: Backend;
  readonly #audit: AuditEmitter;
  readonly #sealer: Sealer;
  readonly #static = new Map<string, SsoConnector>();

  constructor(deps: { backend: Backend; audit: AuditEmitter; sealer: Sealer }) {
    this.#backend = deps.backend;
    this.#audit = deps.audit;
    this.#sealer = deps.sealer;
  }

  addStatic(c: SsoConnector): void {
    if (this.#static.has(c.name)) {
      throw new GatehouseError('GH_ERR_ALREADY_EXISTS', `SSO connector "${c.name}" is configured twice`, {
        hint: 'give each connector a unique name',
      });
    }
    this.#static.set(c.name, { ...c, source: 'config' });
  }

  async get(name: string): Promise<SsoConnector | undefined> {
    const s = this.#static.get(name);
    if (s) return s;
    if (!NAME_RE.test(name)) return undefined;
    const item = await this.#backend.get(PREFIX + name);
    return item ? this.#open(item.key, item.value) : undefined;
  }

  /** The connector or a not-found error that lists what exists. */
  async require(name: string): Promise<SsoConnector> {
    const c = await this.get(name);
    if (c) return c;
    throw new GatehouseError('GH_ERR_NOT_FOUND', `SSO connector "${name}" not found`, {
      hint: 'list connectors with `gatehouse sso ls`',
      details: { connector: name },
    });
  }

  async list(): Promise<SsoConnector[]> {
    const dynamic = (await this.#backend.range(PREFIX)).map((i) => this.#open(i.key, i.value));
    return [...this.#static.values(), ...dynamic.filter((d) => !this.#static.has(d.name))].sort((a, b) =>
      a.name.localeCompare(b.name),
    );
  }

  /** Creates or replaces a dynamic connector from its document (linted; line and key in every message). */
  async put(
    text: string,
    clientSecret: string | undefined,
    actor: string,
    idpMetadata?: string | undefined,
  ): Promise<{ connector: SsoConnector; created: boolean }> {
    const linted = lintConnector(text, { clientSecret });
    const messages = linted.messages;
    let doc = linted.doc;
    if (!doc || messages.some((m) => m.severity === 'error')) throw connectorInvalid(messages);
    if (doc.kind === 'saml') {
      if (doc.idp_metadata_file !== undefined) {
        if (idpMetadata === undefined) {
          throw new GatehouseError(
            'GH_ERR_VALIDATION',
            `connector "${doc.name}": idp_metadata_file is read by the CLI, which did not send it`,
            {
              hint: 'add the connector with `gatehouse sso add -f FILE` (it reads the metadata file next to FILE)',
            },
          );
        }
        const { idp_metadata_file: _m, ...inline } = doc;
        doc = samlConnectorSchema.parse({ ...inline, idp_metadata: idpMetadata });
      }
      return this.#store(doc, undefined, actor);
    }
    if (doc.client_secret_file !== undefined && clientSecret === undefined) {
      throw new GatehouseError(
        'GH_ERR_VALIDATION',
        `connector "${doc.name}": client_secret_file is read by the CLI, which did not send it`,
        {
          hint: 'add the connector with `gatehouse sso add -f FILE` (it reads the secret file next to FILE)',
        },
      );
    }
    const secret = clientSecret ?? doc.client_secret;
    const { client_secret: _s, client_secret_file: _f, ...rest } = doc;
    return this.#store(rest, secret, actor);
  }

  async #store(
    doc: Record<string, unknown> & { name: string; kind: SsoKind },
    secret: string | undefined,
    actor: string,
  ): Promise<{ connector: SsoConnector; created: boolean }> {
    if (this.#static.has(doc.name)) {
      throw new GatehouseError(
        'GH_ERR_ALREADY_EXISTS',
        `SSO connector "${doc.name}" is defined in the config`,
        {
          hint: 'change it in the config file, or pick another name',
        },
      );
    }
    const key = PREFIX + doc.name;
    const stored: StoredConnector = {
      doc,
      ...(secret !== undefined ? { sealedClientSecret: this.#sealer.seal(secret, key) } : {}),
    };
    const created = (await this.#backend.get(key)) === undefined;
    await this.#backend.put(key, JSON.stringify(stored));
    await this.#audit.emit({ type: 'sso.connector.create', user: actor, name: doc.name, kind: doc.kind });
    return { connector: connectorFromDoc(ssoConnectorSchema.parse(doc), 'dynamic', secret), created };
  }

  async remove(name: string, actor: string): Promise<void> {
    if (this.#static.has(name)) {
      throw new GatehouseError('GH_ERR_VALIDATION', `SSO connector "${name}" is defined in the config`, {
        hint: 'remove it from the config file and restart the gateway',
      });
    }
    if (!NAME_RE.test(name) || !(await this.#backend.delete(PREFIX + name))) {
      throw new GatehouseError('GH_ERR_NOT_FOUND', `SSO connector "${name}" not found`, {
        hint: 'list connectors with `gatehouse sso ls`',
      });
    }
    await this.#audit.emit({ type: 'sso.connector.delete', user: actor, name });
  }

  #open(key: string, value: string): SsoConnector {
    try {
      const s = JSON.parse(value) as StoredConnector;
      const doc = ssoConnectorSchema.parse(s.doc);
      const secret = s.sealedClientSecret ? this.#sealer.open(s.sealedClientSecret, key) : undefined;
      return connectorFromDoc(doc, 'dynamic', secret);
    } catch (e) {
      if (isGatehouseError(e)) throw e;
      throw new GatehouseError('GH_ERR_INTERNAL', `stored SSO connector ${key} is unreadable`, {
        hint: `remove it with gatehouse sso rm ${key.slice(PREFIX.length)} and add it again`,
        cause: e,
      });
    }
  }
}
