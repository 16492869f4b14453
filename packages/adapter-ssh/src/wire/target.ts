import { WireError } from './reader.js';

/**
 * The few bytes `gatehouse proxy ssh` sends inside TLS (ALPN gatehouse-ssh)
 * before the SSH stream, naming the node: `GATEHOUSE-SSH/1 HOST:PORT\n`.
 * The gateway answers `OK\n`, or `ERR <message>\n` and closes; after OK the
 * bytes are the client's SSH connection, which the gateway terminates like
 * one arriving through `ssh -J`. (docs/decisions/0009-ssh-proxy.md)
 */
export const TARGET_MAGIC = 'GATEHOUSE-SSH/1';
const MAX_LINE = 512;

export interface TargetRequest {
  host: string;
  port: number;
}

/** What the line may name: a host name or IPv4 address, or an IPv6 address (in brackets on the line). */
const NAME = /^[A-Za-z0-9._-]{1,253}$/;
const IPV6 = /^[0-9A-Fa-f:.]+$/;

export function encodeTargetRequest(t: TargetRequest): Buffer {
  // The same grammar the gateway parses, so a host it would refuse fails here, with its name.
  const bare = t.host.startsWith('[') && t.host.endsWith(']') ? t.host.slice(1, -1) : t.host;
  const v6 = bare.includes(':');
  if (v6 ? !IPV6.test(bare) : bare !== t.host || !NAME.test(bare))
    throw new WireError(`invalid host "${t.host}"`);
  if (!Number.isInteger(t.port) || t.port < 1 || t.port > 65535)
    throw new WireError(`invalid port ${t.port}`);
  return Buffer.from(`${TARGET_MAGIC} ${v6 ? `[${bare}]` : bare}:${t.port}\n`, 'latin1');
}

/** Splits one `\n`-terminated line off the front of `buf`; undefined while incomplete. */
function takeLine(buf: Buffer, what: string): { line: string; rest: Buffer } | undefined {
  const nl = buf.indexOf(0x0a);
  if (nl < 0) {
    if (buf.length > MAX_LINE) throw new WireError(`${what} line is too long`);
    return undefined;
  }
  if (nl > MAX_LINE) throw new WireError(`${what} line is too long`);
  const line = buf.subarray(0, nl).toString('latin1').replace(/\r$/, '');
  return { line, rest: buf.subarray(nl + 1) };
}

/** Feeds bytes until the request line is complete; `rest` is the start of the SSH stream. */
export class TargetRequestParser {
  #buf = Buffer.alloc(0);

  push(chunk: Buffer): { request: TargetRequest; rest: Buffer } | undefined {
    this.#buf = Buffer.concat([this.#buf, chunk]);
    const l = takeLine(this.#buf, 'target');
    if (!l) return undefined;
    const m = /^GATEHOUSE-SSH\/1 (?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(l.line);
    const port = Number(m?.[3]);
    if (!m || (m[1] !== undefined ? !IPV6.test(m[1]) : !NAME.test(m[2]!)) || port < 1 || port > 65535)
      throw new WireError('malformed target line (expected "GATEHOUSE-SSH/1 HOST:PORT")');
    return { request: { host: (m[1] ?? m[2])!, port }, rest: l.rest };
  }
}

export type TargetReply = { ok: true } | { ok: false; error: string };

export function encodeTargetReply(r: TargetReply): Buffer {
  if (r.ok) return Buffer.from('OK\n');
  return Buffer.from(`ERR ${fitUtf8(r.error.replace(/[\r\n]+/g, ' '), MAX_LINE - 4)}\n`, 'utf8');
}

/** The longest prefix of `s` (whole code points) whose UTF-8 fits in `max` bytes. */
function fitUtf8(s: string, max: number): string {
  let bytes = 0;
  let end = 0;
  for (const c of s) {
    bytes += Buffer.byteLength(c);
    if (bytes > max) break;
    end += c.length;
  }
  return s.slice(0, end);
}

export class TargetReplyParser {
  #buf = Buffer.alloc(0);

  push(chunk: Buffer): { reply: TargetReply; rest: Buffer } | undefined {
    this.#buf = Buffer.concat([this.#buf, chunk]);
    const l = takeLine(this.#buf, 'reply');
    if (!l) return undefined;
    if (l.line === 'OK') return { reply: { ok: true }, rest: l.rest };
    if (l.line.startsWith('ERR ')) {
      return {
        reply: { ok: false, error: Buffer.from(l.line.slice(4), 'latin1').toString('utf8') },
        rest: l.rest,
      };
    }
    throw new WireError('malformed reply from the gateway');
  }
}
