import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createGateway, type GatehouseError, loadConfig, type SsoConnectorDoc } from '../src/index.js';
import { startGateway, type TestGateway } from './helpers.js';

const DOC = (name: string) =>
  [
    'kind: oidc',
    `name: ${name}`,
    'issuer_url: https://idp.example.com',
    'client_id: gh',
    'redirect_url: https://gh.example.com:3080/v1/sso/oidc/callback',
    'claims_to_roles: [{claim: groups, value: ops, roles: [access]}]',
  ].join('\n');

async function rejection(p: Promise<unknown>): Promise<GatehouseError> {
  try {
    await p;
  } catch (e) {
    return e as GatehouseError;
  }
  throw new Error('expected a rejection');
}

describe('SSO connectors as resources', () => {
  let t: TestGateway;

  beforeAll(async () => {
    t = await startGateway({
      webDir: false,
      values: { sso_connectors: [{ ...DOC_OBJ('static'), client_secret: 'from-config' }] },
    });
  });
  afterAll(() => t?.close());

  it('lists config connectors next to added ones; a config one cannot be removed or replaced', async () => {
    await t.gw.admin.putSsoConnector({ text: DOC('dyn'), client_secret: 's3cret' });
    const all = await t.gw.admin.listSsoConnectors();
    expect(all.map((c) => [c.name, c.source, c.has_client_secret])).toEqual([
      ['dyn', 'dynamic', true],
      ['static', 'config', true],
    ]);
    expect(JSON.stringify(all)).not.toContain('s3cret');
    expect((await rejection(t.gw.admin.removeSsoConnector('static'))).message).toContain(
      'defined in the config',
    );
    expect((await rejection(t.gw.admin.putSsoConnector({ text: DOC('static') }))).code).toBe(
      'GH_ERR_ALREADY_EXISTS',
    );
  });

  it('refuses a bad document with every problem at its line and key', async () => {
    const text = `${DOC('x')}\nissuer_url: http://idp.example.com\n`.replace(
      'issuer_url: https://idp.example.com\n',
      '',
    );
    const bad = `${text}scope: [openid]\n`;
    const err = await rejection(t.gw.admin.putSsoConnector({ text: bad }));
    expect(err.code).toBe('GH_ERR_VALIDATION');
    const messages = (err.details as { messages: { line: number; key: string; message: string }[] }).messages;
    expect(messages).toEqual([
      expect.objectContaining({ line: 6, key: 'issuer_url', message: expect.stringContaining('https://') }),
      expect.objectContaining({
        line: 7,
        key: 'scope',
        message: 'unknown key "scope"',
        suggestion: 'did you mean "scopes"?',
      }),
    ]);
  });

  it('keeps the secret sealed, bound to its connector: copied under another name it does not open', async () => {
    await t.gw.admin.putSsoConnector({ text: DOC('a'), client_secret: 'secret-of-a' });
    await t.gw.admin.putSsoConnector({ text: DOC('b'), client_secret: 'secret-of-b' });
    const a = await t.gw.backend.get('sso_connectors/a');
    expect(a?.value).not.toContain('secret-of-a');
    expect((await t.gw.ssoConnectors.get('a'))?.clientSecret).toBe('secret-of-a');
    await t.gw.backend.put('sso_connectors/b', a!.value.replace('"name":"a"', '"name":"b"'));
    expect((await rejection(t.gw.ssoConnectors.get('b'))).message).toContain(
      'sealed secret could not be opened',
    );
  });

  it('needs an auth_connector rule: a user with only the access role may not list or add', async () => {
    await t.gw.admin.createUser({ name: 'bob', roles: ['access'] });
    const bob = t.gw.authorizedAdmin('bob');
    expect((await rejection(bob.listSsoConnectors())).code).toBe('GH_ERR_ACCESS_DENIED');
    expect((await rejection(bob.putSsoConnector({ text: DOC('bobs'), client_secret: 'x' }))).code).toBe(
      'GH_ERR_ACCESS_DENIED',
    );
    expect(await t.gw.ssoConnectors.get('bobs')).toBeUndefined();
  });

  it('the config file takes connectors, with the secret from client_secret_file and line numbers on errors', async () => {
    const secret = path.join(t.dir, 'corp.secret');
    await writeFile(secret, 'file-secret\n');
    const cfg = path.join(t.dir, 'gatehouse.yaml');
    await writeFile(
      cfg,
      `cluster_name: c\ndata_dir: ${path.join(t.dir, 'd2')}\nsso_connectors:\n  - ${DOC('corp')
        .split('\n')
        .join('\n    ')}\n    client_secret_file: ${secret}\n`,
    );
    const gw = await createGateway({
      config: await loadConfig({ file: cfg, env: {} }),
      env: {},
      webDir: false,
    });
    try {
      expect((await gw.ssoConnectors.get('corp'))?.clientSecret).toBe('file-secret');
    } finally {
      await gw.close();
    }
    await writeFile(cfg, `cluster_name: c\nsso_connectors:\n  - kind: oidc\n    nam: corp\n`);
    const err = await rejection(loadConfig({ file: cfg, env: {} }));
    expect(err.message).toContain(`${cfg}:4:5: sso_connectors.0.nam: unknown key "nam"`);
  });

  const SAML = (name: string, source: string) =>
    [
      'kind: saml',
      `name: ${name}`,
      source,
      'acs_url: https://gh.example.com:3080/v1/sso/saml/acs',
      'attributes_to_roles: [{name: groups, value: ops, roles: [access]}]',
    ].join('\n');
  const METADATA =
    '<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="https://idp.example.com"/>';

  it('a SAML connector needs exactly one metadata source; a metadata file is stored inline, the entity id defaults to the SP metadata URL', async () => {
    const none = await rejection(t.gw.admin.putSsoConnector({ text: SAML('s0', 'display: S') }));
    expect(none.message).toContain("idp_metadata_url: the IdP's metadata is missing");
    const two = await rejection(
      t.gw.admin.putSsoConnector({
        text: SAML('s0', 'idp_metadata_url: https://idp.example.com/md\nidp_metadata_file: md.xml'),
      }),
    );
    expect(two.message).toContain('given more than once');
    // The file is read by the caller (the CLI); a document naming one without its content is refused.
    const unread = await rejection(
      t.gw.admin.putSsoConnector({ text: SAML('s1', 'idp_metadata_file: md.xml') }),
    );
    expect(unread.message).toContain('idp_metadata_file is read by the CLI, which did not send it');
    const { connector } = await t.gw.admin.putSsoConnector({
      text: SAML('s1', 'idp_metadata_file: md.xml'),
      idp_metadata: METADATA,
    });
    expect(connector).toMatchObject({
      kind: 'saml',
      client_id: 'https://gh.example.com:3080/v1/sso/saml/s1/metadata',
      sp_metadata_url: 'https://gh.example.com:3080/v1/sso/saml/s1/metadata',
      redirect_url: 'https://gh.example.com:3080/v1/sso/saml/acs',
    });
    const stored = JSON.parse((await t.gw.backend.get('sso_connectors/s1'))!.value) as { doc: object };
    expect(stored.doc).toMatchObject({ idp_metadata: METADATA });
    expect(stored.doc).not.toHaveProperty('idp_metadata_file');
    expect((await t.gw.ssoConnectors.get('s1'))?.saml?.metadataXml).toBe(METADATA);
  });

  it('the config file takes a SAML connector with its metadata from idp_metadata_file', async () => {
    const md = path.join(t.dir, 'idp.xml');
    await writeFile(md, `${METADATA}\n`);
    const cfg = path.join(t.dir, 'gatehouse-saml.yaml');
    await writeFile(
      cfg,
      `cluster_name: c\ndata_dir: ${path.join(t.dir, 'd3')}\nsso_connectors:\n  - ${SAML(
        'corp-saml',
        `idp_metadata_file: ${md}`,
      )
        .split('\n')
        .join('\n    ')}\n`,
    );
    const gw = await createGateway({
      config: await loadConfig({ file: cfg, env: {} }),
      env: {},
      webDir: false,
    });
    try {
      expect((await gw.ssoConnectors.get('corp-saml'))?.saml?.metadataXml).toBe(`${METADATA}\n`);
    } finally {
      await gw.close();
    }
  });
});

function DOC_OBJ(name: string): Extract<SsoConnectorDoc, { kind: 'oidc' }> {
  return {
    kind: 'oidc',
    name,
    issuer_url: 'https://idp.example.com',
    client_id: 'gh',
    redirect_url: 'https://gh.example.com:3080/v1/sso/oidc/callback',
    claims_to_roles: [{ claim: 'groups', value: 'ops', roles: ['access'] }],
  } as const satisfies SsoConnectorDoc;
}
