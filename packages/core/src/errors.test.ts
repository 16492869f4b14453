import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ErrorCodes, GatehouseError, toGatehouseError } from './errors.js';

describe('error codes', () => {
  it('docs/errors.md lists every code with its HTTP status, and nothing else', () => {
    const doc = readFileSync(new URL('../../../docs/errors.md', import.meta.url), 'utf8');
    const rows = [...doc.matchAll(/^\| `(GH_ERR_[A-Z_]+)` \| (\d{3}) \|/gm)].map((m) => [m[1], Number(m[2])]);
    expect(Object.fromEntries(rows)).toEqual(ErrorCodes);
  });

  it('renders problem JSON with the code, status and hint', () => {
    const e = new GatehouseError('GH_ERR_NOT_FOUND', 'user "x" not found', {
      hint: 'list users',
      details: { name: 'x' },
    });
    expect(e.toProblem()).toEqual({
      type: 'https://gatehouse.dev/docs/errors#GH_ERR_NOT_FOUND',
      title: 'user "x" not found',
      status: 404,
      code: 'GH_ERR_NOT_FOUND',
      hint: 'list users',
      name: 'x',
    });
  });

  it('keeps the code of foreign errors that use a known code, and only those', () => {
    const foreign = Object.assign(new Error('bad date'), { code: 'GH_ERR_VALIDATION', hint: 'use ISO 8601' });
    const g = toGatehouseError(foreign);
    expect(g?.status).toBe(400);
    expect(g?.hint).toBe('use ISO 8601');
    expect(toGatehouseError(Object.assign(new Error('x'), { code: 'ENOENT' }))).toBeUndefined();
    expect(toGatehouseError('nope')).toBeUndefined();
  });
});
