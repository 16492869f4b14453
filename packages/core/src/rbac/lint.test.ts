import { describe, expect, it } from 'vitest';
import { lintRole } from './lint.js';

const errors = (text: string) => lintRole(text).messages.filter((m) => m.severity === 'error');

describe('lintRole', () => {
  it('accepts a valid YAML role and returns it', () => {
    const r = lintRole(
      [
        'kind: role',
        'name: dev',
        'description: developers',
        'allow:',
        '  logins: ["{{internal.logins}}", ubuntu]',
        '  node_labels: { env: [dev, staging], "*": "*" }',
        '  db_labels: { engine: postgres }',
        '  db_users: [reader]',
        '  db_names: ["*"]',
        '  request: { roles: [prod-access], max_duration: 4h }',
        '  rules:',
        '    - resources: [audit]',
        '      verbs: [list, read]',
        'deny:',
        '  node_labels: { env: prod }',
        'options:',
        '  max_session_ttl: 1h30m',
        '  record_session: { ssh: true, desktop: true }',
        '  enhanced_recording: [command, network]',
        '  restrict_network: { deny: [169.254.169.254/32] }',
      ].join('\n'),
    );
    expect(r.messages).toEqual([]);
    expect(r.role?.name).toBe('dev');
    expect(r.role?.allow.node_labels).toEqual({ env: ['dev', 'staging'], '*': '*' });
    expect(r.role?.options.max_session_ttl).toBe('1h30m');
  });

  it('accepts JSON and fills in empty sections', () => {
    const r = lintRole(
      JSON.stringify({ kind: 'role', name: 'j', allow: { rules: [{ resources: ['*'], verbs: ['*'] }] } }),
    );
    expect(r.messages).toEqual([]);
    expect(r.role).toEqual({
      kind: 'role',
      name: 'j',
      allow: { rules: [{ resources: ['*'], verbs: ['*'] }] },
      deny: {},
      options: {},
    });
  });

  it('names unknown keys with their line and the closest known key', () => {
    const m = errors(
      ['kind: role', 'name: dev', 'alow:', '  logins: [a]', 'allow:', '  node_label: { env: dev }'].join(
        '\n',
      ),
    );
    expect(m).toEqual([
      {
        line: 3,
        column: 1,
        key: 'alow',
        message: 'unknown key "alow" at the top level',
        suggestion: 'did you mean `allow`?',
        severity: 'error',
      },
      {
        line: 6,
        column: 3,
        key: 'allow.node_label',
        message: 'unknown key "node_label" in allow',
        suggestion: 'did you mean `node_labels`?',
        severity: 'error',
      },
    ]);
  });

  it('reports a review_requests.where that does not parse, with its line', () => {
    const text = [
      'kind: role',
      'name: reviewer',
      'allow:',
      '  review_requests:',
      '    roles: [prod-*]',
      '    where: contains(request.roles "x")',
    ].join('\n');
    expect(errors(text)).toEqual([
      expect.objectContaining({
        line: 6,
        key: 'allow.review_requests.where',
        message: expect.stringContaining('where: expected "," at character 24'),
      }),
    ]);
    expect(
      errors(
        'kind: role\nname: r\nallow:\n  review_requests: { roles: ["*"], where: \'contains(reviewer.traits["team"], "sre")\' }\n',
      ),
    ).toEqual([]);
  });

  it('points out keys in the wrong section', () => {
    const m = errors(
      ['kind: role', 'name: dev', 'logins: [x]', 'allow:', '  max_session_ttl: 8h'].join('\n'),
    );
    expect(m.map((x) => [x.line, x.key, x.suggestion])).toEqual([
      [3, 'logins', '`logins` belongs under `allow` or `deny`'],
      [5, 'allow.max_session_ttl', '`max_session_ttl` belongs under `options`, not `allow`'],
    ]);
  });

  it('reports YAML syntax errors with a position', () => {
    const m = errors(['kind: role', 'name: dev', 'allow:', '  logins: "unterminated', 'deny: {}'].join('\n'));
    expect(m).toHaveLength(1);
    expect(m[0]?.message).toMatch(/^YAML syntax error: /);
    expect(m[0]?.line).toBeGreaterThanOrEqual(4);
    const dup = errors(['kind: role', 'name: dev', 'name: again'].join('\n'));
    expect(dup[0]).toMatchObject({ line: 3, column: 1 });
    expect(dup[0]?.message).toMatch(/unique/i);
  });

  it('reports template syntax errors per value', () => {
    const m = errors(
      [
        'kind: role',
        'name: dev',
        'allow:',
        '  node_labels: { "*": "*" }',
        '  logins:',
        '    - "{{internal.logins}"',
        '    - "{{foo.bar}}"',
        '    - "{{email.lower(external.email)}}"',
      ].join('\n'),
    );
    expect(m.map((x) => [x.line, x.column, x.key])).toEqual([
      [6, 7, 'allow.logins[0]'],
      [7, 7, 'allow.logins[1]'],
      [8, 7, 'allow.logins[2]'],
    ]);
    expect(m[0]?.message).toMatch(/unclosed template/);
    expect(m[1]?.message).toMatch(/unknown namespace "foo"/);
    expect(m[2]?.message).toMatch(/unknown function "email.lower"/);
  });

  it('checks access request fields with the line and key: thresholds, reason mode, review_requests', () => {
    const m = errors(
      [
        'kind: role',
        'name: dev',
        'allow:',
        '  request:',
        '    roles: [prod-db]',
        '    thresholds: [{ approve: 0, deny: 1 }]',
        '    reason: { mode: always }',
        '    search_as_role: [db-reader]',
        '  review_requests: { roles: prod-db }',
      ].join('\n'),
    );
    expect(m.map((x) => [x.line, x.key])).toEqual([
      [6, 'allow.request.thresholds[0].approve'],
      [7, 'allow.request.reason.mode'],
      [8, 'allow.request.search_as_role'],
      [9, 'allow.review_requests.roles'],
    ]);
    expect(m[2]?.suggestion).toMatch(/search_as_roles/);
    expect(m[3]?.message).toBe('expected a list (got string "prod-db")');
    const ok = lintRole(
      'kind: role\nname: r\nallow:\n  request: { roles: [a], thresholds: [{approve: 2, deny: 1}], reason: {mode: required} }\n  review_requests: { roles: ["*"] }\n',
    );
    expect(ok.messages).toEqual([]);
    expect(ok.role?.allow.request?.thresholds).toEqual([{ approve: 2, deny: 1 }]);
  });

  it('reports invalid regexes, bad durations and non-string label values', () => {
    const m = errors(
      [
        'kind: role',
        'name: dev',
        'allow:',
        '  node_labels:',
        '    env: "^(dev$"',
        '    port: 5432',
        '    "*": prod',
        'options:',
        '  max_session_ttl: 8 hours',
        '  permit_pty: yes',
        'deny:',
        '  request: { max_duration: 31h }',
      ].join('\n'),
    );
    expect(m.map((x) => [x.line, x.column, x.key])).toEqual([
      [5, 10, 'allow.node_labels.env'],
      [6, 11, 'allow.node_labels.port'],
      [9, 20, 'options.max_session_ttl'],
      [10, 15, 'options.permit_pty'],
      [12, 28, 'deny.request.max_duration'],
    ]);
    expect(m[0]?.message).toBe('invalid regular expression "^(dev$": Unterminated group');
    expect(m[1]?.message).toMatch(/label value must be a string or a list of strings \(got number\)/);
    expect(m[2]?.message).toMatch(/invalid duration "8 hours"/);
    expect(m[3]?.message).toBe('expected a boolean (got string "yes")');
    expect(m[4]?.message).toBe('duration "31h" exceeds the maximum of 30h');
  });

  it('reports a malformed restrict_network CIDR with its line (it would reach the node kernel otherwise)', () => {
    const m = errors(
      [
        'kind: role',
        'name: dev',
        'options:',
        '  restrict_network:',
        '    deny: [10.0.0.0/8, 10.0.0.0/33]',
        '    allow: [fd00::/8, intranet]',
      ].join('\n'),
    );
    expect(m).toEqual([
      expect.objectContaining({
        line: 5,
        key: 'options.restrict_network.deny[1]',
        column: 24,
        message: '"10.0.0.0/33" is not an IPv4 or IPv6 address or CIDR (e.g. 10.0.0.0/8, fd00::/8)',
      }),
      expect.objectContaining({ line: 6, column: 23, key: 'options.restrict_network.allow[1]' }),
    ]);
  });

  it('reports enhanced_recording_paths that are not absolute prefixes, and unknown keys, with their lines', () => {
    const m = errors(
      [
        'kind: role',
        'name: dev',
        'options:',
        '  enhanced_recording_paths:',
        '    include: [/srv, etc]',
        '    exclude: [/home/../etc]',
        '    skip: [/tmp]',
      ].join('\n'),
    );
    expect(m).toEqual([
      expect.objectContaining({
        line: 5,
        key: 'options.enhanced_recording_paths.include[1]',
        message: '"etc" is not an absolute path prefix without . or .. (e.g. /etc or /home/app/)',
      }),
      expect.objectContaining({ line: 6, key: 'options.enhanced_recording_paths.exclude[0]' }),
      expect.objectContaining({ line: 7, key: 'options.enhanced_recording_paths.skip' }),
    ]);
  });

  it('rejects a "*" label key with a specific value', () => {
    const m = errors(['kind: role', 'name: dev', 'allow:', '  node_labels:', '    "*": prod'].join('\n'));
    expect(m).toEqual([
      expect.objectContaining({
        line: 5,
        key: 'allow.node_labels.*',
        message: 'the label key "*" only accepts the value "*"',
      }),
    ]);
  });

  it('reports a label key that is an invalid regex', () => {
    const m = errors(['kind: role', 'name: dev', 'allow:', '  node_labels:', '    "^(env$": dev'].join('\n'));
    expect(m).toEqual([
      expect.objectContaining({
        line: 5,
        column: 5,
        key: 'allow.node_labels.^(env$',
        message: 'invalid regular expression "^(env$": Unterminated group',
      }),
    ]);
  });

  it('reports aliases that expand too far as a lint error (yaml threw a ReferenceError out of lintRole)', () => {
    // fuzz counterexample: three levels of seven aliases each ("billion laughs").
    const text = [
      'l0: &l0 [lol]',
      'l1: &l1 [*l0, *l0, *l0, *l0, *l0, *l0, *l0]',
      'l2: &l2 [*l1, *l1, *l1, *l1, *l1, *l1, *l1]',
      'kind: *l2',
    ].join('\n');
    const r = lintRole(text);
    expect(r.role).toBeUndefined();
    expect(r.messages).toEqual([
      expect.objectContaining({
        line: 1,
        column: 1,
        severity: 'error',
        message: expect.stringMatching(/^YAML aliases expand too far/),
      }),
    ]);
  });

  it('reports missing and wrong kind, bad names and non-mapping documents', () => {
    expect(errors('name: dev\n')[0]).toMatchObject({
      line: 1,
      key: 'kind',
      message: 'missing required key "kind"',
    });
    expect(errors('kind: user\nname: dev\n')[0]).toMatchObject({
      line: 1,
      column: 7,
      message: 'kind must be "role" (got "user")',
    });
    expect(errors('kind: role\nname: Dev_1\n')[0]).toMatchObject({ line: 2, column: 7, key: 'name' });
    expect(errors('- a\n- b\n')[0]?.message).toMatch(/must be a mapping/);
    expect(errors('')[0]?.message).toMatch(/empty/);
  });

  it('reports a kind that contains itself (a YAML alias) as a lint error (JSON.stringify threw a TypeError)', () => {
    // fuzz counterexample: the kind message printed its input with JSON.stringify.
    expect(errors('name: x\nkind: &r [*r]')[0]).toMatchObject({
      key: 'kind',
      message: 'kind must be "role" (got a list)',
    });
  });

  it('reports wrong types inside rules with the item index', () => {
    const m = errors(
      [
        'kind: role',
        'name: ops',
        'allow:',
        '  rules:',
        '    - resources: [users]',
        '      verbs: [read]',
      ].join('\n'),
    );
    expect(m[0]).toMatchObject({ line: 5, key: 'allow.rules[0].resources[0]' });
  });

  it('warns about a role that grants nothing and grants without a selector', () => {
    const r = lintRole(['kind: role', 'name: empty', 'allow: {}', 'deny:', '  logins: [root]'].join('\n'));
    expect(r.role).toBeDefined();
    expect(r.messages).toEqual([
      expect.objectContaining({ line: 3, column: 1, key: 'allow', severity: 'warning' }),
    ]);
    const r2 = lintRole(['kind: role', 'name: l', 'allow:', '  logins: [ubuntu]'].join('\n'));
    expect(r2.messages).toEqual([
      expect.objectContaining({ line: 4, column: 3, key: 'allow.logins', severity: 'warning' }),
    ]);
  });
});
