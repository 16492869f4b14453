import { describe, expect, it } from 'vitest';
import { builtinRole } from './builtin.js';
import { AccessChecker } from './checker.js';
import { lintRole } from './lint.js';
import type { Role } from './types.js';

function role(yaml: string): Role {
  const r = lintRole(yaml);
  const errs = r.messages.filter((m) => m.severity === 'error');
  if (!r.role || errs.length) throw new Error(JSON.stringify(errs));
  return r.role;
}

const traits = {
  logins: ['alice', 'ubuntu'],
  db_users: ['reader'],
  db_names: ['orders'],
  kube_groups: ['developers'],
  kube_users: ['alice@example.com'],
  desktop_logins: ['Administrator'],
  groups: ['env-dev', 'env-staging'],
};

const dev = role(`
kind: role
name: dev
allow:
  logins: ["{{internal.logins}}"]
  node_labels: { env: [dev, staging] }
deny:
  node_labels: { env: prod }
`);

const prodRoot = role(`
kind: role
name: prod-root
allow:
  logins: [root]
  node_labels: { env: prod }
`);

const web1 = { name: 'web1', labels: { env: 'dev' } };
const prod1 = { name: 'prod1', labels: { env: 'prod' } };

describe('checkNode', () => {
  it('allows a login a role allows on nodes its labels match', () => {
    const c = AccessChecker.from([dev], traits);
    expect(c.checkNode(web1, 'alice')).toEqual({ allowed: true, roles: ['dev'] });
    expect(c.checkNode(web1, 'ubuntu').allowed).toBe(true);
  });

  it('explains a login that no role allows', () => {
    const c = AccessChecker.from([dev], traits);
    expect(c.checkNode(web1, 'root')).toEqual({
      allowed: false,
      kind: 'not-allowed',
      field: 'logins',
      reason: 'no role allows login "root" on node "web1" (allowed logins: alice, ubuntu)',
    });
    expect(c.checkNode({ name: 'x', labels: { env: 'qa' } }, 'alice')).toMatchObject({
      allowed: false,
      kind: 'not-allowed',
      field: 'node_labels',
      reason: 'no role allows access to node "x" (env=qa)',
    });
  });

  it('deny in one role wins over allow in another', () => {
    const c = AccessChecker.from([dev, prodRoot], traits);
    expect(c.checkNode(prod1, 'root')).toEqual({
      allowed: false,
      kind: 'denied-by-rule',
      role: 'dev',
      field: 'node_labels',
      reason: 'role "dev" denies node_labels env=prod',
    });
    // Without the denying role, the other role alone grants it.
    expect(AccessChecker.from([prodRoot], traits).checkNode(prod1, 'root').allowed).toBe(true);
  });

  it('requires one role to allow both the labels and the login', () => {
    const a = role(`
kind: role
name: a
allow:
  logins: [root]
  node_labels: { env: staging }
`);
    const b = role(`
kind: role
name: b
allow:
  logins: [alice]
  node_labels: { env: dev }
`);
    const c = AccessChecker.from([a, b], traits);
    // a matches no dev nodes, b does not allow root: no single role grants root on web1.
    expect(c.checkNode(web1, 'root')).toMatchObject({ allowed: false, field: 'logins' });
    expect(c.checkNode(web1, 'alice').allowed).toBe(true);
  });

  it('deny logins with labels only applies to matching nodes; without labels everywhere', () => {
    const noRootOnProd = role(`
kind: role
name: no-root-prod
allow: { node_labels: { '*': '*' }, logins: [root, alice] }
deny: { logins: [root], node_labels: { env: prod } }
`);
    const c = AccessChecker.from([noRootOnProd], traits);
    expect(c.checkNode(web1, 'root').allowed).toBe(true);
    expect(c.checkNode(prod1, 'root')).toMatchObject({
      allowed: false,
      kind: 'denied-by-rule',
      field: 'logins',
      reason: 'role "no-root-prod" denies login "root" on node_labels env=prod',
    });
    expect(c.checkNode(prod1, 'alice').allowed).toBe(true);
    const noRoot = role(`
kind: role
name: no-root
allow: {}
deny: { logins: ["^ro+t$"] }
`);
    const c2 = AccessChecker.from([noRootOnProd, noRoot], traits);
    expect(c2.checkNode(web1, 'root')).toMatchObject({
      allowed: false,
      role: 'no-root',
      reason: 'role "no-root" denies login "root"',
    });
  });

  it('matches regex, glob and wildcard labels', () => {
    const r = role(`
kind: role
name: r
allow:
  logins: [alice]
  node_labels: { region: "eu-*", env: "^(dev|qa)$" }
`);
    const c = AccessChecker.from([r], traits);
    expect(c.checkNode({ name: 'n', labels: { region: 'eu-west', env: 'qa' } }, 'alice').allowed).toBe(true);
    expect(c.checkNode({ name: 'n', labels: { region: 'us-east', env: 'qa' } }, 'alice').allowed).toBe(false);
    expect(c.checkNode({ name: 'n', labels: { region: 'eu-west', env: 'prod' } }, 'alice').allowed).toBe(
      false,
    );
    const any = AccessChecker.from([builtinRole('access') as Role], traits);
    expect(any.checkNode({ name: 'bare', labels: {} }, 'ubuntu').allowed).toBe(true);
  });

  it('a login template whose trait is missing grants nothing', () => {
    const c = AccessChecker.from([dev], {});
    expect(c.checkNode(web1, '{{internal.logins}}').allowed).toBe(false);
    expect(c.sshLogins()).toEqual([]);
  });

  it('label values can come from traits', () => {
    const r = role(`
kind: role
name: t
allow:
  logins: [alice]
  node_labels: { env: '{{regexp.replace(internal.groups, "^env-(.*)$", "$1")}}' }
`);
    const c = AccessChecker.from([r], traits);
    expect(c.checkNode({ name: 's', labels: { env: 'staging' } }, 'alice').allowed).toBe(true);
    expect(c.checkNode({ name: 'p', labels: { env: 'prod' } }, 'alice').allowed).toBe(false);
    expect(
      AccessChecker.from([r], {}).checkNode({ name: 's', labels: { env: 'staging' } }, 'alice').allowed,
    ).toBe(false);
  });

  it('no roles means no access', () => {
    const c = AccessChecker.from([], traits);
    expect(c.checkNode(web1, 'alice').allowed).toBe(false);
    expect(c.checkRule('user', 'read').allowed).toBe(false);
  });
});

