import { describe, expect, it } from 'vitest';
import { formatParam, QueryAuditor } from './query-audit.js';

const t = (s: string) => ({ format: 'text' as const, value: Buffer.from(s) });

describe('QueryAuditor', () => {
  it('records a simple query as one record', () => {
    expect(new QueryAuditor().observe({ type: 'query', sql: 'select 1' })).toEqual([{ query: 'select 1' }]);
  });

  it('pairs Parse text with Bind parameters on the first Execute only', () => {
    const a = new QueryAuditor();
    expect(a.observe({ type: 'parse', statement: 'q', sql: 'select $1, $2', paramTypes: [] })).toEqual([]);
    expect(
      a.observe({
        type: 'bind',
        portal: '',
        statement: 'q',
        params: [t('1'), { format: 'binary', value: Buffer.from([0xde, 0xad]) }],
      }),
    ).toEqual([]);
    expect(a.observe({ type: 'execute', portal: '', maxRows: 1 })).toEqual([
      { query: 'select $1, $2', parameters: ['1', '\\xdead'], statement: 'q' },
    ]);
    // Fetching more rows of the same portal is not a new query.
    expect(a.observe({ type: 'execute', portal: '', maxRows: 1 })).toEqual([]);
    a.observe({ type: 'bind', portal: '', statement: 'q', params: [t('2'), null] });
    expect(a.observe({ type: 'execute', portal: '', maxRows: 0 })).toEqual([
      { query: 'select $1, $2', parameters: ['2', 'NULL'], statement: 'q' },
    ]);
  });

  it('names the unnamed statement by omission and forgets closed names', () => {
    const a = new QueryAuditor();
    a.observe({ type: 'parse', statement: '', sql: 'select now()', paramTypes: [] });
    a.observe({ type: 'bind', portal: '', statement: '', params: [] });
    expect(a.observe({ type: 'execute', portal: '', maxRows: 0 })).toEqual([
      { query: 'select now()', parameters: [] },
    ]);
    a.observe({ type: 'parse', statement: 's', sql: 'select 2', paramTypes: [] });
    a.observe({ type: 'close', target: 'statement', name: 's' });
    a.observe({ type: 'bind', portal: 'p', statement: 's', params: [] });
    expect(a.observe({ type: 'execute', portal: 'p', maxRows: 0 })[0]?.query).toBe(
      '<unknown prepared statement "s">',
    );
  });

  it('cuts long parameters', () => {
    const s = formatParam(t('x'.repeat(10_000)));
    expect(s.length).toBeLessThan(4200);
    expect(s).toMatch(/…\(10000 bytes\)$/);
  });
});
