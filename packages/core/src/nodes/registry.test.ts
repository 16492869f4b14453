import { MemoryAuditLog } from '@gatehouse/audit/testing';
import { describe, expect, it } from 'vitest';
import { MemoryBackend } from '../backend/memory.js';
import { NodeRegistry, nodeHostPort, validateNode } from './registry.js';

function registry() {
  const audit = new MemoryAuditLog();
  const backend = new MemoryBackend({ sweepIntervalMs: 0 });
  return { audit, backend, nodes: new NodeRegistry({ backend, audit }) };
}

describe('nodeHostPort', () => {
  it('reads host:port, [v6]:port and a bare host (port 22)', () => {
    expect(nodeHostPort({ addr: '10.0.0.5:2222' })).toEqual({ host: '10.0.0.5', port: 2222 });
    expect(nodeHostPort({ addr: '[::1]:22' })).toEqual({ host: '::1', port: 22 });
    expect(nodeHostPort({ addr: 'web1.internal' })).toEqual({ host: 'web1.internal', port: 22 });
    expect(nodeHostPort({ addr: '::1' })).toEqual({ host: '::1', port: 22 });
  });

  it('validation refuses bad names, ports and labels', () => {
    expect(() => validateNode({ name: 'Web_1', addr: 'h:22', labels: {} })).toThrow(
      /name "Web_1" is invalid/,
    );
    expect(() => validateNode({ name: 'web1', addr: 'h:99999', labels: {} })).toThrow(/address "h:99999"/);
    expect(() => validateNode({ name: 'web1', addr: 'h:x', labels: {} })).toThrow(/address/);
    expect(() => validateNode({ name: 'web1', addr: 'h:22', labels: { 'a b': 'c' } })).toThrow(/label/);
    expect(() => validateNode({ name: 'web1', addr: 'h:22', labels: {}, hostCaKeys: ['nope'] })).toThrow(
      /OpenSSH/,
    );
  });
});

describe('NodeRegistry', () => {
  it('lists static and dynamic nodes, audits changes, refuses duplicates', async () => {
    const { audit, nodes } = registry();
    nodes.addStatic({ name: 'db1', addr: '10.0.0.9:22', labels: { env: 'prod' } });
    expect(() => nodes.addStatic({ name: 'db1', addr: '10.0.0.9:22', labels: {} })).toThrow(
      /configured twice/,
    );
    await nodes.add({ name: 'web1', addr: '127.0.0.1:2022', labels: { env: 'dev' } }, 'admin');
    await expect(nodes.add({ name: 'web1', addr: 'x:22', labels: {} }, 'admin')).rejects.toMatchObject({
      code: 'GH_ERR_ALREADY_EXISTS',
    });
    await expect(nodes.add({ name: 'db1', addr: 'x:22', labels: {} }, 'admin')).rejects.toThrow(
      /defined in the config/,
    );
    expect((await nodes.list()).map((n) => [n.name, n.source])).toEqual([
      ['db1', 'config'],
      ['web1', 'dynamic'],
    ]);
    await nodes.add({ name: 'web1', addr: '127.0.0.1:2023', labels: {} }, 'node-service', { replace: true });
    expect((await nodes.get('web1'))?.addr).toBe('127.0.0.1:2023');
    await expect(nodes.remove('db1', 'admin')).rejects.toThrow(/defined in the config/);
    await nodes.remove('web1', 'admin');
    await expect(nodes.remove('web1', 'admin')).rejects.toMatchObject({ code: 'GH_ERR_NOT_FOUND' });
    expect(audit.events.map((e) => [e.type, e.user])).toEqual([
      ['node.create', 'admin'],
      ['node.create', 'node-service'],
      ['node.delete', 'admin'],
    ]);
  });

  it('resolves a name, name.cluster or a unique address; ambiguity resolves to nothing', async () => {
    const { nodes } = registry();
    await nodes.add({ name: 'web1', addr: '127.0.0.1:2022', labels: {} }, 'a');
    await nodes.add({ name: 'web2', addr: '127.0.0.2:22', labels: {} }, 'a');
    await nodes.add({ name: 'web3', addr: '127.0.0.2:22', labels: {} }, 'a');
    expect((await nodes.resolve('web1', 22, 'acme'))?.name).toBe('web1');
    expect((await nodes.resolve('WEB1.acme', 22, 'acme'))?.name).toBe('web1');
    expect((await nodes.resolve('127.0.0.1', 2022, 'acme'))?.name).toBe('web1');
    expect(await nodes.resolve('127.0.0.1', 22, 'acme')).toBeUndefined();
    expect(await nodes.resolve('127.0.0.2', 22, 'acme')).toBeUndefined();
    expect(await nodes.resolve('../etc', 22, 'acme')).toBeUndefined();
  });
});

describe('NodeRegistry.replaceStatic (SIGHUP reload)', () => {
  it('swaps the configured nodes, and changes nothing when one of the new ones is invalid or taken', async () => {
    const { nodes } = registry();
    nodes.addStatic({ name: 'from-adapter', addr: '127.0.0.1:2200', labels: {} });
    nodes.addStatic({ name: 'one', addr: '127.0.0.1:2201', labels: {} });
    nodes.replaceStatic(['one'], [{ name: 'two', addr: '127.0.0.1:2202', labels: {} }]);
    expect((await nodes.list()).map((n) => n.name)).toEqual(['from-adapter', 'two']);
    // A name another static entry holds, then an invalid address: both refused whole.
    expect(() =>
      nodes.replaceStatic(
        ['two'],
        [
          { name: 'three', addr: '127.0.0.1:2203', labels: {} },
          { name: 'from-adapter', addr: '127.0.0.1:2204', labels: {} },
        ],
      ),
    ).toThrow(/node "from-adapter" is configured twice/);
    expect(() => nodes.replaceStatic(['two'], [{ name: 'three', addr: 'h:99999', labels: {} }])).toThrow(
      /address/,
    );
    expect((await nodes.list()).map((n) => n.name)).toEqual(['from-adapter', 'two']);
  });
});
