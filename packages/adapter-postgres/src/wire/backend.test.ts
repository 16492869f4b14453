import { describe, expect, it } from 'vitest';
import {
  authenticationOk,
  BackendDecoder,
  backendKeyData,
  errorResponse,
  negotiateProtocolVersion,
  parameterStatus,
  readyForQuery,
} from './backend.js';
import { PgWireError } from './errors.js';

describe('backend encoders (checked with pg-protocol parser)', () => {
  const d = new BackendDecoder();

  it('encodes ErrorResponse with severity, SQLSTATE, message and hint', () => {
    const raw = errorResponse({
      severity: 'FATAL',
      code: '28000',
      message: 'access denied: x',
      hint: 'do y',
    });
    expect(raw.subarray(0, 1).toString()).toBe('E');
    expect(raw.readInt32BE(1)).toBe(raw.length - 1);
    expect(d.decode(raw)).toMatchObject({
      name: 'error',
      severity: 'FATAL',
      code: '28000',
      message: 'access denied: x',
      hint: 'do y',
    });
  });

  it('encodes the startup replies byte for byte', () => {
    expect(authenticationOk().toString('hex')).toBe('520000000800000000');
    expect(readyForQuery('I').toString('hex')).toBe('5a0000000549');
    expect(backendKeyData(7, -2).toString('hex')).toBe('4b0000000c00000007fffffffe');
    expect(d.decode(parameterStatus('server_version', '15.0'))).toMatchObject({
      name: 'parameterStatus',
      parameterName: 'server_version',
      parameterValue: '15.0',
    });
    expect(d.decode(backendKeyData(7, -2))).toMatchObject({ processID: 7, secretKey: -2 });
    expect(negotiateProtocolVersion(0, ['_pq_.x']).toString('hex')).toBe(
      `76000000130000000000000001${Buffer.from('_pq_.x\0').toString('hex')}`,
    );
  });

  it('drops NUL bytes from field values instead of ending the field early', () => {
    const raw = errorResponse({ severity: 'ERROR', code: '08P01', message: 'a\0b' });
    expect(d.decode(raw)).toMatchObject({ message: 'ab' });
  });

  it('refuses bytes that are not exactly one message', () => {
    expect(() =>
      new BackendDecoder().decode(Buffer.concat([readyForQuery('I'), readyForQuery('I')])),
    ).toThrow(PgWireError);
  });
});
