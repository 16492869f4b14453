import { encodeTpkt } from './tpkt.js';

/**
 * Builders of MCS Connect Initial frames as RDP clients send them, for the
 * unit and fuzz tests of mcs.ts (T.125 BER around T.124 GCC PER).
 */

const ber = (tag: number[], value: Buffer) => {
  const len =
    value.length < 0x80
      ? [value.length]
      : value.length < 0x100
        ? [0x81, value.length]
        : [0x82, value.length >> 8, value.length & 0xff];
  return Buffer.concat([Buffer.from([...tag, ...len]), value]);
};
const per = (n: number) => (n < 0x80 ? Buffer.from([n]) : Buffer.from([0x80 | (n >> 8), n & 0xff]));
const domainParams = () =>
  ber(
    [0x30],
    Buffer.concat(
      [0x22, 0x02, 0x00, 0x01, 0x00, 0x01, 0xffff, 0x02].map((v) =>
        ber([0x02], Buffer.from(v > 0xff ? [0x00, 0xff, 0xff] : [v])),
      ),
    ),
  );

/** Client core data (TS_UD_CS_CORE) of `length` bytes with serverSelectedProtocol = `selected` when it fits. */
export function csCore(length: number, selected: number): Buffer {
  const b = Buffer.alloc(length);
  b.writeUInt16LE(0xc001, 0);
  b.writeUInt16LE(length, 2);
  b.writeUInt32LE(0x00080004, 4);
  b.writeUInt16LE(1024, 8);
  b.writeUInt16LE(768, 10);
  if (length >= 216) b.writeUInt32LE(selected, 212);
  return b;
}

/** An MCS Connect Initial as RDP clients send it, holding these GCC client data blocks. */
export function connectInitial(blocks: Buffer[]): Buffer {
  const data = Buffer.concat(blocks);
  const createRequest = Buffer.concat([
    Buffer.from([0x00, 0x08, 0x00, 0x10, 0x00, 0x01, 0xc0, 0x00, 0x44, 0x75, 0x63, 0x61]),
    per(data.length),
    data,
  ]);
  const gcc = Buffer.concat([
    Buffer.from([0x00, 0x05, 0x00, 0x14, 0x7c, 0x00, 0x01]),
    per(createRequest.length),
    createRequest,
  ]);
  const body = Buffer.concat([
    ber([0x04], Buffer.from([1])),
    ber([0x04], Buffer.from([1])),
    ber([0x01], Buffer.from([0xff])),
    domainParams(),
    domainParams(),
    domainParams(),
    ber([0x04], gcc),
  ]);
  return encodeTpkt(Buffer.concat([Buffer.from([0x02, 0xf0, 0x80]), ber([0x7f, 0x65], body)]));
}
