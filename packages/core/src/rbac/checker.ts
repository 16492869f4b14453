import type { Traits } from '../identity/types.js';
import type { GuardSpec } from '../sessions/guards.js';
import { formatLabels, isLiteralPattern, matchAny, matchLabels, PatternCache } from './labels.js';
import {
  DEFAULT_MAX_SESSION_TTL_MS,
  MAX_SESSION_TTL_CAP_MS,
  ROLE_DEFAULTS,
  roleDurationMs,
} from './role-schema.js';
import { expandValues } from './templates.js';
import type { JoinMode, ResourceKind, Role, RoleConditions, RoleOptions, Rule, Verb } from './types.js';

export interface AccessAllowed {
  allowed: true;
  /** The roles that granted access. */
  roles: string[];
}

export interface AccessDenied {
  allowed: false;
  /** A sentence the user sees, e.g. `role "dev" denies node_labels env=prod`. */
  reason: string;
  /** The role whose deny matched (denied-by-rule only). */
  role?: string | undefined;
  /** The role field that decided, e.g. "node_labels", "logins". */
  field?: string | undefined;
  kind: 'denied-by-rule' | 'not-allowed';
}

export type AccessDecision = AccessAllowed | AccessDenied;

/** Kubernetes access also says whom to impersonate. */
export type KubeAccessDecision = (AccessAllowed & { users: string[]; groups: string[] }) | AccessDenied;

/** Role options merged over all of a user's roles (rules in docs/decisions/0005). */
export interface EffectiveOptions {
  /** Longest certificate lifetime: the minimum over roles, in milliseconds. */
  maxSessionTtlMs: number;
  permitPty: boolean;
  portForwarding: boolean;
  agentForwarding: boolean;
  x11Forwarding: boolean;
  pinSourceIp: boolean;
  requireMfa: boolean;
  /**
   * Every new SSH, database and Kubernetes session (and web terminal) needs a
   * fresh second-factor check: a certificate bound to that one target
   * (docs/decisions/0037-session-mfa.md). Any role true → true.
   */
  requireSessionMfa: boolean;
  redactDbParams: boolean;
  /**
   * What a database session's audit records: each statement, or only the
   * session's start and end. `sessions` only when every role asks for it
   * (a role without `db_audit` asks for statements): fail toward more audit.
   */
  dbAudit: 'statements' | 'sessions';
  recordSession: { ssh: boolean; desktop: boolean; kube: boolean };
  enhancedRecording: string[];
  restrictNetwork: { deny: string[]; allow: string[] };
  /** Which opens `disk` recording audits (prefixes; union over roles). */
  recordingPaths: { include: string[]; exclude: string[] };
  /** Content guards of every role (each role's guards all apply). */
  guards: GuardSpec[];
}

type Selector = Record<string, string[]>;

/** Conditions after template expansion; an absent field stays absent. */
interface Expanded {
  logins?: string[] | undefined;
  node_labels?: Selector | undefined;
  db_labels?: Selector | undefined;
  db_users?: string[] | undefined;
  db_names?: string[] | undefined;
  kube_labels?: Selector | undefined;
  kube_groups?: string[] | undefined;
  kube_users?: string[] | undefined;
  desktop_labels?: Selector | undefined;
  desktop_logins?: string[] | undefined;
  rules: Rule[];
  join_sessions?: JoinMode[] | undefined;
}

interface ExpandedRole {
  name: string;
  allow: Expanded;
  deny: Expanded;
  options: RoleOptions;
}

const LIST_FIELDS = [
  'logins',
  'db_users',
  'db_names',
  'kube_groups',
  'kube_users',
  'desktop_logins',
] as const satisfies (keyof Expanded)[];
const SELECTOR_FIELDS = [
  'node_labels',
  'db_labels',
  'kube_labels',
  'desktop_labels',
] as const satisfies (keyof Expanded)[];

