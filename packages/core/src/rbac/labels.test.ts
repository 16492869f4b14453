import { describe, expect, it } from 'vitest';
import { compilePattern, matchLabels, matchValue, PatternCache } from './labels.js';

describe('matchValue', () => {
  it('matches exact values, *, globs and anchored regexes', () => {
    expect(matchValue('root', 'root')).toBe(true);
    expect(matchValue('root', 'roots')).toBe(false);
    expect(matchValue('*', '')).toBe(true);
    expect(matchValue('*', 'anything')).toBe(true);
    expect(matchValue('prod-*', 'prod-eu')).toBe(true);
    expect(matchValue('prod-*', 'prod-')).toBe(true);
    expect(matchValue('prod-*', 'xprod-eu')).toBe(false);
    expect(matchValue('*-db', 'orders-db')).toBe(true);
    expect(matchValue('a.b*', 'axb')).toBe(false);
    expect(matchValue('^(dev|staging)$', 'staging')).toBe(true);
    expect(matchValue('^(dev|staging)$', 'production')).toBe(false);
    expect(matchValue('^dev$', 'dev2')).toBe(false);
    // Not anchored at both ends: a literal, not a regex.
    expect(matchValue('^dev', 'dev')).toBe(false);
    expect(matchValue('^dev', '^dev')).toBe(true);
  });

  it('an invalid regex never matches and never throws', () => {
    expect(() => compilePattern('^[a$')).not.toThrow();
    expect(matchValue('^[a$', '[a')).toBe(false);
    expect(matchValue('^[a$', '^[a$')).toBe(false);
  });

  it('caches compiled patterns', () => {
    const cache = new PatternCache();
    expect(matchValue('^a+$', 'aaa', cache)).toBe(true);
    expect(matchValue('^a+$', 'b', cache)).toBe(false);
    expect(cache.size).toBe(1);
    expect(cache.matcher('^a+$')).toBe(cache.matcher('^a+$'));
  });
});

describe('matchLabels', () => {
  const web = { env: 'prod', team: 'web', region: 'eu-west-1' };

  it("'*': '*' matches anything, including no labels", () => {
    expect(matchLabels({ '*': '*' }, web).matched).toBe(true);
    expect(matchLabels({ '*': ['*'] }, {}).matched).toBe(true);
  });

  it('a "*" key with another value never matches', () => {
    expect(matchLabels({ '*': 'prod' }, web).matched).toBe(false);
  });

  it('every key must match (AND), any value (OR)', () => {
    expect(matchLabels({ env: ['dev', 'prod'], team: 'web' }, web).matched).toBe(true);
    const r = matchLabels({ env: ['dev', 'prod'], team: 'db' }, web);
    expect(r).toEqual({ matched: false, detail: 'label team=web does not match db' });
    expect(matchLabels({ env: 'prod', owner: '*' }, web)).toEqual({
      matched: false,
      detail: 'the resource has no label "owner"',
    });
  });

  it('value * matches any value of that key but requires the key', () => {
    expect(matchLabels({ env: '*' }, web).matched).toBe(true);
    expect(matchLabels({ env: '*' }, { team: 'x' }).matched).toBe(false);
  });

  it('supports globs and regexes in values, and reports what matched', () => {
    expect(matchLabels({ region: 'eu-*' }, web)).toEqual({ matched: true, detail: 'region=eu-west-1' });
    expect(matchLabels({ env: '^(prod|staging)$' }, web).matched).toBe(true);
    expect(matchLabels({ env: '^(dev|staging)$' }, web).matched).toBe(false);
    expect(matchLabels({ env: '^[bad$' }, web).matched).toBe(false);
  });

  it('supports glob keys', () => {
    expect(matchLabels({ 'reg*': 'eu-*' }, web).matched).toBe(true);
    expect(matchLabels({ 'reg*': 'us-*' }, web).matched).toBe(false);
  });

  it('an empty selector or a key without values matches nothing', () => {
    expect(matchLabels({}, web).matched).toBe(false);
    expect(matchLabels({ env: [] }, web).matched).toBe(false);
  });

  it('does not treat prototype properties as labels', () => {
    expect(matchLabels({ constructor: '*' }, {}).matched).toBe(false);
  });
});
