import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { clusterFromServerName, kubeServerName } from './adapter.js';
import {
  EXEC_API_VERSION,
  execCredential,
  execCredentialVersion,
  writeKubeconfigEntry,
} from './kubeconfig.js';
import { forwardHeaders, impersonationHeaders } from './session.js';

describe('writeKubeconfigEntry', () => {
  const entry = {
    name: 'acme-prod',
    server: 'https://gh:3080',
    tlsServerName: 'prod.kube.acme',
    caPem: 'CA',
    user: { exec: { command: 'node', args: ['gh.js', 'kube', 'credentials', '--cluster', 'prod'] } },
  };
  it('adds a context and keeps other entries; writing again replaces it', () => {
    const existing =
      'apiVersion: v1\nkind: Config\nclusters: [{name: other, cluster: {server: "https://x"}}]\ncurrent-context: other\n';
    const once = writeKubeconfigEntry(existing, entry);
    const twice = parse(writeKubeconfigEntry(once, { ...entry, server: 'https://gh:4000' })) as Record<
      string,
      { name: string; cluster?: { server: string } }[]
    >;
    expect(twice.clusters!.map((c) => c.name)).toEqual(['other', 'acme-prod']);
    expect(twice.clusters![1]!.cluster!.server).toBe('https://gh:4000');
    expect((twice as unknown as Record<string, string>)['current-context']).toBe('acme-prod');
  });
  it('writes the exec plugin as client.authentication.k8s.io/v1beta1, which kubectl before 1.22 reads too', () => {
    const doc = parse(writeKubeconfigEntry(undefined, entry)) as {
      users: { user: { exec: Record<string, unknown> } }[];
    };
    expect(doc.users[0]!.user.exec).toMatchObject({
      apiVersion: 'client.authentication.k8s.io/v1beta1',
      interactiveMode: 'Never',
      provideClusterInfo: false,
    });
  });
  it('keeps the current context with setCurrent false', () => {
    const doc = parse(
      writeKubeconfigEntry('current-context: other\n', entry, { setCurrent: false }),
    ) as Record<string, unknown>;
    expect(doc['current-context']).toBe('other');
  });
  it('execCredential has second precision', () => {
    const c = JSON.parse(execCredential('C', 'K', new Date('2026-01-01T10:00:00.123Z')));
    expect(c.status.expirationTimestamp).toBe('2026-01-01T10:00:00Z');
    expect(c.apiVersion).toBe(EXEC_API_VERSION);
  });
});

describe('execCredentialVersion (KUBERNETES_EXEC_INFO)', () => {
  it('echoes the version kubectl asks for, v1beta1 without one', () => {
    // What kubectl 1.32 and 1.20 set, as seen by a plugin.
    const v1 =
      '{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1","spec":{"interactive":false}}';
    const beta = '{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1beta1","spec":{}}';
    expect(execCredentialVersion(v1)).toBe('client.authentication.k8s.io/v1');
    expect(execCredentialVersion(beta)).toBe('client.authentication.k8s.io/v1beta1');
    expect(execCredentialVersion(undefined)).toBe('client.authentication.k8s.io/v1beta1');
    expect(execCredentialVersion('')).toBe('client.authentication.k8s.io/v1beta1');
  });
  it('refuses a version whose format it does not write, and garbage, with a hint', () => {
    expect(() =>
      execCredentialVersion('{"apiVersion":"client.authentication.k8s.io/v1alpha1","kind":"ExecCredential"}'),
    ).toThrow(/asked for ExecCredential "client.authentication.k8s.io\/v1alpha1"/);
    expect(() => execCredentialVersion('{not json')).toThrow(/not JSON/);
    expect(() => execCredentialVersion('{}')).toThrow(/asked for ExecCredential null/);
  });
});

describe('SNI names', () => {
  it('round-trip and reject other names', () => {
    expect(kubeServerName('prod', 'acme.example')).toBe('prod.kube.acme.example');
    expect(clusterFromServerName('PROD.kube.acme.example', 'acme.example')).toBe('prod');
    expect(clusterFromServerName('a.b.kube.acme', 'acme')).toBeUndefined();
    expect(clusterFromServerName('kube.acme', 'acme')).toBeUndefined();
    expect(clusterFromServerName(undefined, 'acme')).toBeUndefined();
  });
});

describe('header filtering', () => {
  it('finds every impersonation header and never forwards identity claims', () => {
    const h = {
      'impersonate-user': 'x',
      'impersonate-extra-scopes': 'y',
      'Impersonate-Uid': 'z',
      authorization: 'Bearer t',
      'x-remote-user': 'admin',
      connection: 'keep-alive',
      accept: 'application/json',
    };
    expect(impersonationHeaders(h).sort()).toEqual([
      'Impersonate-Uid',
      'impersonate-extra-scopes',
      'impersonate-user',
    ]);
    expect(forwardHeaders(h, false)).toEqual({ accept: 'application/json' });
    expect(forwardHeaders({ connection: 'Upgrade', upgrade: 'websocket' }, true)).toEqual({
      connection: 'Upgrade',
      upgrade: 'websocket',
    });
  });
});