function expand(c: RoleConditions, traits: Traits): Expanded {
  const out: Expanded = { rules: c.rules ?? [], join_sessions: c.join_sessions };
  for (const f of LIST_FIELDS) {
    const v = c[f];
    if (v !== undefined) out[f] = expandValues(v, traits);
  }
  for (const f of SELECTOR_FIELDS) {
    const sel = c[f];
    if (sel === undefined) continue;
    const expanded: Selector = {};
    for (const [k, v] of Object.entries(sel)) {
      // A key whose values all expand to nothing keeps an empty list: it then matches nothing.
      expanded[k] = expandValues(typeof v === 'string' ? [v] : v, traits);
    }
    out[f] = expanded;
  }
  return out;
}

/** Resource kinds that go through the same "labels + one login-like value" check. */
interface SimpleKind {
  noun: string;
  labels: 'node_labels' | 'desktop_labels';
  logins: 'logins' | 'desktop_logins';
}
const NODE: SimpleKind = { noun: 'node', labels: 'node_labels', logins: 'logins' };
const DESKTOP: SimpleKind = { noun: 'desktop', labels: 'desktop_labels', logins: 'desktop_logins' };

/**
 * Decides access from a set of roles and the user's traits. Deny always wins;
 * access is allowed when a single role allows both the resource (by labels)
 * and the requested login/user/name. Templates are expanded once, patterns
 * compiled once per checker.
 */
export class AccessChecker {
  readonly roleNames: readonly string[];
  readonly #roles: readonly ExpandedRole[];
  readonly #cache = new PatternCache();

  private constructor(roles: ExpandedRole[]) {
    this.#roles = roles;
    this.roleNames = roles.map((r) => r.name);
  }

  static from(roles: readonly Role[], traits: Traits): AccessChecker {
    return new AccessChecker(
      roles.map((r) => ({
        name: r.name,
        allow: expand(r.allow, traits),
        deny: expand(r.deny, traits),
        options: r.options,
      })),
    );
  }

  checkNode(node: { name: string; labels: Record<string, string> }, login: string): AccessDecision {
    return this.#checkSimple(NODE, node, login);
  }

  checkDesktop(desktop: { name: string; labels: Record<string, string> }, login: string): AccessDecision {
    return this.#checkSimple(DESKTOP, desktop, login);
  }

