import { fuzz, type Generated, shellSplit } from '@gatehouse/core/testing';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { execParams, formatCommand, type KubeRequestInfo, parseKubeRequest } from './apipath.js';

const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'CONNECT', 'get', 'Post'];
/** Path segments as Kubernetes names look, and some that are not. */
const seg = fc.oneof(
  fc.stringMatching(/^[a-z0-9]([a-z0-9.-]{0,12}[a-z0-9])?$/),
  fc.constantFrom(
    'api',
    'apis',
    'v1',
    'namespaces',
    'pods',
    'exec',
    'attach',
    'watch',
    'portforward',
    'log',
    'proxy',
  ),
  fc.string({ unit: 'grapheme', minLength: 1, maxLength: 6 }).filter((s) => !s.includes('/')),
);

/** A resource path the way the API server reads it (already decoded), and the request info it means. */
const resourcePath = fc
  .record({
    group: fc.option(fc.stringMatching(/^[a-z]([a-z0-9.-]{0,10}[a-z0-9])?$/), { nil: undefined }),
    version: fc.stringMatching(/^v[1-9](alpha1|beta2)?$/),
    watchPrefix: fc.boolean(),
    namespace: fc.option(
      seg.filter((s) => s !== 'namespaces'),
      { nil: undefined },
    ),
    resource: seg.filter((s) => s !== 'watch' && s !== 'namespaces'),
    name: fc.option(seg, { nil: undefined }),
    subresource: fc.option(seg, { nil: undefined }),
  })
  .map((r) => ({ ...r, subresource: r.name === undefined ? undefined : r.subresource }));

const decodedPath = (r: Generated<typeof resourcePath>) =>
  [
    r.group === undefined ? '/api' : `/apis/${r.group}`,
    r.version,
    ...(r.watchPrefix ? ['watch'] : []),
    ...(r.namespace === undefined ? [] : ['namespaces', r.namespace]),
    r.resource,
    ...(r.name === undefined ? [] : [r.name]),
    ...(r.subresource === undefined ? [] : [r.subresource]),
  ].join('/');

/** What a client must encode in a path whatever it chooses for the rest ("?" starts the query). */
const MUST_ENCODE: Record<string, string> = { '%': '%25', '?': '%3F', '#': '%23' };
const asUrl = (path: string) => encodeSome(path, [false]);

/**
 * Percent-encodes the characters `pick` selects (as a client may, and as a Go
 * server decodes before routing); the leading "/" stays, as in every request line.
 */
function encodeSome(path: string, pick: boolean[]): string {
  return [...path]
    .map((c, i) =>
      i > 0 && pick[i % pick.length]
        ? [...Buffer.from(c)].map((b) => `%${b.toString(16).toUpperCase().padStart(2, '0')}`).join('')
        : (MUST_ENCODE[c] ?? c),
    )
    .join('');
}

const sansPath = ({ path: _p, ...rest }: KubeRequestInfo) => rest;

describe('parseKubeRequest (fuzz)', () => {
  it('never throws, and a resource request names a resource', () => {
    fuzz(
      fc.property(
        fc.constantFrom(...METHODS),
        fc.oneof(
          fc.webUrl({ withQueryParameters: true }).map((u) => new URL(u).pathname + new URL(u).search),
          fc.string({ unit: 'binary', maxLength: 60 }),
          fc
            .array(fc.oneof(seg, fc.constantFrom('%', '%2F', '%zz', '?', '&', '=', '..', '')), {
              maxLength: 10,
            })
            .map((s) => `/${s.join('/')}`),
        ),
        (m, url) => {
          const r = parseKubeRequest(m, url);
          expect(r.method).toBe(m.toUpperCase());
          if (r.resourceRequest) expect(r.resource).toBeTruthy();
        },
      ),
      { runs: 3000 },
    );
  });

  it('reads namespace, resource, name and subresource from every resource path', () => {
    fuzz(
      fc.property(resourcePath, fc.constantFrom('GET', 'POST', 'DELETE'), (r, m) => {
        const info = parseKubeRequest(m, asUrl(decodedPath(r)));
        expect(info).toMatchObject({
          resourceRequest: true,
          apiGroup: r.group ?? '',
          apiVersion: r.version,
          namespace: r.namespace,
          resource: r.resource,
          name: r.name,
          subresource: r.subresource,
        });
      }),
      { runs: 2000 },
    );
  });

  it('sees the request the API server sees, however the client percent-encodes the path (%2F included)', () => {
    fuzz(
      fc.property(
        resourcePath,
        fc.array(fc.boolean(), { minLength: 1, maxLength: 40 }),
        fc.constantFrom('GET', 'POST'),
        (r, pick, m) => {
          const plain = decodedPath(r);
          expect(sansPath(parseKubeRequest(m, `${encodeSome(plain, pick)}?command=sh`))).toEqual(
            sansPath(parseKubeRequest(m, `${asUrl(plain)}?command=sh`)),
          );
        },
      ),
      { runs: 2000 },
    );
  });
});

describe('exec parameters and commands (fuzz)', () => {
  it('execParams reads back what kubectl puts in the query, and never throws', () => {
    fuzz(
      fc.property(
        fc.array(fc.string({ unit: 'grapheme', maxLength: 12 }), { maxLength: 5 }),
        fc.option(fc.string({ maxLength: 10 }), { nil: undefined }),
        fc.boolean(),
        fc.string({ unit: 'binary', maxLength: 40 }),
        (command, container, tty, junk) => {
          const q = new URLSearchParams();
          for (const c of command) q.append('command', c);
          if (container !== undefined) q.set('container', container);
          if (tty) q.set('tty', 'true');
          const p = execParams(`/api/v1/namespaces/n/pods/p/exec?${q}`);
          expect(p.command).toEqual(command);
          expect(p.container).toBe(container);
          expect(p.tty).toBe(tty);
          execParams(junk);
        },
      ),
      { runs: 1000 },
    );
  });

  it('formatCommand quotes each argument so a shell reads back the same argv', () => {
    fuzz(
      fc.property(fc.array(fc.string({ unit: 'grapheme', maxLength: 12 }), { maxLength: 6 }), (argv) => {
        expect(shellSplit(formatCommand(argv))).toEqual(argv);
      }),
      { runs: 2000 },
    );
  });
});
