import { ByteQueue } from '@gatehouse/core/lite';
import { SshReader, WireError } from './reader.js';

/**
 * Just enough of SFTP v3 (draft-ietf-secsh-filexfer-02) to audit file
 * transfers: frames packets from a byte stream in either direction and
 * decodes the requests and replies that name files and move bytes. No I/O.
 */
export const SFTP = {
  INIT: 1,
  VERSION: 2,
  OPEN: 3,
  CLOSE: 4,
  READ: 5,
  WRITE: 6,
  SETSTAT: 9,
  FSETSTAT: 10,
  REMOVE: 13,
  MKDIR: 14,
  RMDIR: 15,
  RENAME: 18,
  STATUS: 101,
  HANDLE: 102,
  DATA: 103,
} as const;

export const SFTP_FLAGS = {
  READ: 0x1,
  WRITE: 0x2,
  APPEND: 0x4,
  CREAT: 0x8,
  TRUNC: 0x10,
  EXCL: 0x20,
} as const;

/** OpenSSH's sftp-server accepts packets up to 256 KiB; allow a little over. */
export const SFTP_MAX_PACKET = 256 * 1024 + 1024;

export type SftpMessage =
  | { type: 'open'; id: number; path: string; pflags: number }
  | { type: 'close'; id: number; handle: Buffer }
  | { type: 'read'; id: number; handle: Buffer; offset: bigint; length: number }
  | { type: 'write'; id: number; handle: Buffer; offset: bigint; length: number }
  | { type: 'remove' | 'mkdir' | 'rmdir' | 'setstat'; id: number; path: string }
  | { type: 'rename'; id: number; path: string; target: string }
  | { type: 'status'; id: number; code: number; message: string }
  | { type: 'handle'; id: number; handle: Buffer }
  | { type: 'data'; id: number; length: number }
  | { type: 'other'; packetType: number };

/** Splits a byte stream into SFTP packets (uint32 length + payload). */
export class SftpFramer {
  readonly #buf = new ByteQueue();

  /** Returns the complete packet payloads now available. Throws WireError on an impossible length. */
  push(chunk: Buffer): Buffer[] {
    this.#buf.push(chunk);
    const out: Buffer[] = [];
    for (;;) {
      const head = this.#buf.peek(4);
      if (!head) break;
      const n = head.readUInt32BE(0);
      if (n === 0 || n > SFTP_MAX_PACKET) throw new WireError(`SFTP packet length ${n} is out of range`);
      // Not joined until the whole packet is here: its chunks are copied once.
      if (this.#buf.length < 4 + n) break;
      out.push(this.#buf.take(4 + n).subarray(4));
    }
    return out;
  }
}

function text(r: SshReader): string {
  return r.string().toString('utf8');
}

/** Decodes one packet payload (type byte first). Throws WireError on malformed input. */
export function decodeSftp(payload: Buffer): SftpMessage {
  const r = new SshReader(payload);
  const t = r.byte();
  switch (t) {
    case SFTP.OPEN: {
      const id = r.u32();
      const path = text(r);
      const pflags = r.u32();
      return { type: 'open', id, path, pflags };
    }
    case SFTP.CLOSE: {
      const id = r.u32();
      return { type: 'close', id, handle: Buffer.from(r.string()) };
    }
    case SFTP.READ: {
      const id = r.u32();
      const handle = Buffer.from(r.string());
      const offset = r.u64();
      return { type: 'read', id, handle, offset, length: r.u32() };
    }
    case SFTP.WRITE: {
      const id = r.u32();
      const handle = Buffer.from(r.string());
      const offset = r.u64();
      return { type: 'write', id, handle, offset, length: r.string().length };
    }
    case SFTP.REMOVE:
    case SFTP.MKDIR:
    case SFTP.RMDIR:
    case SFTP.SETSTAT: {
      const id = r.u32();
      const path = text(r);
      const type =
        t === SFTP.REMOVE
          ? 'remove'
          : t === SFTP.MKDIR
            ? 'mkdir'
            : t === SFTP.RMDIR
              ? 'rmdir'
              : ('setstat' as const);
      return { type, id, path };
    }
    case SFTP.RENAME: {
      const id = r.u32();
      const path = text(r);
      return { type: 'rename', id, path, target: text(r) };
    }
    case SFTP.STATUS: {
      const id = r.u32();
      const code = r.u32();
      // v3 servers may omit the message and language tag.
      const message = r.remaining >= 4 ? text(r) : '';
      return { type: 'status', id, code, message };
    }
    case SFTP.HANDLE: {
      const id = r.u32();
      return { type: 'handle', id, handle: Buffer.from(r.string()) };
    }
    case SFTP.DATA: {
      const id = r.u32();
      return { type: 'data', id, length: r.string().length };
    }
    default:
      return { type: 'other', packetType: t };
  }
}
