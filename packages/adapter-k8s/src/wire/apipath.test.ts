import { describe, expect, it } from 'vitest';
import { execParams, formatCommand, parseKubeRequest } from './apipath.js';

describe('parseKubeRequest', () => {
  it.each([
    [
      'GET',
      '/api/v1/namespaces/default/pods',
      { verb: 'list', resource: 'pods', namespace: 'default', apiGroup: '' },
    ],
    [
      'GET',
      '/api/v1/namespaces/default/pods?watch=true&resourceVersion=1',
      { verb: 'watch', resource: 'pods' },
    ],
    ['GET', '/api/v1/namespaces/default/pods/web-1', { verb: 'get', name: 'web-1' }],
    ['GET', '/api/v1/namespaces/default/pods/web-1/log?follow=true', { verb: 'get', subresource: 'log' }],
    [
      'POST',
      '/api/v1/namespaces/ns/pods/p/exec?command=ls',
      { verb: 'create', subresource: 'exec', name: 'p' },
    ],
    ['DELETE', '/api/v1/namespaces/ns/pods', { verb: 'deletecollection' }],
    ['DELETE', '/api/v1/namespaces/ns/pods/p', { verb: 'delete' }],
    [
      'PATCH',
      '/apis/apps/v1/namespaces/prod/deployments/web',
      {
        verb: 'patch',
        apiGroup: 'apps',
        apiVersion: 'v1',
        resource: 'deployments',
        namespace: 'prod',
        name: 'web',
      },
    ],
    [
      'GET',
      '/apis/apps/v1/deployments',
      { verb: 'list', apiGroup: 'apps', resource: 'deployments', namespace: undefined },
    ],
    [
      'GET',
      '/api/v1/namespaces/kube-system',
      { verb: 'get', resource: 'namespaces', name: 'kube-system', namespace: 'kube-system' },
    ],
    ['GET', '/api/v1/namespaces', { verb: 'list', resource: 'namespaces' }],
    [
      'GET',
      '/api/v1/watch/namespaces/default/pods',
      { verb: 'watch', resource: 'pods', namespace: 'default' },
    ],
    [
      'GET',
      '/api/v1/nodes/n1/proxy/metrics',
      { verb: 'get', resource: 'nodes', name: 'n1', subresource: 'proxy' },
    ],
  ] as const)('%s %s', (method, url, want) => {
    const r = parseKubeRequest(method, url);
    expect(r.resourceRequest).toBe(true);
    expect(r).toMatchObject(want);
  });

  it.each(['/version', '/api', '/api/v1', '/apis', '/apis/apps', '/apis/apps/v1', '/openapi/v2', '/healthz'])(
    'non-resource %s',
    (url) => {
      const r = parseKubeRequest('GET', url);
      expect(r).toEqual({ verb: 'get', method: 'GET', path: url, resourceRequest: false });
    },
  );

  it('decodes escaped path segments and never throws on bad escapes', () => {
    expect(parseKubeRequest('GET', '/api/v1/namespaces/a%2Db/pods').namespace).toBe('a-b');
    expect(parseKubeRequest('GET', '/api/v1/namespaces/%E0%A4%A/pods').namespace).toBe('%E0%A4%A');
  });

  it('reads an encoded "/" (%2F) as the API server does: exec hidden as pods/p%2Fexec is exec (was a get of pod "p/exec", unrecorded)', () => {
    // fuzz finding: the path was split before it was decoded, the API server decodes first.
    const r = parseKubeRequest('GET', '/api/v1/namespaces/ns/pods/p%2Fexec?command=sh&stdin=true&tty=true');
    expect(r).toMatchObject({ resource: 'pods', name: 'p', subresource: 'exec', namespace: 'ns' });
    expect(parseKubeRequest('GET', '/api%2Fv1%2Fnamespaces/ns%2Fpods')).toMatchObject({
      resourceRequest: true,
      namespace: 'ns',
      resource: 'pods',
    });
  });
});

describe('execParams / formatCommand', () => {
  it('reads repeated command params and flags', () => {
    const p = execParams(
      '/x?command=sh&command=-c&command=echo%20hi&container=app&stdin=true&stdout=true&tty=false',
    );
    expect(p).toEqual({
      command: ['sh', '-c', 'echo hi'],
      container: 'app',
      stdin: true,
      stdout: true,
      stderr: false,
      tty: false,
    });
  });
  it("reads port-forward's ports (repeated or comma-separated)", () => {
    expect(execParams('/x?ports=8080&ports=9090').ports).toBe('8080,9090');
    expect(execParams('/x?ports=8080,9090').ports).toBe('8080,9090');
    expect(execParams('/x').ports).toBeUndefined();
  });
  it('quotes arguments for the audit log like a shell', () => {
    expect(formatCommand(['sh', '-c', "echo it's"])).toBe(`sh -c 'echo it'\\''s'`);
  });
});
