import type { AccessRequestView, AdminApi } from '@gatehouse/core';
import { call } from './http.js';
import { type NotifyTarget, type Posted, requestText } from './watcher.js';

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
 *
 * With `post`, each new request is also written to PagerDuty once, after
 * the on-call check (so a retry after PagerDuty failed does not post
 * twice): an incident on a named service (`POST /incidents`, with
 * `incident_key` gatehouse-access-request-<id>), or a note on one existing
 * incident (`POST /incidents/{id}/notes`), made as the PagerDuty user
 * `from` (PagerDuty's `From` header, required with an account API key),
 * saying what the plugin decided.
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
  /** Where each new request is written in PagerDuty, if anywhere. */
  post?: PagerDutyPost | undefined;
}

export type PagerDutyPost =
  | { kind: 'incident'; from: string; service: string; urgency: 'high' | 'low' }
  | { kind: 'note'; from: string; incidentId: string };

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
  const headers = {
    accept: 'application/vnd.pagerduty+json;version=2',
    authorization: `Token token=${cfg.token}`,
  };
  const url = (path: string) => `${cfg.apiUrl.replace(/\/$/, '')}${path}`;
  const get = async <T>(path: string, query: [string, string][]): Promise<T> => {
    const u = new URL(url(path));
    for (const [k, v] of query) u.searchParams.append(k, v);
    return JSON.parse(await call('GET', u.toString(), headers)) as T;
  };

  /** The service of exactly this name (`query` matches by substring). */
  async function serviceNamed(name: string): Promise<PdService | undefined> {
    const { services } = await get<{ services: PdService[] }>('/services', [['query', name]]);
    const s = services.find((x) => x.name === name);
    if (!s) log(`PagerDuty has no service named "${name}" (check the config)`);
    return s;
  }

  /** Writes the request and what was decided to PagerDuty (`post`); returns the incident's or note's id. */
  async function postRequest(post: PagerDutyPost, r: AccessRequestView, outcome: string): Promise<string> {
    const text = `${requestText(r)}\nGatehouse: ${outcome}`;
    const from = { ...headers, from: post.from };
    if (post.kind === 'note') {
      const { note } = JSON.parse(
        await call(
          'POST',
          url(`/incidents/${encodeURIComponent(post.incidentId)}/notes`),
          from,
          JSON.stringify({ note: { content: text } }),
        ),
      ) as { note?: { id?: unknown } };
      if (typeof note?.id !== 'string') throw new Error('PagerDuty POST /notes answered without a note id');
      return `note:${note.id}`;
    }
    const service = await serviceNamed(post.service);
    if (!service) throw new Error(`no PagerDuty service "${post.service}" to open the incident on`);
    const { incident } = JSON.parse(
      await call(
        'POST',
        url('/incidents'),
        from,
        JSON.stringify({
          incident: {
            type: 'incident',
            title: `Gatehouse access request from ${r.user}: ${r.roles.join(', ') || 'resources'}`.slice(
              0,
              255,
            ),
            service: { id: service.id, type: 'service_reference' },
            urgency: post.urgency,
            incident_key: `gatehouse-access-request-${r.id}`,
            body: { type: 'incident_body', details: text },
          },
        }),
      ),
    ) as { incident?: { id?: unknown } };
    if (typeof incident?.id !== 'string') throw new Error('PagerDuty POST /incidents answered without an id');
    return `incident:${incident.id}`;
  }

  /** The first configured service `pdUser` is on call for, if any. */
  async function onCallService(pdUser: string): Promise<string | undefined> {
    const policies = new Map<string, string>();
    for (const name of cfg.services) {
      const s = await serviceNamed(name);
      if (s) policies.set(s.escalation_policy.id, name);
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

  /** Whether `r`'s requester is on call (PagerDuty reads only): the outcome to keep, and in words. */
  async function lookUp(r: AccessRequestView): Promise<{ service?: string; outcome: string; words: string }> {
    const email = cfg.emails[r.user];
    if (!email) {
      return {
        outcome: 'not-mapped',
        words: `${r.user} has no PagerDuty email in the plugin's config; left to reviewers`,
      };
    }
    const { users } = await get<{ users: PdUser[] }>('/users', [['query', email]]);
    const pdUser = users.find((u) => u.email.toLowerCase() === email.toLowerCase());
    if (!pdUser) {
      log(`no PagerDuty user has the email ${email} (${r.user}); request ${r.id} left to reviewers`);
      return {
        outcome: 'no-pagerduty-user',
        words: `no PagerDuty user has the email ${email}; left to reviewers`,
      };
    }
    const service = await onCallService(pdUser.id);
    if (!service) {
      return {
        outcome: 'not-on-call',
        words: `${r.user} is not on call for ${cfg.services.join(', ')}; left to reviewers`,
      };
    }
    return {
      service,
      outcome: `approved:${service}`,
      words: `${r.user} is on call for "${service}": approved by the PagerDuty plugin`,
    };
  }

  /** The bot's approval; false when core refused it (the request stays with human reviewers). */
  async function approve(r: AccessRequestView, service: string): Promise<boolean> {
    const c = api();
    try {
      await c.api.reviewAccessRequest(r.id, {
        verdict: 'approve',
        reason: `${r.user} is on call for PagerDuty service "${service}"`,
      });
      log(`approved request ${r.id}: ${r.user} is on call for "${service}"`);
      return true;
    } catch (e) {
      const status = (e as { status?: number }).status;
      if (status === undefined || status >= 500) throw e;
      // Core refused (e.g. the bot role may not review these roles): trying again would not
      // change core's mind.
      log(`could not approve request ${r.id} for on-call ${r.user}: ${(e as Error).message}`);
      return false;
    } finally {
      c.close();
    }
  }

  return {
    async notify(r: AccessRequestView, prev: Posted | undefined) {
      // Only a new pending request is checked and posted, once; later changes are not PagerDuty's business.
      if (prev || r.state !== 'pending') return prev?.ref;
      const found = await lookUp(r);
      // Posted before the approval (which closes the request, after which it is not told
      // again) and after the reads: a PagerDuty failure posts nothing, so its retry cannot
      // post twice. Only a gateway failure between the post and the approval retries both.
      const posted = cfg.post ? ` ${await postRequest(cfg.post, r, found.words)}` : '';
      if (found.service && !(await approve(r, found.service))) return `review-refused${posted}`;
      return `${found.outcome}${posted}`;
    },
  };
}
