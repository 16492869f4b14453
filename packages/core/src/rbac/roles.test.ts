import { MemoryAuditLog } from '@gatehouse/audit/testing';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MemoryBackend } from '../backend/memory.js';
import type { Backend } from '../backend/types.js';
import { ManualClock } from '../clock.js';
import { GatehouseError } from '../errors.js';
import { RoleService } from './roles.js';

const devYaml = `kind: role
name: dev
allow:
  logins: [ubuntu]
  node_labels: { env: dev }
`;

async function rejection(p: Promise<unknown>): Promise<GatehouseError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof GatehouseError) return e;
    throw e;
  }
  throw new Error('expected a rejection');
}

describe('RoleService', () => {
  let backend: MemoryBackend;
  let audit: MemoryAuditLog;
  let roles: RoleService;
  const clock = new ManualClock();

  beforeEach(() => {
    backend = new MemoryBackend({ clock, sweepIntervalMs: 0 });
    audit = new MemoryAuditLog();
    roles = new RoleService({ backend, audit, clock });
  });
  afterEach(async () => {
    await backend.close();
  });

  it('lists the built-in roles and gets them', async () => {
    expect((await roles.list()).map((r) => r.name)).toEqual(['access', 'admin', 'auditor']);
    expect((await roles.get('admin')).allow.rules).toEqual([{ resources: ['*'], verbs: ['*'] }]);
  });

  it('a role changed between two lookups is seen by the second (parsed roles are cached by revision)', async () => {
    // Two services on one backend: two gateways, or the one that resolves a
    // connection's roles and the admin API that changes them. The second
    // lookup must see the change at once, whoever made it.
    const other = new RoleService({ backend, audit, clock });
    await other.put(devYaml, 'root-admin');
    expect((await roles.resolve(['dev']))[0]?.allow.logins).toEqual(['ubuntu']);
    await other.put(devYaml.replace('ubuntu', 'deploy'), 'root-admin');
    expect((await roles.resolve(['dev']))[0]?.allow.logins).toEqual(['deploy']);
    // Also when the new document is written under the same name by anything
    // but RoleService (a restore, another version): only the stored item counts.
    await backend.put(
      'roles/dev',
      JSON.stringify({ ...(await roles.get('dev')), allow: { logins: ['root'] } }),
    );
    expect((await roles.get('dev')).allow.logins).toEqual(['root']);
    await other.delete('dev', 'root-admin');
    await expect(roles.resolve(['dev'])).rejects.toMatchObject({ code: 'GH_ERR_ACCESS_DENIED' });
  });

  it('a caller changing the role it was given does not change the next lookup', async () => {
    await roles.put(devYaml, 'root-admin');
    const first = await roles.get('dev');
    first.allow.logins?.push('root');
    expect((await roles.get('dev')).allow.logins).toEqual(['ubuntu']);
  });

  it('creates, updates and deletes a role from YAML, with audit events', async () => {
    const first = await roles.put(devYaml, 'root-admin');
    expect(first.created).toBe(true);
    expect(JSON.parse((await backend.get('roles/dev'))?.value ?? '{}').allow.logins).toEqual(['ubuntu']);
    const second = await roles.put(devYaml.replace('ubuntu', 'deploy'), 'root-admin');
    expect(second.created).toBe(false);
    expect((await roles.get('dev')).allow.logins).toEqual(['deploy']);
    expect((await roles.list()).map((r) => r.name)).toEqual(['access', 'admin', 'auditor', 'dev']);
    await roles.delete('dev', 'root-admin');
    expect(await roles.find('dev')).toBeUndefined();
    expect(audit.events.map((e) => [e.type, e.user, 'name' in e ? e.name : ''])).toEqual([
      ['role.create', 'root-admin', 'dev'],
      ['role.update', 'root-admin', 'dev'],
      ['role.delete', 'root-admin', 'dev'],
    ]);
  });

  it('accepts a Role object', async () => {
    const { role } = await roles.put(
      {
        kind: 'role',
        name: 'obj',
        allow: { rules: [{ resources: ['audit'], verbs: ['list'] }] },
        deny: {},
        options: {},
      },
      'a',
    );
    expect(role.name).toBe('obj');
    expect(await roles.exists('obj')).toBe(true);
  });

  it('create refuses to overwrite', async () => {
    await roles.put(devYaml, 'a', { create: true });
    const e = await rejection(roles.put(devYaml, 'a', { create: true }));
    expect(e.code).toBe('GH_ERR_ALREADY_EXISTS');
    expect(e.hint).toMatch(/without --create/);
  });

  it('rejects invalid roles with lint messages and line numbers', async () => {
    const e = await rejection(roles.put('kind: role\nname: dev\nallow:\n  node_label: { env: dev }\n', 'a'));
    expect(e.code).toBe('GH_ERR_ROLE_INVALID');
    expect(e.message).toBe(
      'invalid role: line 4:3 allow.node_label: unknown key "node_label" in allow (did you mean `node_labels`?)',
    );
    expect(e.details?.messages).toEqual([expect.objectContaining({ line: 4, key: 'allow.node_label' })]);
    expect(await backend.get('roles/dev')).toBeUndefined();
    expect(audit.events).toEqual([]);
  });

  it('refuses to overwrite or delete built-in roles', async () => {
    const put = await rejection(
      roles.put('kind: role\nname: admin\nallow: { logins: [root], node_labels: {"*": "*"} }\n', 'a'),
    );
    expect(put.code).toBe('GH_ERR_VALIDATION');
    expect(put.hint).toMatch(/create a new role with another name/);
    const del = await rejection(roles.delete('access', 'a'));
    expect(del.code).toBe('GH_ERR_VALIDATION');
    expect((await roles.get('admin')).allow.logins).toEqual(['{{internal.logins}}']);
  });

  it('deleting an unknown role is not found', async () => {
    expect((await rejection(roles.delete('nope', 'a'))).code).toBe('GH_ERR_NOT_FOUND');
    expect((await rejection(roles.delete('../x', 'a'))).code).toBe('GH_ERR_NOT_FOUND');
    expect((await rejection(roles.get('nope'))).code).toBe('GH_ERR_NOT_FOUND');
  });

  it('resolve fails closed on an unknown or corrupt role', async () => {
    await roles.put(devYaml, 'a');
    expect((await roles.resolve(['dev', 'access', 'dev'])).map((r) => r.name)).toEqual(['dev', 'access']);
    await roles.delete('dev', 'a');
    const e = await rejection(roles.resolve(['access', 'dev']));
    expect(e.code).toBe('GH_ERR_ACCESS_DENIED');
    expect(e.message).toBe('role "dev" does not exist');
    await backend.put('roles/broken', '{"kind":"role","name":"broken","allow":{"logins":"x"}}');
    expect((await rejection(roles.resolve(['broken']))).code).toBe('GH_ERR_INTERNAL');
  });

  it('propagates backend errors', async () => {
    const failing = {
      kind: 'failing',
      get: async () => {
        throw new GatehouseError('GH_ERR_BACKEND_UNAVAILABLE', 'down');
      },
    } as unknown as Backend;
    const r = new RoleService({ backend: failing, audit, clock });
    expect((await rejection(r.resolve(['dev']))).code).toBe('GH_ERR_BACKEND_UNAVAILABLE');
    // Built-ins need no backend.
    expect((await r.resolve(['admin'])).length).toBe(1);
  });
});
