import { parse, stringify } from 'yaml';

/** One kubeconfig context pointing kubectl at a Gatehouse proxy. */
export interface KubeconfigEntry {
  /** Name of the context, cluster and user entries (e.g. gatehouse-prod). */
  name: string;
  /** https://host:port of the Gatehouse proxy. */
  server: string;
  /** kube.<cluster>.<gatehouse cluster name>: routes the connection and is in the proxy's certificate. */
  tlsServerName: string;
  /** PEM of the host CA(s) that sign the proxy's certificate. */
  caPem: string;
  /** Credentials: an exec plugin that prints the current certificate, or cert files (--static). */
  user:
    | { exec: { command: string; args: string[]; env?: { name: string; value: string }[] } }
    | { clientCertificate: string; clientKey: string };
  namespace?: string | undefined;
}

interface Named<T> {
  name: string;
  [k: string]: unknown;
  __t?: T;
}

/**
 * Adds or replaces one context (and its cluster and user entries) in a
 * kubeconfig, keeping everything else. Pure: text in, text out.
 */
export function writeKubeconfigEntry(
  existing: string | undefined,
  e: KubeconfigEntry,
  opts: { setCurrent?: boolean } = {},
): string {
  const doc = ((existing?.trim() ? parse(existing) : undefined) ?? {}) as Record<string, unknown>;
  doc.apiVersion ??= 'v1';
  doc.kind ??= 'Config';
  const put = (key: string, entry: Named<unknown>) => {
    const list = (Array.isArray(doc[key]) ? doc[key] : []) as Named<unknown>[];
    doc[key] = [...list.filter((x) => x?.name !== entry.name), entry];
  };
  put('clusters', {
    name: e.name,
    cluster: {
      server: e.server,
      'tls-server-name': e.tlsServerName,
      'certificate-authority-data': Buffer.from(e.caPem).toString('base64'),
    },
  });
  const user =
    'exec' in e.user
      ? {
          exec: {
            apiVersion: 'client.authentication.k8s.io/v1',
            command: e.user.exec.command,
            args: e.user.exec.args,
            ...(e.user.exec.env?.length ? { env: e.user.exec.env } : {}),
            interactiveMode: 'Never',
            provideClusterInfo: false,
          },
        }
      : { 'client-certificate': e.user.clientCertificate, 'client-key': e.user.clientKey };
  put('users', { name: e.name, user });
  put('contexts', {
    name: e.name,
    context: { cluster: e.name, user: e.name, ...(e.namespace ? { namespace: e.namespace } : {}) },
  });
  if (opts.setCurrent ?? true) doc['current-context'] = e.name;
  return stringify(doc);
}

/** The client.authentication.k8s.io/v1 ExecCredential an exec plugin prints. */
export function execCredential(certPem: string, keyPem: string, expires: Date): string {
  return JSON.stringify({
    apiVersion: 'client.authentication.k8s.io/v1',
    kind: 'ExecCredential',
    status: {
      clientCertificateData: certPem,
      clientKeyData: keyPem,
      // kubectl runs the plugin again after this time (renewed by the next login).
      expirationTimestamp: expires.toISOString().replace(/\.\d{3}Z$/, 'Z'),
    },
  });
}
