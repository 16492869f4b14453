import { describe, expect, it } from 'vitest';
import { scpRemoteTargets } from './ssh-client.js';

describe('scpRemoteTargets (which node a gatehouse scp asks the per-session MFA check for)', () => {
  it('finds LOGIN@NODE in a remote operand, either side, once', () => {
    expect(scpRemoteTargets(['a.txt', 'root@web1:/tmp/'], 'me')).toEqual([{ login: 'root', node: 'web1' }]);
    expect(scpRemoteTargets(['-r', 'root@web1:/var/log', 'root@web1:x', './logs'], 'me')).toEqual([
      { login: 'root', node: 'web1' },
    ]);
  });

  it('skips option values, so -P 22 or -o User=x are no operands; a remote without a login is the local user', () => {
    expect(scpRemoteTargets(['-P', '2222', '-o', 'A=b:c', '-rpi', 'key', 'f', 'web2:'], 'me')).toEqual([
      { login: 'me', node: 'web2' },
    ]);
    expect(scpRemoteTargets(['-oA=b:c', '--', 'f', 'ops@web3:/x'], 'me')).toEqual([
      { login: 'ops', node: 'web3' },
    ]);
  });

  it('a slash before the colon, or a leading colon, is a local file; scp:// URIs and [brackets] are remote', () => {
    expect(scpRemoteTargets(['./a:b', ':c', 'dir/x:y'], 'me')).toEqual([]);
    expect(scpRemoteTargets(['scp://ops@web4:2222/tmp/x', 'y'], 'me')).toEqual([
      { login: 'ops', node: 'web4' },
    ]);
    expect(scpRemoteTargets(['f', 'ops@[::1]:/tmp'], 'me')).toEqual([{ login: 'ops', node: '::1' }]);
  });

  it('lists two nodes apart (a copy between nodes)', () => {
    expect(scpRemoteTargets(['a@n1:/x', 'b@n2:/y'], 'me')).toEqual([
      { login: 'a', node: 'n1' },
      { login: 'b', node: 'n2' },
    ]);
  });
});
