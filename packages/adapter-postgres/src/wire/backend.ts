import type { BackendMessage } from 'pg-protocol/dist/messages.js';
import { Parser } from 'pg-protocol/dist/parser.js';
import { PgWireError } from './errors.js';

/** Backend message type bytes the gateway looks at or sends. */
export const B = {
  Authentication: 0x52, // R
  ParameterStatus: 0x53, // S
  BackendKeyData: 0x4b, // K
  ReadyForQuery: 0x5a, // Z
  ErrorResponse: 0x45, // E
  NoticeResponse: 0x4e, // N
  NegotiateProtocolVersion: 0x76, // v
} as const;

/** Fields of an ErrorResponse / NoticeResponse, as psql prints them. */
export interface PgErrorFields {
  severity: 'ERROR' | 'FATAL' | 'WARNING' | 'NOTICE' | 'INFO' | 'LOG';
  code: string;
  message: string;
  detail?: string | undefined;
  hint?: string | undefined;
}

function frame(type: number, body: Buffer): Buffer {
  const out = Buffer.allocUnsafe(5 + body.length);
  out[0] = type;
  out.writeInt32BE(body.length + 4, 1);
  body.copy(out, 5);
  return out;
}

function fields(f: PgErrorFields): Buffer {
  const parts: Buffer[] = [];
  const add = (k: string, v: string | undefined) => {
    if (v === undefined) return;
    // A NUL inside a value would end the field early and desynchronise the client.
    parts.push(Buffer.from(k), Buffer.from(v.replace(/\0/g, ''), 'utf8'), Buffer.from([0]));
  };
  add('S', f.severity);
  add('V', f.severity);
  add('C', f.code);
  add('M', f.message);
  add('D', f.detail);
  add('H', f.hint);
  parts.push(Buffer.from([0]));
  return Buffer.concat(parts);
}

export function errorResponse(f: PgErrorFields): Buffer {
  return frame(B.ErrorResponse, fields(f));
}

export function noticeResponse(f: PgErrorFields): Buffer {
  return frame(B.NoticeResponse, fields(f));
}

export function authenticationOk(): Buffer {
  return frame(B.Authentication, Buffer.from([0, 0, 0, 0]));
}

export function parameterStatus(name: string, value: string): Buffer {
  return frame(B.ParameterStatus, Buffer.from(`${name}\0${value}\0`, 'utf8'));
}

export function backendKeyData(pid: number, secret: number): Buffer {
  const b = Buffer.allocUnsafe(8);
  b.writeInt32BE(pid, 0);
  b.writeInt32BE(secret, 4);
  return frame(B.BackendKeyData, b);
}

export function readyForQuery(status: 'I' | 'T' | 'E'): Buffer {
  return frame(B.ReadyForQuery, Buffer.from(status));
}

/** Tells a client asking for 3.x (x > 0) or `_pq_.` options that we speak 3.0 without them. */
export function negotiateProtocolVersion(minor: number, unrecognized: string[]): Buffer {
  const head = Buffer.allocUnsafe(8);
  head.writeInt32BE(minor, 0);
  head.writeInt32BE(unrecognized.length, 4);
  return frame(
    B.NegotiateProtocolVersion,
    Buffer.concat([head, ...unrecognized.map((o) => Buffer.from(`${o}\0`))]),
  );
}

/**
 * Decodes one whole backend message (raw bytes with its header) with
 * node-postgres' pg-protocol parser. Throws PgWireError when the bytes do
 * not make exactly one message.
 */
export class BackendDecoder {
  readonly #parser = new Parser();

  decode(raw: Buffer): BackendMessage {
    const got: BackendMessage[] = [];
    try {
      this.#parser.parse(raw, (m) => got.push(m));
    } catch (err) {
      throw new PgWireError(
        `the database sent a message the gateway cannot parse: ${(err as Error).message}`,
      );
    }
    const m = got[0];
    if (got.length !== 1 || m === undefined) {
      throw new PgWireError(`expected one database message, got ${got.length}`);
    }
    return m;
  }
}
