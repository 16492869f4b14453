import { describe, expect, it } from 'vitest';
import { parseCookies } from './http.js';

describe('parseCookies', () => {
  it('reads name=value pairs and percent-decodes values', () => {
    expect(parseCookies('gh_session=abc; theme=dark%20blue')).toEqual({
      gh_session: 'abc',
      theme: 'dark blue',
    });
    expect(parseCookies(undefined)).toEqual({});
  });

  it('keeps a value that is not valid percent-encoding as sent (threw URIError, failing the request)', () => {
    // fuzz counterexample "%=%": another application's cookie on the same host broke every API call.
    expect(parseCookies('other=100%; gh_session=abc')).toEqual({ other: '100%', gh_session: 'abc' });
    expect(parseCookies('%=%')).toEqual({ '%': '%' });
  });
});
