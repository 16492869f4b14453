import { fuzz, hostileBytes, onlyThrows } from '@gatehouse/core/testing';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  type ClientInfo,
  decodeClientInfoPdu,
  encodeClientInfoPdu,
  INFO,
  withCredentials,
} from './client-info.js';
import { RdpWireError } from './tpkt.js';

/** UTF-16 text without NUL (it terminates a field on the wire), at most 256 code units. */
const text = fc.string({ unit: 'binary', maxLength: 64 }).filter((s) => !s.includes('\0') && s.length <= 256);
const info: fc.Arbitrary<ClientInfo> = fc.record({
  initiator: fc.integer({ min: 0, max: 0xffff }),
  channelId: fc.integer({ min: 0, max: 0xffff }),
  securityFlags: fc.integer({ min: 0, max: 0xffff }).map((f) => f | 0x40),
  securityFlagsHi: fc.integer({ min: 0, max: 0xffff }),
  codePage: fc.nat(),
  flags: fc.nat().map((f) => (f | INFO.UNICODE) >>> 0),
  domain: text,
  userName: text,
  password: text,
  alternateShell: text,
  workingDir: text,
  extra: fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b)),
});

describe('Client Info PDU codec (fuzz)', () => {
  it('round-trips, and a credential rewrite changes only the credentials and auto-logon', () => {
    fuzz(
      fc.property(info, text, text, (i, user, pw) => {
        const back = decodeClientInfoPdu(encodeClientInfoPdu(i));
        // Lone surrogates do not survive UTF-16LE text conversion; compare what the wire can carry.
        const canon = (s: string) => Buffer.from(s, 'utf16le').toString('utf16le');
        expect(back).toEqual({
          ...i,
          domain: canon(i.domain),
          userName: canon(i.userName),
          password: canon(i.password),
          alternateShell: canon(i.alternateShell),
          workingDir: canon(i.workingDir),
        });
        const rw = decodeClientInfoPdu(
          encodeClientInfoPdu(withCredentials(back, { userName: user, password: pw })),
        );
        expect(rw.userName).toBe(canon(user));
        expect(rw.password).toBe(canon(pw));
        expect(rw.flags).toBe((back.flags | INFO.AUTOLOGON) >>> 0);
        expect(rw.extra).toEqual(back.extra);
      }),
    );
  });

  it('hostile bytes only ever raise RdpWireError', () => {
    fuzz(
      fc.property(hostileBytes(info.map(encodeClientInfoPdu)), (b) => {
        onlyThrows(() => decodeClientInfoPdu(b), RdpWireError);
      }),
    );
  });
});
