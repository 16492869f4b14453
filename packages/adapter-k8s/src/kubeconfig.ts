import { GatehouseError } from '@gatehouse/core';
import { parse, stringify } from 'yaml';

/**
 * The ExecCredential version `gatehouse kube login` writes into a kubeconfig.
 * v1beta1, not v1: kubectl reads v1beta1 since 1.11 and still does, while
 * kubectl before 1.22 refuses v1 ("exec plugin: invalid apiVersion"). The
 * kubeconfig outlives the kubectl that was installed when it was written
 * (and is read by other clients), so it names the version every one reads.
 */
export const EXEC_API_VERSION = 'client.authentication.k8s.io/v1beta1';

/** ExecCredential versions whose `status` carries a client certificate the way execCredential writes it. */
const EXEC_API_VERSIONS = new Set([EXEC_API_VERSION, 'client.authentication.k8s.io/v1']);

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
            apiVersion: EXEC_API_VERSION,
            command: e.user.exec.command,
            args: e.user.exec.args,
            ...(e.user.exec.env?.length ? { env: e.user.exec.env } : {}),
            // Optional in v1beta1 and honoured by kubectl 1.22+ (older ones ignore it): the plugin never prompts.
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

/**
 * The apiVersion the ExecCredential must have: the one kubectl asks for in
 * KUBERNETES_EXEC_INFO (its copy of the kubeconfig's exec.apiVersion, so a
 * kubeconfig written with v1 keeps working), else EXEC_API_VERSION (clients
 * such as @kubernetes/client-node set no KUBERNETES_EXEC_INFO).
 */
export function execCredentialVersion(execInfo: string | undefined): string {
  if (!execInfo?.trim()) return EXEC_API_VERSION;
  let apiVersion: unknown;
  try {
    apiVersion = (JSON.parse(execInfo) as { apiVersion?: unknown } | null)?.apiVersion;
  } catch (cause) {
    throw new GatehouseError('GH_ERR_VALIDATION', 'KUBERNETES_EXEC_INFO is not JSON', {
      hint: 'it is set by kubectl; unset it to run gatehouse kube credentials by hand',
      cause,
    });
  }
  if (typeof apiVersion === 'string' && EXEC_API_VERSIONS.has(apiVersion)) return apiVersion;
  throw new GatehouseError(
    'GH_ERR_VALIDATION',
    `kubectl asked for ExecCredential ${JSON.stringify(apiVersion ?? null)}; gatehouse prints ${[...EXEC_API_VERSIONS].join(' or ')}`,
    {
      hint: `set the kubeconfig user's exec.apiVersion to ${EXEC_API_VERSION} (run gatehouse kube login again)`,
    },
  );
}

/** The ExecCredential an exec plugin prints, in the version kubectl asked for (execCredentialVersion). */
export function execCredential(
  certPem: string,
  keyPem: string,
  expires: Date,
  apiVersion: string = EXEC_API_VERSION,
): string {
  return JSON.stringify({
    apiVersion,
    kind: 'ExecCredential',
    status: {
      clientCertificateData: certPem,
      clientKeyData: keyPem,
      // kubectl runs the plugin again after this time (renewed by the next login).
      expirationTimestamp: expires.toISOString().replace(/\.\d{3}Z$/, 'Z'),
    },
  });
}
