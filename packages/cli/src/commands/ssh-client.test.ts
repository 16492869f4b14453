import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseScpArgs, scpTargets, sshLogin } from './ssh-client.js';

const remotes = (args: string[]) => parseScpArgs(args).remotes;

describe('parseScpArgs (which nodes a gatehouse scp copies to or from, and the options that pick the login)', () => {
  it('finds [LOGIN@]NODE in a remote operand, either side, once', () => {
    expect(remotes(['a.txt', 'root@web1:/tmp/'])).toEqual([{ login: 'root', node: 'web1' }]);
    expect(remotes(['-r', 'root@web1:/var/log', 'root@web1:x', './logs'])).toEqual([
      { login: 'root', node: 'web1' },
    ]);
    expect(remotes(['f', 'web2:'])).toEqual([{ node: 'web2' }]);
  });

  it('skips option values, so -P 22 or -o A=b:c are no operands; passes on -o and -F (the options that decide the login) in order', () => {
    expect(parseScpArgs(['-P', '2222', '-o', 'A=b:c', '-rpi', 'key', 'f', 'web2:'])).toEqual({
      remotes: [{ node: 'web2' }],
      sshConfig: ['-o', 'A=b:c'],
    });
    expect(parseScpArgs(['-oUser=root', '-F', 'cfg', '-rFother', '--', 'f', 'ops@web3:/x'])).toEqual({
      remotes: [{ login: 'ops', node: 'web3' }],
      sshConfig: ['-o', 'User=root', '-F', 'cfg', '-F', 'other'],
    });
    // scp's -l is a bandwidth limit, not a login.
    expect(parseScpArgs(['-l', '800', '-o', 'User root', 'f', 'web3:'])).toEqual({
      remotes: [{ node: 'web3' }],
      sshConfig: ['-o', 'User root'],
    });
  });

  it('a slash before the colon, or a leading colon, is a local file; scp:// URIs and [brackets] are remote', () => {
    expect(remotes(['./a:b', ':c', 'dir/x:y'])).toEqual([]);
    expect(remotes(['scp://ops@web4:2222/tmp/x', 'y'])).toEqual([{ login: 'ops', node: 'web4' }]);
    expect(remotes(['f', 'ops@[::1]:/tmp'])).toEqual([{ login: 'ops', node: '::1' }]);
  });

  it('lists two nodes apart (a copy between nodes)', () => {
    expect(remotes(['a@n1:/x', 'b@n2:/y'])).toEqual([
      { login: 'a', node: 'n1' },
      { login: 'b', node: 'n2' },
    ]);
  });
});

// The real OpenSSH client resolves the login (ssh -G); each case names its config file with -F so that the
// machine's ~/.ssh/config and /etc/ssh/ssh_config play no part.
describe('scpTargets and sshLogin (the login OpenSSH will use, from ssh -G)', () => {
  let dir: string;
  let cfg: string;
  const none = '/dev/null';
  const me = userInfo().username;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'gh-scp-login-'));
    cfg = join(dir, 'ssh_config');
    writeFileSync(cfg, 'Host web2\n  User cfguser\nHost *\n  User anyone\n');
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const targets = (args: string[]) => scpTargets(process.env, args);

  it('-o User= names the login of a remote without LOGIN@ (was: the local user); keyword in any case, = or a space', async () => {
    for (const o of [
      ['-o', 'User=ops'],
      ['-oUser=ops'],
      ['-o', 'user=ops'],
      ['-o', 'USER = ops'],
      ['-o', 'User ops'],
    ]) {
      expect(await targets(['-F', none, ...o, 'f', 'web2:']), o.join(' ')).toEqual([
        { login: 'ops', node: 'web2' },
      ]);
    }
  });

  it('without LOGIN@, -o User or a User line, the login is the local user name', async () => {
    expect(await targets(['-F', none, 'f', 'web2:'])).toEqual([{ login: me, node: 'web2' }]);
  });

  it('OpenSSH precedence: the first -o User, then LOGIN@ in the operand, then User in the -F config, then the local user', async () => {
    expect(await targets(['-F', none, '-o', 'User=first', '-o', 'User=second', 'f', 'web2:'])).toEqual([
      { login: 'first', node: 'web2' },
    ]);
    // scp hands LOGIN@ to ssh as -l after the -o options, and ssh keeps the first login it is given.
    expect(await targets(['-F', none, '-o', 'User=opt', 'f', 'bob@web2:'])).toEqual([
      { login: 'opt', node: 'web2' },
    ]);
    expect(await targets(['-F', cfg, 'f', 'bob@web2:'])).toEqual([{ login: 'bob', node: 'web2' }]);
    expect(await targets(['-F', cfg, 'f', 'web2:/tmp'])).toEqual([{ login: 'cfguser', node: 'web2' }]);
    expect(await targets(['-F', cfg, 'web3:/x', '.'])).toEqual([{ login: 'anyone', node: 'web3' }]);
  });

  it('two operands that resolve to the same LOGIN@NODE are one target; two logins on one node are two', async () => {
    expect(await targets(['-F', none, `${me}@web2:a`, 'web2:b', '.'])).toEqual([{ login: me, node: 'web2' }]);
    expect(await targets(['-F', cfg, 'web2:a', 'bob@web2:b', '.'])).toEqual([
      { login: 'cfguser', node: 'web2' },
      { login: 'bob', node: 'web2' },
    ]);
  });

  it('options ssh rejects are a usage error naming what ssh said (no guess, no MFA check)', async () => {
    await expect(sshLogin(process.env, ['-F', none, '-o', 'User='], { node: 'web2' })).rejects.toMatchObject({
      name: 'UsageError',
      message: expect.stringContaining('no argument after keyword "user"'),
    });
    await expect(targets(['-F', join(dir, 'missing'), 'f', 'web2:'])).rejects.toMatchObject({
      name: 'UsageError',
      message: expect.stringContaining('missing'),
    });
  });
});
