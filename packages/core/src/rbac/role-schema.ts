import { z } from 'zod';
import { sourceAddressList } from '../pki/sshcert.js';
import { parseWhere } from '../requests/where.js';
import { compileGuard, GUARD_STREAMS, type GuardStream, GuardSyntaxError } from '../sessions/guards.js';
import { isDuration, parseDuration } from '../util/duration.js';
import { regexError } from './labels.js';
import { parseTemplate } from './templates.js';
import type { Role } from './types.js';

/** Defaults for role options, in one place (the checker and the docs read them from here). */
export const ROLE_DEFAULTS = {
  /** Certificates from a role without max_session_ttl live at most this long. */
  maxSessionTtl: '8h',
  /** No role may ask for longer certificates than this. */
  maxSessionTtlCap: '30h',
  permitPty: true,
  portForwarding: false,
  agentForwarding: false,
  x11Forwarding: false,
  recordSession: { ssh: true, desktop: true, kube: true },
} as const;

export const MAX_SESSION_TTL_CAP_MS = parseDuration(ROLE_DEFAULTS.maxSessionTtlCap);
export const DEFAULT_MAX_SESSION_TTL_MS = parseDuration(ROLE_DEFAULTS.maxSessionTtl);
const TTL_CAP = { ms: MAX_SESSION_TTL_CAP_MS, text: ROLE_DEFAULTS.maxSessionTtlCap };

/** Milliseconds, or undefined when `text` is not a duration (the config's format: 30m, 8h, 1h30m). */
export function roleDurationMs(text: string): number | undefined {
  return isDuration(text) ? parseDuration(text) : undefined;
}

export const ENHANCED_RECORDING_EVENTS = ['command', 'network', 'disk'] as const;

export const ROLE_NAME_RE = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/** A value that may hold a trait template and/or a `^regex$`; both must be well-formed. */
const patternValue = z.string().superRefine((v, ctx) => {
  const t = parseTemplate(v);
  if (!t.ok) {
    ctx.addIssue({ code: 'custom', message: `invalid template: ${t.error}` });
    return;
  }
  // A regex built from a template is checked after expansion, where it never matches if broken.
  const err = t.template ? undefined : regexError(v);
  if (err) ctx.addIssue({ code: 'custom', message: `invalid regular expression "${v}": ${err}` });
});

const stringList = (what: string) =>
  z.array(patternValue, {
    error: (iss) =>
      iss.code === 'invalid_type' && iss.expected === 'array'
        ? `${what} must be a list of strings (got ${typeName(iss.input)})`
        : undefined,
  });

const labelValues = z.union([patternValue, z.array(patternValue)], {
  error: (iss) =>
    iss.code === 'invalid_union'
      ? `label value must be a string or a list of strings (got ${typeName(iss.input)}); quote it, e.g. "${String(iss.input)}"`
      : undefined,
});

const labelSelector = z.record(z.string(), labelValues).superRefine((sel, ctx) => {
  for (const key of Object.keys(sel)) {
    const err = regexError(key);
    if (err) {
      // params.at tells the linter to point at the key, not its value.
      ctx.addIssue({
        code: 'custom',
        path: [key],
        params: { at: 'key' },
        message: `invalid regular expression "${key}": ${err}`,
      });
    }
  }
  const star = sel['*'];
  if (star === undefined) return;
  const values = typeof star === 'string' ? [star] : star;
  if (!(values.length === 1 && values[0] === '*')) {
    ctx.addIssue({ code: 'custom', path: ['*'], message: 'the label key "*" only accepts the value "*"' });
  }
});

const duration = (opts: { cap?: { ms: number; text: string } } = {}) =>
  z.string().superRefine((v, ctx) => {
    const ms = roleDurationMs(v);
    if (ms === undefined) {
      ctx.addIssue({
        code: 'custom',
        message: `invalid duration "${v}": write durations like 30m, 8h or 1h30m`,
      });
    } else if (ms <= 0) {
      ctx.addIssue({ code: 'custom', message: `duration "${v}" must be greater than zero` });
    } else if (opts.cap !== undefined && ms > opts.cap.ms) {
      ctx.addIssue({
        code: 'custom',
        message: `duration "${v}" exceeds the maximum of ${opts.cap.text}`,
      });
    }
  });

export const VERBS = ['list', 'read', 'create', 'update', 'delete'] as const;
export const RESOURCE_KINDS = [
  'user',
  'role',
  'lock',
  'token',
  'audit',
  'session',
  'recording',
  'node',
  'db',
  'kube_cluster',
  'desktop',
  'auth_connector',
  'cluster',
  'access_request',
  '*',
] as const;

