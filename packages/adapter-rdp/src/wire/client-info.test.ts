import { describe, expect, it } from 'vitest';
import {
  type ClientInfo,
  decodeClientInfoPdu,
  encodeClientInfoPdu,
  INFO,
  isClientInfoPdu,
  withCredentials,
} from './client-info.js';
import { encodeConnectionConfirm } from './x224.js';

const INFO_PDU: ClientInfo = {
  initiator: 6,
  channelId: 1003,
  securityFlags: 0x0040,
  securityFlagsHi: 0,
  codePage: 0x0409,
  flags: 0x0001_0133,
  domain: '',
  userName: 'one-time-token',
  password: '',
  alternateShell: '',
  workingDir: '',
  extra: Buffer.from('0200' + '1c00' + '3100320037002e0030002e0030002e00310000000000', 'hex'),
};

describe('Client Info PDU', () => {
  it('lays the fields out as MS-RDPBCGR 2.2.1.11 says and reads them back', () => {
    const pdu = encodeClientInfoPdu(INFO_PDU);
    // TPKT, X.224 Data, MCS SDrq (initiator 6, channel 1003 = 0x03eb, priority 0x70)
    expect(pdu.subarray(0, 13).toString('hex')).toBe(
      `0300${pdu.length.toString(16).padStart(4, '0')}02f08064000603eb70`,
    );
    // cbUserName is 28 (14 UTF-16 code units, terminator not counted), then the name, then a NUL pair
    const userName = Buffer.from('one-time-token', 'utf16le');
    const at = pdu.indexOf(userName);
    expect(pdu.readUInt16LE(at - 2 - 2 - 2 - 2 - 2 - 2)).toBe(0); // cbDomain
    expect(pdu.subarray(at + userName.length, at + userName.length + 2).toString('hex')).toBe('0000');
    expect(decodeClientInfoPdu(pdu)).toEqual(INFO_PDU);
  });

  it('rewrites the credentials with auto-logon and keeps the rest', () => {
    const pdu = encodeClientInfoPdu(
      withCredentials(decodeClientInfoPdu(encodeClientInfoPdu(INFO_PDU)), {
        userName: 'Administrator',
        password: 'P@ssw0rd!é',
        domain: 'CORP',
      }),
    );
    const back = decodeClientInfoPdu(pdu);
    expect(back.userName).toBe('Administrator');
    expect(back.password).toBe('P@ssw0rd!é');
    expect(back.domain).toBe('CORP');
    expect(back.flags & INFO.AUTOLOGON).toBe(INFO.AUTOLOGON);
    expect(back.extra).toEqual(INFO_PDU.extra);
    expect(pdu.includes(Buffer.from('one-time-token', 'utf16le'))).toBe(false);
  });

  it('tells other PDUs apart and refuses truncated or unterminated fields', () => {
    expect(isClientInfoPdu(encodeConnectionConfirm({ type: 'legacy' }))).toBe(false);
    const pdu = encodeClientInfoPdu(INFO_PDU);
    expect(isClientInfoPdu(pdu)).toBe(true);
    const cut = Buffer.from(pdu.subarray(0, 40));
    cut.writeUInt16BE(40, 2);
    expect(() => decodeClientInfoPdu(cut)).toThrow(/does not match|truncated/);
    const unterminated = Buffer.from(pdu);
    const at = unterminated.indexOf(Buffer.from('one-time-token', 'utf16le')) + 28;
    unterminated[at] = 0x41;
    expect(() => decodeClientInfoPdu(unterminated)).toThrow(/NUL-terminated/);
  });
});
