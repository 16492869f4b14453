import { randomBytes } from 'node:crypto';
import type { AuditEmitter } from '@gatehouse/audit';
import type { Backend } from '../backend/types.js';
import type { Clock } from '../clock.js';
import { GatehouseError, isGatehouseError } from '../errors.js';
import type { Identity, Traits, UserRecord } from '../identity/types.js';
import type { LogFn } from '../log.js';
import { AccessChecker } from '../rbac/checker.js';
import { ROLE_NAME_RE } from '../rbac/role-schema.js';
import { expandValues } from '../rbac/templates.js';
import type { Role } from '../rbac/types.js';
import { formatDuration, isDuration, parseDuration } from '../util/duration.js';
import { decideRequest, mayReview } from './policy.js';
import type {
  AccessRequestChange,
  AccessRequestState,
  AccessRequestView,
  CreateAccessRequest,
  RequestedResource,
  ReviewAccessRequest,
} from './types.js';

export const ACCESS_REQUESTS_PREFIX = 'access_requests/';
/** How long a request stays listed after its access ended (then the backend forgets it). */
const RETAIN_MS = 7 * 24 * 3600 * 1000;
const DEFAULT_TTL_MS = 3600 * 1000;
const MAX_REASON = 1024;
const MAX_ITEMS = 16;
const ID_RE = /^[0-9a-f]{8,64}$/;
/** Longest setTimeout Node accepts; longer waits re-arm. */
const MAX_TIMER_MS = 2 ** 31 - 1;
const RESOURCE_KINDS = ['db', 'node', 'kube', 'desktop'] as const;

export interface AccessRequestServiceOptions {
  backend: Backend;
  clock: Clock;
  audit: AuditEmitter;
  log: LogFn;
  getUser: (name: string) => Promise<UserRecord | undefined>;
  /** Throws for an unknown role name. */
  resolveRoles: (names: string[]) => Promise<Role[]>;
  /** A registered resource by kind and name (for requests that name resources). */
  findResource: (
    r: RequestedResource,
  ) => Promise<{ name: string; labels: Record<string, string> } | undefined>;
}

/** Who reviews: a user with their roles, or the local operator (`gatehouse --data-dir ... request review`). */
export type Reviewer =
  | { kind: 'user'; name: string; roles: readonly Role[]; traits: Traits }
  | { kind: 'operator'; name: string };

/** What an approved request in a certificate grants now. */
export interface RequestGrant {
  id: string;
  roles: string[];
  resources?: RequestedResource[] | undefined;
  expires: Date;
}

/**
 * Access requests (docs/decisions/0036-access-requests.md): core owns their
 * state and every decision on them (who may ask, who may review, the
 * thresholds); the CLI, the API and plugins only carry them. Stored at
 * `access_requests/<id>` with a TTL past their end; state changes are
 * compare-and-swap, so two gateways or two reviewers cannot lose a review.
 */
export class AccessRequestService {
  readonly #d: AccessRequestServiceOptions;
  readonly #timers = new Map<string, NodeJS.Timeout>();
  #closed = false;

  constructor(opts: AccessRequestServiceOptions) {
    for (const k of [
      'backend',
      'clock',
      'audit',
      'log',
      'getUser',
      'resolveRoles',
      'findResource',
    ] as const) {
      if (!opts[k]) throw new TypeError(`AccessRequestService: missing option "${k}"`);
    }
    this.#d = opts;
  }

  /** Arms the expiry of every open request (at gateway start). */
  async start(): Promise<void> {
    for (const r of await this.list()) this.track(r);
  }

