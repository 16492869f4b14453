import type { Role } from './types.js';

/**
 * Roles every cluster has. They cannot be overwritten or deleted, so an
 * admin cannot lock everyone out by editing `admin`; custom variants are new
 * roles with other names.
 */
export const BUILTIN_ROLES: readonly Role[] = deepFreeze([
  {
    kind: 'role',
    name: 'admin',
    description:
      'Manage the cluster: users, roles, locks, audit and recordings; review access requests. Grants no resource access by itself.',
    allow: {
      logins: ['{{internal.logins}}'],
      rules: [{ resources: ['*'], verbs: ['*'] }],
      join_sessions: ['observer', 'peer'],
      review_requests: { roles: ['*'] },
    },
    deny: {},
    options: {},
  },
  {
    kind: 'role',
    name: 'access',
    description: "Access every node, database, Kubernetes cluster and desktop with the user's own traits.",
    allow: {
      logins: ['{{internal.logins}}'],
      node_labels: { '*': '*' },
      db_labels: { '*': '*' },
      db_users: ['{{internal.db_users}}'],
      db_names: ['{{internal.db_names}}'],
      kube_labels: { '*': '*' },
      kube_groups: ['{{internal.kube_groups}}'],
      kube_users: ['{{internal.kube_users}}'],
      desktop_labels: { '*': '*' },
      desktop_logins: ['{{internal.desktop_logins}}'],
    },
    deny: {},
    options: { port_forwarding: true, agent_forwarding: true },
  },
  {
    kind: 'role',
    name: 'auditor',
    description: 'Read the audit log, sessions and recordings. Grants no resource access.',
    allow: {
      rules: [{ resources: ['audit', 'session', 'recording'], verbs: ['list', 'read'] }],
      join_sessions: ['observer'],
    },
    deny: {},
    options: {},
  },
] satisfies Role[]);

function deepFreeze<T>(v: T): T {
  if (v && typeof v === 'object') {
    for (const child of Object.values(v)) deepFreeze(child);
    Object.freeze(v);
  }
  return v;
}

export const BUILTIN_ROLE_NAMES: readonly string[] = BUILTIN_ROLES.map((r) => r.name);

export function isBuiltinRole(name: string): boolean {
  return BUILTIN_ROLE_NAMES.includes(name);
}

/** A deep copy, so callers cannot mutate the shared definitions. */
export function builtinRole(name: string): Role | undefined {
  const r = BUILTIN_ROLES.find((b) => b.name === name);
  return r ? structuredClone(r) : undefined;
}