describe('checkDesktop', () => {
  it('uses desktop_labels and desktop_logins', () => {
    const c = AccessChecker.from([builtinRole('access') as Role], traits);
    expect(c.checkDesktop({ name: 'win', labels: {} }, 'Administrator').allowed).toBe(true);
    expect(c.checkDesktop({ name: 'win', labels: {} }, 'alice')).toMatchObject({
      allowed: false,
      reason: 'no role allows login "alice" on desktop "win" (allowed logins: Administrator)',
    });
  });
});

describe('checkDatabase', () => {
  const dbRole = role(`
kind: role
name: db
allow:
  db_labels: { engine: postgres }
  db_users: ["{{internal.db_users}}", "app-*"]
  db_names: [orders, "^report_.*$"]
deny:
  db_users: [postgres]
`);
  const orders = { name: 'orders', labels: { engine: 'postgres', env: 'prod' }, protocol: 'postgres' };

  it('allows a user and database name one role allows', () => {
    const c = AccessChecker.from([dbRole], traits);
    expect(c.checkDatabase(orders, { dbUser: 'reader', dbName: 'orders' })).toEqual({
      allowed: true,
      roles: ['db'],
    });
    expect(c.checkDatabase(orders, { dbUser: 'app-api', dbName: 'report_2026' }).allowed).toBe(true);
  });

  it('explains a missing user, name or label match', () => {
    const c = AccessChecker.from([dbRole], traits);
    expect(c.checkDatabase(orders, { dbUser: 'writer', dbName: 'orders' })).toMatchObject({
      allowed: false,
      field: 'db_users',
      reason: 'no role allows database user "writer" on database "orders" (allowed users: reader, app-*)',
    });
    expect(c.checkDatabase(orders, { dbUser: 'reader', dbName: 'secrets' })).toMatchObject({
      allowed: false,
      field: 'db_names',
    });
    expect(c.checkDatabase(orders, { dbUser: 'reader', dbName: '' })).toMatchObject({
      allowed: false,
      field: 'db_names',
    });
    expect(
      c.checkDatabase({ ...orders, labels: { engine: 'mysql' } }, { dbUser: 'reader', dbName: 'orders' }),
    ).toMatchObject({
      allowed: false,
      field: 'db_labels',
    });
  });

  it('deny db_users wins even when another role allows it', () => {
    const superRole = role(`
kind: role
name: super
allow: { db_labels: { '*': '*' }, db_users: ['*'], db_names: ['*'] }
`);
    const c = AccessChecker.from([dbRole, superRole], traits);
    expect(c.checkDatabase(orders, { dbUser: 'postgres', dbName: 'orders' })).toMatchObject({
      allowed: false,
      kind: 'denied-by-rule',
      role: 'db',
      field: 'db_users',
      reason: 'role "db" denies database user "postgres"',
    });
    expect(c.checkDatabase(orders, { dbUser: 'anyone', dbName: 'x' }).allowed).toBe(true);
    expect(c.dbUsers()).toEqual(['reader']);
  });

  it('deny with labels and names applies only to both', () => {
    const r = role(`
kind: role
name: no-prod-secrets
allow: { db_labels: { '*': '*' }, db_users: ['*'], db_names: ['*'] }
deny: { db_labels: { env: prod }, db_names: [secrets] }
`);
    const c = AccessChecker.from([r], traits);
    expect(c.checkDatabase(orders, { dbUser: 'u', dbName: 'secrets' })).toMatchObject({
      allowed: false,
      reason: 'role "no-prod-secrets" denies database name "secrets" on db_labels env=prod',
    });
    expect(
      c.checkDatabase({ ...orders, labels: { env: 'dev' } }, { dbUser: 'u', dbName: 'secrets' }).allowed,
    ).toBe(true);
  });
});

