import { describe, expect, it, vi } from 'vitest';
import { SftpTracker } from '../sftp-audit.js';
import { WireError } from './reader.js';
import { decodeSftp, SFTP, SFTP_FLAGS, SftpFramer } from './sftp.js';

const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
};
const str = (s: string | Buffer) => Buffer.concat([u32(Buffer.byteLength(s)), Buffer.from(s)]);
const u64 = (n: bigint) => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(n);
  return b;
};
const packet = (type: number, ...fields: Buffer[]) => {
  const body = Buffer.concat([Buffer.from([type]), ...fields]);
  return Buffer.concat([u32(body.length), body]);
};

describe('SftpFramer + decodeSftp', () => {
  it('frames packets split anywhere and decodes the audited messages', () => {
    const stream = Buffer.concat([
      packet(SFTP.OPEN, u32(1), str('/etc/motd'), u32(SFTP_FLAGS.READ), u32(0)),
      packet(SFTP.READ, u32(2), str('h1'), u64(0n), u32(32768)),
      packet(SFTP.WRITE, u32(3), str('h1'), u64(5n), str('hello')),
      packet(SFTP.RENAME, u32(4), str('/a'), str('/b')),
      packet(SFTP.STATUS, u32(4), u32(0), str('ok'), str('')),
      packet(SFTP.DATA, u32(2), str('abc')),
      packet(99, u32(5)),
    ]);
    const framer = new SftpFramer();
    const payloads: Buffer[] = [];
    for (let i = 0; i < stream.length; i += 7) payloads.push(...framer.push(stream.subarray(i, i + 7)));
    const msgs = payloads.map(decodeSftp);
    expect(msgs[0]).toEqual({ type: 'open', id: 1, path: '/etc/motd', pflags: SFTP_FLAGS.READ });
    expect(msgs[1]).toMatchObject({ type: 'read', id: 2, offset: 0n, length: 32768 });
    expect(msgs[2]).toMatchObject({ type: 'write', id: 3, offset: 5n, length: 5 });
    expect(msgs[3]).toEqual({ type: 'rename', id: 4, path: '/a', target: '/b' });
    expect(msgs[4]).toEqual({ type: 'status', id: 4, code: 0, message: 'ok' });
    expect(msgs[5]).toEqual({ type: 'data', id: 2, length: 3 });
    expect(msgs[6]).toEqual({ type: 'other', packetType: 99 });
  });

  it('refuses impossible lengths and truncated fields', () => {
    expect(() => new SftpFramer().push(u32(0))).toThrow(WireError);
    expect(() => new SftpFramer().push(u32(10_000_000))).toThrow(WireError);
    expect(() => decodeSftp(Buffer.from([SFTP.OPEN, 0, 0]))).toThrow(WireError);
    expect(() => decodeSftp(Buffer.concat([Buffer.from([SFTP.OPEN]), u32(1), u32(100)]))).toThrow(WireError);
  });

  it('copies a packet a bounded number of times however finely it arrives (re-copied its whole buffer on every chunk)', () => {
    // A 256 KiB packet one byte at a time re-joined up to 256 KiB per byte: gigabytes of copying.
    const stream = packet(SFTP.WRITE, u32(3), str('h1'), u64(5n), str(Buffer.alloc(200_000, 1)));
    const concat = vi.spyOn(Buffer, 'concat');
    try {
      const framer = new SftpFramer();
      const payloads = [];
      for (let i = 0; i < stream.length; i += 64) payloads.push(...framer.push(stream.subarray(i, i + 64)));
      expect(payloads).toHaveLength(1);
      const copied = concat.mock.results.reduce((n, r) => n + (r.value as Buffer).length, 0);
      expect(copied).toBeLessThanOrEqual(2 * stream.length);
    } finally {
      concat.mockRestore();
    }
  });
});

describe('SftpTracker', () => {
  it('one record per file with direction and bytes; metadata changes with their outcome', () => {
    const t = new SftpTracker();
    const h = Buffer.from('h1');
    const out = [
      ...t.fromClient({ type: 'open', id: 1, path: '/up', pflags: SFTP_FLAGS.WRITE | SFTP_FLAGS.CREAT }),
      ...t.fromServer({ type: 'handle', id: 1, handle: h }),
      ...t.fromClient({ type: 'write', id: 2, handle: h, offset: 0n, length: 100 }),
      ...t.fromClient({ type: 'write', id: 3, handle: h, offset: 100n, length: 20 }),
      ...t.fromClient({ type: 'close', id: 4, handle: h }),
      ...t.fromClient({ type: 'open', id: 5, path: '/down', pflags: SFTP_FLAGS.READ }),
      ...t.fromServer({ type: 'handle', id: 5, handle: h }),
      ...t.fromClient({ type: 'read', id: 6, handle: h, offset: 0n, length: 4096 }),
      ...t.fromServer({ type: 'data', id: 6, length: 7 }),
      ...t.fromClient({ type: 'remove', id: 7, path: '/gone' }),
      ...t.fromServer({ type: 'status', id: 7, code: 2, message: 'No such file' }),
      ...t.fromClient({ type: 'open', id: 8, path: '/secret', pflags: SFTP_FLAGS.READ }),
      ...t.fromServer({ type: 'status', id: 8, code: 3, message: 'Permission denied' }),
    ];
    expect(out).toEqual([
      { action: 'write', path: '/up', bytes: 120 },
      { action: 'remove', path: '/gone', error: 'No such file' },
      { action: 'read', path: '/secret', bytes: 0, error: 'Permission denied' },
    ]);
    expect(t.finish()).toEqual([
      { action: 'read', path: '/down', bytes: 7, error: 'channel closed before the file was closed' },
    ]);
  });
});
