import type { AccessRequestView, AdminApi } from '@gatehouse/core';
import { call } from './http.js';
import type { NotifyTarget, Posted } from './watcher.js';

/**
 * The PagerDuty plugin: approves a new request by itself when its requester
 * is on call, right now, for one of the named PagerDuty `services` (REST API
 * v2: the service's escalation policy from GET /services, the requester's
 * PagerDuty user from GET /users by email, then GET /oncalls for that policy
 * and user). Anyone else's request is left pending for human reviewers. The
 * review is made by the plugin's bot user (its role needs `review_requests`)
 * with a reason naming the service, so core still decides and the audit log
 * says why. PagerDuty unreachable: the request stays pending (requests never
 * depend on a plugin) and the check is made again after the reconnect.
 */
export interface PagerDutyPluginConfig {
  /** https://api.pagerduty.com (a fixture in tests). */
  apiUrl: string;
  /** A REST API key (sent as `Authorization: Token token=...`). */
  token: string;
  /** Service names whose on-call responders are approved. */
  services: string[];
  /** Gatehouse user -> the email of their PagerDuty user. */
  emails: Record<string, string>;
}

interface Reference {
  id: string;
}
interface PdService {
  id: string;
  name: string;
  escalation_policy: Reference;
}
interface PdUser {
  id: string;
  email: string;
}
interface PdOncall {
  user: Reference;
  escalation_policy: Reference;
}

export function pagerDutyTarget(
  cfg: PagerDutyPluginConfig,
  api: () => { api: Pick<AdminApi, 'reviewAccessRequest'>; close(): void },
  log: (msg: string) => void,
): NotifyTarget {
  const get = async <T>(path: string, query: [string, string][]): Promise<T> => {
    const url = new URL(`${cfg.apiUrl.replace(/\/$/, '')}${path}`);
    for (const [k, v] of query) url.searchParams.append(k, v);
    return JSON.parse(
      await call('GET', url.toString(), {
        accept: 'application/vnd.pagerduty+json;version=2',
        authorization: `Token token=${cfg.token}`,
      }),
    ) as T;
  };

  /** The first configured service `pdUser` is on call for, if any. */
  async function onCallService(pdUser: string): Promise<string | undefined> {
    const policies = new Map<string, string>();
    for (const name of cfg.services) {
      // `query` matches by substring: only the service of exactly this name counts.
      const { services } = await get<{ services: PdService[] }>('/services', [['query', name]]);
      const s = services.find((x) => x.name === name);
      if (!s) log(`PagerDuty has no service named "${name}" (check services: in the config)`);
      else policies.set(s.escalation_policy.id, name);
    }
    if (policies.size === 0) return undefined;
    const { oncalls } = await get<{ oncalls: PdOncall[] }>('/oncalls', [
      ...[...policies.keys()].map((id): [string, string] => ['escalation_policy_ids[]', id]),
      ['user_ids[]', pdUser],
    ]);
    // The filters are PagerDuty's; the match is checked here again so a broader answer approves nothing.
    const hit = oncalls.find((o) => o.user.id === pdUser && policies.has(o.escalation_policy.id));
    return hit ? policies.get(hit.escalation_policy.id) : undefined;
  }

  return {
    async notify(r: AccessRequestView, prev: Posted | undefined) {
      // Only a new pending request is checked, once; later changes are not PagerDuty's business.
      if (prev || r.state !== 'pending') return prev?.ref;
      const email = cfg.emails[r.user];
      if (!email) return 'not-mapped';
      const { users } = await get<{ users: PdUser[] }>('/users', [['query', email]]);
      const pdUser = users.find((u) => u.email.toLowerCase() === email.toLowerCase());
      if (!pdUser) {
        log(`no PagerDuty user has the email ${email} (${r.user}); request ${r.id} left to reviewers`);
        return 'no-pagerduty-user';
      }
      const service = await onCallService(pdUser.id);
      if (!service) return 'not-on-call';
      const c = api();
      try {
        await c.api.reviewAccessRequest(r.id, {
          verdict: 'approve',
          reason: `${r.user} is on call for PagerDuty service "${service}"`,
        });
        log(`approved request ${r.id}: ${r.user} is on call for "${service}"`);
      } catch (e) {
        const status = (e as { status?: number }).status;
        if (status === undefined || status >= 500) throw e;
        // Core refused (e.g. the bot role may not review these roles): the request stays with
        // human reviewers; trying again would not change core's mind.
        log(`could not approve request ${r.id} for on-call ${r.user}: ${(e as Error).message}`);
        return 'review-refused';
      } finally {
        c.close();
      }
      return `approved:${service}`;
    },
  };
}
