/**
 * Role documents (shared/DESIGN.md "RBAC"). The zod schema in role-schema.ts
 * is the source of truth; these types are inferred from it and re-exported.
 */
export type LabelValues = string | string[];
/** label key -> accepted values; keys and values may be '*', globs or ^regex$. */
export type LabelSelector = Record<string, LabelValues>;

export type Verb = 'list' | 'read' | 'create' | 'update' | 'delete';
export type ResourceKind =
  | 'user'
  | 'role'
  | 'lock'
  | 'token'
  | 'audit'
  | 'session'
  | 'recording'
  | 'node'
  | 'db'
  | 'kube_cluster'
  | 'desktop'
  | 'auth_connector'
  | 'cluster'
  | 'access_request'
  | '*';

export interface Rule {
  resources: ResourceKind[];
  verbs: (Verb | '*')[];
}

export interface RoleConditions {
  logins?: string[];
  node_labels?: LabelSelector;
  db_labels?: LabelSelector;
  db_users?: string[];
  db_names?: string[];
  kube_labels?: LabelSelector;
  kube_groups?: string[];
  kube_users?: string[];
  desktop_labels?: LabelSelector;
  desktop_logins?: string[];
  rules?: Rule[];
  request?: RequestConditions;
  /** Whose access requests the holder may review (requests for these roles). */
  review_requests?: { roles?: string[]; where?: string };
  /**
   * Joining other users' live sessions (`gatehouse join`, the web UI):
   * `observer` watches, `peer` may also type. One's own sessions need none.
   */
  join_sessions?: JoinMode[];
}

/** Who may ask for what (access requests); see role-schema.ts. */
export interface RequestConditions {
  roles?: string[];
  search_as_roles?: string[];
  max_duration?: string;
  thresholds?: { approve?: number; deny?: number }[];
  reason?: { mode: 'required' | 'optional' };
}

/** How a second person attaches to a live terminal session. */
export type JoinMode = 'observer' | 'peer';

export interface RoleOptions {
  /** Duration string like '8h', '30m'. */
  max_session_ttl?: string;
  permit_pty?: boolean;
  port_forwarding?: boolean;
  agent_forwarding?: boolean;
  x11_forwarding?: boolean;
  /** Pin SSH certificates to the login IP (source-address critical option). */
  pin_source_ip?: boolean;
  record_session?: { ssh?: boolean; desktop?: boolean; kube?: boolean };
  enhanced_recording?: string[];
  restrict_network?: { deny?: string[]; allow?: string[] };
  /** Which file opens enhanced recording (`disk`) audits: path prefixes (see role-schema.ts). */
  enhanced_recording_paths?: { include?: string[]; exclude?: string[] };
  /** Redact bound parameters in database query audit. */
  redact_db_params?: boolean;
  /**
   * What a database session's audit records: every statement (default), or
   * only its start and end (`sessions`). Statements win over roles.
   */
  db_audit?: 'statements' | 'sessions';
  require_mfa?: boolean;
  /** A fresh second-factor check (a target-bound 1-minute certificate) for every new SSH, database, Kubernetes and web terminal session. */
  require_session_mfa?: boolean;
  /** Content guards (see sessions/guards.ts). */
  guards?: {
    name?: string;
    match?: string;
    literal?: string;
    on: ('output' | 'input' | 'query' | 'result')[];
    action?: 'terminate' | 'audit';
    ignore_case?: boolean;
  }[];
}

export interface Role {
  kind: 'role';
  name: string;
  description?: string;
  allow: RoleConditions;
  deny: RoleConditions;
  options: RoleOptions;
}
