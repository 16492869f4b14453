import { DEFAULT_AUDIT_TEXT_LIMITS } from '@gatehouse/audit';
import { describe, expect, it } from 'vitest';
import {
  CommandReader,
  encodeHandshakeResponse,
  encodePacket,
  MysqlWireError,
  PacketDecoder,
  parseCommand,
  parseErr,
  parseHandshakeResponse,
  parseHandshakeV10,
  parsePrepareOk,
} from './codec.js';
import { CLIENT, GATEWAY_CAPABILITIES } from './constants.js';
import { decodeExecuteParams } from './params.js';
import { inspectQuery } from './sql.js';
import { CommandStream } from './stream.js';

/** Deterministic PRNG so a failure reproduces. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

function mutate(base: Buffer, r: () => number): Buffer {
  const b = Buffer.from(base);
  const n = 1 + Math.floor(r() * 4);
  for (let i = 0; i < n; i++) {
    const op = r();
    const at = Math.floor(r() * Math.max(1, b.length));
    if (op < 0.6 && b.length > 0) b[at] = Math.floor(r() * 256);
    else if (op < 0.8) return b.subarray(0, at);
    else return Buffer.concat([b, Buffer.from([Math.floor(r() * 256)])]);
  }
  return b;
}

/** Only the codec's own error may escape. */
function onlyCodecErrors(fn: () => unknown): void {
  try {
    fn();
  } catch (e) {
    if (!(e instanceof MysqlWireError)) throw e;
  }
}

describe('fuzz: random and mutated bytes never throw anything but MysqlWireError', () => {
  const r = rng(0x6d7973);
  const seeds = [
    encodeHandshakeResponse({
      capabilities: GATEWAY_CAPABILITIES | CLIENT.CONNECT_WITH_DB,
      maxPacket: 1 << 24,
      charset: 45,
      user: 'alice',
      authResponse: Buffer.alloc(20, 7),
      database: 'shop',
      authPlugin: 'mysql_native_password',
      attrs: Buffer.from([3, 1, 0x61, 0]),
    }),
    Buffer.from('17010000000001000000' + '00' + '01' + '0300' + 'fd00' + '05000000' + '0568656c6c6f', 'hex'),
    Buffer.from('\x11alice\0\x00shop\0\x2d\x00mysql_native_password\0', 'latin1'),
    Buffer.from('\x03SELECT 1; USE `x`; /*! LOAD DATA LOCAL */', 'latin1'),
  ];

  it('decoder, handshake, command, parameter and SQL parsers', () => {
    for (let i = 0; i < 20_000; i++) {
      const seed = seeds[i % seeds.length] as Buffer;
      const input =
        i % 5 === 0
          ? Buffer.from(Array.from({ length: Math.floor(r() * 64) }, () => Math.floor(r() * 256)))
          : mutate(seed, r);
      onlyCodecErrors(() => parseHandshakeResponse(input));
      onlyCodecErrors(() => parseHandshakeV10(input));
      onlyCodecErrors(() => parseCommand(input, GATEWAY_CAPABILITIES));
      onlyCodecErrors(() => parseErr(input));
      onlyCodecErrors(() => parsePrepareOk(input));
      onlyCodecErrors(() =>
        decodeExecuteParams(input, Math.floor(r() * 4), r() < 0.5 ? [0x03, 0xfd, 0x0c] : undefined),
      );
      expect(() => inspectQuery(input.toString('latin1'))).not.toThrow();
      const d = new PacketDecoder({ maxPacketBytes: 4096 });
      onlyCodecErrors(() => d.push(encodePacket(0, input)));
      onlyCodecErrors(() => d.push(input));
      // The relay's reader with everything over 8 bytes streamed through the command decoders.
      onlyCodecErrors(() => {
        const reader = new CommandReader({ maxPacketBytes: 4096, maxBufferedBytes: 8 });
        const lookup = {
          execute: () => ({ numParams: 2, types: undefined, longData: new Map() }),
          longData: () => undefined,
        };
        let cmd: CommandStream | undefined;
        for (const raw of [encodePacket(0, input), input]) {
          for (const seg of reader.push(raw)) {
            if (seg.kind === 'packet') continue;
            if (seg.first) cmd = new CommandStream(DEFAULT_AUDIT_TEXT_LIMITS, lookup, 8);
            cmd?.push(seg.payload);
            if (seg.end) cmd?.end();
          }
        }
      });
    }
  });
});
