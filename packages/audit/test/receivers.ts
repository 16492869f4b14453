import { execFileSync } from 'node:child_process';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * Small HTTP receivers standing in for Loki and Elasticsearch (neither can
 * be installed on these machines). They accept exactly what the real APIs
 * accept and nothing else: the Loki one decompresses the body with the real
 * libsnappy (Debian's python3-snappy) and decodes the protobuf PushRequest
 * field by field; the Elasticsearch one parses the NDJSON `_bulk` body pair
 * by pair and answers with per-item statuses.
 */

export interface Received {
  method: string;
  path: string;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

export type Answer = { status: number; body?: string; headers?: Record<string, string> } | 'hang';

export interface Receiver {
  url: string;
  requests: Received[];
  /** Decides the answer to each request; replace it to change behaviour mid-test. */
  handler: (r: Received) => Answer;
  close(): Promise<void>;
}

export async function startReceiver(handler: (r: Received) => Answer): Promise<Receiver> {
  const hanging = new Set<http.ServerResponse>();
  const rec: Receiver = {
    url: '',
    requests: [],
    handler,
    close: () =>
      new Promise<void>((resolve) => {
        for (const res of hanging) res.destroy();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const r: Received = {
        method: req.method ?? '',
        path: req.url ?? '',
        headers: req.headers,
        body: Buffer.concat(chunks),
      };
      rec.requests.push(r);
      let a: Answer;
      try {
        a = rec.handler(r);
      } catch (err) {
        // A body the real API would refuse: answer as it would (400), and let the test see why.
        a = { status: 400, body: String((err as Error).message) };
      }
      if (a === 'hang') {
        hanging.add(res);
        return;
      }
      res.writeHead(a.status, { 'content-type': 'application/json', ...a.headers });
      res.end(a.body ?? '');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  rec.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return rec;
}

/** Debian's python3, where python3-snappy is installed (not a pyenv shim that may come first in PATH). */
export const PYTHON3 = '/usr/bin/python3';

/** Snappy block decompression by the reference implementation (libsnappy through python3-snappy). */
export function snappyUncompress(body: Buffer): Buffer {
  return execFileSync(
    PYTHON3,
    ['-c', 'import snappy,sys; sys.stdout.buffer.write(snappy.uncompress(sys.stdin.buffer.read()))'],
    { input: body, maxBuffer: 256 * 1024 * 1024 },
  );
}

// --- protobuf wire format, just enough to read logproto.PushRequest ---

interface Field {
  no: number;
  wire: number;
  value: bigint | Buffer;
}

function readVarint(b: Buffer, pos: number): [bigint, number] {
  let v = 0n;
  let shift = 0n;
  for (;;) {
    if (pos >= b.length) throw new Error('protobuf: truncated varint');
    const byte = b[pos++]!;
    v |= BigInt(byte & 0x7f) << shift;
    if ((byte & 0x80) === 0) return [v, pos];
    shift += 7n;
    if (shift > 63n) throw new Error('protobuf: varint too long');
  }
}

function fields(b: Buffer): Field[] {
  const out: Field[] = [];
  let pos = 0;
  while (pos < b.length) {
    const [tag, p1] = readVarint(b, pos);
    const no = Number(tag >> 3n);
    const wire = Number(tag & 7n);
    if (wire === 0) {
      const [v, p2] = readVarint(b, p1);
      out.push({ no, wire, value: v });
      pos = p2;
    } else if (wire === 2) {
      const [len, p2] = readVarint(b, p1);
      const end = p2 + Number(len);
      if (end > b.length) throw new Error('protobuf: truncated length-delimited field');
      out.push({ no, wire, value: b.subarray(p2, end) });
      pos = end;
    } else throw new Error(`protobuf: unexpected wire type ${wire} in field ${no}`);
  }
  return out;
}

function bytesOf(f: Field): Buffer {
  if (f.wire !== 2) throw new Error(`protobuf: field ${f.no} should be length-delimited`);
  return f.value as Buffer;
}

export interface LokiStream {
  labels: string;
  entries: { ns: bigint; line: string }[];
}

/** Decodes PushRequest { StreamAdapter streams = 1 { labels = 1; EntryAdapter entries = 2 { Timestamp = 1; line = 2 } } }. */
export function decodePushRequest(b: Buffer): LokiStream[] {
  return fields(b).map((s) => {
    if (s.no !== 1) throw new Error(`PushRequest: unknown field ${s.no}`);
    const stream: LokiStream = { labels: '', entries: [] };
    for (const f of fields(bytesOf(s))) {
      if (f.no === 1) stream.labels = bytesOf(f).toString('utf8');
      else if (f.no === 2) {
        let ns = 0n;
        let line = '';
        for (const e of fields(bytesOf(f))) {
          if (e.no === 1) {
            for (const t of fields(bytesOf(e))) {
              if (t.wire !== 0) throw new Error('Timestamp: varint fields expected');
              if (t.no === 1) ns += (t.value as bigint) * 1_000_000_000n;
              else if (t.no === 2) ns += t.value as bigint;
            }
          } else if (e.no === 2) line = bytesOf(e).toString('utf8');
          else throw new Error(`EntryAdapter: unknown field ${e.no}`);
        }
        stream.entries.push({ ns, line });
      } else throw new Error(`StreamAdapter: unknown field ${f.no}`);
    }
    return stream;
  });
}

/** Parses a Loki push body the way Loki does, by content type. */
export function decodeLokiPush(r: Received): LokiStream[] {
  const type = String(r.headers['content-type'] ?? '');
  if (type === 'application/x-protobuf') return decodePushRequest(snappyUncompress(r.body));
  if (type === 'application/json') {
    const j = JSON.parse(r.body.toString('utf8')) as {
      streams: { stream: Record<string, string>; values: [string, string][] }[];
    };
    return j.streams.map((s) => ({
      labels: `{${Object.keys(s.stream)
        .sort()
        .map((k) => `${k}=${JSON.stringify(s.stream[k])}`)
        .join(', ')}}`,
      entries: s.values.map(([ns, line]) => {
        if (!/^\d+$/.test(ns)) throw new Error(`Loki JSON: timestamp ${ns} is not a string of nanoseconds`);
        return { ns: BigInt(ns), line };
      }),
    }));
  }
  throw new Error(`Loki: unsupported content type ${type}`);
}

export interface BulkOp {
  action: string;
  index: string;
  id: string;
  doc: Record<string, unknown>;
}

/** Parses an NDJSON `_bulk` body: action line, then the document line, each ending in a newline. */
export function parseBulk(body: Buffer): BulkOp[] {
  const text = body.toString('utf8');
  if (!text.endsWith('\n')) throw new Error('_bulk: the body must end with a newline');
  const lines = text.slice(0, -1).split('\n');
  if (lines.length % 2 !== 0) throw new Error('_bulk: an action without its document');
  const ops: BulkOp[] = [];
  for (let i = 0; i < lines.length; i += 2) {
    const action = JSON.parse(lines[i]!) as Record<string, { _index?: string; _id?: string }>;
    const [name] = Object.keys(action);
    if (!name || !['create', 'index'].includes(name)) throw new Error(`_bulk: unexpected action ${name}`);
    const meta = action[name]!;
    if (!meta._index) throw new Error('_bulk: action without _index');
    ops.push({ action: name, index: meta._index, id: meta._id ?? '', doc: JSON.parse(lines[i + 1]!) });
  }
  return ops;
}
