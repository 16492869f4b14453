import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { GatehouseError } from '../errors.js';
import type { CertificateAuthorities } from '../pki/authority.js';
import { parseSshPublicKey } from '../pki/sshcert.js';
import { parseDuration } from '../util/duration.js';
import { type NodeRegistry, nodeHostPort } from './registry.js';

/**
 * The principal the proxy's per-session certificate carries besides the
 * login, and the only one an agentless node accepts (AuthorizedPrincipalsCommand
 * prints `gatehouse-proxy:<login>`): a user's own login certificate names the
 * bare login only, so it cannot be taken straight to the node past the
 * gateway's roles, audit and recording (docs/decisions/00XX-agentless-nodes.md).
 */
export const PROXY_PRINCIPAL_PREFIX = 'gatehouse-proxy:';

/** Host certificates for agentless nodes: 30 days unless asked (renewed by `nodes configure --renew`). */
export const NODE_HOST_CERT_TTL_MS = 30 * 24 * 3600 * 1000;
const MAX_NODE_HOST_CERT_TTL_MS = 366 * 24 * 3600 * 1000;

export interface NodeHostCertRequest {
  /** The registered node (`gatehouse nodes add`). */
  node: string;
  /** The node's host public key, an OpenSSH line (Ed25519 or ECDSA P-256). */
  public_key: string;
  /** Lifetime like "720h" (default 30 days, at most 366 days). */
  ttl?: string | undefined;
  /** Names to certify; each must be one the node owns (default: all of them). */
  principals?: string[] | undefined;
}

export interface NodeHostCertResponse {
  node: string;
  cluster_name: string;
  /** The host certificate, an OpenSSH `-cert.pub` line. */
  cert: string;
  principals: string[];
  expires: string;
  /** sshd TrustedUserCAKeys content (the user CA's OpenSSH keys). */
  user_ca_keys: string;
  /** The principal prefix the proxy's certificates carry (AuthorizedPrincipalsCommand prints it + the login). */
  proxy_principal_prefix: string;
}

export interface NodeHostCertDeps {
  nodes: NodeRegistry;
  authorities: CertificateAuthorities;
  clusterName: string;
  /** Resolves a host name (injected so tests need no DNS). */
  resolve?: (host: string) => Promise<void>;
  now: () => Date;
  /** Who asked, for the cert.create audit event. */
  actor?: string | undefined;
}

const dnsResolve = async (host: string) => {
  await lookup(host);
};

/**
 * The names a node owns: its registered name, NAME.CLUSTER (what `gatehouse
 * config ssh` users type) and the host of its registered address (what the
 * gateway dials and checks). Nothing else can go into its host certificate,
 * so an admin of one node cannot obtain a certificate for another's names.
 */
export async function nodeOwnedNames(
  deps: Pick<NodeHostCertDeps, 'nodes' | 'clusterName' | 'resolve'>,
  name: string,
): Promise<string[]> {
  const node = await deps.nodes.get(name);
  if (!node) {
    throw new GatehouseError('GH_ERR_NOT_FOUND', `no node named "${name}"`, {
      hint: `register it first: gatehouse nodes add ${name} --addr HOST:22`,
    });
  }
  const { host } = nodeHostPort(node);
  if (isIP(host) === 0) {
    // A certificate for a name nobody can reach is a typo waiting to be trusted: say so now.
    try {
      await (deps.resolve ?? dnsResolve)(host);
    } catch (cause) {
      throw new GatehouseError(
        'GH_ERR_VALIDATION',
        `node "${name}" has the address ${node.addr}, and ${host} does not resolve`,
        {
          cause,
          hint: `fix the name in DNS or /etc/hosts, or register the node again with an address that resolves: gatehouse nodes rm ${name} && gatehouse nodes add ${name} --addr IP:22`,
        },
      );
    }
  }
  return [...new Set([name, `${name}.${deps.clusterName}`, host.toLowerCase()])];
}

/** Signs `req.public_key` as the host key of a registered node, for the names it owns only. */
export async function issueNodeHostCert(
  deps: NodeHostCertDeps,
  req: NodeHostCertRequest,
): Promise<NodeHostCertResponse> {
  if (typeof req.node !== 'string' || typeof req.public_key !== 'string') {
    throw new GatehouseError('GH_ERR_VALIDATION', 'a host certificate request needs node and public_key', {
      hint: 'e.g. gatehouse ca sign --host web1 --public-key /etc/ssh/ssh_host_ed25519_key.pub',
    });
  }
  const owned = await nodeOwnedNames(deps, req.node);
  const asked = (req.principals ?? []).map((p) => String(p).trim().toLowerCase()).filter((p) => p !== '');
  const foreign = asked.filter((p) => !owned.includes(p));
  if (foreign.length > 0) {
    throw new GatehouseError(
      'GH_ERR_ACCESS_DENIED',
      `node "${req.node}" does not own ${foreign.map((p) => `"${p}"`).join(', ')}`,
      {
        hint: `a node's host certificate may name only ${owned.join(', ')}; to use another address, register the node with it (gatehouse nodes add ${req.node} --addr HOST:PORT)`,
      },
    );
  }
  const principals = asked.length > 0 ? [...new Set(asked)] : owned;
  let key: ReturnType<typeof parseSshPublicKey>;
  try {
    key = parseSshPublicKey(req.public_key.trim());
  } catch (cause) {
    throw new GatehouseError('GH_ERR_VALIDATION', 'public_key is not an OpenSSH public key line', {
      cause,
      hint: 'pass the .pub file of the host key, e.g. /etc/ssh/ssh_host_ed25519_key.pub',
    });
  }
  let ttl = NODE_HOST_CERT_TTL_MS;
  if (req.ttl !== undefined) {
    try {
      ttl = parseDuration(req.ttl);
    } catch {
      ttl = Number.NaN;
    }
    if (!(ttl > 0 && ttl <= MAX_NODE_HOST_CERT_TTL_MS)) {
      throw new GatehouseError('GH_ERR_VALIDATION', `ttl "${req.ttl}" is not a duration of at most 366d`, {
        hint: 'e.g. --ttl 720h (30 days, the default)',
      });
    }
  }
  const now = deps.now();
  const issued = await deps.authorities.issueSshHostCert({
    publicKey: `${key.type} ${key.blob.toString('base64')}`,
    keyId: req.node,
    principals,
    validAfter: now,
    validBefore: new Date(now.getTime() + ttl),
    ...(deps.actor ? { actor: deps.actor } : {}),
  });
  return {
    node: req.node,
    cluster_name: deps.clusterName,
    cert: issued.cert,
    principals,
    expires: issued.expires.toISOString(),
    user_ca_keys: deps.authorities.export('sshd', { type: 'user' }),
    proxy_principal_prefix: PROXY_PRINCIPAL_PREFIX,
  };
}