const ruleSchema = z.strictObject({
  /** Admin API resource kinds the rule covers ('*' for all). */
  resources: z.array(z.enum(RESOURCE_KINDS)),
  /** Verbs the rule covers ('*' for all). */
  verbs: z.array(z.enum([...VERBS, '*'])),
});

export const conditionsSchema = z.strictObject({
  /** Unix logins on SSH nodes (SSH certificate principals). */
  logins: stringList('logins').optional(),
  node_labels: labelSelector.optional(),
  db_labels: labelSelector.optional(),
  db_users: stringList('db_users').optional(),
  db_names: stringList('db_names').optional(),
  kube_labels: labelSelector.optional(),
  /** Kubernetes groups to impersonate. */
  kube_groups: stringList('kube_groups').optional(),
  /** Kubernetes users to impersonate. */
  kube_users: stringList('kube_users').optional(),
  desktop_labels: labelSelector.optional(),
  desktop_logins: stringList('desktop_logins').optional(),
  /** Admin API permissions. */
  rules: z.array(ruleSchema).optional(),
  /** Joining other users' live sessions: observer (watch) and/or peer (type too). */
  join_sessions: z.array(z.enum(['observer', 'peer'])).optional(),
  /**
   * Access requests (docs/decisions/0036-access-requests.md): roles the holder
   * may ask for temporarily (`roles`, names or patterns), roles whose
   * resources they may ask for one by one (`search_as_roles`), how many
   * reviews approve or deny (`thresholds`), and whether a reason is needed.
   * Under `deny`, `roles` and `search_as_roles` refuse (deny wins).
   */
  request: z
    .strictObject({
      roles: stringList('request.roles').optional(),
      search_as_roles: stringList('request.search_as_roles').optional(),
      max_duration: duration({ cap: TTL_CAP }).optional(),
      thresholds: z
        .array(
          z.strictObject({
            approve: z.number().int().min(1).max(16).optional(),
            deny: z.number().int().min(1).max(16).optional(),
          }),
        )
        .max(8)
        .optional(),
      reason: z.strictObject({ mode: z.enum(['required', 'optional']) }).optional(),
    })
    .optional(),
  /**
   * Whose access requests the holder may review: requests for these roles
   * (names or patterns), and only those for which `where` holds
   * (requests/where.ts; under deny, the deny applies where it holds).
   */
  review_requests: z
    .strictObject({
      roles: stringList('review_requests.roles').optional(),
      where: z
        .string()
        .superRefine((v, ctx) => {
          try {
            parseWhere(v);
          } catch (e) {
            ctx.addIssue({ code: 'custom', message: (e as Error).message });
          }
        })
        .optional(),
    })
    .optional(),
});

/** An absolute path prefix for enhanced_recording_paths. */
const pathPrefix = z
  .string()
  .max(1024)
  .refine((v) => v.startsWith('/') && !v.includes('\0') && !/(^|\/)\.\.?(\/|$)/.test(v), {
    error: (iss) =>
      `${JSON.stringify(iss.input)} is not an absolute path prefix without . or .. (e.g. /etc or /home/app/)`,
  });

const cidr = z.string().refine(
  (v) => {
    if (v.includes(',')) return false;
    try {
      sourceAddressList(v);
      return true;
    } catch {
      // The refinement's message says what is wrong.
      return false;
    }
  },
  {
    error: (iss) =>
      `${JSON.stringify(iss.input)} is not an IPv4 or IPv6 address or CIDR (e.g. 10.0.0.0/8, fd00::/8)`,
  },
);

