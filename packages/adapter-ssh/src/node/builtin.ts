import os from 'node:os';
import type { Adapter, AdapterContext } from '@gatehouse/core';
import { GatehouseError } from '@gatehouse/core';
import { generateHostKey } from './hostkey.js';
import { type NodeService, type NodeSessionEvent, startNodeService } from './server.js';

/** How the built-in node gets into the gateway's node registry (core's NodeRegistry.add fits). */
export interface NodeRegistrar {
  add(
    spec: { name: string; addr: string; labels: Record<string, string> },
    actor: string,
    opts?: { replace?: boolean },
  ): Promise<unknown>;
}

export interface BuiltinNodeOptions {
  /** Default 127.0.0.1: only the local proxy dials the embedded node. */
  host?: string;
  /** Default 0 (a free port). */
  port?: number;
  /** Node name; default this machine's host name as a DNS label. */
  name?: string;
  /** Extra labels; `builtin=true` is always set. */
  labels?: Record<string, string>;
  /** Default: the gateway's node registry (`ctx.nodes`). */
  registry?: NodeRegistrar;
  /** Host certificate lifetime; it is renewed at two thirds. Default 30 days. */
  hostCertTtlMs?: number;
  onSession?: (e: NodeSessionEvent) => void;
}

export interface BuiltinNodeAdapter extends Adapter {
  /** The running service, once registered. */
  service(): NodeService | undefined;
}

/** This machine's host name as a node name (lowercase DNS label). */
export function localNodeName(hostname = os.hostname()): string {
  const label = (hostname.split('.')[0] ?? '')
    .toLowerCase()
    .replace(/[^a-z0-9-]/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 63);
  return label || 'localhost';
}

/**
 * The embedded quick start's node: the node service for the local machine,
 * on 127.0.0.1, with a host certificate from the gateway's own host CA,
 * trusting its user CA, and registered as node `<hostname>` with
 * `builtin=true`. Its host certificate is renewed in place before it
 * expires, and re-issued when a host CA rotation changes the signing key.
 */
export function builtinNode(opts: BuiltinNodeOptions = {}): BuiltinNodeAdapter {
  let service: NodeService | undefined;
  let timer: NodeJS.Timeout | undefined;
  let unsubscribe: (() => void) | undefined;
  let closed = false;
  const name = opts.name ?? localNodeName();
  const labels = { ...(opts.labels ?? {}), builtin: 'true' };
  const ttl = opts.hostCertTtlMs ?? 30 * 24 * 3600_000;

  async function hostCert(ctx: AdapterContext, publicKey: string) {
    const signer = ctx.credentials.hostCaSigningKeyId();
    const cert = await ctx.credentials.sshHostCert(publicKey, {
      keyId: name,
      principals: [...new Set([name, `${name}.${ctx.clusterName}`, 'localhost', '127.0.0.1'])],
      ttlMs: ttl,
    });
    return { line: cert.cert, signer };
  }

  async function start(
    ctx: AdapterContext,
    hostKey: { privateKey: string; publicKey: string },
    port: number,
    cert: { line: string },
  ) {
    return startNodeService({
      host: opts.host ?? '127.0.0.1',
      port,
      hostKey: hostKey.privateKey,
      hostCert: cert.line,
      trustedUserCaKeys: () => ctx.credentials.userCaSshKeys(),
      revokedSerials: () => ctx.revokedSshSerials(),
      clock: ctx.clock,
      audit: ctx.audit,
      nodeName: name,
      labels,
      log: ctx.log,
      ...(opts.onSession ? { onSession: opts.onSession } : {}),
    });
  }

  return {
    name: 'node',
    service: () => service,
    async register(ctx) {
      const registry = opts.registry ?? (ctx as unknown as { nodes?: NodeRegistrar }).nodes;
      if (!registry) {
        throw new GatehouseError(
          'GH_ERR_INTERNAL',
          'the gateway has no node registry for the built-in node',
          {
            hint: 'pass builtinNode({ registry }) or use a gateway with ctx.nodes',
          },
        );
      }
      const hostKey = generateHostKey(`gatehouse builtin node ${name}`);
      let current = await hostCert(ctx, hostKey.publicKey);
      service = await start(ctx, hostKey, opts.port ?? 0, current);
      await registry.add({ name, addr: service.address, labels }, 'system', { replace: true });
      // Renewal swaps the certificate in place (same key and port): open sessions keep running.
      const renew = async () => {
        const s = service;
        if (closed || !s) return;
        current = await hostCert(ctx, hostKey.publicKey);
        s.setHostCert(current.line);
      };
      const schedule = () => {
        clearTimeout(timer);
        timer = setTimeout(
          () => {
            renew()
              .catch((e: unknown) =>
                ctx.log('error', 'built-in node: renewing the host certificate failed', e),
              )
              .finally(schedule);
          },
          Math.min(Math.floor((ttl * 2) / 3), 2 ** 31 - 1),
        );
        timer.unref();
      };
      schedule();
      // A host CA rotation that changes the signing key (update_servers, rollback): a certificate
      // from the new signer now, before standby drops the old one from the proxy's trust.
      unsubscribe = ctx.credentials.onCaChange((ca) => {
        if (ca !== 'host' || ctx.credentials.hostCaSigningKeyId() === current.signer) return;
        renew().catch((e: unknown) =>
          ctx.log('error', 'built-in node: a host certificate from the rotated host CA failed', e),
        );
      });
    },
    async close() {
      closed = true;
      clearTimeout(timer);
      unsubscribe?.();
      await service?.close();
    },
  };
}
