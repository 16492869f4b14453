import type { AuditEmitter } from '@gatehouse/audit';
import {
  type Clock,
  decodeKrl,
  fetchPinnedCa,
  GatehouseClient,
  GatehouseError,
  type LogFn,
  type NodeJoinResponse,
  parseHostPort,
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
  /** How often to re-read the user CA keys from the proxy (CA rotation). Default 10 minutes; 0 disables. */
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
  const auditClient = o.audit ? undefined : new GatehouseClient({ proxy: o.proxy, caPem: join.caPem });
  const forwarder = auditClient ? auditForwarder(o, join, auditClient) : undefined;
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
  const every = o.caRefreshMs ?? 600_000;
  const timer =
    every > 0
      ? setInterval(() => {
          const client = new GatehouseClient({ proxy: o.proxy, caPem: join.caPem });
          client
            .caExport('sshd', 'user')
            .then((text) => {
              const keys = text
                .split('\n')
                .map((l) => l.trim())
                .filter(Boolean);
              // An empty answer must not leave the node trusting nothing or, worse, anything: keep the old set.
              if (keys.length > 0) userCaKeys = keys;
            })
            .catch((e: unknown) => o.log?.('error', 'node: refreshing the user CA keys failed', e))
            .finally(() => client.close());
        }, every)
      : undefined;
  timer?.unref();
  const fetchRevoked = () => {
    const client = new GatehouseClient({ proxy: o.proxy, caPem: join.caPem });
    return client
      .caKrl()
      .then((krl) => {
        // Gatehouse lists the same serials under each user CA key: any key's list will do, all are merged.
        const next = new Set<bigint>();
        for (const set of decodeKrl(krl).serials.values()) for (const s of set) next.add(s);
        revoked = next;
        // A lock also ends what the locked certificates still run here (direct logins, nohup jobs).
        return service.endRevoked();
      })
      .catch((e: unknown) => o.log?.('error', 'node: fetching the revoked certificates failed', e))
      .finally(() => client.close());
  };
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
    ...(forwarder ? { auditForwarder: forwarder } : {}),
    async close() {
      clearInterval(timer);
      clearInterval(revocationTimer);
      await service.close();
      // What is not delivered yet stays in the spool for the next start.
      await forwarder?.close();
      auditClient?.close();
    },
  };
}

/** Sends the node's audit events to the gateway, signed with the host key the join certified. */
function auditForwarder(o: JoinedNodeOptions, join: JoinResult, client: GatehouseClient): NodeAuditForwarder {
  const key = parseHostKey(join.hostKey);
  return new NodeAuditForwarder({
    dir: o.auditSpoolDir as string,
    cert: join.host_cert,
    sign: (data) => {
      const sig = key.sign(data);
      if (sig instanceof Error) throw sig;
      return sig;
    },
    send: (req) => client.nodeAudit(req),
    clock: o.clock,
    log: o.log ?? (() => {}),
    ...(o.auditCopy ? { copy: o.auditCopy } : {}),
  });
}
