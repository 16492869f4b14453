import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { ZodError } from 'zod';
import { fuzz, hostileBytes, onlyThrows } from '../testing/fuzz.js';
import { lintRole } from './lint.js';
import { parseRole, RESOURCE_KINDS, VERBS } from './role-schema.js';
import type { Role } from './types.js';

const plain = fc.stringMatching(/^[a-z0-9][a-z0-9._-]{0,10}$/);
const pattern = fc.oneof(
  plain,
  fc.constantFrom('*', '{{internal.logins}}', '^dev-.*$', 'db-*', '{{external.email}}'),
);
const selector = fc.dictionary(
  fc.oneof(plain, fc.constant('^env$')),
  fc.oneof(pattern, fc.array(pattern, { maxLength: 3 })),
  {
    maxKeys: 3,
    noNullPrototype: true,
  },
);
const list = fc.array(pattern, { maxLength: 3 });
const duration = fc.constantFrom('30m', '8h', '1h30m', '30h', '90s');

const conditions = fc.record(
  {
    logins: list,
    node_labels: selector,
    db_labels: selector,
    db_users: list,
    db_names: list,
    kube_labels: selector,
    kube_groups: list,
    kube_users: list,
    desktop_labels: selector,
    desktop_logins: list,
    rules: fc.array(
      fc.record({
        resources: fc.uniqueArray(fc.constantFrom(...RESOURCE_KINDS), { maxLength: 3 }),
        verbs: fc.uniqueArray(fc.constantFrom(...VERBS, '*' as const), { maxLength: 3 }),
      }),
      { maxLength: 2 },
    ),
    join_sessions: fc.uniqueArray(fc.constantFrom('observer' as const, 'peer' as const)),
    request: fc.record(
      { roles: fc.array(plain, { maxLength: 2 }), max_duration: duration },
      { requiredKeys: [] },
    ),
  },
  { requiredKeys: [] },
);

