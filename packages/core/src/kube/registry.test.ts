import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { MemoryBackend } from '../backend/memory.js';
import { systemClock } from '../clock.js';
import { AesGcmSealer } from '../crypto/seal.js';
import { KubeClusterRegistry } from './registry.js';

const KUBECONFIG = `apiVersion: v1
kind: Config
clusters: [{ name: c, cluster: { server: "https://k:6443" } }]
users: [{ name: u, user: { token: s3cret-token } }]
contexts: [{ name: main, context: { cluster: c, user: u } }, { name: alt, context: { cluster: c, user: u } }]
current-context: main
`;

function registry() {
  const backend = new MemoryBackend({ clock: systemClock });
  const events: { type: string }[] = [];
  const audit = {
    emit: async (e: { type: string }) => {
      events.push(e);
      return e as never;
    },
  };
  const reg = new KubeClusterRegistry({
    backend,
    audit: audit as never,
    sealer: new AesGcmSealer(randomBytes(32)),
  });
  return { backend, reg, events };
}

describe('KubeClusterRegistry', () => {
  it('stores the kubeconfig sealed, lists clusters without credentials, opens it for the adapter', async () => {
    const { backend, reg, events } = registry();
    await reg.add({ name: 'prod', labels: { env: 'prod' }, kubeconfig: KUBECONFIG, context: 'alt' }, 'admin');
    const raw = (await backend.get('kube_clusters/prod'))!.value;
    expect(raw).not.toContain('s3cret-token');
    expect(await reg.list()).toEqual([
      { name: 'prod', labels: { env: 'prod' }, context: 'alt', source: 'dynamic' },
    ]);
    expect((await reg.get('prod'))?.kubeconfig).toBe(KUBECONFIG);
    expect(events.map((e) => e.type)).toEqual(['kube.cluster.create']);
    await reg.remove('prod', 'admin');
    expect(await reg.get('prod')).toBeUndefined();
    await expect(reg.remove('prod', 'admin')).rejects.toThrow(/not found/);
  });

  it('a sealed kubeconfig moved to another record does not open', async () => {
    const { backend, reg } = registry();
    await reg.add({ name: 'a', labels: {}, kubeconfig: KUBECONFIG }, 'admin');
    await backend.put(
      'kube_clusters/b',
      (await backend.get('kube_clusters/a'))!.value.replace('"name":"a"', '"name":"b"'),
    );
    await expect(reg.get('b')).rejects.toThrow(/could not be opened/);
  });

  it.each([
    [{ name: 'Bad_Name', labels: {}, kubeconfig: KUBECONFIG }, /name "Bad_Name" is invalid/],
    [{ name: 'x', labels: {} }, /no upstream credentials/],
    [{ name: 'x', labels: {}, kubeconfig: 'a: [' }, /not YAML/],
    [{ name: 'x', labels: {}, kubeconfig: 'kind: Config\n' }, /no clusters or contexts/],
    [{ name: 'x', labels: {}, kubeconfig: KUBECONFIG, context: 'nope' }, /no context "nope"/],
    [{ name: 'x', labels: {}, kubeconfig: KUBECONFIG, inCluster: true }, /exclude each other/],
  ])('rejects %o', async (spec, msg) => {
    const { reg } = registry();
    await expect(reg.add(spec, 'admin')).rejects.toThrow(msg);
  });

  it('config clusters are read-only and win over dynamic ones', async () => {
    const { reg } = registry();
    reg.addStatic({ name: 'incluster', labels: {}, inCluster: true });
    await expect(reg.add({ name: 'incluster', labels: {}, kubeconfig: KUBECONFIG }, 'admin')).rejects.toThrow(
      /defined in the config/,
    );
    await expect(reg.remove('incluster', 'admin')).rejects.toThrow(/defined in the config/);
    expect(() => reg.addStatic({ name: 'incluster', labels: {}, inCluster: true })).toThrow(
      /configured twice/,
    );
  });
});