describe('checkKube', () => {
  const kubeRole = role(`
kind: role
name: kube
allow:
  kube_labels: { env: dev }
  kube_groups: ["{{internal.kube_groups}}", viewers, "sys-*"]
  kube_users: ["{{internal.kube_users}}"]
`);
  const cluster = { name: 'dev-eu', labels: { env: 'dev' } };

  it('returns users and groups to impersonate', () => {
    const c = AccessChecker.from([kubeRole], traits);
    expect(c.checkKube(cluster)).toEqual({
      allowed: true,
      roles: ['kube'],
      users: ['alice@example.com'],
      groups: ['developers', 'viewers'],
    });
    expect(c.kubeGroups()).toEqual(['developers', 'viewers']);
    expect(c.kubeUsers()).toEqual(['alice@example.com']);
  });

  it('narrows to requested groups and user, which must be allowed', () => {
    const c = AccessChecker.from([kubeRole], traits);
    expect(c.checkKube(cluster, { groups: ['sys-ops'] })).toMatchObject({
      allowed: true,
      groups: ['sys-ops'],
    });
    expect(c.checkKube(cluster, { groups: ['system:masters'] })).toMatchObject({
      allowed: false,
      kind: 'not-allowed',
      field: 'kube_groups',
    });
    expect(c.checkKube(cluster, { user: 'bob' })).toMatchObject({ allowed: false, field: 'kube_users' });
  });

  it('subtracts denied groups and denies when nothing is left', () => {
    const deny = role(`
kind: role
name: no-dev-groups
allow: {}
deny: { kube_groups: [developers, viewers, "sys-*"], kube_users: ["*"] }
`);
    const c = AccessChecker.from([kubeRole, deny], traits);
    expect(c.checkKube(cluster)).toMatchObject({ allowed: false, kind: 'not-allowed' });
    expect(c.checkKube(cluster, { groups: ['developers'] })).toMatchObject({
      allowed: false,
      kind: 'denied-by-rule',
    });
    const partial = role(`
kind: role
name: no-viewers
allow: {}
deny: { kube_groups: [viewers] }
`);
    expect(AccessChecker.from([kubeRole, partial], traits).checkKube(cluster)).toMatchObject({
      allowed: true,
      groups: ['developers'],
    });
  });

  it('deny kube_labels alone denies the cluster', () => {
    const deny = role(`
kind: role
name: no-dev
allow: {}
deny: { kube_labels: { env: dev } }
`);
    expect(AccessChecker.from([kubeRole, deny], traits).checkKube(cluster)).toMatchObject({
      allowed: false,
      kind: 'denied-by-rule',
      reason: 'role "no-dev" denies kube_labels env=dev',
    });
  });

  it('denies clusters no role matches, and roles without users or groups', () => {
    expect(
      AccessChecker.from([kubeRole], traits).checkKube({ name: 'p', labels: { env: 'prod' } }),
    ).toMatchObject({
      allowed: false,
      field: 'kube_labels',
    });
    expect(AccessChecker.from([builtinRole('access') as Role], {}).checkKube(cluster)).toMatchObject({
      allowed: false,
      reason: expect.stringMatching(/no Kubernetes users or groups/),
    });
  });
});

