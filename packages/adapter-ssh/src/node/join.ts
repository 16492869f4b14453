import { X509Certificate } from 'node:crypto';
import type { AuditEmitter } from '@gatehouse/audit';
import {
  type Clock,
  decodeKrl,
  fetchPinnedCa,
  GatehouseClient,
  GatehouseError,
  isGatehouseError,
  JOINED_HOST_CERT_TTL_MS,
  type LogFn,
  type NodeJoinResponse,
  parseHostPort,
  parseSshCertificate,
  renewPayload,
  sshBlobFingerprint,
} from '@gatehouse/core';
import { NodeAuditForwarder } from './audit-forward.js';
import { generateHostKey, parseHostKey, publicKeyLine } from './hostkey.js';
import { type NodeService, type NodeSessionEvent, startNodeService } from './server.js';

/**
 * The node side of joining: a node service on another machine proves it
 * holds a one-time token, gets a host certificate for its name and the
 * cluster's user CA keys, and runs with them. The proxy is verified by the
 * pinned host CA (like `gatehouse login --ca-pin`), so a token is never
 * handed to an impostor.
 */

export interface JoinOptions {
  /** host:port of the Gatehouse proxy. */
  proxy: string;
  /** sha256:... pin of the cluster host CA (printed by `gatehouse start`). */
  caPin: string;
  token: string;
  name: string;
  labels?: Record<string, string>;
  /** host:port the node service listens on (default 0.0.0.0:3022). */
  listen?: string;
  /** host:port the gateway should dial, when it differs from `listen` (NAT); a wildcard host means "where I joined from". */
  advertise?: string;
  /** An existing OpenSSH host private key; a fresh one is generated when absent. */
  hostKey?: string;
}

export interface JoinResult extends NodeJoinResponse {
  /** The host private key the certificate is for. */
  hostKey: string;
  /** PEMs that verify the proxy (for later CA refreshes). */
  caPem: string[];
}

export async function joinCluster(o: JoinOptions): Promise<JoinResult> {
  const { host, port } = parseHostPort(o.proxy);
  const { caPem } = await fetchPinnedCa({ host, port, pin: o.caPin });
  const hostKey = o.hostKey ?? generateHostKey(`gatehouse node ${o.name}`).privateKey;
  const publicKey = publicKeyLine(parseHostKey(hostKey));
  const client = new GatehouseClient({ proxy: o.proxy, caPem });
  try {
    const res = await client.joinNode({
      token: o.token,
      name: o.name,
      addr: o.advertise ?? o.listen ?? '0.0.0.0:3022',
      labels: o.labels ?? {},
      host_public_key: publicKey,
    });
    if (
      !Array.isArray(res.user_ca_keys) ||
      res.user_ca_keys.length === 0 ||
      typeof res.host_cert !== 'string'
    ) {
      throw new GatehouseError(
        'GH_ERR_UPSTREAM_UNAVAILABLE',
        'the proxy answered the join without a certificate or CA',
        {
          hint: 'check that --proxy points at a Gatehouse proxy of a matching version',
        },
      );
    }
    return { ...res, hostKey, caPem };
  } finally {
    client.close();
  }
}

export interface JoinedNodeOptions extends JoinOptions {
  clock: Clock;
  /**
   * Where the node's audit events go. Default: to the gateway's audit log
   * (NodeAuditForwarder, spooled in `auditSpoolDir` while it is unreachable).
   */
  audit?: AuditEmitter;
  /** The spool directory of the default audit forwarding (required without `audit`). */
  auditSpoolDir?: string;
  /** Also called with each forwarded event's JSON line (the CLI writes them to stderr for the host's journal). */
  auditCopy?: (line: string) => void;
  log?: LogFn;
  onSession?: (e: NodeSessionEvent) => void;
  /**
   * How often to follow the cluster CAs (rotation, decision 0035): re-read the
   * user CA keys and the host CA certificates that verify the proxy, and renew
   * this node's host certificate when the host CA signs with another key.
   * Default 10 minutes; 0 disables (refreshCas() still runs it).
   */
  caRefreshMs?: number;
  /**
   * How often to fetch the list of revoked certificates (users deleted or
   * locked) from the proxy. Default 30 s; 0 disables (then a certificate is
   * valid here until it expires, as on an OpenSSH node without RevokedKeys).
   */
  revocationRefreshMs?: number;
}

