import { describe, expect, it } from 'vitest';
import { tryIpBytes as ipBytes } from '../util/ip.js';
import { netblock } from './ip.js';

const B = { ipv4: 32, ipv6: 64 };

describe('ipBytes', () => {
  it('reads IPv4, IPv6 with :: anywhere, a dotted tail and a zone', () => {
    expect([...ipBytes('192.0.2.1')!]).toEqual([192, 0, 2, 1]);
    expect(ipBytes('::1')!.toString('hex')).toBe('00000000000000000000000000000001');
    expect(ipBytes('2001:db8::')!.toString('hex')).toBe('20010db8000000000000000000000000');
    expect(ipBytes('2001:db8:0:0:1:0:0:1')!.toString('hex')).toBe('20010db8000000000001000000000001');
    expect(ipBytes('::ffff:192.0.2.1')!.toString('hex')).toBe('00000000000000000000ffffc0000201');
    expect(ipBytes('fe80::1%eth0')!.toString('hex')).toBe('fe800000000000000000000000000001');
  });

  it('returns undefined for what is no address', () => {
    expect(ipBytes('')).toBeUndefined();
    expect(ipBytes('example.com')).toBeUndefined();
    expect(ipBytes('1.2.3.256')).toBeUndefined();
  });
});

describe('netblock', () => {
  it('masks to the configured prefix and writes one canonical key per block', () => {
    expect(netblock('203.0.113.7', B)).toBe('203.0.113.7/32');
    expect(netblock('203.0.113.7', { ipv4: 24, ipv6: 64 })).toBe('203.0.113.0/24');
    expect(netblock('203.0.113.7', { ipv4: 20, ipv6: 64 })).toBe('203.0.112.0/20');
    expect(netblock('2001:0DB8:0001:0002:0003:0004:0005:0006', B)).toBe('2001:db8:1:2::/64');
    expect(netblock('2001:db8:1:2::9', B)).toBe('2001:db8:1:2::/64');
    expect(netblock('2001:db8:1:2::9', { ipv4: 32, ipv6: 56 })).toBe('2001:db8:1::/56');
    expect(netblock('2001:db8:1:2::9', { ipv4: 32, ipv6: 128 })).toBe('2001:db8:1:2::9/128');
    expect(netblock('::1', { ipv4: 32, ipv6: 0 })).toBe('::/0');
  });

  it('counts IPv4-mapped IPv6 as IPv4 (a dual-stack proxy reports IPv4 clients that way)', () => {
    expect(netblock('::ffff:203.0.113.7', B)).toBe('203.0.113.7/32');
    expect(netblock('0:0:0:0:0:ffff:cb00:7107', B)).toBe('203.0.113.7/32');
  });

  it('keeps text that is no address as its own block', () => {
    expect(netblock('', B)).toBe('');
    expect(netblock('unix-socket', B)).toBe('unix-socket');
  });
});
