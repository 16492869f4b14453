import { describe, expect, it } from 'vitest';
import { noCliMethod } from './session-mfa.js';

// What `gatehouse ssh`/`db connect`/`kube credentials` say when the check's
// methods include none the CLI answers (it takes authenticator codes only).
describe('noCliMethod', () => {
  it('a user with security keys only is sent to the web terminal (nodes) or told to add an app', () => {
    const node = noCliMethod(
      'gh.example:443',
      { kind: 'node', node: 'web1', login: 'ops' },
      'ops@web1',
      true,
    );
    expect(node.code).toBe('GH_ERR_SECOND_FACTOR_NOT_ENROLLED');
    expect(node.message).toContain('your only second factor is a security key');
    expect(node.hint).toContain('https://gh.example:443/web/terminal');
    expect(node.hint).toContain('"Use security key"');
    expect(node.hint).toContain('gatehouse mfa add --name NAME');

    // Databases and clusters have no web terminal: only the authenticator app helps.
    const db = noCliMethod(
      'gh.example:443',
      { kind: 'db', name: 'orders', user: 'dana' },
      'dana@orders',
      true,
    );
    expect(db.message).toContain('security key');
    expect(db.hint).not.toContain('/web/terminal');
    expect(db.hint).toContain('gatehouse mfa add --name NAME');
  });

  it('no usable method at all says to enroll an app', () => {
    const e = noCliMethod('gh.example:443', { kind: 'kube', cluster: 'prod' }, 'cluster prod', false);
    expect(e.message).toContain('offers no method this CLI can answer');
    expect(e.hint).toContain('gatehouse users reset');
  });
});