  close(): void {
    this.#closed = true;
    for (const t of this.#timers.values()) clearTimeout(t);
    this.#timers.clear();
  }

  /**
   * Asks for `req.roles` or `req.resources` for `requester`, as their
   * standing roles allow (`allow.request`); the request then waits for reviews.
   */
  async create(requester: string, req: CreateAccessRequest, actor = requester): Promise<AccessRequestView> {
    const user = await this.#d.getUser(requester);
    if (!user) {
      throw new GatehouseError('GH_ERR_NOT_FOUND', `user "${requester}" not found`, {
        hint: 'list users with gatehouse users ls',
      });
    }
    const wantedRoles = uniqueList(req.roles, 'roles');
    const wantedResources = uniqueList(req.resources, 'resources').map(parseResource);
    if (wantedRoles.length === 0 && wantedResources.length === 0) {
      throw new GatehouseError('GH_ERR_VALIDATION', 'an access request needs roles or resources', {
        hint: 'pass --roles ROLE[,ROLE] or --resource KIND/NAME (e.g. db/orders)',
      });
    }
    for (const r of wantedRoles) {
      if (!ROLE_NAME_RE.test(r)) {
        throw new GatehouseError('GH_ERR_VALIDATION', `"${r}" is not a role name`, {
          hint: 'role names are lowercase letters, digits and dashes',
        });
      }
    }
    const reason = typeof req.reason === 'string' ? req.reason.trim() : '';
    if (reason.length > MAX_REASON) {
      throw new GatehouseError('GH_ERR_VALIDATION', `the reason is longer than ${MAX_REASON} characters`, {
        hint: 'link to a ticket instead of pasting it',
      });
    }
    let ttlMs = DEFAULT_TTL_MS;
    if (req.ttl !== undefined) {
      if (typeof req.ttl !== 'string' || !isDuration(req.ttl) || parseDuration(req.ttl) <= 0) {
        throw new GatehouseError('GH_ERR_VALIDATION', `invalid ttl "${String(req.ttl)}"`, {
          hint: 'write durations like 30m, 2h or 1h30m',
        });
      }
      ttlMs = parseDuration(req.ttl);
    }

    const standing = await this.#d.resolveRoles(user.roles);
    const refuse = async (reason: string, what: string): Promise<never> => {
      await this.#denied(actor, what, reason);
      throw new GatehouseError('GH_ERR_ACCESS_DENIED', `access request refused: ${reason}`, {
        hint: 'ask an admin which roles you may request (allow.request in your roles)',
        details: { reason },
      });
    };
    const decisions = [];
    if (wantedRoles.length > 0) {
      const d = decideRequest(standing, user.traits, wantedRoles, 'roles');
      if (!d.ok) return refuse(d.reason, d.role);
      decisions.push(d);
      await this.#mustExist(wantedRoles);
    }
    const grantedRoles = new Set(wantedRoles);
    for (const res of wantedResources) {
      const found = await this.#d.findResource(res);
      if (!found) {
        throw new GatehouseError('GH_ERR_NOT_FOUND', `${res.kind} "${res.name}" is not registered`, {
          hint: `list them with gatehouse ${res.kind === 'db' ? 'db ls' : res.kind === 'kube' ? 'kube ls' : res.kind === 'desktop' ? 'desktops ls' : 'ls'}`,
        });
      }
      const reaching = await this.#searchRolesReaching(standing, user.traits, res, found);
      if (reaching.length === 0) {
        return refuse(
          `none of your search_as_roles reaches ${res.kind} "${res.name}"`,
          `${res.kind}/${res.name}`,
        );
      }
      const d = decideRequest(standing, user.traits, reaching, 'search_as_roles');
      if (!d.ok) return refuse(d.reason, `${res.kind}/${res.name}`);
      decisions.push(d);
      for (const r of reaching) grantedRoles.add(r);
    }
    const thresholds = {
      approve: Math.max(...decisions.map((d) => d.thresholds.approve)),
      deny: Math.min(...decisions.map((d) => d.thresholds.deny)),
    };
    if (decisions.some((d) => d.reasonRequired) && reason === '') {
      throw new GatehouseError('GH_ERR_VALIDATION', 'a reason is required for this access request', {
        hint: 'say why you need the access: --reason "INC-4211: fix stuck orders"',
      });
    }
    const maxMs = Math.min(...decisions.map((d) => d.maxDurationMs));
    if (ttlMs > maxMs) {
      throw new GatehouseError(
        'GH_ERR_VALIDATION',
        `ttl ${formatDuration(ttlMs)} is longer than your roles allow for this request (${formatDuration(maxMs)})`,
        { hint: `ask for ${formatDuration(maxMs)} or less (--ttl)` },
      );
    }
    const now = this.#d.clock.now();
    const view: AccessRequestView = {
      id: randomBytes(16).toString('hex'),
      user: user.name,
      roles: [...grantedRoles],
      ...(wantedResources.length > 0 ? { resources: wantedResources } : {}),
      reason,
      state: 'pending',
      thresholds,
      reviews: [],
      created: now.toISOString(),
      expires: new Date(now.getTime() + ttlMs).toISOString(),
    };
    await this.#d.backend.create(ACCESS_REQUESTS_PREFIX + view.id, JSON.stringify(view), {
      ttlMs: ttlMs + RETAIN_MS,
    });
    await this.#d.audit.emit({
      type: 'access_request.create',
      user: actor,
      ...requestFields(view),
      reason,
      expires: view.expires,
    });
    this.track(view);
    return view;
  }

  /** Every request still stored, newest first, with expiry applied. */
  async list(): Promise<AccessRequestView[]> {
    const items = await this.#d.backend.range(ACCESS_REQUESTS_PREFIX);
    return items
      .map((i) => this.#effective(decode(i.value)))
      .sort((a, b) => b.created.localeCompare(a.created));
  }

  /**
   * Every change after backend revision `after`: first each stored request
   * written since (its latest state: what a watcher missed while away), in
   * revision order, then each change as it is made, until `signal` aborts.
   * The live watch is opened before the stored requests are read, so a
   * change made in between is neither lost nor told twice (per key, only
   * revisions above the one already told pass). Deletions (the backend
   * forgetting a request a week after its end) are not changes to tell.
   */
  async *watch(after: number, signal: AbortSignal): AsyncGenerator<AccessRequestChange> {
    const live = this.#d.backend.watch(ACCESS_REQUESTS_PREFIX, { signal });
    const told = new Map<string, number>();
    const stored = (await this.#d.backend.range(ACCESS_REQUESTS_PREFIX))
      .filter((i) => i.revision > after)
      .sort((a, b) => a.revision - b.revision);
    for (const i of stored) {
      told.set(i.key, i.revision);
      yield this.#change(i.revision, i.value);
    }
    for await (const ev of live) {
      if (ev.type !== 'put' || ev.item.revision <= after) continue;
      if (ev.item.revision <= (told.get(ev.item.key) ?? 0)) continue;
      told.set(ev.item.key, ev.item.revision);
      yield this.#change(ev.item.revision, ev.item.value);
    }
  }

  #change(cursor: number, value: string): AccessRequestChange {
    const request = this.#effective(decode(value));
    const type =
      request.state === 'expired'
        ? 'access_request.expire'
        : request.state === 'dropped'
          ? 'access_request.drop'
          : request.reviews.length === 0
            ? 'access_request.create'
            : 'access_request.review';
    return { cursor, type, request };
  }

  /**
   * Whether `reviewer` may review `r` by their roles' `review_requests`
   * (roles and `where`, which may look at the requester's traits now).
   */
  async reviewable(
    reviewer: { roles: readonly Role[]; traits: Traits },
    r: AccessRequestView,
  ): Promise<{ ok: true } | { ok: false; reason: string }> {
    const mentioned = reviewer.roles.some(
      (x) => x.allow.review_requests?.where !== undefined || x.deny.review_requests?.where !== undefined,
    );
    // Only a `where` reads the requester's traits: no user lookup otherwise.
    const requesterTraits = mentioned ? ((await this.#d.getUser(r.user))?.traits ?? {}) : {};
    return mayReview(reviewer.roles, reviewer.traits, {
      roles: r.roles,
      reason: r.reason,
      user: r.user,
      requesterTraits,
    });
  }

  async get(id: string): Promise<AccessRequestView> {
    const found = await this.find(id);
    if (!found) throw notFound(id);
    return found;
  }

  async find(id: string): Promise<AccessRequestView | undefined> {
    if (!ID_RE.test(id)) return undefined;
    const item = await this.#d.backend.get(ACCESS_REQUESTS_PREFIX + id);
    return item ? this.#effective(decode(item.value)) : undefined;
  }

  /**
   * One review. Refused: the requester reviewing their own request, a
   * reviewer whose roles do not cover every requested role, a second review
   * by the same reviewer, and any review of a request that is closed
   * (expired, denied, dropped) or an approval of one already approved. A
   * denial of an approved request is taken: it ends the access.
   */
  async review(reviewer: Reviewer, id: string, req: ReviewAccessRequest): Promise<AccessRequestView> {
    if (req.verdict !== 'approve' && req.verdict !== 'deny') {
      throw new GatehouseError('GH_ERR_VALIDATION', 'a review approves or denies', {
        hint: 'pass --approve or --deny',
      });
    }
    const reason = typeof req.reason === 'string' ? req.reason.trim() : '';
    if (reason.length > MAX_REASON) {
      throw new GatehouseError('GH_ERR_VALIDATION', `the reason is longer than ${MAX_REASON} characters`, {
        hint: 'keep review reasons short',
      });
    }
    for (let attempt = 0; ; attempt++) {
      const item = ID_RE.test(id) ? await this.#d.backend.get(ACCESS_REQUESTS_PREFIX + id) : undefined;
      if (!item) throw notFound(id);
      const cur = this.#effective(decode(item.value));
      if (cur.user === reviewer.name) {
        await this.#denied(
          reviewer.name,
          cur.roles.join(','),
          `request ${id}: requesters cannot review their own request`,
        );
        throw new GatehouseError('GH_ERR_ACCESS_DENIED', 'you cannot review your own access request', {
          hint: 'ask someone who may review it (gatehouse request show ID lists the reviews so far)',
        });
      }
      if (reviewer.kind === 'user') {
        const may = await this.reviewable(reviewer, cur);
        if (!may.ok) {
          await this.#denied(reviewer.name, cur.roles.join(','), `request ${id}: ${may.reason}`);
          throw new GatehouseError('GH_ERR_ACCESS_DENIED', `access denied: ${may.reason}`, {
            hint: 'reviews need a role with review_requests for every requested role',
            details: { reason: may.reason },
          });
        }
      }
      if (cur.reviews.some((r) => r.author === reviewer.name)) {
        throw new GatehouseError('GH_ERR_ALREADY_EXISTS', `you already reviewed access request ${id}`, {
          hint: 'each reviewer reviews a request once; another reviewer may add theirs',
        });
      }
      if (cur.state === 'expired' || cur.state === 'denied' || cur.state === 'dropped') {
        throw closed(cur);
      }
      if (cur.state === 'approved' && req.verdict === 'approve') throw closed(cur);
      const now = this.#d.clock.now().toISOString();
      const reviews = [...cur.reviews, { author: reviewer.name, verdict: req.verdict, reason, time: now }];
      const approvals = reviews.filter((r) => r.verdict === 'approve').length;
      const denials = reviews.filter((r) => r.verdict === 'deny').length;
      let state: AccessRequestState = cur.state;
      if (denials >= cur.thresholds.deny) state = 'denied';
      else if (state === 'pending' && approvals >= cur.thresholds.approve) state = 'approved';
      const next: AccessRequestView = {
        ...cur,
        reviews,
        state,
        ...(state !== cur.state ? { resolved: { time: now, by: reviewer.name, reason } } : {}),
      };
      try {
        await this.#d.backend.compareAndSwap(item.key, item.revision, JSON.stringify(next), {
          ttlMs: this.#ttlLeft(next),
        });
      } catch (e) {
        // Another review landed first: judge this one against it.
        if (isGatehouseError(e, 'GH_ERR_CONFLICT') && attempt < 5) continue;
        throw e;
      }
      await this.#d.audit.emit({
        type: 'access_request.review',
        user: reviewer.name,
        ...requestFields(next),
        verdict: req.verdict,
        reason,
        state: next.state,
      });
      this.track(next);
      return next;
    }
  }

  /** Withdraws a pending or approved request (its sessions end). The caller decided who may. */
  async drop(actor: string, id: string, reason = ''): Promise<AccessRequestView> {
    const next = await this.#transition(
      id,
      (cur) => {
        if (cur.state !== 'pending' && cur.state !== 'approved') throw closed(cur);
        return 'dropped';
      },
      actor,
      reason,
    );
    if (!next) throw notFound(id);
    await this.#d.audit.emit({
      type: 'access_request.drop',
      user: actor,
      ...requestFields(next),
      reason,
    });
    return next;
  }

  /**
   * What the approved requests a certificate names grant now. Throws
   * GH_ERR_ACCESS_DENIED (details.reason `access request expired` for an
   * expiry) when any of them is not approved any more, belongs to someone
   * else or is gone: the certificate is then refused as a lock refuses it.
   */
  async grants(identity: Pick<Identity, 'user' | 'accessRequests'>): Promise<RequestGrant[]> {
    const out: RequestGrant[] = [];
    for (const id of identity.accessRequests ?? []) {
      const r = await this.find(id);
      if (!r || r.user !== identity.user) {
        throw new GatehouseError('GH_ERR_ACCESS_DENIED', `access request ${id} no longer exists`, {
          hint: 'log in again: gatehouse login (or ask for access again: gatehouse request create)',
          details: { reason: 'access request gone', request_id: id },
        });
      }
      if (r.state !== 'approved') {
        throw new GatehouseError(
          'GH_ERR_ACCESS_DENIED',
          `access request ${id} ${r.state === 'expired' ? `expired at ${r.expires}` : `was ${r.state}${r.resolved ? ` by ${r.resolved.by}` : ''}`}`,
          {
            hint: 'log in again without it (gatehouse login), or ask for access again (gatehouse request create)',
            details: { reason: `access request ${r.state}`, request_id: id },
          },
        );
      }
      out.push({ id, roles: r.roles, resources: r.resources, expires: new Date(r.expires) });
    }
    return out;
  }

  /** Arms (or re-arms) the expiry of an open request; closed ones need none. */
  track(r: AccessRequestView): void {
    clearTimeout(this.#timers.get(r.id));
    this.#timers.delete(r.id);
    if (this.#closed || (r.state !== 'pending' && r.state !== 'approved')) {
      // Expired by the clock but not recorded yet (e.g. while no gateway ran): record it now.
      if (r.state === 'expired' && !this.#closed) void this.#expire(r.id);
      return;
    }
    const left = Date.parse(r.expires) - this.#d.clock.now().getTime();
    const t = setTimeout(
      () => {
        this.#timers.delete(r.id);
        if (left > MAX_TIMER_MS) {
          void this.find(r.id).then((cur) => cur && this.track(cur));
          return;
        }
        void this.#expire(r.id);
      },
      Math.max(0, Math.min(left, MAX_TIMER_MS)),
    );
    t.unref();
    this.#timers.set(r.id, t);
  }

  /** Records the expiry once (the compare-and-swap makes one gateway of several write it) and audits it. */
  async #expire(id: string): Promise<void> {
    try {
      const next = await this.#transition(
        id,
        (cur, stored) => (cur.state === 'expired' && stored.state !== 'expired' ? 'expired' : undefined),
        'system',
        '',
      );
      if (next) {
        await this.#d.audit.record({
          type: 'access_request.expire',
          user: 'system',
          ...requestFields(next),
          expires: next.expires,
        });
      }
    } catch (err) {
      if (isGatehouseError(err, 'GH_ERR_NOT_FOUND') || this.#closed) return;
      this.#d.log('error', `recording the expiry of access request ${id} failed`, err);
    }
  }

  /**
   * A state change by compare-and-swap; `decide` sees the request as it
   * counts now and as stored, and returns the new state (undefined: none).
   */
  async #transition(
    id: string,
    decide: (cur: AccessRequestView, stored: AccessRequestView) => AccessRequestState | undefined,
    by: string,
    reason: string,
  ): Promise<AccessRequestView | undefined> {
    for (let attempt = 0; ; attempt++) {
      const item = ID_RE.test(id) ? await this.#d.backend.get(ACCESS_REQUESTS_PREFIX + id) : undefined;
      if (!item) throw notFound(id);
      const stored = decode(item.value);
      const cur = this.#effective(stored);
      const state = decide(cur, stored);
      if (state === undefined) return undefined;
      const now = this.#d.clock.now().toISOString();
      const next: AccessRequestView = {
        ...cur,
        state,
        resolved: { time: now, by, ...(reason ? { reason } : {}) },
      };
      try {
        await this.#d.backend.compareAndSwap(item.key, item.revision, JSON.stringify(next), {
          ttlMs: this.#ttlLeft(next),
        });
      } catch (e) {
        if (isGatehouseError(e, 'GH_ERR_CONFLICT') && attempt < 5) continue;
        throw e;
      }
      this.track(next);
      return next;
    }
  }

  #ttlLeft(r: AccessRequestView): number {
    return Math.max(1, Date.parse(r.expires) + RETAIN_MS - this.#d.clock.now().getTime());
  }

  /** A pending or approved request past its end is expired, whether or not the expiry was recorded yet. */
  #effective(r: AccessRequestView): AccessRequestView {
    if (
      (r.state === 'pending' || r.state === 'approved') &&
      Date.parse(r.expires) <= this.#d.clock.now().getTime()
    ) {
      return { ...r, state: 'expired' };
    }
    return r;
  }

  async #mustExist(roles: string[]): Promise<void> {
    try {
      await this.#d.resolveRoles(roles);
    } catch (e) {
      if (!isGatehouseError(e, 'GH_ERR_ACCESS_DENIED')) throw e;
      throw new GatehouseError('GH_ERR_NOT_FOUND', e.message, {
        hint: 'list the roles with gatehouse roles ls, or ask an admin which ones you may request',
        cause: e,
      });
    }
  }

  /** The search_as_roles (literal names) of `standing` whose roles reach the resource. */
  async #searchRolesReaching(
    standing: readonly Role[],
    traits: Traits,
    res: RequestedResource,
    found: { name: string; labels: Record<string, string> },
  ): Promise<string[]> {
    const names = new Set(
      standing.flatMap((r) => expandValues(r.allow.request?.search_as_roles ?? [], traits)),
    );
    const out: string[] = [];
    for (const name of names) {
      if (!ROLE_NAME_RE.test(name)) continue;
      let role: Role;
      try {
        [role] = (await this.#d.resolveRoles([name])) as [Role];
      } catch (e) {
        if (isGatehouseError(e, 'GH_ERR_ACCESS_DENIED')) continue; // named but not (any more) defined
        throw e;
      }
      const c = AccessChecker.from([role], traits);
      const seen =
        res.kind === 'db'
          ? c.databaseVisibility(found)
          : res.kind === 'node'
            ? c.nodeVisibility(found)
            : res.kind === 'kube'
              ? c.kubeVisibility(found)
              : c.desktopVisibility(found);
      if (seen.visible) out.push(name);
    }
    return out;
  }

  /** Audits a refusal; `what` names the roles (or resource) asked for or reviewed. */
  async #denied(user: string, what: string, reason: string): Promise<void> {
    await this.#d.audit.emit({
      type: 'access.denied',
      user,
      resource_kind: 'access_request',
      resource: what,
      reason,
    });
  }
}

