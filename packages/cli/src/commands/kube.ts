import { spawn } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import {
  execCredential,
  execCredentialVersion,
  kubeServerName,
  writeKubeconfigEntry,
} from '@gatehouse/adapter-k8s';
import { type AddKubeClusterRequest, GatehouseError, type KubeClusterView } from '@gatehouse/core';
import type { Command } from 'commander';
import { parseTraits } from '../args.js';
import { type Ctx, profileClient, withAdmin } from '../context.js';
import { json, table } from '../output.js';
import type { ProfileEntry } from '../profile.js';
import {
  BROWSER_HELP,
  MFA_CODE_HELP,
  MFA_MODE_HELP,
  mfaSource,
  sessionMfaCerts,
  tlsPublicKeyPem,
} from '../session-mfa.js';
import { asUsage, examples, usage } from './usage.js';

function profileFor(ctx: Ctx, proxy: string | undefined): ProfileEntry {
  const profiles = ctx.home.readProfiles();
  const p = proxy ? profiles.profiles[proxy] : ctx.home.current();
  if (!p) {
    throw new GatehouseError(
      'GH_ERR_UNAUTHENTICATED',
      proxy ? `not logged in to ${proxy}` : 'not logged in',
      {
        hint: `log in first: gatehouse login --proxy ${proxy ?? 'HOST:PORT'} --user NAME`,
      },
    );
  }
  return p;
}

/** The kubeconfig kubectl reads: --kubeconfig, the first $KUBECONFIG entry, or ~/.kube/config. */
function kubeconfigPath(ctx: Ctx, flag: string | undefined): string {
  if (flag) return flag;
  const first = ctx.env.KUBECONFIG?.split(delimiter).find(Boolean);
  return first ?? join(ctx.env.HOME || homedir(), '.kube', 'config');
}

function readIfExists(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
}