  #checkSimple(
    k: SimpleKind,
    res: { name: string; labels: Record<string, string> },
    login: string,
  ): AccessDecision {
    for (const role of this.#roles) {
      const sel = role.deny[k.labels];
      const logins = role.deny[k.logins];
      if (sel === undefined && logins === undefined) continue;
      const lm = sel === undefined ? undefined : matchLabels(sel, res.labels, this.#cache);
      if (lm && !lm.matched) continue;
      if (logins !== undefined && !matchAny(logins, login, this.#cache)) continue;
      const parts: string[] = [];
      if (logins !== undefined) parts.push(`login "${login}"`);
      if (lm) parts.push(`${k.labels} ${lm.detail}`);
      return {
        allowed: false,
        kind: 'denied-by-rule',
        role: role.name,
        field: logins !== undefined ? k.logins : k.labels,
        reason: `role "${role.name}" denies ${parts.join(' on ')}`,
      };
    }
    const candidates = this.#roles.filter((r) => {
      const sel = r.allow[k.labels];
      return sel !== undefined && matchLabels(sel, res.labels, this.#cache).matched;
    });
    if (candidates.length === 0) {
      return {
        allowed: false,
        kind: 'not-allowed',
        field: k.labels,
        reason: `no role allows access to ${k.noun} "${res.name}" (${formatLabels(res.labels)})`,
      };
    }
    const granting = candidates.filter((r) => matchAny(r.allow[k.logins] ?? [], login, this.#cache));
    if (granting.length === 0) {
      const allowed = [...new Set(candidates.flatMap((r) => r.allow[k.logins] ?? []))];
      return {
        allowed: false,
        kind: 'not-allowed',
        field: k.logins,
        reason: `no role allows login "${login}" on ${k.noun} "${res.name}" (allowed logins: ${allowed.length ? allowed.join(', ') : 'none'})`,
      };
    }
    return { allowed: true, roles: granting.map((r) => r.name) };
  }

  checkDatabase(
    db: { name: string; labels: Record<string, string>; protocol: string },
    req: { dbUser: string; dbName: string },
  ): AccessDecision {
    for (const role of this.#roles) {
      const d = role.deny;
      if (d.db_labels === undefined && d.db_users === undefined && d.db_names === undefined) continue;
      const lm = d.db_labels === undefined ? undefined : matchLabels(d.db_labels, db.labels, this.#cache);
      if (lm && !lm.matched) continue;
      if (d.db_users !== undefined && !matchAny(d.db_users, req.dbUser, this.#cache)) continue;
      if (d.db_names !== undefined && !matchAny(d.db_names, req.dbName, this.#cache)) continue;
      const parts: string[] = [];
      if (d.db_users !== undefined) parts.push(`database user "${req.dbUser}"`);
      if (d.db_names !== undefined) parts.push(`database name "${req.dbName}"`);
      const what = parts.join(' and ');
      return {
        allowed: false,
        kind: 'denied-by-rule',
        role: role.name,
        field: d.db_users !== undefined ? 'db_users' : d.db_names !== undefined ? 'db_names' : 'db_labels',
        reason: `role "${role.name}" denies ${[what, lm ? `db_labels ${lm.detail}` : ''].filter(Boolean).join(' on ')}`,
      };
    }
    const candidates = this.#roles.filter(
      (r) =>
        r.allow.db_labels !== undefined && matchLabels(r.allow.db_labels, db.labels, this.#cache).matched,
    );
    if (candidates.length === 0) {
      return {
        allowed: false,
        kind: 'not-allowed',
        field: 'db_labels',
        reason: `no role allows access to database "${db.name}" (${formatLabels(db.labels)})`,
      };
    }
    const userOk = candidates.filter((r) => matchAny(r.allow.db_users ?? [], req.dbUser, this.#cache));
    if (userOk.length === 0) {
      const allowed = [...new Set(candidates.flatMap((r) => r.allow.db_users ?? []))];
      return {
        allowed: false,
        kind: 'not-allowed',
        field: 'db_users',
        reason: `no role allows database user "${req.dbUser}" on database "${db.name}" (allowed users: ${allowed.length ? allowed.join(', ') : 'none'})`,
      };
    }
    // An empty dbName (a client that names no database) only passes a role allowing any name.
    const granting = userOk.filter((r) => matchAny(r.allow.db_names ?? [], req.dbName, this.#cache));
    if (granting.length === 0) {
      const allowed = [...new Set(userOk.flatMap((r) => r.allow.db_names ?? []))];
      return {
        allowed: false,
        kind: 'not-allowed',
        field: 'db_names',
        reason: `no role allows database name "${req.dbName}" as user "${req.dbUser}" on database "${db.name}" (allowed names: ${allowed.length ? allowed.join(', ') : 'none'})`,
      };
    }
    return { allowed: true, roles: granting.map((r) => r.name) };
  }

  /**
   * Whether a database shows up in the user's `db ls`: some role's db_labels
   * match and no role denies its labels outright. Also reports the db users
   * and names those roles allow, for display.
   */
  databaseVisibility(db: { name: string; labels: Record<string, string> }): {
    visible: boolean;
    dbUsers: string[];
    dbNames: string[];
  } {
    const hidden = { visible: false, dbUsers: [], dbNames: [] };
    for (const role of this.#roles) {
      const d = role.deny;
      if (d.db_labels === undefined || d.db_users !== undefined || d.db_names !== undefined) continue;
      if (matchLabels(d.db_labels, db.labels, this.#cache).matched) return hidden;
    }
    const roles = this.#roles.filter(
      (r) =>
        r.allow.db_labels !== undefined && matchLabels(r.allow.db_labels, db.labels, this.#cache).matched,
    );
    if (roles.length === 0) return hidden;
    return {
      visible: true,
      dbUsers: [...new Set(roles.flatMap((r) => r.allow.db_users ?? []))],
      dbNames: [...new Set(roles.flatMap((r) => r.allow.db_names ?? []))],
    };
  }

  /**
   * Whether a Kubernetes cluster shows up in the user's `kube ls`: some
   * role's kube_labels match and no role denies its labels outright. Also
   * reports the users and groups those roles allow, for display.
   */
  kubeVisibility(cluster: { name: string; labels: Record<string, string> }): {
    visible: boolean;
    kubeUsers: string[];
    kubeGroups: string[];
  } {
    const hidden = { visible: false, kubeUsers: [], kubeGroups: [] };
    for (const role of this.#roles) {
      const d = role.deny;
      if (d.kube_labels === undefined || d.kube_users !== undefined || d.kube_groups !== undefined) continue;
      if (matchLabels(d.kube_labels, cluster.labels, this.#cache).matched) return hidden;
    }
    const roles = this.#roles.filter(
      (r) =>
        r.allow.kube_labels !== undefined &&
        matchLabels(r.allow.kube_labels, cluster.labels, this.#cache).matched,
    );
    if (roles.length === 0) return hidden;
    return {
      visible: true,
      kubeUsers: [...new Set(roles.flatMap((r) => r.allow.kube_users ?? []))],
      kubeGroups: [...new Set(roles.flatMap((r) => r.allow.kube_groups ?? []))],
    };
  }

  /**
   * Whether a node shows up in the user's `gatehouse ls`: some role's
   * node_labels match and no role denies its labels outright (a deny that
   * also names logins only hides those logins). Also reports the logins
   * those roles allow, for display.
   */
  nodeVisibility(node: { name: string; labels: Record<string, string> }): {
    visible: boolean;
    logins: string[];
  } {
    return this.#visibility(NODE, node);
  }

  /** Like nodeVisibility, for desktops (desktop_labels, desktop_logins). */
  desktopVisibility(desktop: { name: string; labels: Record<string, string> }): {
    visible: boolean;
    logins: string[];
  } {
    return this.#visibility(DESKTOP, desktop);
  }

  #visibility(
    kind: SimpleKind,
    target: { labels: Record<string, string> },
  ): { visible: boolean; logins: string[] } {
    for (const role of this.#roles) {
      const d = role.deny;
      const labels = d[kind.labels];
      if (labels === undefined || d[kind.logins] !== undefined) continue;
      if (matchLabels(labels, target.labels, this.#cache).matched) return { visible: false, logins: [] };
    }
    const roles = this.#roles.filter((r) => {
      const labels = r.allow[kind.labels];
      return labels !== undefined && matchLabels(labels, target.labels, this.#cache).matched;
    });
    if (roles.length === 0) return { visible: false, logins: [] };
    const denied = this.#roles.flatMap((r) =>
      r.deny[kind.labels] === undefined ? (r.deny[kind.logins] ?? []) : [],
    );
    const logins = [...new Set(roles.flatMap((r) => r.allow[kind.logins] ?? []))].filter(
      (l) => !matchAny(denied, l, this.#cache),
    );
    return { visible: true, logins };
  }

  checkKube(
    cluster: { name: string; labels: Record<string, string> },
    req: { user?: string | undefined; groups?: string[] | undefined } = {},
  ): KubeAccessDecision {
    const deniedUsers: string[] = [];
    const deniedGroups: string[] = [];
    for (const role of this.#roles) {
      const d = role.deny;
      if (d.kube_labels === undefined && d.kube_users === undefined && d.kube_groups === undefined) continue;
      const lm =
        d.kube_labels === undefined ? undefined : matchLabels(d.kube_labels, cluster.labels, this.#cache);
      if (lm && !lm.matched) continue;
      if (d.kube_users === undefined && d.kube_groups === undefined) {
        return {
          allowed: false,
          kind: 'denied-by-rule',
          role: role.name,
          field: 'kube_labels',
          reason: `role "${role.name}" denies kube_labels ${lm?.detail ?? ''}`.trimEnd(),
        };
      }
      deniedUsers.push(...(d.kube_users ?? []));
      deniedGroups.push(...(d.kube_groups ?? []));
    }
    const candidates = this.#roles.filter(
      (r) =>
        r.allow.kube_labels !== undefined &&
        matchLabels(r.allow.kube_labels, cluster.labels, this.#cache).matched,
    );
    if (candidates.length === 0) {
      return {
        allowed: false,
        kind: 'not-allowed',
        field: 'kube_labels',
        reason: `no role allows access to Kubernetes cluster "${cluster.name}" (${formatLabels(cluster.labels)})`,
      };
    }
    const pick = (field: 'kube_users' | 'kube_groups', requested: string[] | undefined, denied: string[]) => {
      const allowed = candidates.flatMap((r) => r.allow[field] ?? []);
      const values = requested ?? allowed.filter(isLiteralPattern);
      const result: string[] = [];
      for (const v of new Set(values)) {
        if (matchAny(denied, v, this.#cache)) {
          if (requested)
            return {
              error: `${field} "${v}" is denied on Kubernetes cluster "${cluster.name}"`,
              denied: true,
            };
          continue;
        }
        if (!matchAny(allowed, v, this.#cache)) {
          return {
            error: `no role allows ${field === 'kube_users' ? 'Kubernetes user' : 'Kubernetes group'} "${v}" on cluster "${cluster.name}"`,
            denied: false,
          };
        }
        result.push(v);
      }
      return { values: result };
    };
    const users = pick('kube_users', req.user === undefined ? undefined : [req.user], deniedUsers);
    if ('error' in users) {
      return {
        allowed: false,
        kind: users.denied ? 'denied-by-rule' : 'not-allowed',
        field: 'kube_users',
        reason: users.error ?? '',
      };
    }
    const groups = pick('kube_groups', req.groups, deniedGroups);
    if ('error' in groups) {
      return {
        allowed: false,
        kind: groups.denied ? 'denied-by-rule' : 'not-allowed',
        field: 'kube_groups',
        reason: groups.error ?? '',
      };
    }
    if (users.values.length === 0 && groups.values.length === 0) {
      return {
        allowed: false,
        kind: 'not-allowed',
        field: 'kube_groups',
        reason: `no Kubernetes users or groups to impersonate on cluster "${cluster.name}": your roles grant none`,
      };
    }
    return {
      allowed: true,
      roles: candidates.map((r) => r.name),
      users: users.values,
      groups: groups.values,
    };
  }

  /**
   * Joining another user's live session in `mode`; a role whose deny lists
   * the mode wins. (Core lets a user join their own sessions without this.)
   */
  checkJoin(mode: JoinMode): AccessDecision {
    for (const role of this.#roles) {
      if (role.deny.join_sessions?.includes(mode)) {
        return {
          allowed: false,
          kind: 'denied-by-rule',
          role: role.name,
          field: 'join_sessions',
          reason: `role "${role.name}" denies joining sessions as ${mode}`,
        };
      }
    }
    const granting = this.#roles.filter((r) => r.allow.join_sessions?.includes(mode));
    if (granting.length === 0) {
      return {
        allowed: false,
        kind: 'not-allowed',
        field: 'join_sessions',
        reason: `no role allows joining other users' sessions as ${mode}`,
      };
    }
    return { allowed: true, roles: granting.map((r) => r.name) };
  }

  /** Admin API permission; deny rules win over allow rules in any role. */
  checkRule(resource: ResourceKind, verb: Verb): AccessDecision {
    const covers = (rule: Rule) =>
      (rule.resources.includes(resource) || rule.resources.includes('*')) &&
      (rule.verbs.includes(verb) || rule.verbs.includes('*'));
    for (const role of this.#roles) {
      if (role.deny.rules.some(covers)) {
        return {
          allowed: false,
          kind: 'denied-by-rule',
          role: role.name,
          field: 'rules',
          reason: `role "${role.name}" denies ${verb} on ${resource}`,
        };
      }
    }
    const granting = this.#roles.filter((r) => r.allow.rules.some(covers));
    if (granting.length === 0) {
      return {
        allowed: false,
        kind: 'not-allowed',
        field: 'rules',
        reason: `no role allows ${verb} on ${resource}`,
      };
    }
    return { allowed: true, roles: granting.map((r) => r.name) };
  }

  /**
   * SSH certificate principals: allowed logins minus every login any role
   * denies. Conditional denies (deny logins + node_labels) remove the login
   * too, because an OpenSSH node trusting the user CA directly sees only the
   * principals, not the labels. Patterns cannot be principals and are left out.
   */
  sshLogins(): string[] {
    return this.#literalValues('logins');
  }

  kubeGroups(): string[] {
    return this.#literalValues('kube_groups');
  }

  kubeUsers(): string[] {
    return this.#literalValues('kube_users');
  }

  dbUsers(): string[] {
    return this.#literalValues('db_users');
  }

  #literalValues(field: (typeof LIST_FIELDS)[number]): string[] {
    const denied = this.#roles.flatMap((r) => r.deny[field] ?? []);
    const out = new Set<string>();
    for (const r of this.#roles) {
      for (const v of r.allow[field] ?? []) {
        if (isLiteralPattern(v) && !matchAny(denied, v, this.#cache)) out.add(v);
      }
    }
    return [...out];
  }

  options(): EffectiveOptions {
    const roles = this.#roles;
    const opts = roles.map((r) => r.options);
    let ttl = roles.length === 0 ? DEFAULT_MAX_SESSION_TTL_MS : Number.POSITIVE_INFINITY;
    for (const o of opts) {
      const ms =
        o.max_session_ttl === undefined ? DEFAULT_MAX_SESSION_TTL_MS : roleDurationMs(o.max_session_ttl);
      // A stored role with an unreadable TTL gets the default, never "unlimited".
      ttl = Math.min(ttl, ms ?? DEFAULT_MAX_SESSION_TTL_MS);
    }
    ttl = Math.min(ttl, MAX_SESSION_TTL_CAP_MS);
    // Granted when some role grants (explicitly or by default) and no role says false.
    const permit = (
      key: 'permit_pty' | 'port_forwarding' | 'agent_forwarding' | 'x11_forwarding',
      def: boolean,
    ) => opts.some((o) => o[key] ?? def) && !opts.some((o) => o[key] === false);
    const any = (key: 'pin_source_ip' | 'require_mfa' | 'require_session_mfa' | 'redact_db_params') =>
      opts.some((o) => o[key] === true);
    const record = (key: 'ssh' | 'desktop' | 'kube') =>
      // Recording stays on unless every role turns it off.
      roles.length === 0
        ? ROLE_DEFAULTS.recordSession[key]
        : opts.some((o) => o.record_session?.[key] ?? ROLE_DEFAULTS.recordSession[key]);
    return {
      maxSessionTtlMs: ttl,
      permitPty: permit('permit_pty', ROLE_DEFAULTS.permitPty),
      // A node opens forwarded connections itself, outside the session's cgroup: with network
      // rules to enforce, port forwarding would go around them, so it is off (decision 0023).
      portForwarding:
        permit('port_forwarding', ROLE_DEFAULTS.portForwarding) &&
        !opts.some(
          (o) => (o.restrict_network?.deny?.length ?? 0) + (o.restrict_network?.allow?.length ?? 0) > 0,
        ),
      agentForwarding: permit('agent_forwarding', ROLE_DEFAULTS.agentForwarding),
      x11Forwarding: permit('x11_forwarding', ROLE_DEFAULTS.x11Forwarding),
      pinSourceIp: any('pin_source_ip'),
      requireMfa: any('require_mfa'),
      requireSessionMfa: any('require_session_mfa'),
      redactDbParams: any('redact_db_params'),
      dbAudit: roles.length > 0 && opts.every((o) => o.db_audit === 'sessions') ? 'sessions' : 'statements',
      recordSession: { ssh: record('ssh'), desktop: record('desktop'), kube: record('kube') },
      enhancedRecording: [...new Set(opts.flatMap((o) => o.enhanced_recording ?? []))],
      restrictNetwork: {
        deny: [...new Set(opts.flatMap((o) => o.restrict_network?.deny ?? []))],
        allow: [...new Set(opts.flatMap((o) => o.restrict_network?.allow ?? []))],
      },
      recordingPaths: {
        include: [...new Set(opts.flatMap((o) => o.enhanced_recording_paths?.include ?? []))],
        exclude: [...new Set(opts.flatMap((o) => o.enhanced_recording_paths?.exclude ?? []))],
      },
      guards: roles.flatMap((r) =>
        (r.options.guards ?? []).map((g, i) => ({ ...g, name: g.name ?? `${r.name} guard ${i + 1}` })),
      ),
    };
  }
}
