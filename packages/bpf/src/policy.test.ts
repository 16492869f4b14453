import { describe, expect, it } from 'vitest';
import { cgroupLevel, findCgroup2Mount } from './cgroup.js';
import { decodeEvent, NOT_IN_ALLOW_LIST } from './events.js';
import { CidrError, encodePolicy, parseCidr, ruleText } from './policy.js';

describe('parseCidr', () => {
  it('reads IPv4 and IPv6 networks and clears host bits', () => {
    expect(parseCidr('10.1.2.3/8')).toMatchObject({ family: 4, prefix: 8, text: '10.0.0.0/8' });
    expect(parseCidr('169.254.169.254').text).toBe('169.254.169.254/32');
    expect(parseCidr('2001:db8::1/32')).toMatchObject({ family: 6, prefix: 32, text: '2001:db8::/32' });
    expect(parseCidr('::1').text).toBe('::1/128');
    expect(parseCidr('::ffff:10.0.0.1/128').bytes.toString('hex')).toBe('00000000000000000000ffff0a000001');
    expect(parseCidr('fe80::/10').bytes.toString('hex')).toBe('fe800000000000000000000000000000');
  });

  it.each([
    '10.0.0.0/33',
    '10.0.0/8',
    '256.0.0.0/8',
    '10.0.0.0/8/8',
    '::1/129',
    '1::2::3',
    '1:2:3:4:5:6:7:8:9',
    'example.com',
    '10.0.0.0/-1',
    '',
  ])('refuses %j', (bad) => {
    expect(() => parseCidr(bad)).toThrow(CidrError);
  });
});

describe('encodePolicy', () => {
  it('sets record flags, the allow-only flag and one rule per CIDR', () => {
    const p = encodePolicy({ record: ['command', 'network'], deny: ['10.0.0.0/8'], allow: ['::1/128'] });
    expect(p.flags).toBe(1 | 4 | 8);
    expect(p.rules).toEqual([
      { kind: 'd', family: 4, hex: '0a000000', prefix: 8 },
      { kind: 'a', family: 6, hex: '00000000000000000000000000000001', prefix: 128 },
    ]);
    expect(encodePolicy({ record: [], deny: [], allow: [] }).flags).toBe(0);
  });
});

describe('helper events', () => {
  it('names the rule that refused a connection', () => {
    expect(ruleText(4, '10.9.8.7', 8)).toBe('10.0.0.0/8');
    expect(ruleText(6, '2001:db8::5', 64)).toBe('2001:db8::/64');
    const line =
      '{"ev":"net","cg":7,"pid":9,"ts":18446744073709551615,"op":"sendmsg","family":4,"protocol":17,"addr":"10.9.8.7","port":53,"denied":true,"rule_prefix":8}';
    const d = decodeEvent(JSON.parse(line), line);
    expect(d).toEqual({
      cgroupId: 7,
      event: {
        type: 'network',
        pid: 9,
        op: 'sendmsg',
        family: 4,
        protocol: 'udp',
        addr: '10.9.8.7',
        port: 53,
        denied: true,
        rule: '10.0.0.0/8',
        ts: 18446744073709551615n,
      },
    });
    const na =
      '{"ev":"net","cg":7,"pid":9,"ts":1,"op":"connect","family":6,"protocol":6,"addr":"::1","port":80,"denied":true,"rule_prefix":255}';
    expect(decodeEvent(JSON.parse(na), na)?.event).toMatchObject({
      rule: NOT_IN_ALLOW_LIST,
      protocol: 'tcp',
    });
  });

  it('splits a wait status into exit code or signal', () => {
    const code = '{"ev":"exit","cg":1,"pid":2,"ts":3,"status":1792}';
    expect(decodeEvent(JSON.parse(code), code)?.event).toEqual({ type: 'exit', pid: 2, exitCode: 7, ts: 3n });
    const sig = '{"ev":"exit","cg":1,"pid":2,"ts":3,"status":9}';
    expect(decodeEvent(JSON.parse(sig), sig)?.event).toEqual({ type: 'exit', pid: 2, signal: 9, ts: 3n });
  });
});

describe('cgroups', () => {
  it('finds the cgroup v2 mount on a hybrid host and counts levels', () => {
    const mounts = [
      'tmpfs /sys/fs/cgroup tmpfs rw 0 0',
      'cgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0',
      'cgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0',
    ].join('\n');
    expect(findCgroup2Mount(mounts)).toBe('/sys/fs/cgroup/unified');
    expect(findCgroup2Mount('cgroup /sys/fs/cgroup/cpu cgroup rw 0 0')).toBeUndefined();
    expect(cgroupLevel('/sys/fs/cgroup/unified', '/sys/fs/cgroup/unified/gatehouse')).toBe(1);
    expect(cgroupLevel('/sys/fs/cgroup/unified', '/sys/fs/cgroup/unified/gatehouse/s1')).toBe(2);
    expect(() => cgroupLevel('/sys/fs/cgroup/unified', '/tmp')).toThrow();
  });
});
