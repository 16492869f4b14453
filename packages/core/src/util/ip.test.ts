import { describe, expect, it } from 'vitest';
import { ipBytes } from './ip.js';

describe('ipBytes', () => {
  it('gives 4 bytes for IPv4 and 16 for every IPv6 form', () => {
    expect(ipBytes('192.0.2.1')).toEqual(Buffer.from([192, 0, 2, 1]));
    expect(ipBytes('::1').toString('hex')).toBe('00000000000000000000000000000001');
    expect(ipBytes('2001:db8::5').toString('hex')).toBe('20010db8000000000000000000000005');
    expect(ipBytes('::ffff:192.0.2.1').toString('hex')).toBe('00000000000000000000ffffc0000201');
    expect(ipBytes('1::2:3.4.5.6').toString('hex')).toBe('00010000000000000000000203040506');
    expect(ipBytes('fe80::1%eth0').toString('hex')).toBe('fe800000000000000000000000000001');
  });

  it('refuses what is not an IP address', () => {
    for (const bad of ['', 'example.com', '1.2.3', '::g']) {
      expect(() => ipBytes(bad)).toThrow(expect.objectContaining({ code: 'GH_ERR_VALIDATION' }));
    }
  });
});
