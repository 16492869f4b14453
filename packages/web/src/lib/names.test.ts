import { describe, expect, it } from 'vitest';
import { numberDuplicates, shortId, target } from './names';

describe('session names', () => {
  it('numbers the second and later of equal titles, in order', () => {
    expect(numberDuplicates(['a@n', 'b@n', 'a@n', 'a@n'])).toEqual(['a@n', 'b@n', 'a@n (2)', 'a@n (3)']);
    expect(numberDuplicates([])).toEqual([]);
  });

  it('shortens ids and names targets', () => {
    expect(shortId('0f3a9c12-7d4e-4b1a-9c3e-123456789abc')).toBe('0f3a9c12');
    expect(shortId('s-1')).toBe('s-1');
    expect(target({ login: 'root', server: 'web-1' })).toBe('root@web-1');
    expect(target({ server: 'k-main' })).toBe('k-main');
  });
});
