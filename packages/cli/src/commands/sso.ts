import { readFile } from 'node:fs/promises';
import path from 'node:path';
import {
  GatehouseError,
  type LintMessage,
  lintConnector,
  type SsoConnectorView,
  type SsoTestReport,
} from '@gatehouse/core';
import type { Command } from 'commander';
import { type Ctx, withAdmin } from '../context.js';
import { json, table } from '../output.js';
import { listenForSsoCallback, openBrowser } from '../sso-callback.js';
import { examples, usage } from './usage.js';

function lintLines(file: string, messages: readonly LintMessage[]): string {
  return messages
    .map(
      (m) =>
        `${file}:${m.line}:${m.column}: ${m.severity === 'warning' ? 'warning: ' : ''}${m.key ? `${m.key}: ` : ''}${m.message}` +
        (m.suggestion ? ` (${m.suggestion})` : '') +
        '\n',
    )
    .join('');
}

async function readText(file: string, what: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    throw usage(`cannot read ${what} ${file}: ${(err as Error).message}`, 'check the path');
  }
}

function mappingText(c: SsoConnectorView): string {
  return c.claims_to_roles.map((m) => `${m.claim}=${m.value}->${m.roles.join('+')}`).join(', ');
}

export function registerSso(program: Command, ctx: Ctx): void {
  const sso = program
    .command('sso')
    .description('single sign-on connectors (OIDC, GitHub and SAML identity providers)');
  sso
    .command('add')
    .description(
      'create or replace a connector from a YAML file (client_secret_file is read here, stored sealed)',
    )
    .requiredOption('-f, --file <file>', 'the connector document (kind: oidc, github or saml)')
    .addHelpText(
      'after',
      examples(
        '  $ gatehouse sso add -f corp.yaml\n\n' +
          'corp.yaml:\n' +
          '  kind: oidc\n' +
          '  name: corp\n' +
          '  issuer_url: https://corp.okta.com\n' +
          '  client_id: 0oa1b2c3\n' +
          '  client_secret_file: corp.secret\n' +
          '  redirect_url: https://gatehouse.example.com:3080/v1/sso/oidc/callback\n' +
          '  claims_to_roles:\n' +
          '    - {claim: groups, value: ops, roles: [access]}\n\n' +
          'okta-saml.yaml:\n' +
          '  kind: saml\n' +
          '  name: okta-saml\n' +
          '  idp_metadata_url: https://corp.okta.com/app/exk1a2b3/sso/saml/metadata\n' +
          '  acs_url: https://gatehouse.example.com:3080/v1/sso/saml/acs\n' +
          '  attributes_to_roles:\n' +
          '    - {name: groups, value: ops, roles: [access]}',
      ),
    )
    .action(async function (this: Command, o: { file: string }) {
      const text = await readText(o.file, 'connector file');
      // Linted here first: the messages then name this file and its lines.
      const { doc, messages } = lintConnector(text);
      if (!doc) {
        ctx.err(lintLines(o.file, messages));
        throw new GatehouseError('GH_ERR_VALIDATION', `${o.file} is not a valid SSO connector`, {
          hint: 'fix the lines above and run the command again',
          details: { messages },
        });
      }
      let secret: string | undefined;
      let metadata: string | undefined;
      if (doc.kind === 'saml') {
        if (doc.idp_metadata_file !== undefined) {
          const f = path.resolve(path.dirname(o.file), doc.idp_metadata_file);
          metadata = await readText(f, 'IdP metadata file');
        }
      } else if (doc.client_secret_file !== undefined) {
        const f = path.resolve(path.dirname(o.file), doc.client_secret_file);
        secret = (await readText(f, 'client secret file')).split(/\r?\n/)[0] ?? '';
        if (!secret) throw usage(`the client secret file ${f} is empty`, 'put the secret on its first line');
      }
      const r = await withAdmin(this, ctx, (t) =>
        t.api.putSsoConnector({
          text,
          ...(secret !== undefined ? { client_secret: secret } : {}),
          ...(metadata !== undefined ? { idp_metadata: metadata } : {}),
        }),
      );
      const register =
        r.connector.kind === 'saml'
          ? `Give the identity provider this SP metadata URL: ${r.connector.sp_metadata_url}\n` +
            `  (entity id ${r.connector.client_id}, ACS URL ${r.connector.redirect_url}, HTTP-POST)\n`
          : `Register this redirect URL at the provider: ${r.connector.redirect_url}\n`;
      ctx.out(
        `SSO connector ${r.connector.name} ${r.created ? 'created' : 'updated'}.\n` +
          register +
          `Try it: gatehouse sso test ${r.connector.name}\n`,
      );
    });
  sso
    .command('ls')
    .description('list connectors (never their secrets)')
    .option('--json', 'JSON output')
    .action(async function (this: Command, o: { json?: boolean }) {
      const all = await withAdmin(this, ctx, (t) => t.api.listSsoConnectors());
      if (o.json) {
        ctx.out(json(all));
        return;
      }
      if (all.length === 0) {
        ctx.out('No SSO connectors. Add one with gatehouse sso add -f FILE.\n');
        return;
      }
      ctx.out(
        table(
          ['NAME', 'KIND', 'ISSUER', 'CLIENT ID', 'CLAIMS TO ROLES', 'SOURCE'],
          all.map((c) => [c.name, c.kind, c.issuer_url, c.client_id, mappingText(c), c.source]),
        ),
      );
    });
  sso
    .command('rm')
    .description('remove a connector added with sso add (its users stay until removed)')
    .argument('<name>')
    .action(async function (this: Command, name: string) {
      await withAdmin(this, ctx, (t) => t.api.removeSsoConnector(name));
      ctx.out(`SSO connector ${name} removed.\n`);
    });
  sso
    .command('test')
    .description(
      'log in at the provider in the browser and print the claims and the roles they map to (logs in nobody)',
    )
    .argument('<name>')
    .option('--browser <command>', 'the command that opens the login URL, or "none" to only print it')
    .option('--json', 'JSON output')
    .action(async function (this: Command, name: string, o: { browser?: string; json?: boolean }) {
      const report = await withAdmin(this, ctx, async (t): Promise<SsoTestReport> => {
        const cb = await listenForSsoCallback();
        try {
          const start = await t.api.testSsoConnector(name, {
            redirect_url: cb.redirectUrl,
            client_challenge: cb.challenge,
          });
          openBrowser(start.auth_url, o.browser, ctx.err);
          const code = await cb.code;
          const req = { code, verifier: cb.verifier };
          const out = t.kind === 'remote' ? await t.api.ssoRedeem(req) : await t.gateway.sso.redeem(req, {});
          if (out.kind !== 'test') {
            throw new GatehouseError('GH_ERR_INTERNAL', 'the gateway answered a test with a login', {
              hint: 'run the test again',
            });
          }
          return out.report;
        } finally {
          cb.close();
        }
      });
      if (o.json) {
        ctx.out(json(report));
        if (report.error) process.exitCode = 1;
        return;
      }
      ctx.out(
        `Connector ${report.connector}: login at the provider succeeded.\n\nClaims:\n` +
          Object.entries(report.claims)
            .map(([k, v]) => `  ${k}: ${JSON.stringify(v)}\n`)
            .join('') +
          `\nUser:    ${report.user ?? '-'}\n` +
          `Roles:   ${report.roles.join(', ') || '-'}\n` +
          (report.missing_roles.length
            ? `Missing: ${report.missing_roles.join(', ')} (mapped, but no such role)\n`
            : '') +
          `Traits:  {{external.<claim>}} in roles expands to the claims above\n`,
      );
      if (report.error) {
        ctx.err(`\nA login with these claims would be refused: ${report.error.message}\n`);
        process.exitCode = 1;
      }
    });
}
