import { verify } from 'node:crypto';
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import type { AuditEmitter } from '@gatehouse/audit';
import { GatehouseError } from '../errors.js';
import type { CertificateAuthorities } from '../pki/authority.js';
import { parseSshPublicKey, sshEd25519PublicKeyToKeyObject, verifySshCertificate } from '../pki/sshcert.js';
import { spkiPin } from '../pki/x509.js';
import { parseDuration } from '../util/duration.js';
import { type NodeRegistry, nodeHostPort } from './registry.js';

/**
 * The principal the proxy's per-session certificate carries besides the
 * login, and the only one an agentless node accepts (AuthorizedPrincipalsCommand
 * prints `gatehouse-proxy:<login>`): a user's own login certificate names the
 * bare login only, so it cannot be taken straight to the node past the
 * gateway's roles, audit and recording (docs/decisions/0028-agentless-nodes.md).
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
  /** sshd TrustedUserCAKeys content (the user CA's OpenSSH keys: both during a rotation). */
  user_ca_keys: string;
  /**
   * SPKI pins of every trusted host CA X.509 key (both during a rotation): what
   * the node's next --renew may find the proxy's certificate chain under, so a
   * host CA rotation does not lock the node's renewal out.
   */
  host_ca_pins: string[];
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
  /** Where refused renewals are audited (node.renew_refused). */
  audit?: AuditEmitter | undefined;
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
    host_ca_pins: deps.authorities.get('host').map((k) => spkiPin(k.x509CertPem)),
    proxy_principal_prefix: PROXY_PRINCIPAL_PREFIX,
  };
}

/** How far a renewal's time may be from the gateway's clock. */
const RENEW_SKEW_MS = 5 * 60 * 1000;

/**
 * POST /v1/nodes/renew-host-cert: a configured node renews its own host
 * certificate, with no admin login (what the cron line of `nodes configure
 * --renew` runs). The credential is the node's current certificate, still
 * valid, plus a signature by its host key over renewPayload(): the new
 * certificate is for the same key, names what the node owns now, and is
 * refused once the node is removed (`gatehouse nodes rm`).
 */
export interface NodeHostCertRenewRequest {
  node: string;
  /** The node's current host certificate (OpenSSH -cert.pub line). */
  cert: string;
  /** ISO time the node signed at (within 5 minutes of the gateway's clock). */
  time: string;
  /** base64 Ed25519 signature by the certified key over renewPayload(). */
  signature: string;
  ttl?: string | undefined;
}

/** The bytes a node signs to renew: bound to the cluster, node, time and certificate. */
export function renewPayload(r: { cluster: string; node: string; time: string; cert: string }): Buffer {
  return Buffer.from(
    ['gatehouse-host-cert-renew/1', r.cluster, r.node, r.time, r.cert.trim().split(/\s+/)[1] ?? ''].join(
      '\n',
    ),
  );
}

export async function renewNodeHostCert(
  deps: NodeHostCertDeps,
  req: NodeHostCertRenewRequest,
  remoteAddr?: string,
): Promise<NodeHostCertResponse> {
  try {
    return await renewChecked(deps, req);
  } catch (e) {
    // A refused renewal is a node that will soon fail host verification: the admin must see it.
    await deps.audit?.emit({
      type: 'node.renew_refused',
      user: `node:${String(req.node).slice(0, 64)}`,
      server: String(req.node).slice(0, 64),
      error: e instanceof Error ? e.message : String(e),
      ...(remoteAddr ? { addr: { remote: remoteAddr } } : {}),
    });
    throw e;
  }
}

async function renewChecked(
  deps: NodeHostCertDeps,
  req: NodeHostCertRenewRequest,
): Promise<NodeHostCertResponse> {
  // details.reason lets a node tell "my certificate is no longer good" (join or configure again) from a clock to fix.
  const refuse = (why: string, hint: string, reason = 'credential') =>
    new GatehouseError(
      'GH_ERR_CERT_INVALID',
      `cannot renew the host certificate of node "${req.node}": ${why}`,
      {
        hint,
        details: { reason },
      },
    );
  // Both kinds of node renew here; each is given its certificate again the way it got it first.
  const reconfigure =
    `an agentless node: configure it again with an admin login (gatehouse nodes configure ${req.node} --apply); ` +
    `a node service (gatehouse node start): join it again with a new token (gatehouse tokens add --type node)`;
  const now = deps.now();
  let cert: ReturnType<typeof verifySshCertificate>;
  try {
    cert = verifySshCertificate(
      req.cert,
      deps.authorities.get('host').map((k) => k.sshPublicKey),
      now,
      { type: 'host' },
    );
  } catch (e) {
    throw refuse(`its certificate is not valid (${(e as Error).message})`, reconfigure);
  }
  if (cert.keyId !== req.node) throw refuse(`the certificate is node "${cert.keyId}"'s`, reconfigure);
  const t = Date.parse(req.time);
  if (!(Math.abs(now.getTime() - t) <= RENEW_SKEW_MS)) {
    throw refuse(
      'its time is more than 5 minutes off the gateway clock',
      'set the node clock right (NTP)',
      'clock_skew',
    );
  }
  const payload = renewPayload({ cluster: deps.clusterName, node: req.node, time: req.time, cert: req.cert });
  let ok = false;
  try {
    ok = verify(
      null,
      payload,
      sshEd25519PublicKeyToKeyObject(cert.publicKey),
      Buffer.from(req.signature, 'base64'),
    );
  } catch {
    // Not an Ed25519 key or a malformed signature: refused below like a wrong one.
  }
  if (!ok) throw refuse('the signature is not by its host key', reconfigure);
  const key = `${cert.keyType} ${cert.publicKey.toString('base64')}`;
  return issueNodeHostCert(
    { ...deps, actor: `node:${req.node}` },
    {
      node: req.node,
      public_key: key,
      ...(req.ttl ? { ttl: req.ttl } : {}),
    },
  );
}
