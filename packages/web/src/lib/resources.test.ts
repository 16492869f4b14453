import { describe, expect, it } from 'vitest';
import {
  connectCommands,
  filterResources,
  labelIndex,
  paginate,
  parseLabelFilter,
  type Resource,
  shellWord,
  sortResources,
} from './resources';

const db = (name: string, labels: Record<string, string>, protocol = 'postgres'): Resource => ({
  kind: 'db',
  name,
  labels,
  protocol,
  detail: protocol,
});

const items: Resource[] = [
  db('orders', { env: 'prod', team: 'pay' }),
  db('orders-staging', { env: 'dev', team: 'pay' }),
  db('search', { env: 'prod' }, 'mysql'),
  { kind: 'kube', name: 'k-main', labels: { env: 'prod' }, description: 'Main cluster' },
  { kind: 'node', name: 'web-10', labels: { role: 'web' }, detail: '10.0.0.10:22' },
  { kind: 'node', name: 'web-2', labels: { role: 'web' }, detail: '10.0.0.2:22' },
];

describe('resource list helpers', () => {
  it('parses label filters', () => {
    expect(parseLabelFilter(' env = prod ')).toEqual({ key: 'env', value: 'prod' });
    expect(parseLabelFilter('env')).toEqual({ key: 'env' });
    expect(parseLabelFilter('env=')).toEqual({ key: 'env', value: '' });
    expect(parseLabelFilter('=prod')).toBeUndefined();
    expect(parseLabelFilter('  ')).toBeUndefined();
  });

  it('filters by every search term and every label filter', () => {
    const names = (r: Resource[]) => r.map((x) => x.name);
    expect(names(filterResources(items, { search: 'orders' }))).toEqual(['orders', 'orders-staging']);
    expect(names(filterResources(items, { search: 'ORDERS env=prod' }))).toEqual(['orders']);
    expect(names(filterResources(items, { search: 'main cluster' }))).toEqual(['k-main']);
    expect(names(filterResources(items, { labels: [{ key: 'env', value: 'prod' }] }))).toEqual([
      'orders',
      'search',
      'k-main',
    ]);
    expect(
      names(
        filterResources(items, {
          labels: [{ key: 'env', value: 'prod' }, { key: 'team' }],
        }),
      ),
    ).toEqual(['orders']);
    expect(filterResources(items, { search: 'nothing' })).toEqual([]);
    expect(filterResources(items, {})).toHaveLength(items.length);
  });

  it('sorts naturally (web-2 before web-10) in both directions, ties by name', () => {
    const nodes = items.filter((r) => r.kind === 'node');
    expect(sortResources(nodes, 'name', 'asc').map((r) => r.name)).toEqual(['web-2', 'web-10']);
    expect(sortResources(nodes, 'name', 'desc').map((r) => r.name)).toEqual(['web-10', 'web-2']);
    expect(sortResources(items, 'kind', 'asc').map((r) => r.kind)).toEqual([
      'db',
      'db',
      'db',
      'kube',
      'node',
      'node',
    ]);
  });

  it('pages and clamps the page number', () => {
    const list = Array.from({ length: 53 }, (_, i) => i);
    expect(paginate(list, 0, 25)).toMatchObject({ page: 0, pages: 3, total: 53, items: list.slice(0, 25) });
    expect(paginate(list, 2, 25).items).toEqual([50, 51, 52]);
    expect(paginate(list, 99, 25).page).toBe(2);
    expect(paginate(list, -1, 25).page).toBe(0);
    expect(paginate([], 0, 25)).toMatchObject({ page: 0, pages: 1, total: 0, items: [] });
  });

  it('handles 10,000 entries in one pass (filter, sort, page)', () => {
    const many: Resource[] = Array.from({ length: 10_000 }, (_, i) =>
      db(`db-${i}`, { env: i % 3 === 0 ? 'prod' : 'dev', shard: String(i % 7) }),
    );
    const f = filterResources(many, { search: 'db-99', labels: [{ key: 'env', value: 'prod' }] });
    // db-99, db-990..db-999, db-9900..db-9999 that are multiples of 3.
    const expected = many.filter((r) => r.name.startsWith('db-99') && Number(r.name.slice(3)) % 3 === 0);
    expect(f.map((r) => r.name).sort()).toEqual(expected.map((r) => r.name).sort());
    const page = paginate(sortResources(f, 'name', 'desc'), 0, 10);
    expect(page.items[0]!.name).toBe('db-9999');
    expect(labelIndex(many).get('shard')).toEqual(['0', '1', '2', '3', '4', '5', '6']);
  });

  it('indexes label keys and values sorted', () => {
    expect([...labelIndex(items).entries()]).toEqual([
      ['env', ['dev', 'prod']],
      ['role', ['web']],
      ['team', ['pay']],
    ]);
  });

  it('gives the exact CLI commands to connect', () => {
    expect(connectCommands(items[0]!).map((s) => s.command)).toEqual([
      'gatehouse db login orders',
      'psql "service=orders"',
    ]);
    expect(connectCommands(items[2]!).map((s) => s.command)).toEqual([
      'gatehouse db login search',
      'gatehouse db connect search',
    ]);
    const several = connectCommands({ ...items[0]!, dbUsers: ['alice', 'reader'] });
    expect(several[0]!.label).toContain('add --db-user: your roles allow alice, reader');
    expect(connectCommands(items[3]!).map((s) => s.command)).toEqual([
      'gatehouse kube login k-main',
      'kubectl get pods',
    ]);
    expect(connectCommands(items[4]!, { login: 'ubuntu' }).map((s) => s.command)).toEqual([
      'gatehouse ssh ubuntu@web-10',
    ]);
    expect(connectCommands(db("it's", {})).map((s) => s.command)).toEqual([
      `gatehouse db login 'it'\\''s'`,
      `psql 'service=it'\\''s'`,
    ]);
  });

  it('quotes shell words only when needed', () => {
    expect(shellWord('a-b_c.d')).toBe('a-b_c.d');
    expect(shellWord('a b')).toBe("'a b'");
    expect(shellWord('$(rm)')).toBe("'$(rm)'");
  });
});