export const optionsSchema = z.strictObject({
  /** Longest certificate lifetime this role allows (default 8h, at most 30h). */
  max_session_ttl: duration({ cap: TTL_CAP }).optional(),
  permit_pty: z.boolean().optional(),
  port_forwarding: z.boolean().optional(),
  agent_forwarding: z.boolean().optional(),
  x11_forwarding: z.boolean().optional(),
  /** Pin SSH certificates to the login IP. */
  pin_source_ip: z.boolean().optional(),
  record_session: z
    .strictObject({
      ssh: z.boolean().optional(),
      desktop: z.boolean().optional(),
      kube: z.boolean().optional(),
    })
    .optional(),
  /** Enhanced (eBPF) recording events: command, network, disk. */
  enhanced_recording: z
    .array(
      z.string().refine((v) => (ENHANCED_RECORDING_EVENTS as readonly string[]).includes(v), {
        error: (iss) =>
          `unknown enhanced_recording event ${JSON.stringify(iss.input)} (known: ${ENHANCED_RECORDING_EVENTS.join(', ')})`,
      }),
    )
    .optional(),
  /**
   * Networks an SSH session on a node may not reach (`deny`) or may only
   * reach (`allow`): IPv4/IPv6 addresses or CIDRs, enforced in the node's
   * kernel (@gatehouse/bpf). Deny wins.
   */
  restrict_network: z
    .strictObject({ deny: z.array(cidr).optional(), allow: z.array(cidr).optional() })
    .optional(),
  /**
   * Which file opens `enhanced_recording: [disk]` audits, by absolute path
   * prefix (`/etc` covers `/etc` and everything under it). `include`, when
   * set, records only opens under it; without it, the node leaves out its
   * default noise (/proc, /sys, /dev, shared libraries, the loader cache,
   * locales). `exclude` is never recorded and wins. Merged over all roles
   * (union). Relative paths (`openat` on a directory fd) are always recorded.
   */
  enhanced_recording_paths: z
    .strictObject({
      include: z.array(pathPrefix).max(64).optional(),
      exclude: z.array(pathPrefix).max(64).optional(),
    })
    .optional(),
  /** Redact bound parameters in database query audit. */
  redact_db_params: z.boolean().optional(),
  /**
   * What the audit of a database session records: `statements` (the default)
   * writes each statement before it runs; `sessions` writes only the
   * session's start (which says so) and end, for high-rate service accounts
   * whose statements need no record. Merged over roles: sessions only when
   * every role says sessions.
   */
  db_audit: z.enum(['statements', 'sessions']).optional(),
  /** Require a fresh second factor for every session. */
  require_mfa: z.boolean().optional(),
  /**
   * Every new SSH, database and Kubernetes session, and each web terminal,
   * needs a fresh second-factor check (`gatehouse ssh`, `db connect` and
   * `kube credentials` ask for it): the login certificate alone is refused for
   * those targets. Any role true turns it on.
   */
  require_session_mfa: z.boolean().optional(),
  /**
   * Content guards: a pattern (`match`, RE2 syntax) or a string (`literal`)
   * watched for in terminal output/input, database statements and results;
   * a match ends the session (action terminate, the default) or is audited.
   */
  guards: z
    .array(
      z
        .strictObject({
          name: z.string().min(1).max(64).optional(),
          match: z.string().min(1).max(4096).optional(),
          literal: z.string().max(1024).optional(),
          on: z.array(z.enum(GUARD_STREAMS as [GuardStream, ...GuardStream[]])).min(1),
          action: z.enum(['terminate', 'audit']).optional(),
          ignore_case: z.boolean().optional(),
        })
        .superRefine((g, ctx) => {
          try {
            compileGuard(g, 0);
          } catch (err) {
            if (!(err instanceof GuardSyntaxError)) throw err;
            ctx.addIssue({ code: 'custom', message: err.message.replace(/^guard 1: /, '') });
          }
        }),
    )
    .max(64)
    .optional(),
});

export const roleSchema = z.strictObject({
  kind: z.literal('role', {
    error: (iss) => `kind must be "role" (got ${iss.input === undefined ? 'nothing' : shown(iss.input)})`,
  }),
  name: z.string().regex(ROLE_NAME_RE, {
    error:
      'name must be lowercase letters, digits and dashes (at most 63), starting and ending with a letter or digit',
  }),
  description: z.string().optional(),
  allow: conditionsSchema.default({}),
  deny: conditionsSchema.default({}),
  options: optionsSchema.default({}),
});

export type RoleDocument = z.infer<typeof roleSchema>;

// types.ts is the public type; this breaks the build if the schema and it drift apart.
type Equals<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
const schemaMatchesRoleType: Equals<RoleDocument, Role> = true;
void schemaMatchesRoleType;

/**
 * A scalar as written, anything else by its type: a YAML alias can make a
 * value that contains itself, which JSON.stringify cannot print.
 */
function shown(v: unknown): string {
  return v === null || typeof v !== 'object' ? String(JSON.stringify(v)) : typeName(v);
}

function typeName(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  return typeof v;
}

/** Parse an already-decoded role document (e.g. JSON from the backend); throws zod's error when invalid. */
export function parseRole(doc: unknown): Role {
  return roleSchema.parse(doc);
}
