import { describe, expect, it } from 'vitest';
import {
  altDigit,
  baseName,
  cleanRemotePath,
  concreteLogins,
  describeEnd,
  formatProgress,
  joinModesOf,
  resizeFrame,
  socketUrl,
  targetFromSearch,
  terminalPageUrl,
} from './terminal';

const key = (over: Partial<Parameters<typeof altDigit>[0]>) => ({
  altKey: false,
  ctrlKey: false,
  metaKey: false,
  shiftKey: false,
  code: '',
  key: '',
  ...over,
});

describe('web terminal helpers', () => {
  it('builds same-origin socket URLs with every parameter escaped', () => {
    const loc = { protocol: 'https:', host: 'gw.example:3080' };
    expect(socketUrl(loc, { kind: 'shell', node: 'web 1', login: 'a&b' }, { cols: 120, rows: 40 })).toBe(
      'wss://gw.example:3080/v1/ws/terminal?node=web+1&login=a%26b&cols=120&rows=40',
    );
    expect(socketUrl(loc, { kind: 'join', session: 's/1', mode: 'peer' }, { cols: 1, rows: 1 })).toBe(
      'wss://gw.example:3080/v1/ws/sessions/s%2F1/join?mode=peer',
    );
  });

  it('round-trips a tab target through the terminal page URL', () => {
    const shell = { kind: 'shell', node: 'n1', login: 'gh-test' } as const;
    const join = { kind: 'join', session: 'abc', mode: 'observer' } as const;
    for (const t of [shell, join]) {
      const u = new URL(terminalPageUrl(t), 'https://x');
      expect(u.pathname).toBe('/web/terminal');
      expect(targetFromSearch(u.searchParams)).toEqual(t);
    }
    expect(terminalPageUrl()).toBe('/web/terminal');
    expect(targetFromSearch(new URLSearchParams('node=n1'))).toBeUndefined();
    // An unknown mode is the least: observer.
    expect(targetFromSearch(new URLSearchParams('join=abc&mode=owner'))).toEqual({
      kind: 'join',
      session: 'abc',
      mode: 'observer',
    });
  });

  it('takes Alt+1..9 (by physical key) as tab numbers and nothing else', () => {
    expect(altDigit(key({ altKey: true, code: 'Digit1', key: '1' }))).toBe(0);
    expect(altDigit(key({ altKey: true, code: 'Digit9', key: '¡' }))).toBe(8);
    expect(altDigit(key({ altKey: true, shiftKey: true, code: 'Digit2', key: 'é' }))).toBe(1);
    expect(altDigit(key({ altKey: true, code: 'Numpad3', key: '3' }))).toBe(2);
    expect(altDigit(key({ altKey: true, code: 'Digit0', key: '0' }))).toBeUndefined();
    expect(altDigit(key({ code: 'Digit1', key: '1' }))).toBeUndefined();
    expect(altDigit(key({ altKey: true, ctrlKey: true, code: 'Digit1', key: '1' }))).toBeUndefined();
    expect(altDigit(key({ altKey: true, code: 'KeyA', key: 'a' }))).toBeUndefined();
  });

  it('closes the tab only for a clean shell exit of its owner, and says why otherwise', () => {
    const clean = { code: 1000, reason: '', opened: true };
    expect(describeEnd({ type: 'end', exit_code: 0 }, clean, 'owner').close).toBe(true);
    expect(describeEnd({ type: 'end' }, clean, 'owner').close).toBe(true);
    expect(describeEnd({ type: 'end', exit_code: 0 }, clean, 'observer')).toMatchObject({ close: false });
    expect(describeEnd({ type: 'end', exit_code: 3 }, clean, 'owner')).toEqual({
      close: false,
      message: 'The shell exited with status 3.',
    });
    expect(describeEnd({ type: 'end', reason: 'locked by admin: incident' }, clean, 'owner')).toEqual({
      close: false,
      message: 'Session ended: locked by admin: incident',
    });
    const err = describeEnd(
      { type: 'error', code: 'GH_ERR_ACCESS_DENIED', message: 'login root is not allowed', hint: 'ask' },
      { code: 1011, reason: '', opened: true },
      'owner',
    );
    expect(err).toEqual({
      close: false,
      message: 'login root is not allowed',
      hint: 'ask',
      code: 'GH_ERR_ACCESS_DENIED',
    });
  });

  it('explains a refused upgrade and a dropped connection', () => {
    const refused = describeEnd(undefined, { code: 1006, reason: '', opened: false }, 'owner');
    expect(refused.close).toBe(false);
    expect(refused.message).toContain('refused');
    expect(refused.hint).toContain('audit log');
    const dropped = describeEnd(undefined, { code: 1006, reason: '', opened: true }, 'owner');
    expect(dropped.message).toBe('The connection to the gateway was lost (code 1006).');
    expect(describeEnd(undefined, { code: 1009, reason: '', opened: true }, 'owner').message).toContain(
      'too large',
    );
  });

  it('keeps only logins a form can use, and checks remote paths', () => {
    expect(concreteLogins(['ubuntu', 'dev-*', '{{internal.logins}}', 'ubuntu', '', 'gh-test'])).toEqual([
      'ubuntu',
      'gh-test',
    ]);
    expect(concreteLogins(undefined)).toEqual([]);
    expect(cleanRemotePath('  notes.txt ')).toBe('notes.txt');
    expect(cleanRemotePath('/tmp/')).toBeUndefined();
    expect(cleanRemotePath('   ')).toBeUndefined();
    expect(baseName('/var/log/syslog')).toBe('syslog');
    expect(baseName('/')).toBe('download');
  });

  it('formats resize frames and progress', () => {
    expect(JSON.parse(resizeFrame(100, 30))).toEqual({ type: 'resize', cols: 100, rows: 30 });
    expect(formatProgress(512, undefined)).toBe('512 B');
    expect(formatProgress(3 * 1024, 12 * 1024)).toBe('3.0 KiB of 12.0 KiB (25%)');
  });

  it('offers the join modes the roles grant, deny winning', () => {
    const role = (allow: ('observer' | 'peer')[], deny: ('observer' | 'peer')[] = []) => ({
      allow: { join_sessions: allow },
      deny: { join_sessions: deny },
    });
    expect(joinModesOf([role(['observer', 'peer'])])).toEqual(['observer', 'peer']);
    expect(joinModesOf([role(['observer']), role([])])).toEqual(['observer']);
    expect(joinModesOf([role(['observer', 'peer']), role([], ['peer'])])).toEqual(['observer']);
    expect(joinModesOf([{ allow: {}, deny: {} }])).toEqual([]);
  });
});
