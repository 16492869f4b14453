import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { fuzz, onlyCode } from '../testing/fuzz.js';
import { parseHostPort } from './hostport.js';

const port = fc.integer({ min: 1, max: 65535 });

describe('parseHostPort (fuzz)', () => {
  it('throws only GH_ERR_VALIDATION, and what it returns is a host and a port in range', () => {
    const text = fc.oneof(
      fc.string({ unit: 'binary', maxLength: 40 }),
      fc.string({ unit: fc.constantFrom('[', ']', ':', '1', '0', 'a', '.', ' ', '9'), maxLength: 20 }),
    );
    fuzz(
      fc.property(text, (addr) => {
        const r = onlyCode('GH_ERR_VALIDATION', () => parseHostPort(addr));
        if (!r) return;
        expect(r.host.length).toBeGreaterThan(0);
        expect(Number.isInteger(r.port) && r.port >= 1 && r.port <= 65535).toBe(true);
      }),
      { runs: 2000 },
    );
  });

  it('reads back host:port for names and IPv4, [v6]:port for IPv6', () => {
    fuzz(
      fc.property(
        fc.oneof(
          fc.domain(),
          fc.ipV4(),
          fc.ipV6().map((a) => `[${a}]`),
        ),
        port,
        (host, p) => {
          const bare = host.startsWith('[') ? host.slice(1, -1) : host;
          expect(parseHostPort(`${host}:${p}`)).toEqual({ host: bare, port: p });
        },
      ),
      { runs: 1000 },
    );
  });
});
