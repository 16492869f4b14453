import { type GatehouseError, toGatehouseError } from '@gatehouse/core';
import { type KubeStatus, kubeStatus } from './wire/status.js';

/** A core denial or error as the Status kubectl prints ("Error from server (Forbidden): ..."). */
export function statusFromError(err: unknown): KubeStatus {
  const ge: GatehouseError | undefined = toGatehouseError(err);
  if (!ge) return kubeStatus(500, 'gatehouse: internal error (see the gateway log)');
  const text = `gatehouse: ${ge.message}${ge.hint ? ` (${ge.hint})` : ''}`;
  switch (ge.code) {
    case 'GH_ERR_UNAUTHENTICATED':
      return kubeStatus(401, text);
    case 'GH_ERR_ACCESS_DENIED':
    case 'GH_ERR_SESSION_MFA_REQUIRED':
    case 'GH_ERR_USER_LOCKED':
    case 'GH_ERR_CERT_EXPIRED':
    case 'GH_ERR_CERT_INVALID':
      return kubeStatus(403, text);
    case 'GH_ERR_NOT_FOUND':
      return kubeStatus(404, text);
    case 'GH_ERR_UPSTREAM_UNAVAILABLE':
    case 'GH_ERR_BACKEND_UNAVAILABLE':
    case 'GH_ERR_AUDIT_UNAVAILABLE':
      return kubeStatus(503, text);
    default:
      return kubeStatus(500, text);
  }
}