function requestFields(r: AccessRequestView) {
  return {
    request_id: r.id,
    requester: r.user,
    roles: r.roles,
    ...(r.resources?.length ? { resources: r.resources.map((x) => `${x.kind}/${x.name}`) } : {}),
  };
}

function uniqueList(v: unknown, what: string): string[] {
  if (v === undefined) return [];
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) {
    throw new GatehouseError('GH_ERR_VALIDATION', `${what} must be a list of strings`, {
      hint: `pass ${what} as a list, e.g. ["prod-db"]`,
    });
  }
  const out = [...new Set(v.map((x) => x.trim()).filter(Boolean))];
  if (out.length > MAX_ITEMS) {
    throw new GatehouseError('GH_ERR_VALIDATION', `at most ${MAX_ITEMS} ${what} per request`, {
      hint: 'split it into several requests',
    });
  }
  return out;
}

/** `db/orders` -> { kind: 'db', name: 'orders' }. */
export function parseResource(text: string): RequestedResource {
  const i = text.indexOf('/');
  const kind = text.slice(0, i);
  const name = text.slice(i + 1);
  if (
    i <= 0 ||
    !(RESOURCE_KINDS as readonly string[]).includes(kind) ||
    !/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/.test(name)
  ) {
    throw new GatehouseError('GH_ERR_VALIDATION', `"${text}" is not a resource`, {
      hint: `write KIND/NAME with KIND one of ${RESOURCE_KINDS.join(', ')} (e.g. db/orders)`,
    });
  }
  return { kind: kind as RequestedResource['kind'], name };
}

