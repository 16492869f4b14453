import type { AccessTarget } from '../authz/grant.js';
import type { Identity, MfaTarget } from '../identity/types.js';

/** The target as users write it: `login@node`, `database "orders" as alice`, `Kubernetes cluster "prod"`. */
export function describeMfaTarget(t: MfaTarget): string {
  if (t.kind === 'node') return `${t.login}@${t.node}`;
  if (t.kind === 'db') return `database "${t.name}" as ${t.user}`;
  if (t.kind === 'desktop') return `desktop "${t.desktop}" as ${t.login}`;
  return `Kubernetes cluster "${t.cluster}"`;
}

function describeAccess(t: AccessTarget): string {
  if (t.kind === 'node') return `${t.login}@${t.name}`;
  if (t.kind === 'db') return `database "${t.name}" as ${t.dbUser}`;
  if (t.kind === 'kube') return `Kubernetes cluster "${t.name}"`;
  return `desktop "${t.name}" as ${t.login}`;
}

/** Whether a session to `target` is the one an MFA certificate bound to `bound` opens. */
export function mfaTargetMatches(bound: MfaTarget, target: AccessTarget): boolean {
  switch (bound.kind) {
    case 'node':
      return target.kind === 'node' && target.name === bound.node && target.login === bound.login;
    case 'db':
      return target.kind === 'db' && target.name === bound.name && target.dbUser === bound.user;
    case 'kube':
      return target.kind === 'kube' && target.name === bound.cluster;
    case 'desktop':
      return target.kind === 'desktop' && target.name === bound.desktop && target.login === bound.login;
    default: {
      const _: never = bound;
      return false;
    }
  }
}

/** What to run for a fresh check before a session to `target` (the refusal's hint). */
export function sessionMfaHint(target: AccessTarget): string {
  switch (target.kind) {
    case 'node':
      return `connect with gatehouse ssh ${target.login}@${target.name} (copy files with gatehouse scp): they ask for your authenticator code (plain ssh and scp cannot)`;
    case 'db':
      return `connect with gatehouse db connect ${target.name} (or a local tunnel: gatehouse proxy db ${target.name}): they ask for your authenticator code`;
    case 'kube':
      return `run kubectl through gatehouse kubectl --cluster ${target.name} -- ARGS, or use the kubectl context of gatehouse kube login ${target.name} (without --static): they ask for your authenticator code`;
    case 'desktop':
      return `open desktop ${target.name} from the Resources page of the web UI: it asks for your second factor first`;
    default:
      return 'open the session from the web UI or the gatehouse CLI, which ask for your second factor';
  }
}

/** Whether per-session MFA covers this kind of target (every kind of session: nodes, databases, clusters, desktops). */
export function sessionMfaApplies(kind: AccessTarget['kind'] | MfaTarget['kind']): boolean {
  return kind === 'node' || kind === 'db' || kind === 'kube' || kind === 'desktop';
}

/**
 * Core's per-session MFA decision for one connection (the Authorizer calls
 * it before the role checks): an MFA certificate is good for its bound
 * target only; without one, a user whose roles set require_session_mfa is
 * refused a NEW session. A live session (`established`) was checked when it
 * opened and is not asked again.
 */
export function sessionMfaRefusal(
  identity: Identity,
  target: AccessTarget,
  required: boolean,
  opts: { established?: boolean } = {},
): { reason: string; hint: string; code: 'GH_ERR_SESSION_MFA_REQUIRED' } | undefined {
  const bound = identity.sessionMfa;
  if (bound) {
    if (mfaTargetMatches(bound.target, target)) return undefined;
    return {
      reason: `this certificate's MFA check was for ${describeMfaTarget(bound.target)}, not ${describeAccess(target)}`,
      hint: sessionMfaHint(target),
      code: 'GH_ERR_SESSION_MFA_REQUIRED',
    };
  }
  if (!required || opts.established || !sessionMfaApplies(target.kind)) return undefined;
  return {
    reason: `your roles require a fresh second-factor check for every new session (require_session_mfa), and ${describeAccess(target)} was asked for with the login certificate alone`,
    hint: sessionMfaHint(target),
    code: 'GH_ERR_SESSION_MFA_REQUIRED',
  };
}