export function registerKube(program: Command, ctx: Ctx): void {
  const kube = program
    .command('kube')
    .description('Kubernetes clusters: register them (admins), log in with kubectl (users)');

  kube
    .command('ls')
    .description('list the Kubernetes clusters you can reach (all of them for admins)')
    .option('--json', 'print JSON')
    .addHelpText('after', examples('  $ gatehouse kube ls'))
    .action(async (o: { json?: boolean }, cmd: Command) => {
      await withAdmin(cmd, ctx, async (t) => {
        const list: KubeClusterView[] = await t.api.listKubeClusters();
        if (o.json) return ctx.out(json(list));
        ctx.out(
          table(
            ['NAME', 'LABELS', 'KUBE USERS', 'KUBE GROUPS'],
            list.map((k) => [
              k.name,
              Object.entries(k.labels)
                .map(([a, b]) => `${a}=${b}`)
                .join(','),
              k.allowed?.kube_users.join(',') ?? '',
              k.allowed?.kube_groups.join(',') ?? '',
            ]),
          ),
        );
      });
    });

  kube
    .command('add')
    .description("register a cluster with Gatehouse's own credentials for it (a kubeconfig, stored sealed)")
    .argument('<name>', 'name users log in to (a DNS label)')
    .option(
      '--kubeconfig <file>',
      'kubeconfig with the credentials Gatehouse uses upstream (its content is sent)',
    )
    .option('--context <name>', 'context in that kubeconfig (default: its current-context)')
    .option('--in-cluster', "use the gateway pod's service account (Gatehouse runs inside this cluster)")
    .option('--label <k=v...>', 'labels roles match on (repeatable)')
    .option('--description <text>')
    .addHelpText(
      'after',
      examples(
        '  $ gatehouse kube add prod --kubeconfig ./gatehouse-sa.kubeconfig --context prod --label env=prod',
      ),
    )
    .action(
      async (
        name: string,
        o: {
          kubeconfig?: string;
          context?: string;
          inCluster?: boolean;
          label?: string[];
          description?: string;
        },
        cmd: Command,
      ) => {
        if (!o.kubeconfig && !o.inCluster)
          throw usage('no upstream credentials given', 'pass --kubeconfig FILE or --in-cluster');
        if (o.kubeconfig && o.inCluster)
          throw usage('--kubeconfig and --in-cluster exclude each other', 'pick one');
        const labels = Object.fromEntries(
          Object.entries(asUsage(() => parseTraits(o.label))).map(([k, v]) => [k, v.join(',')]),
        );
        let text: string | undefined;
        if (o.kubeconfig) {
          try {
            text = readFileSync(o.kubeconfig, 'utf8');
          } catch (cause) {
            throw new GatehouseError('GH_ERR_VALIDATION', `cannot read --kubeconfig ${o.kubeconfig}`, {
              hint: 'check the path',
              cause,
            });
          }
        }
        const req: AddKubeClusterRequest = {
          name,
          labels,
          ...(text !== undefined ? { kubeconfig: text } : {}),
          ...(o.context ? { context: o.context } : {}),
          ...(o.inCluster ? { in_cluster: true } : {}),
          ...(o.description ? { description: o.description } : {}),
        };
        await withAdmin(cmd, ctx, async (t) => {
          const k = await t.api.addKubeCluster(req);
          ctx.out(`Kubernetes cluster ${k.name} registered.\n`);
        });
      },
    );

  kube
    .command('rm')
    .description('unregister a cluster')
    .argument('<name>')
    .action(async (name: string, _o: unknown, cmd: Command) => {
      await withAdmin(cmd, ctx, async (t) => {
        await t.api.removeKubeCluster(name);
        ctx.out(`Kubernetes cluster ${name} removed.\n`);
      });
    });

  kube
    .command('login')
    .description('add a kubectl context for a cluster (credentials from `gatehouse kube credentials`)')
    .argument('<name>', 'the cluster (see gatehouse kube ls)')
    .option('--kubeconfig <file>', 'kubeconfig to write (default: $KUBECONFIG or ~/.kube/config)')
    .option(
      '--static',
      'point kubectl at the certificate files of the current login instead of the exec plugin',
    )
    .option('--namespace <ns>', 'default namespace of the context')
    .option('--no-switch', 'add the context without making it current')
    .addHelpText(
      'after',
      examples(
        '  $ gatehouse kube login prod && kubectl get pods\n  $ gatehouse kube login prod --kubeconfig ./kc --static',
      ),
    )
    .action(
      async (
        name: string,
        o: { kubeconfig?: string; static?: boolean; namespace?: string; switch?: boolean },
      ) => {
        const p = profileFor(ctx, undefined);
        const api = profileClient(ctx, p);
        try {
          const visible = await api.listKubeClusters();
          if (!visible.some((k) => k.name === name)) {
            throw new GatehouseError(
              'GH_ERR_NOT_FOUND',
              `Kubernetes cluster "${name}" is not one you can reach`,
              {
                hint: 'list the clusters you can reach with gatehouse kube ls',
              },
            );
          }
        } finally {
          api.close();
        }
        const keys = ctx.home.readKeys(p);
        const paths = ctx.home.keyPaths(p.proxy, p.user);
        const file = kubeconfigPath(ctx, o.kubeconfig);
        const entryName = `${p.cluster}-${name}`;
        const bin = process.argv[1];
        if (!bin)
          throw new GatehouseError('GH_ERR_INTERNAL', 'cannot tell where the gatehouse command lives');
        const env = ctx.env.GATEHOUSE_HOME ? [{ name: 'GATEHOUSE_HOME', value: ctx.env.GATEHOUSE_HOME }] : [];
        const text = writeKubeconfigEntry(
          readIfExists(file),
          {
            name: entryName,
            server: `https://${p.proxy}`,
            tlsServerName: kubeServerName(name, p.cluster),
            caPem: keys.cas,
            user: o.static
              ? { clientCertificate: paths.tlsCert, clientKey: paths.tlsKey }
              : {
                  exec: {
                    command: process.execPath,
                    args: [bin, 'kube', 'credentials', '--proxy', p.proxy, '--cluster', name],
                    env,
                  },
                },
            namespace: o.namespace,
          },
          { setCurrent: o.switch !== false },
        );
        mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
        const tmp = `${file}.tmp-${process.pid}`;
        writeFileSync(tmp, text, { mode: 0o600 });
        renameSync(tmp, file);
        ctx.out(
          `Context ${entryName} written to ${file}${o.switch !== false ? ' (now current)' : ''}. Try: kubectl get pods\n`,
        );
      },
    );

  kube
    .command('credentials')
    .description('print an ExecCredential for kubectl (the exec plugin `gatehouse kube login` configures)')
    .option('--proxy <host:port>', 'the proxy (default: the current profile)')
    .requiredOption('--cluster <name>', 'the Kubernetes cluster')
    .option(
      '--mfa-code <code>',
      `${MFA_CODE_HELP}; kubectl runs this plugin without a terminal: set GATEHOUSE_MFA_CODE or use gatehouse kubectl`,
    )
    .option('--mfa-mode <mode>', MFA_MODE_HELP)
    .option('--browser <command>', BROWSER_HELP)
    .action(
      async (o: {
        proxy?: string;
        cluster: string;
        mfaCode?: string;
        mfaMode?: string;
        browser?: string;
      }) => {
        // kubectl says which ExecCredential version it reads (the kubeconfig's exec.apiVersion).
        const apiVersion = execCredentialVersion(ctx.env.KUBERNETES_EXEC_INFO);
        const p = profileFor(ctx, o.proxy);
        const keys = ctx.home.readKeys(p);
        const cert = new X509Certificate(keys.tlsCert);
        const expires = new Date(cert.validTo);
        if (expires.getTime() <= ctx.now().getTime()) {
          throw new GatehouseError(
            'GH_ERR_CERT_EXPIRED',
            `your Gatehouse certificate expired at ${expires.toISOString()}`,
            {
              hint: `log in again: gatehouse login --proxy ${p.proxy}`,
            },
          );
        }
        // Roles with require_session_mfa: a one-minute certificate for this cluster after a fresh
        // check. kubectl keeps it until its expirationTimestamp and runs this plugin again after.
        const mfa = await sessionMfaCerts(
          ctx.home,
          p,
          { kind: 'kube', cluster: o.cluster },
          { tls_public_key: tlsPublicKeyPem(ctx.home, p) },
          mfaSource(o, ctx.env),
          `Kubernetes cluster ${o.cluster}`,
        );
        ctx.out(
          `${mfa?.tls_cert ? execCredential(mfa.tls_cert, keys.tlsKey, new Date(mfa.expires), apiVersion) : execCredential(keys.tlsCert, keys.tlsKey, expires, apiVersion)}\n`,
        );
      },
    );

  program
    .command('kubectl')
    .description(
      'run kubectl on a cluster from gatehouse kube login, asking for the per-session MFA code first when your roles require it',
    )
    .requiredOption(
      '--cluster <name>',
      'the Kubernetes cluster (its context from gatehouse kube login is used)',
    )
    .option('--mfa-code <code>', MFA_CODE_HELP)
    .option('--mfa-mode <mode>', MFA_MODE_HELP)
    .option('--browser <command>', BROWSER_HELP)
    .argument('[args...]', 'kubectl arguments (after --)')
    .addHelpText(
      'after',
      examples(
        '  $ gatehouse kubectl --cluster prod -- get pods\n  $ gatehouse kubectl --cluster prod --mfa-code 123456 -- exec web-1 -- uptime',
      ),
    )
    .action(
      async (
        args: string[],
        o: { cluster: string; mfaCode?: string; mfaMode?: string; browser?: string },
      ) => {
        const p = profileFor(ctx, undefined);
        const src = mfaSource(o, ctx.env);
        let code = src.mfaCode;
        // What the plugin inherits: a security key's page is opened (or printed) by the plugin
        // itself, whose stderr kubectl passes through; a code is asked for here.
        const pass: Record<string, string> = {};
        if (src.browser !== undefined) pass.GATEHOUSE_BROWSER = src.browser;
        if (code === undefined || code === '-') {
          // kubectl runs the credentials plugin without a terminal: when a check is needed,
          // the code is asked for here and handed to the plugin in its environment.
          const api = profileClient(ctx, p);
          try {
            const ch = await api.sessionMfaChallenge({ target: { kind: 'kube', cluster: o.cluster } });
            if (ch.required) {
              const { chooseMfaMethod, parseMfaMode } = await import('../browser-mfa.js');
              const has = {
                totp: ch.methods?.some((m) => m.method === 'totp') ?? false,
                webauthn: ch.methods?.some((m) => m.method === 'webauthn') ?? false,
              };
              const describe = `Kubernetes cluster ${o.cluster}`;
              const mode = code === '-' && src.mfaMode === undefined ? 'totp' : parseMfaMode(src.mfaMode);
              if ((await chooseMfaMethod(mode, has, describe)) === 'webauthn') {
                pass.GATEHOUSE_MFA_MODE = 'webauthn';
                code = undefined;
              } else {
                const { ask, readSecretFromStdin } = await import('../prompt.js');
                code =
                  code === '-'
                    ? await readSecretFromStdin('authenticator code')
                    : await ask(`Authenticator code for ${describe}: `, {
                        hidden: false,
                        what: 'authenticator code',
                        flag: '--mfa-code CODE',
                      });
              }
            } else code = undefined;
          } finally {
            api.close();
          }
        }
        const env = { ...ctx.env, ...pass, ...(code ? { GATEHOUSE_MFA_CODE: code.trim() } : {}) };
        ctx.exitCode = await new Promise<number>((resolve, reject) => {
          const child = spawn('kubectl', ['--context', `${p.cluster}-${o.cluster}`, ...args], {
            stdio: 'inherit',
            env,
          });
          child.on('error', (err) =>
            reject(
              new GatehouseError('GH_ERR_NOT_FOUND', `cannot run kubectl: ${err.message}`, {
                hint: 'install kubectl (https://kubernetes.io/docs/tasks/tools/)',
                cause: err,
              }),
            ),
          );
          child.on('close', (status) => resolve(status ?? 1));
        });
      },
    );
}
