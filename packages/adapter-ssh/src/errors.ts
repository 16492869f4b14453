import { type GatehouseError, isGatehouseError, toGatehouseError } from '@gatehouse/core';

/**
 * The text an OpenSSH user sees (auth banner, channel-open failure, stderr)
 * for a refusal from core: the reason, then what to do next.
 */
export function userMessage(err: unknown): string {
  const e = toGatehouseError(err);
  if (e) return e.hint ? `Gatehouse: ${e.message}\nGatehouse: ${e.hint}` : `Gatehouse: ${e.message}`;
  return 'Gatehouse: internal error (see the gateway log)';
}

/** One line (channel-open failure descriptions are shown on one line). */
export function oneLine(err: unknown): string {
  return userMessage(err).replace(/\nGatehouse: /g, '; ');
}

/** Whether the error came from the node side (unreachable, host verification, refused login). */
export function upstreamReason(err: unknown): 'node_unreachable' | 'upstream_auth_failed' | undefined {
  if (!isGatehouseError(err, 'GH_ERR_UPSTREAM_UNAVAILABLE')) return undefined;
  const r = (err as GatehouseError).details?.reason;
  return r === 'upstream_auth' || r === 'host_key' ? 'upstream_auth_failed' : 'node_unreachable';
}
