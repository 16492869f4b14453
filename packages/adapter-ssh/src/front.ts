import type { Duplex } from 'node:stream';
import type { SshRejectReason } from '@gatehouse/audit';
import type { AdapterContext, Identity, NodeSpec } from '@gatehouse/core';

/** How long a refused client gets to read the DISCONNECT ssh2 sent it. */
const LINGER_MS = 1_000;

/**
 * Closes a refused connection without destroying what ssh2 just wrote to it
 * (a DISCONNECT naming the protocol error): destroying a socket with unread
 * input resets it, and a reset makes the client drop what it has not read
 * yet. Our FIN goes first; the socket is cut a moment later.
 */
export function closeAfterReply(stream: Duplex): void {
  if (stream.destroyed) return;
  stream.end();
  setTimeout(() => stream.destroy(), LINGER_MS).unref();
}

/** Audits a connection the proxy refused before any session started (`ssh.reject`). */
export async function auditSshReject(
  ctx: AdapterContext,
  f: { reason: SshRejectReason; error: string; remoteAddr: string; user?: string; server?: string },
): Promise<void> {
  await ctx.audit
    .emit({
      type: 'ssh.reject',
      reason: f.reason,
      error: f.error,
      ...(f.user ? { user: f.user } : {}),
      ...(f.server ? { server: f.server } : {}),
      addr: { remote: f.remoteAddr },
    })
    .catch((err: unknown) => ctx.log('error', 'ssh: audit of a rejected connection failed', err));
}

/**
 * The node a client names (its name, `<name>.<cluster>` or its address), or
 * an audited denial (`ssh.reject` unknown_node and `access.denied`, thrown as
 * GH_ERR_ACCESS_DENIED with details.field "unknown_node").
 */
export async function resolveNode(
  ctx: AdapterContext,
  identity: Identity,
  host: string,
  port: number,
  remoteAddr: string,
): Promise<NodeSpec> {
  const node = await ctx.nodes.resolve(host, port, ctx.clusterName);
  if (node) return node;
  await auditSshReject(ctx, {
    reason: 'unknown_node',
    error: `no node named "${host}" (port ${port})`,
    remoteAddr,
    user: identity.user,
  });
  return ctx.authorizer.deny(
    identity,
    { kind: 'node', name: host },
    `node "${host}" is not registered`,
    { remoteAddr, protocol: 'ssh' },
    {
      field: 'unknown_node',
      hint: 'list the nodes you can reach with gatehouse ls',
    },
  );
}
