import { describe, expect, it } from 'vitest';
import { ConnectionIds } from './connection-ids.js';

describe('ConnectionIds', () => {
  it('issues ids in [2^30, 2^31) and maps them to the database connection while the session lives', () => {
    const ids = new ConnectionIds();
    const a = ids.issue();
    const b = ids.issue();
    for (const id of [a, b]) {
      expect(id).toBeGreaterThanOrEqual(2 ** 30);
      expect(id).toBeLessThan(2 ** 31);
    }
    expect(ids.get(a)).toBeUndefined();
    ids.bind(a, { sessionId: 's1', user: 'dave', service: 'shop', upstreamId: 17 });
    expect(ids.get(a)?.upstreamId).toBe(17);
    // COM_CHANGE_USER to another user: a new database connection behind the same greeting id.
    ids.move(a, 23);
    expect(ids.get(a)).toEqual({ sessionId: 's1', user: 'dave', service: 'shop', upstreamId: 23 });
    ids.move(b, 5);
    expect(ids.get(b)).toBeUndefined();
    ids.release(a);
    expect(ids.get(a)).toBeUndefined();
    expect(ids.size).toBe(0);
  });
});
