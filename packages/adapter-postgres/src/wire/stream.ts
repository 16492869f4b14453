import {
  type AuditText,
  type AuditTextLimits,
  ParameterClipper,
  type RenderBytes,
  renderUtf8,
  TextDigest,
} from '@gatehouse/audit';
import { type PullDecoder, PullParser } from '@gatehouse/core';
import { PgWireError } from './errors.js';
import { F } from './frontend.js';

/**
 * An audited message read as it streams: texts and values are already what
 * the audit keeps of them (a prefix, or a prefix + length + SHA-256), never
 * the whole, so a message of any size costs a bounded amount of memory.
 */
export type StreamedMessage =
  | { type: 'query'; sql: AuditText }
  | { type: 'parse'; statement: string; sql: AuditText }
  | { type: 'bind'; portal: string; statement: string; params: AuditText[] }
  | { type: 'function-call'; oid: number; args: AuditText[] };

/** The audited types whose size a client controls (statement text, bound values): these stream. */
export function isStreamedFrontendType(t: number): boolean {
  return t === F.Query || t === F.Parse || t === F.Bind || t === F.FunctionCall;
}

/** Binary values as `\x<hex>`, the way psql shows bytea. */
export const renderBinary: RenderBytes = (b) => `\\x${b.toString('hex')}`;

export function renderParam(format: 'text' | 'binary'): RenderBytes {
  return format === 'binary' ? renderBinary : renderUtf8;
}

/**
 * Decodes one audited message that arrives in pieces (`push` each body
 * piece, then `end()`), keeping of its texts and values only what the audit
 * keeps. Names (statement, portal) are held whole, up to `maxName` bytes.
 * Throws PgWireError as `decodeFrontendMessage` does for a malformed body.
 */
export function streamDecoder(
  type: number,
  limits: AuditTextLimits,
  maxName: number,
): PullParser<StreamedMessage> {
  const what = `message '${String.fromCharCode(type)}'`;
  let decoder: PullDecoder<StreamedMessage>;
  switch (type) {
    case F.Query:
      decoder = query(limits);
      break;
    case F.Parse:
      decoder = parse(limits, maxName);
      break;
    case F.Bind:
      decoder = bind(limits, maxName, what);
      break;
    case F.FunctionCall:
      decoder = functionCall(limits, what);
      break;
    default:
      throw new PgWireError(`${what} is not streamed by the gateway`);
  }
  return new PullParser(decoder, (m) => new PgWireError(`${what} ${m}`));
}

/** A whole message body through the streaming decoder: the same record as if it had streamed. */
export function decodeStreamed(
  type: number,
  body: Buffer,
  limits: AuditTextLimits,
  maxName: number,
): StreamedMessage {
  const p = streamDecoder(type, limits, maxName);
  p.push(body);
  return p.end();
}

function* text(keep: number): Generator<{ streamCstring: (b: Buffer) => void }, AuditText, Buffer> {
  const d = new TextDigest(keep);
  yield { streamCstring: (b) => d.update(b) };
  return d.result();
}

function* query(limits: AuditTextLimits): PullDecoder<StreamedMessage> {
  return { type: 'query', sql: yield* text(limits.maxQueryBytes) };
}

function* parse(limits: AuditTextLimits, maxName: number): PullDecoder<StreamedMessage> {
  const statement = (yield { cstring: maxName }).toString('utf8');
  const sql = yield* text(limits.maxQueryBytes);
  const n = (yield { take: 2 }).readUInt16BE(0);
  yield { take: 4 * n }; // parameter type oids: not audited
  return { type: 'parse', statement, sql };
}

function* formatCodes(what: string): PullDecoder<number[]> {
  const n = (yield { take: 2 }).readUInt16BE(0);
  const b = yield { take: 2 * n };
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const f = b.readInt16BE(2 * i);
    if (f !== 0 && f !== 1)
      throw new PgWireError(`${what} has format code ${f} (only 0 text and 1 binary exist)`);
    out.push(f);
  }
  return out;
}

/** Bound values (Bind, FunctionCall): each streams through the statement's ParameterClipper. */
function* values(limits: AuditTextLimits, what: string): PullDecoder<AuditText[]> {
  const formats = yield* formatCodes(what);
  const n = (yield { take: 2 }).readUInt16BE(0);
  if (formats.length > 1 && formats.length !== n) {
    throw new PgWireError(`${what} has ${formats.length} format codes for ${n} parameters`);
  }
  const clipper = new ParameterClipper(limits);
  const out: AuditText[] = [];
  for (let i = 0; i < n; i++) {
    const len = (yield { take: 4 }).readInt32BE(0);
    if (len === -1) {
      out.push('NULL');
      continue;
    }
    if (len < -1) throw new PgWireError(`${what} has parameter length ${len}`);
    const f = formats.length === 0 ? 0 : formats.length === 1 ? formats[0] : formats[i];
    const d = clipper.digest();
    yield { stream: len, to: (b) => d.update(b) };
    out.push(clipper.take(d, renderParam(f === 1 ? 'binary' : 'text')));
  }
  return out;
}

function* bind(limits: AuditTextLimits, maxName: number, what: string): PullDecoder<StreamedMessage> {
  const portal = (yield { cstring: maxName }).toString('utf8');
  const statement = (yield { cstring: maxName }).toString('utf8');
  const params = yield* values(limits, what);
  yield* formatCodes(what); // result formats: read so a malformed message is caught
  return { type: 'bind', portal, statement, params };
}

function* functionCall(limits: AuditTextLimits, what: string): PullDecoder<StreamedMessage> {
  const oid = (yield { take: 4 }).readUInt32BE(0);
  const args = yield* values(limits, what);
  yield { take: 2 }; // result format
  return { type: 'function-call', oid, args };
}
