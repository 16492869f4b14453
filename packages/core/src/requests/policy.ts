import type { Traits } from '../identity/types.js';
import { matchAny, PatternCache } from '../rbac/labels.js';
import { DEFAULT_MAX_SESSION_TTL_MS, roleDurationMs } from '../rbac/role-schema.js';
import { expandValues } from '../rbac/templates.js';
import type { Role } from '../rbac/types.js';
import { evalWhere, parseWhere, type WhereInput } from './where.js';

/**
 * The access request decisions that depend on roles only (no storage, no
 * clock): who may ask for which role, with what thresholds and limits, and
 * who may review. Deny always wins; patterns are those of every other role
 * field (globs, `^regex$`, trait templates).
 */

/** What the requester's roles say about one request. */
export interface RequestPolicy {
  /** Reviews needed: `approve` approvals, or `deny` denials (the first reached decides). */
  thresholds: { approve: number; deny: number };
  reasonRequired: boolean;
  /** Longest access the request may give. */
  maxDurationMs: number;
}

export type RequestRefusal = {
  ok: false;
  /** The requested role that is refused. */
  role: string;
  reason: string;
  /** The role whose deny matched (a deny rule), if any. */
  by?: string | undefined;
};

export type RequestDecision = ({ ok: true } & RequestPolicy) | RequestRefusal;

type Field = 'roles' | 'search_as_roles';

function patterns(role: Role, side: 'allow' | 'deny', field: Field, traits: Traits): string[] {
  const v = role[side].request?.[field];
  return v === undefined ? [] : expandValues(v, traits);
}

/**
 * Whether a user holding `roles` may ask for each of `requested` (through
 * `field`: `roles` for whole roles, `search_as_roles` for resources reached
 * with them), and on what terms: the strictest of the roles that allow it
 * (most approvals, fewest denials, shortest duration; any role that asks
 * for a reason makes it required).
 */
export function decideRequest(
  roles: readonly Role[],
  traits: Traits,
  requested: readonly string[],
  field: Field = 'roles',
): RequestDecision {
  const cache = new PatternCache();
  const allowing = new Set<Role>();
  for (const name of requested) {
    const deny = roles.find((r) => matchAny(patterns(r, 'deny', field, traits), name, cache));
    if (deny) {
      return {
        ok: false,
        role: name,
        by: deny.name,
        reason: `role "${deny.name}" denies requesting role "${name}"`,
      };
    }
    const allow = roles.filter((r) => matchAny(patterns(r, 'allow', field, traits), name, cache));
    if (allow.length === 0) {
      return {
        ok: false,
        role: name,
        reason: `none of your roles allows requesting role "${name}"${field === 'search_as_roles' ? ' for resources' : ''}`,
      };
    }
    for (const r of allow) allowing.add(r);
  }
  let approve = 1;
  let deny = Number.POSITIVE_INFINITY;
  let reasonRequired = false;
  let maxDurationMs = DEFAULT_MAX_SESSION_TTL_MS;
  for (const r of allowing) {
    const req = r.allow.request ?? {};
    for (const t of req.thresholds ?? []) {
      approve = Math.max(approve, t.approve ?? 1);
      deny = Math.min(deny, t.deny ?? 1);
    }
    if (req.reason?.mode === 'required') reasonRequired = true;
    const d = req.max_duration === undefined ? undefined : roleDurationMs(req.max_duration);
    if (d !== undefined) maxDurationMs = Math.min(maxDurationMs, d);
  }
  return {
    ok: true,
    thresholds: { approve, deny: Number.isFinite(deny) ? deny : 1 },
    reasonRequired,
    maxDurationMs,
  };
}

/** The request as a reviewer's `review_requests.where` sees it. */
export interface ReviewSubject {
  roles: readonly string[];
  reason: string;
  user: string;
  /** The requester's traits now (a deleted requester has none). */
  requesterTraits: Traits;
}

/**
 * Whether a reviewer holding `roles` may review `request`: every requested
 * role must match an allow `review_requests.roles` of one of theirs whose
 * `where` (if any) holds for the request, and no deny (a deny with a
 * `where` denies only where it holds). A `where` that does not parse (it
 * cannot pass the role schema; a stored role from elsewhere might) allows
 * nothing and denies everything: fail closed.
 */
export function mayReview(
  roles: readonly Role[],
  traits: Traits,
  request: ReviewSubject,
): { ok: true } | { ok: false; reason: string } {
  const cache = new PatternCache();
  const input: WhereInput = {
    request: { roles: request.roles, reason: request.reason, user: request.user },
    reviewer: { roles: roles.map((r) => r.name), traits },
    requester: { traits: request.requesterTraits },
  };
  const list = (r: Role, side: 'allow' | 'deny') => {
    const v = r[side].review_requests?.roles;
    return v === undefined ? [] : expandValues(v, traits);
  };
  const holds = (r: Role, side: 'allow' | 'deny') => {
    const where = r[side].review_requests?.where;
    if (where === undefined) return true;
    try {
      return evalWhere(parseWhere(where), input);
    } catch {
      return side === 'deny'; // unparsable: fail closed (see above)
    }
  };
  for (const name of request.roles) {
    const deny = roles.find((r) => matchAny(list(r, 'deny'), name, cache) && holds(r, 'deny'));
    if (deny)
      return { ok: false, reason: `role "${deny.name}" denies reviewing requests for role "${name}"` };
    const allowing = roles.filter((r) => matchAny(list(r, 'allow'), name, cache));
    if (allowing.length === 0) {
      return { ok: false, reason: `none of your roles allows reviewing requests for role "${name}"` };
    }
    if (!allowing.some((r) => holds(r, 'allow'))) {
      return {
        ok: false,
        reason: `the review_requests.where of role ${allowing.map((r) => `"${r.name}"`).join(', ')} does not allow reviewing this request for role "${name}"`,
      };
    }
  }
  return { ok: true };
}