/** Role documents the schema accepts. */
const validRole: fc.Arbitrary<Role> = fc
  .record({
    kind: fc.constant('role' as const),
    name: fc.stringMatching(/^[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?$/),
    description: fc.option(fc.string({ maxLength: 20 }), { nil: undefined }),
    allow: conditions,
    deny: conditions,
    options: fc.record(
      {
        max_session_ttl: duration,
        permit_pty: fc.boolean(),
        port_forwarding: fc.boolean(),
        pin_source_ip: fc.boolean(),
        record_session: fc.record({ ssh: fc.boolean(), kube: fc.boolean() }, { requiredKeys: [] }),
        enhanced_recording: fc.uniqueArray(fc.constantFrom('command', 'network', 'disk')),
        restrict_network: fc.record({ deny: fc.array(fc.constantFrom('10.0.0.0/8', '169.254.169.254/32')) }),
        require_mfa: fc.boolean(),
        require_session_mfa: fc.boolean(),
      },
      { requiredKeys: [] },
    ),
  })
  .map((r) => JSON.parse(JSON.stringify(r)) as Role);

/** Text built from YAML's special characters and the schema's keys: anchors, aliases, tags, flow and block forms. */
const yamlish = fc
  .array(
    fc.constantFrom(
      'kind',
      'role',
      'name',
      'x',
      'allow',
      'deny',
      'options',
      'logins',
      'node_labels',
      'rules',
      '__proto__',
      'max_session_ttl',
      '8h',
      ': ',
      ':',
      '\n',
      '  ',
      '- ',
      '&a ',
      '*a',
      '&b ',
      '*b',
      '[',
      ']',
      '{',
      '}',
      ', ',
      '!!binary ',
      '!!str ',
      '!!map ',
      '!!set ',
      '!foo ',
      '? ',
      '<<: ',
      '"',
      "'",
      '# c',
      '---\n',
      '...\n',
      '|\n',
      '>\n',
      '~',
      'null',
      'true',
      '1e400',
      '.nan',
      '0x1F',
      '{{internal.logins}}',
      '^a($',
      '*',
      '%YAML 1.2\n',
    ),
    { maxLength: 40 },
  )
  .map((parts) => parts.join(''));

/** Alias expansion: each level refers to the one before `width` times (the "billion laughs" shape). */
const aliasBomb = fc
  .tuple(
    fc.integer({ min: 1, max: 12 }),
    fc.integer({ min: 1, max: 12 }),
    fc.constantFrom('kind', 'name', 'allow', 'x'),
  )
  .map(([depth, width, key]) => {
    const lines = ['l0: &l0 [lol]'];
    for (let i = 1; i <= depth; i++)
      lines.push(
        `l${i}: &l${i} [${Array(width)
          .fill(`*l${i - 1}`)
          .join(', ')}]`,
      );
    lines.push(`${key}: *l${depth}`);
    return lines.join('\n');
  });

/** A value that contains itself (YAML allows it; toJS builds a cyclic object), at any key of the schema. */
const recursiveAlias = fc
  .tuple(
    fc.constantFrom(
      'kind',
      'name',
      'description',
      'allow',
      'deny',
      'options',
      'allow.logins',
      'allow.node_labels',
      'allow.node_labels.env',
      'allow.rules',
      'allow.request',
      'options.max_session_ttl',
      'options.record_session',
    ),
    fc.constantFrom('&r [*r]', '&r {k: *r}', '&r [x, [*r]]', '&r {logins: *r}'),
  )
  .map(([path, value]) => {
    const keys = path.split('.');
    const head = keys[0] === 'kind' ? 'name: x' : 'kind: role\nname: x';
    const nested = keys
      .map((k, i) => `${'  '.repeat(i)}${k}:${i === keys.length - 1 ? ` ${value}` : ''}`)
      .join('\n');
    return `${head}\n${nested}`;
  });

const lintInput = fc.oneof(
  yamlish,
  aliasBomb,
  recursiveAlias,
  validRole.map((r) => stringify(r)),
  hostileBytes(validRole.map((r) => Buffer.from(stringify(r)))).map((b) => b.toString('utf8')),
  fc.jsonValue({ maxDepth: 3 }).map((v) => stringify(v)),
  fc.string({ unit: 'binary', maxLength: 100 }),
);

describe('role lint (fuzz)', () => {
  it('lintRole answers every text with lint messages; it never throws', () => {
    fuzz(
      fc.property(lintInput, (text) => {
        const r = lintRole(text);
        const errors = r.messages.filter((m) => m.severity === 'error');
        expect(r.role === undefined).toBe(errors.length > 0);
        for (const m of r.messages) {
          expect(m.line).toBeGreaterThanOrEqual(1);
          expect(m.column).toBeGreaterThanOrEqual(1);
          expect(m.message.length).toBeGreaterThan(0);
        }
      }),
      { runs: 800 },
    );
  });

  it('accepts every valid role, as YAML and as JSON, and returns it as parseRole reads it', () => {
    fuzz(
      fc.property(validRole, fc.boolean(), (role, json) => {
        const r = lintRole(json ? JSON.stringify(role) : stringify(role));
        expect(r.messages.filter((m) => m.severity === 'error')).toEqual([]);
        expect(r.role).toEqual(parseRole(role));
      }),
      { runs: 500 },
    );
  });

  it('parseRole throws only ZodError on any value', () => {
    fuzz(
      fc.property(
        fc.oneof(
          fc.anything({ maxDepth: 3 }),
          fc
            .tuple(
              validRole,
              fc.constantFrom('allow', 'deny', 'options', 'name'),
              fc.anything({ maxDepth: 2 }),
            )
            .map(([r, k, v]) => ({ ...r, [k]: v })),
        ),
        (v) => {
          onlyThrows(() => parseRole(v), ZodError);
        },
      ),
      { runs: 1000 },
    );
  });
});
