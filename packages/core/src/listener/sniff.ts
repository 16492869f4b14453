/**
 * Classifies the first bytes a client sends on the shared port. Pure: bytes
 * in, a verdict out. 'need-more' means the bytes so far are a prefix of
 * something we speak and the caller should read more.
 */
export type Sniffed =
  | 'ssh'
  | 'tls'
  | 'pg-ssl'
  | 'pg-gssenc'
  | 'pg-startup'
  | 'pg-cancel'
  | 'proxy-v1'
  | 'proxy-v2'
  | 'http-plain'
  | 'unknown'
  | 'need-more';

export const PROXY_V2_SIGNATURE = Buffer.from([
  0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
]);

const PG_SSL_REQUEST = 80877103;
const PG_GSSENC_REQUEST = 80877104;
const PG_CANCEL_REQUEST = 80877102;
const PG_PROTOCOL_3 = 196608;
/** A StartupMessage longer than this is not a real client (libpq's are < 1 KiB). */
const PG_MAX_STARTUP = 10_000;

const TEXT_PREFIXES: readonly [Buffer, Sniffed][] = [
  [Buffer.from('SSH-'), 'ssh'],
  [Buffer.from('PROXY '), 'proxy-v1'],
  [PROXY_V2_SIGNATURE, 'proxy-v2'],
  ...['GET ', 'HEAD ', 'POST ', 'PUT ', 'PATCH ', 'DELETE ', 'OPTIONS ', 'CONNECT '].map(
    (m) => [Buffer.from(m), 'http-plain'] as [Buffer, Sniffed],
  ),
];

export function sniff(buf: Uint8Array): Sniffed {
  if (buf.length === 0) return 'need-more';
  if (buf[0] === 0x16) {
    // TLS handshake record: 0x16, version major 3, minor 0..4.
    if (buf.length < 3) return 'need-more';
    return buf[1] === 0x03 && buf[2]! <= 0x04 ? 'tls' : 'unknown';
  }
  if (buf[0] === 0x00) return sniffPostgres(buf);
  let partial = false;
  for (const [prefix, kind] of TEXT_PREFIXES) {
    const n = Math.min(prefix.length, buf.length);
    if (Buffer.compare(prefix.subarray(0, n), Buffer.from(buf.subarray(0, n))) === 0) {
      if (buf.length >= prefix.length) return kind;
      partial = true;
    }
  }
  return partial ? 'need-more' : 'unknown';
}

function sniffPostgres(buf: Uint8Array): Sniffed {
  if (buf.length < 8) return 'need-more';
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const len = view.getUint32(0);
  const code = view.getUint32(4);
  if (len === 8 && code === PG_SSL_REQUEST) return 'pg-ssl';
  if (len === 8 && code === PG_GSSENC_REQUEST) return 'pg-gssenc';
  if (len === 16 && code === PG_CANCEL_REQUEST) return 'pg-cancel';
  if (code === PG_PROTOCOL_3 && len > 8 && len <= PG_MAX_STARTUP) return 'pg-startup';
  return 'unknown';
}
