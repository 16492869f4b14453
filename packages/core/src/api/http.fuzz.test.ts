import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { fuzz } from '../testing/fuzz.js';
import { parseCookies } from './http.js';

/** RFC 6265 cookie-name (a token); "__proto__" left out: a plain object cannot hold it as a key. */
const cookieName = fc.stringMatching(/^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,20}$/).filter((n) => n !== '__proto__');

/** Header text made of the characters the parser cares about (and a few it must not choke on). */
const cookieHeader = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 200 }),
  fc.string({
    unit: fc.constantFrom('%', '2', 'F', 'c', 'z', '=', ';', ' ', 'a', '\u00e9', '\ud800'),
    maxLength: 60,
  }),
);

describe('parseCookies (fuzz)', () => {
  it('never throws, whatever the Cookie header says', () => {
    fuzz(
      fc.property(fc.option(cookieHeader, { nil: undefined }), (h) => {
        const c = parseCookies(h);
        for (const v of Object.values(c)) expect(typeof v).toBe('string');
      }),
      { runs: 2000 },
    );
  });

  it('reads back every cookie a browser sends, values percent-decoded', () => {
    fuzz(
      fc.property(
        fc.uniqueArray(fc.tuple(cookieName, fc.string({ unit: 'grapheme', maxLength: 30 })), {
          selector: ([n]) => n,
          maxLength: 6,
        }),
        (cookies) => {
          const header = cookies.map(([n, v]) => `${n}=${encodeURIComponent(v)}`).join('; ');
          expect(parseCookies(header)).toEqual(Object.fromEntries(cookies));
        },
      ),
      { runs: 1000 },
    );
  });
});
