import https from 'node:https';
import tls from 'node:tls';
import { GatehouseError, type KubeClusterSpec } from '@gatehouse/core';

/** How to reach one cluster's API server with Gatehouse's own credentials. */
export interface KubeUpstream {
  url: URL;
  /** From `url`, worked out once: every request needs them (URL getters and the regex cost µs each). */
  hostname: string;
  port: number;
  /** Host header value (url.host). */
  host: string;
  /** The server URL's path without trailing slashes, prefixed to every request path. */
  pathPrefix: string;
  agent: https.Agent;
  /** For upgrades (exec, port-forward): no pooling (the socket is handed over), but TLS sessions are resumed. */
  upgradeAgent: https.Agent;
  /** Authorization from the kubeconfig (bearer token, exec plugin, basic), if any. */
  headers: Record<string, string>;
  /** TLS name to verify (kubeconfig tls-server-name), if set. */
  servername?: string | undefined;
}

/**
 * Resolves the upstream of a cluster through @kubernetes/client-node's
 * KubeConfig, so every credential kind it understands works (client certs,
 * tokens, token files, exec plugins, in-cluster service accounts). Loaded
 * lazily: the library is large and most gatehouse commands never need it.
 */
export async function resolveUpstream(spec: KubeClusterSpec): Promise<KubeUpstream> {
  const { KubeConfig } = await import('@kubernetes/client-node');
  const kc = new KubeConfig();
  try {
    if (spec.inCluster) kc.loadFromCluster();
    else {
      kc.loadFromString(spec.kubeconfig ?? '');
      if (spec.context) kc.setCurrentContext(spec.context);
    }
  } catch (cause) {
    throw new GatehouseError(
      'GH_ERR_CONFIG_INVALID',
      `the kubeconfig of cluster "${spec.name}" cannot be loaded`,
      {
        hint: 'check it with kubectl --kubeconfig FILE get --raw /version, then add the cluster again',
        cause,
      },
    );
  }
  const cluster = kc.getCurrentCluster();
  if (!cluster?.server) {
    throw new GatehouseError(
      'GH_ERR_CONFIG_INVALID',
      `the kubeconfig of cluster "${spec.name}" names no API server`,
      {
        hint: 'check the context and its cluster entry',
      },
    );
  }
  const opts: https.RequestOptions = {};
  try {
    await kc.applyToHTTPSOptions(opts);
  } catch (cause) {
    throw new GatehouseError(
      'GH_ERR_UPSTREAM_UNAVAILABLE',
      `no upstream credentials for cluster "${spec.name}"`,
      {
        hint: 'the kubeconfig credential (exec plugin, token file) failed; check it on the gateway host',
        cause,
      },
    );
  }
  const url = new URL(cluster.server);
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(opts.headers ?? {})) {
    if (typeof v === 'string') headers[k.toLowerCase()] = v;
  }
  if (opts.auth) headers.authorization = `Basic ${Buffer.from(opts.auth).toString('base64')}`;
  const servername = cluster.tlsServerName || undefined;
  // One secure context per upstream: built from the PEMs per connection, it costs a few ms of
  // CPU (parsing the CA, certificate and key) on every exec, which has a connection of its own.
  let secureContext: tls.SecureContext;
  try {
    secureContext = tls.createSecureContext({
      ...(opts.ca ? { ca: opts.ca } : {}),
      ...(opts.cert ? { cert: opts.cert } : {}),
      ...(opts.key ? { key: opts.key } : {}),
    });
  } catch (cause) {
    throw new GatehouseError(
      'GH_ERR_CONFIG_INVALID',
      `the TLS credentials in the kubeconfig of cluster "${spec.name}" cannot be used`,
      {
        hint: 'check the certificate-authority, client-certificate and client-key data, then add the cluster again',
        cause,
      },
    );
  }
  // The server is still verified against the kubeconfig's CA (in the context) and name.
  const tlsOpts = {
    secureContext,
    ...(servername ? { servername } : {}),
    rejectUnauthorized: !cluster.skipTLSVerify,
  };
  const agent = new https.Agent({ keepAlive: true, maxSockets: 256, ...tlsOpts });
  const upgradeAgent = new https.Agent({ keepAlive: false, maxCachedSessions: 256, ...tlsOpts });
  return {
    url,
    hostname: url.hostname,
    port: Number(url.port || 443),
    host: url.host,
    pathPrefix: url.pathname.replace(/\/+$/, ''),
    agent,
    upgradeAgent,
    headers,
    servername,
  };
}
