import { describe, expect, it } from 'vitest';
import { matchPath, safeNext } from './router';

describe('router', () => {
  it('matches the pages and the invite token', () => {
    expect(matchPath('/')).toEqual({ page: 'cluster' });
    expect(matchPath('/web/resources/')).toEqual({ page: 'resources' });
    expect(matchPath('/web/invite/abc%2Dx')).toEqual({ page: 'invite', token: 'abc-x' });
    expect(matchPath('/web/invite/%E0%A4%A')).toEqual({ page: 'not-found', path: '/web/invite/%E0%A4%A' });
    expect(matchPath('/web/nope')).toEqual({ page: 'not-found', path: '/web/nope' });
    expect(matchPath('/web/recordings')).toEqual({ page: 'recordings' });
    expect(matchPath('/web/recordings/s-1.2')).toEqual({ page: 'player', id: 's-1.2' });
    expect(matchPath('/web/terminal')).toEqual({ page: 'terminal' });
    expect(matchPath('/web/account')).toEqual({ page: 'account' });
    expect(matchPath('/web/requests/')).toEqual({ page: 'requests' });
    expect(matchPath('/web/mfa')).toEqual({ page: 'mfa' });
  });

  it('follows only same-site paths after login', () => {
    expect(safeNext('/web/audit?x=1')).toBe('/web/audit?x=1');
    expect(safeNext('//evil.example/')).toBe('/');
    expect(safeNext('/\\evil.example')).toBe('/');
    expect(safeNext('https://evil.example/')).toBe('/');
    expect(safeNext('/web/login?next=/x')).toBe('/');
    expect(safeNext(null)).toBe('/');
  });
});