describe('checkRule', () => {
  it('admin may do anything, auditor may only read audit data', () => {
    const admin = AccessChecker.from([builtinRole('admin') as Role], traits);
    expect(admin.checkRule('user', 'delete').allowed).toBe(true);
    const auditor = AccessChecker.from([builtinRole('auditor') as Role], traits);
    expect(auditor.checkRule('audit', 'list').allowed).toBe(true);
    expect(auditor.checkRule('recording', 'read').allowed).toBe(true);
    expect(auditor.checkRule('recording', 'delete')).toEqual({
      allowed: false,
      kind: 'not-allowed',
      field: 'rules',
      reason: 'no role allows delete on recording',
    });
    expect(auditor.checkNode(web1, 'alice').allowed).toBe(false);
  });

  it('deny rules win', () => {
    const noRoles = role(`
kind: role
name: no-role-edits
allow: {}
deny:
  rules: [{ resources: [role], verbs: [create, update, delete] }]
`);
    const c = AccessChecker.from([builtinRole('admin') as Role, noRoles], traits);
    expect(c.checkRule('role', 'update')).toMatchObject({
      allowed: false,
      kind: 'denied-by-rule',
      role: 'no-role-edits',
      reason: 'role "no-role-edits" denies update on role',
    });
    expect(c.checkRule('role', 'read').allowed).toBe(true);
  });
});

describe('sshLogins', () => {
  it('is the deduplicated allowed logins minus any denied login, without patterns', () => {
    const r = role(`
kind: role
name: r
allow: { logins: [ubuntu, root, "dev-*", "^x$"], node_labels: { '*': '*' } }
deny: { logins: [root], node_labels: { env: prod } }
`);
    const c = AccessChecker.from([dev, r], traits);
    expect(c.sshLogins()).toEqual(['alice', 'ubuntu']);
  });
});

