import { execFile } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createGateway, type Gateway, type Identity } from '@gatehouse/core';
import { kube, kubeServerName, writeKubeconfigEntry } from '../src/index.js';
import { type FixtureApiServer, startFixtureApiServer } from './fixture-apiserver.js';

export interface KubeEnv {
  dir: string;
  gw: Gateway;
  port: number;
  fixture: FixtureApiServer;
  hostCaPem: string;
  /** Every audit event of `type` so far (all pages). */
  events(type: string): Promise<Record<string, unknown>[]>;
  /** Writes a kubeconfig with a fresh user certificate for `identity` and returns its path. */
  kubeconfigFor(identity: Omit<Identity, 'expires'> & { expires?: Date }, cluster?: string): Promise<string>;
  kubectl(
    kubeconfig: string,
    args: string[],
    opts?: { input?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number },
  ): Promise<KubectlResult>;
  close(): Promise<void>;
}

export interface KubectlResult {
  code: number;
  stdout: string;
  stderr: string;
}

export const ROLES = [
  `kind: role
name: kube-dev
allow:
  kube_labels: { env: '*' }
  kube_groups: [developers]
`,
  `kind: role
name: kube-view
allow:
  kube_labels: { env: '*' }
  kube_groups: [viewers]
`,
  `kind: role
name: kube-edit
allow:
  kube_labels: { env: '*' }
  kube_groups: [editors]
`,
  `kind: role
name: kube-nogroups
allow:
  kube_labels: { env: '*' }
`,
  `kind: role
name: kube-staging
allow:
  kube_labels: { env: staging }
  kube_groups: [developers]
`,
];

export async function startKubeEnv(): Promise<KubeEnv> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'gh-kube-'));
  const fixture = await startFixtureApiServer({ dir });
  const gw = await createGateway({
    dataDir: path.join(dir, 'data'),
    secondFactor: 'off',
    env: {},
    clusterName: 'acme',
  });
  gw.use(kube());
  const { port } = await gw.listen({ host: '127.0.0.1', port: 0 });
  for (const r of ROLES) await gw.admin.putRole(r);
  await gw.admin.addKubeCluster({ name: 'prod', kubeconfig: fixture.kubeconfig, labels: { env: 'prod' } });
  const hostCaPem = gw.authorities
    .get('host')
    .map((k) => k.x509CertPem)
    .join('\n');
  let n = 0;
  const env: KubeEnv = {
    dir,
    gw,
    port,
    fixture,
    hostCaPem,
    async kubeconfigFor(identity, cluster = 'prod') {
      const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
      const now = gw.clock.now();
      const expires = identity.expires ?? new Date(now.getTime() + 3600_000);
      const issued = await gw.authorities.issueX509UserCert({
        publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
        identity: { ...identity, expires },
        notBefore: new Date(now.getTime() - 60_000),
        notAfter: expires,
      });
      n++;
      const certFile = path.join(dir, `user-${n}.crt`);
      const keyFile = path.join(dir, `user-${n}.key`);
      await writeFile(certFile, issued.cert, { mode: 0o600 });
      await writeFile(keyFile, privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), {
        mode: 0o600,
      });
      const file = path.join(dir, `kubeconfig-${n}`);
      await writeFile(
        file,
        writeKubeconfigEntry(undefined, {
          name: `acme-${cluster}`,
          server: `https://127.0.0.1:${port}`,
          tlsServerName: kubeServerName(cluster, 'acme'),
          caPem: hostCaPem,
          user: { clientCertificate: certFile, clientKey: keyFile },
        }),
        { mode: 0o600 },
      );
      return file;
    },
    async events(type) {
      const out: Record<string, unknown>[] = [];
      let cursor: string | undefined;
      do {
        const page = await gw.audit.search({ types: [type], limit: 500, ...(cursor ? { cursor } : {}) });
        out.push(...(page.events as unknown as Record<string, unknown>[]));
        cursor = page.next_cursor;
      } while (cursor);
      return out;
    },
    kubectl(kubeconfig, args, o = {}) {
      return runKubectl(['--kubeconfig', kubeconfig, '--cache-dir', path.join(dir, 'kcache'), ...args], o);
    },
    async close() {
      await gw.close();
      await fixture.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
  return env;
}

export function runKubectl(
  args: string[],
  o: { input?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): Promise<KubectlResult> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      '/usr/bin/kubectl',
      args,
      { timeout: o.timeoutMs ?? 60_000, env: { PATH: process.env.PATH, HOME: os.tmpdir(), ...o.env } },
      (err, stdout, stderr) => {
        if (err && typeof err.code !== 'number') return reject(err);
        resolve({ code: err ? (err.code as number) : 0, stdout, stderr });
      },
    );
    if (o.input !== undefined) child.stdin?.end(o.input);
    else child.stdin?.end();
  });
}

/**
 * kubectl 1.20, unpacked from Debian's kubernetes-client package by scripts/peers.mjs (it
 * conflicts with the kubectl package that owns /usr/bin/kubectl). Missing: run that script.
 */
export const KUBECTL_1_20 = '/opt/gatehouse-peers/kubernetes-client/usr/bin/kubectl';