export interface JoinedNode extends NodeService {
  join: JoinResult;
  /** The host certificate the node presents now (the join's, or a renewed one). */
  hostCert(): string;
  /**
   * One run of what the caRefreshMs timer does. Rejects with
   * GH_ERR_CERT_INVALID, saying to join again with a new token, when the
   * node cannot follow a host CA rotation any more (it missed it).
   */
  refreshCas(): Promise<void>;
  /** The default audit forwarding (absent when `audit` was given). */
  auditForwarder?: NodeAuditForwarder;
}

/** Joins the cluster, then runs the node service with the certificate and CA keys it got. */
export async function startJoinedNode(o: JoinedNodeOptions): Promise<JoinedNode> {
  if (!o.audit && !o.auditSpoolDir) {
    throw new GatehouseError('GH_ERR_CONFIG_INVALID', 'the node needs an audit spool directory', {
      hint: 'pass --data-dir DIR (it holds the audit events not yet delivered to the gateway)',
    });
  }
  const join = await joinCluster(o);
  // Both follow a host CA rotation (refreshCas): what verifies the proxy, and what this node presents.
  let caPem = join.caPem;
  let hostCert = join.host_cert;
  /** A client for one exchange, verifying the proxy with the host CA certificates known now. */
  const withClient = async <T>(fn: (c: GatehouseClient) => Promise<T>): Promise<T> => {
    const client = new GatehouseClient({ proxy: o.proxy, caPem });
    try {
      return await fn(client);
    } finally {
      client.close();
    }
  };
  const hostKey = parseHostKey(join.hostKey);
  /** Signs with the host key (Ed25519): audit batches, and the renewal of its certificate. */
  const signWithHostKey = (data: Buffer): Buffer => {
    const sig = hostKey.sign(data);
    if (sig instanceof Error) throw sig;
    return sig;
  };
  const forwarder = o.audit
    ? undefined
    : new NodeAuditForwarder({
        dir: o.auditSpoolDir as string,
        cert: () => hostCert,
        sign: signWithHostKey,
        send: (req) => withClient((c) => c.nodeAudit(req)),
        clock: o.clock,
        log: o.log ?? (() => {}),
        ...(o.auditCopy ? { copy: o.auditCopy } : {}),
      });
  const audit = o.audit ?? (forwarder as NodeAuditForwarder);
  let userCaKeys = join.user_ca_keys;
  let revoked: ReadonlySet<bigint> = new Set();
  const listen = parseHostPort(o.listen ?? '0.0.0.0:3022');
  const service = await startNodeService({
    host: listen.host,
    port: listen.port,
    hostKey: join.hostKey,
    hostCert: join.host_cert,
    trustedUserCaKeys: () => userCaKeys,
    revokedSerials: () => revoked,
    clock: o.clock,
    audit,
    nodeName: join.node.name,
    labels: join.node.labels,
    ...(o.onSession ? { onSession: o.onSession } : {}),
    ...(o.log ? { log: o.log } : {}),
  });
  /**
   * The gateway renews a host certificate for whoever holds it and its key
   * (POST /v1/nodes/renew-host-cert, as agentless nodes do): no token needed.
   */
  const renewHostCert = async (client: GatehouseClient) => {
    const time = o.clock.now().toISOString();
    const payload = renewPayload({ cluster: join.cluster_name, node: join.node.name, time, cert: hostCert });
    const res = await client.renewNodeHostCert({
      node: join.node.name,
      cert: hostCert,
      time,
      signature: signWithHostKey(payload).toString('base64'),
      ttl: `${JOINED_HOST_CERT_TTL_MS / 3_600_000}h`,
    });
    // In place, same key and port (the ssh2 patch reads it at each key exchange): open sessions stay.
    service.setHostCert(res.cert);
    hostCert = res.cert;
    o.log?.('debug', `node: renewed the host certificate (host CA key ${signerOf(res.cert)})`);
  };
  const follow = () =>
    withClient(async (client) => {
      const keys = (await client.caExport('sshd', 'user'))
        .split('\n')
        .map((l) => l.trim())
        .filter(Boolean);
      // An empty answer must not leave the node trusting nothing or, worse, anything: keep the old set.
      if (keys.length > 0) userCaKeys = keys;
      // Asked over a connection the current set verified: from init on it holds the new key too,
      // so this node still knows the proxy when it presents the new key's chain at update_servers.
      const pems = splitPems(await client.caExport('x509', 'host'));
      if (pems.length > 0) caPem = pems;
      const { host_ca_signer } = await client.ping();
      if (host_ca_signer && host_ca_signer !== signerOf(hostCert)) await renewHostCert(client);
    }).catch((e: unknown) => {
      // The node missed the rotation (it was away from init to standby): it cannot verify the
      // proxy, or the gateway no longer trusts its certificate. Only an admin can fix that.
      if (missedRotation(e)) {
        throw new GatehouseError(
          'GH_ERR_CERT_INVALID',
          `node ${join.node.name} cannot follow the cluster's host CA any more (was it rotated while this node could not reach the gateway?): ${e.message}`,
          {
            cause: e,
            hint:
              'join this node again with a new token: on the gateway, gatehouse tokens add --type node; ' +
              'here, gatehouse node start --token NEW_TOKEN --ca-pin PIN (the pin "gatehouse ca status" shows)',
          },
        );
      }
      throw e;
    });
  // One run at a time: a slow gateway must not get two renewals from one node.
  let running: Promise<void> | undefined;
  const refreshCas = () => {
    running ??= follow().finally(() => {
      running = undefined;
    });
    return running;
  };
  const every = o.caRefreshMs ?? 600_000;
  const timer =
    every > 0
      ? setInterval(() => {
          refreshCas().catch((e: unknown) => o.log?.('error', 'node: following the cluster CAs failed', e));
        }, every)
      : undefined;
  timer?.unref();
  const fetchRevoked = () =>
    withClient((client) => client.caKrl())
      .then((krl) => {
        // Gatehouse lists the same serials under each user CA key: any key's list will do, all are merged.
        const next = new Set<bigint>();
        for (const set of decodeKrl(krl).serials.values()) for (const s of set) next.add(s);
        revoked = next;
        // A lock also ends what the locked certificates still run here (direct logins, nohup jobs).
        return service.endRevoked();
      })
      .catch((e: unknown) => o.log?.('error', 'node: fetching the revoked certificates failed', e));
  const revocationEvery = o.revocationRefreshMs ?? 30_000;
  if (revocationEvery > 0) await fetchRevoked();
  const revocationTimer = revocationEvery > 0 ? setInterval(fetchRevoked, revocationEvery) : undefined;
  revocationTimer?.unref();
  return {
    ...service,
    nodeName: service.nodeName,
    labels: service.labels,
    host: service.host,
    port: service.port,
    address: service.address,
    hostPublicKey: service.hostPublicKey,
    join,
    hostCert: () => hostCert,
    refreshCas,
    ...(forwarder ? { auditForwarder: forwarder } : {}),
    async close() {
      clearInterval(timer);
      clearInterval(revocationTimer);
      await service.close();
      // What is not delivered yet stays in the spool for the next start.
      await forwarder?.close();
    },
  };
}

/** `SHA256:` fingerprint of the CA key that signed a certificate (compared with ping's host_ca_signer). */
function signerOf(certLine: string): string {
  return sshBlobFingerprint(parseSshCertificate(certLine).signatureKey);
}

/**
 * Whether a refresh failed because this node's trust or certificate is from a
 * host CA key the cluster dropped: the proxy's certificate does not verify, or
 * the gateway refused the node's credential (not, say, its clock).
 */
function missedRotation(e: unknown): e is GatehouseError {
  if (!isGatehouseError(e) || e.code !== 'GH_ERR_CERT_INVALID') return false;
  return e.message.startsWith('cannot verify the proxy') || e.details?.['reason'] === 'credential';
}

/** The certificates of a PEM bundle that parse (the proxy's CA export); anything else is dropped. */
function splitPems(text: string): string[] {
  const pems = text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  return pems.filter((p) => {
    try {
      return new X509Certificate(p).ca;
    } catch {
      // Not a certificate: it must not become a trust anchor, and the others still count.
      return false;
    }
  });
}