describe('options', () => {
  const opt = (name: string, options: string) =>
    role(`kind: role\nname: ${name}\nallow: {}\noptions: ${options}\n`);

  it('defaults with one plain role', () => {
    expect(AccessChecker.from([dev], traits).options()).toEqual({
      maxSessionTtlMs: 8 * 3_600_000,
      permitPty: true,
      portForwarding: false,
      agentForwarding: false,
      x11Forwarding: false,
      pinSourceIp: false,
      requireMfa: false,
      requireSessionMfa: false,
      redactDbParams: false,
      dbAudit: 'statements',
      recordSession: { ssh: true, desktop: true, kube: true },
      enhancedRecording: [],
      restrictNetwork: { deny: [], allow: [] },
      recordingPaths: { include: [], exclude: [] },
      guards: [],
    });
  });

  it('merges enhanced_recording_paths over roles (union of each list)', () => {
    const a = opt('a', '{ enhanced_recording: [disk], enhanced_recording_paths: { exclude: [/etc] } }');
    const b = opt(
      'b',
      '{ enhanced_recording_paths: { include: [/srv, /home], exclude: [/etc, /var/cache] } }',
    );
    expect(AccessChecker.from([a, b], traits).options().recordingPaths).toEqual({
      include: ['/srv', '/home'],
      exclude: ['/etc', '/var/cache'],
    });
  });

  it('applies the guards of every role, each named after its role when it has no name', () => {
    const a = opt('a', '{ guards: [{ literal: canary-1, on: [output] }] }');
    const b = opt(
      'b',
      '{ guards: [{ name: keys, match: "AKIA[0-9A-Z]{16}", on: [result], action: audit }] }',
    );
    expect(AccessChecker.from([a, b], traits).options().guards).toEqual([
      { literal: 'canary-1', on: ['output'], name: 'a guard 1' },
      { name: 'keys', match: 'AKIA[0-9A-Z]{16}', on: ['result'], action: 'audit' },
    ]);
  });

  it('takes the minimum TTL, and any role false wins for permissions', () => {
    const a = opt(
      'a',
      '{ max_session_ttl: 30h, port_forwarding: true, agent_forwarding: true, x11_forwarding: true }',
    );
    const b = opt('b', '{ max_session_ttl: 1h30m, agent_forwarding: false, permit_pty: false }');
    const o = AccessChecker.from([a, b], traits).options();
    expect(o.maxSessionTtlMs).toBe(90 * 60_000);
    expect(o.portForwarding).toBe(true);
    expect(o.agentForwarding).toBe(false);
    expect(o.x11Forwarding).toBe(true);
    expect(o.permitPty).toBe(false);
    expect(AccessChecker.from([a], traits).options().maxSessionTtlMs).toBe(30 * 3_600_000);
  });

  it('network rules turn port forwarding off: the node would open forwards outside the session cgroup', () => {
    const a = opt('a', '{ port_forwarding: true }');
    const deny = opt('d', '{ restrict_network: { deny: [10.0.0.0/8] } }');
    const allow = opt('l', '{ restrict_network: { allow: ["::1/128"] } }');
    const recordOnly = opt('r', '{ enhanced_recording: [command] }');
    expect(AccessChecker.from([a], traits).options().portForwarding).toBe(true);
    expect(AccessChecker.from([a, deny], traits).options().portForwarding).toBe(false);
    expect(AccessChecker.from([a, allow], traits).options().portForwarding).toBe(false);
    expect(AccessChecker.from([a, recordOnly], traits).options().portForwarding).toBe(true);
  });

  it('require_session_mfa: one role true turns it on for the user; false elsewhere does not turn it off', () => {
    const on = opt('on', '{ require_session_mfa: true }');
    const off = opt('off', '{ require_session_mfa: false }');
    expect(AccessChecker.from([off, on], traits).options().requireSessionMfa).toBe(true);
    expect(AccessChecker.from([off, dev], traits).options().requireSessionMfa).toBe(false);
  });

  it('any role true turns on pinning, MFA, redaction and recording', () => {
    const a = opt(
      'a',
      '{ pin_source_ip: true, require_mfa: true, record_session: { ssh: false, kube: false } }',
    );
    const b = opt(
      'b',
      '{ redact_db_params: true, record_session: { kube: true }, enhanced_recording: [command], restrict_network: { deny: [10.0.0.0/8] } }',
    );
    const o = AccessChecker.from([a, b], traits).options();
    expect(o).toMatchObject({
      pinSourceIp: true,
      requireMfa: true,
      requireSessionMfa: false,
      redactDbParams: true,
    });
    // b leaves ssh unset, which means the default (on).
    expect(o.recordSession).toEqual({ ssh: true, desktop: true, kube: true });
    expect(o.enhancedRecording).toEqual(['command']);
    expect(o.restrictNetwork.deny).toEqual(['10.0.0.0/8']);
    expect(AccessChecker.from([a], traits).options().recordSession).toEqual({
      ssh: false,
      desktop: true,
      kube: false,
    });
  });

  it('audits database sessions only when every role says db_audit: sessions (statements win)', () => {
    const sessions = opt('s', '{ db_audit: sessions }');
    const alsoSessions = opt('s2', '{ db_audit: sessions, redact_db_params: true }');
    const statements = opt('st', '{ db_audit: statements }');
    const dbAudit = (roles: Role[]) => AccessChecker.from(roles, traits).options().dbAudit;
    expect(dbAudit([sessions])).toBe('sessions');
    expect(dbAudit([sessions, alsoSessions])).toBe('sessions');
    expect(dbAudit([sessions, statements])).toBe('statements');
    // A role that does not say asks for the default: statements.
    expect(dbAudit([sessions, dev])).toBe('statements');
    expect(dbAudit([])).toBe('statements');
    expect(() => opt('bad', '{ db_audit: none }')).toThrow();
  });

  it('grants nothing optional without roles', () => {
    const o = AccessChecker.from([], traits).options();
    expect(o.permitPty).toBe(false);
    expect(o.maxSessionTtlMs).toBe(8 * 3_600_000);
  });
});