function notFound(id: string): GatehouseError {
  return new GatehouseError('GH_ERR_NOT_FOUND', `access request "${id}" not found`, {
    hint: 'list requests with gatehouse request ls',
  });
}

function closed(r: AccessRequestView): GatehouseError {
  const what =
    r.state === 'expired'
      ? `expired at ${r.expires}`
      : r.state === 'approved'
        ? 'is already approved'
        : `was ${r.state}${r.resolved ? ` by ${r.resolved.by}` : ''}`;
  return new GatehouseError('GH_ERR_ACCESS_REQUEST_CLOSED', `access request ${r.id} ${what}`, {
    hint:
      r.state === 'approved'
        ? 'nothing to do; a denial still ends it (gatehouse request review ID --deny)'
        : 'ask for access again: gatehouse request create',
    details: { state: r.state },
  });
}

function decode(value: string): AccessRequestView {
  try {
    const v = JSON.parse(value) as AccessRequestView;
    if (typeof v?.id !== 'string' || typeof v.user !== 'string' || !Array.isArray(v.roles))
      throw new Error('shape');
    return v;
  } catch (cause) {
    // An unreadable request grants nothing (grants() then refuses the certificate).
    throw new GatehouseError('GH_ERR_INTERNAL', 'a stored access request is unreadable', {
      hint: `inspect the ${ACCESS_REQUESTS_PREFIX} keys in the backend`,
      cause,
    });
  }
}