describe('nodeVisibility', () => {
  it('shows nodes some role allows, hides those a pure label deny covers, drops denied logins', () => {
    const c = AccessChecker.from([dev, prodRoot], traits);
    expect(c.nodeVisibility({ name: 'd1', labels: { env: 'dev' } })).toEqual({
      visible: true,
      logins: ['alice', 'ubuntu'],
    });
    // dev denies env=prod outright, so prod nodes stay hidden although prod-root allows them.
    expect(c.nodeVisibility({ name: 'p1', labels: { env: 'prod' } }).visible).toBe(false);
    expect(
      AccessChecker.from([prodRoot], traits).nodeVisibility({ name: 'p1', labels: { env: 'prod' } }),
    ).toEqual({
      visible: true,
      logins: ['root'],
    });
    expect(c.nodeVisibility({ name: 'x', labels: { env: 'qa' } }).visible).toBe(false);
    const noRoot = role(`
kind: role
name: no-root
deny:
  logins: [root]
`);
    expect(
      AccessChecker.from([prodRoot, noRoot], traits).nodeVisibility({ name: 'p1', labels: { env: 'prod' } }),
    ).toEqual({
      visible: true,
      logins: [],
    });
  });
});

describe('checkJoin', () => {
  const watcher = role(`
kind: role
name: watcher
allow:
  join_sessions: [observer]
`);
  const noPeers = role(`
kind: role
name: no-peers
deny:
  join_sessions: [peer]
`);

  it('follows the built-in roles: admin observer+peer, auditor observer, access none', () => {
    const admin = AccessChecker.from([builtinRole('admin')!], traits);
    expect(admin.checkJoin('observer').allowed).toBe(true);
    expect(admin.checkJoin('peer').allowed).toBe(true);
    const auditor = AccessChecker.from([builtinRole('auditor')!], traits);
    expect(auditor.checkJoin('observer')).toEqual({ allowed: true, roles: ['auditor'] });
    expect(auditor.checkJoin('peer')).toMatchObject({ allowed: false, kind: 'not-allowed' });
    const access = AccessChecker.from([builtinRole('access')!], traits);
    expect(access.checkJoin('observer')).toEqual({
      allowed: false,
      kind: 'not-allowed',
      field: 'join_sessions',
      reason: "no role allows joining other users' sessions as observer",
    });
  });

  it('lets a deny in any role win over an allow in another', () => {
    const c = AccessChecker.from([builtinRole('admin')!, noPeers], traits);
    expect(c.checkJoin('peer')).toEqual({
      allowed: false,
      kind: 'denied-by-rule',
      role: 'no-peers',
      field: 'join_sessions',
      reason: 'role "no-peers" denies joining sessions as peer',
    });
    expect(c.checkJoin('observer').allowed).toBe(true);
  });

  it('lists every role that grants the mode', () => {
    const c = AccessChecker.from([watcher, builtinRole('auditor')!], traits);
    expect(c.checkJoin('observer')).toEqual({ allowed: true, roles: ['watcher', 'auditor'] });
    expect(c.checkJoin('peer').allowed).toBe(false);
  });
});
