import {
  type AuditText,
  type AuditTextLimits,
  DEFAULT_AUDIT_TEXT_LIMITS,
  ParameterClipper,
} from '@gatehouse/audit';
import { BoundedMap, type PullParser } from '@gatehouse/core';
import {
  type BoundParam,
  decodeFrontendMessage,
  type FrontendMessage,
  isAuditedFrontendType,
  isKnownFrontendType,
  isStatementRun,
} from './wire/frontend.js';
import { MessageReader, type Segment } from './wire/reader.js';
import {
  decodeStreamed,
  isStreamedFrontendType,
  renderParam,
  type StreamedMessage,
  streamDecoder,
} from './wire/stream.js';

/** One db.session.query event to emit, as DbSessionAudit.onQuery takes it. */
export interface QueryRecord {
  query: AuditText;
  parameters?: AuditText[];
  statement?: string;
}

/** Prepared statements and portals remembered per session, like the server's own memory per backend. */
const MAX_NAMES = 10_000;
/** ...and the characters of text they may hold together, so many long statements cannot pile up either. */
const MAX_REMEMBERED_CHARS = 16 * 1024 * 1024;

interface Portal {
  statement: string;
  sql: AuditText;
  params: AuditText[];
  executed: boolean;
}

const chars = (t: AuditText) => (typeof t === 'string' ? t.length : t.text.length + 80);

/** Names the session remembers; the oldest goes first, and its later use is audited as unknown. */
function remembered<V>(sizeOf: (v: V) => number): BoundedMap<string, V> {
  return new BoundedMap({
    maxEntries: MAX_NAMES,
    maxSize: MAX_REMEMBERED_CHARS,
    sizeOf: (v, name) => sizeOf(v) + name.length,
  });
}

/**
 * Turns the client's audited messages into query records: a simple Query is
 * one record; in the extended protocol Parse remembers the text, Bind the
 * parameters, and the first Execute of a bound portal is one record with
 * both. Texts and values are kept as the audit keeps them (`limits`). No
 * I/O: the session emits what this returns.
 */
export class QueryAuditor {
  readonly #limits: AuditTextLimits;
  readonly #statements = remembered<AuditText>((sql) => chars(sql));
  readonly #portals = remembered<Portal>((p) => chars(p.sql) + p.params.reduce((n, v) => n + chars(v), 0));

  constructor(limits: AuditTextLimits = DEFAULT_AUDIT_TEXT_LIMITS) {
    this.#limits = limits;
  }

  /** Records to emit for this whole message (usually zero or one). */
  observe(m: FrontendMessage): QueryRecord[] {
    switch (m.type) {
      case 'query':
        return this.#query(m.sql);
      case 'parse':
        this.#statements.set(m.statement, m.sql);
        return [];
      case 'bind':
        this.#bind(m.portal, m.statement, formatParams(m.params, this.#limits));
        return [];
      case 'execute':
        return this.#execute(m.portal);
      case 'close':
        if (m.target === 'statement') this.#statements.delete(m.name);
        else this.#portals.delete(m.name);
        return [];
      case 'function-call':
        return this.#functionCall(m.oid, formatParams(m.args, this.#limits));
      default: {
        const never: never = m;
        return [{ query: `<unknown message ${String(never)}>` }];
      }
    }
  }

  /** Records to emit for a message read as it streamed (see wire/stream.ts). */
  observeStreamed(m: StreamedMessage): QueryRecord[] {
    switch (m.type) {
      case 'query':
        return this.#query(m.sql);
      case 'parse':
        this.#statements.set(m.statement, m.sql);
        return [];
      case 'bind':
        this.#bind(m.portal, m.statement, m.params);
        return [];
      case 'function-call':
        return this.#functionCall(m.oid, m.args);
      default: {
        const never: never = m;
        return [{ query: `<unknown message ${String(never)}>` }];
      }
    }
  }

  #query(sql: AuditText): QueryRecord[] {
    // A simple Query destroys the unnamed statement and portal.
    this.#statements.delete('');
    this.#portals.delete('');
    return [{ query: sql }];
  }

  #bind(portal: string, statement: string, params: AuditText[]): void {
    const sql = this.#statements.get(statement) ?? `<unknown prepared statement "${statement}">`;
    this.#portals.set(portal, { statement, sql, params, executed: false });
  }

  #execute(portal: string): QueryRecord[] {
    const p = this.#portals.get(portal);
    if (!p) return [{ query: `<execute of unknown portal "${portal}">` }];
    // Fetching more rows from the same portal is the same query.
    if (p.executed) return [];
    p.executed = true;
    return [
      {
        query: p.sql,
        parameters: p.params,
        ...(p.statement !== '' ? { statement: p.statement } : {}),
      },
    ];
  }

  #functionCall(oid: number, args: AuditText[]): QueryRecord[] {
    return [{ query: `<function call oid ${oid}>`, parameters: args }];
  }
}

/** Text parameters as text, binary ones as `\x<hex>`, NULL as `NULL` (unquoted, like psql shows it). */
export function formatParams(ps: BoundParam[], limits: AuditTextLimits): AuditText[] {
  const clipper = new ParameterClipper(limits);
  return ps.map((p) => (p === null ? 'NULL' : clipper.clip(p.value, renderParam(p.format))));
}

/**
 * The client's side of the relay, without I/O: chunks in, and for each the
 * bytes to forward plus the records that must be durable before those bytes
 * go. Audited messages up to `maxBufferedBytes` are held whole; a larger one
 * (Query, Parse, Bind, FunctionCall) is forwarded piece by piece as it
 * arrives, decoded on the way, and only the chunk that completes it carries
 * its records, so its last bytes wait for them: the database never holds a
 * whole unaudited statement.
 */
export class ClientAudit {
  readonly #reader: MessageReader;
  readonly #auditor: QueryAuditor;
  readonly #limits: AuditTextLimits;
  readonly #maxName: number;
  /** The audited message streaming through right now. */
  #streaming: PullParser<StreamedMessage> | undefined;
  /** Statements run (Query, Execute, FunctionCall) that were not decoded, since the last push. */
  #unaudited = 0;

  /**
   * `statements: false` (a session audited at session level only): messages
   * are still framed and checked (known types, size limits), but none is
   * held or decoded; push only counts the statements run.
   */
  constructor(opts: {
    limits: AuditTextLimits;
    maxMessageBytes?: number;
    maxBufferedBytes: number;
    statements?: boolean;
  }) {
    this.#limits = opts.limits;
    this.#maxName = opts.maxBufferedBytes;
    this.#auditor = new QueryAuditor(opts.limits);
    const statements = opts.statements ?? true;
    this.#reader = new MessageReader({
      inspect: statements ? isAuditedFrontendType : () => false,
      // Called once per message header: where an unaudited session's statements are counted.
      accept: statements
        ? isKnownFrontendType
        : (t) => {
            if (isStatementRun(t)) this.#unaudited++;
            return isKnownFrontendType(t);
          },
      peer: 'the client',
      ...(opts.maxMessageBytes !== undefined ? { maxMessageBytes: opts.maxMessageBytes } : {}),
      maxBufferedBytes: opts.maxBufferedBytes,
      stream: isStreamedFrontendType,
    });
  }

  /**
   * Throws PgWireError for bytes that break the protocol (the session must
   * end). `unaudited`: statements run that have no record (only without statement audit).
   */
  push(chunk: Buffer): { out: Buffer; records: QueryRecord[]; unaudited: number } {
    this.#unaudited = 0;
    const fromBoundary = this.#reader.atBoundary;
    const segs = this.#reader.push(chunk);
    const records: QueryRecord[] = [];
    let streamed = false;
    for (let i = 0; i < segs.length; i++) {
      const s = segs[i] as (typeof segs)[number];
      switch (s.kind) {
        case 'raw':
          break;
        case 'message':
          for (const r of this.#observe(s.type, s.body)) records.push(r);
          break;
        case 'begin':
          streamed = true;
          this.#streaming = streamDecoder(s.type, this.#limits, this.#maxName);
          break;
        case 'body': {
          streamed = true;
          const m = this.#streaming as PullParser<StreamedMessage>;
          m.push(s.bytes);
          if (s.end) {
            this.#streaming = undefined;
            for (const r of this.#auditor.observeStreamed(m.end())) records.push(r);
          }
          break;
        }
        default: {
          const never: never = s;
          throw new Error(`unexpected segment ${String(never)}`);
        }
      }
    }
    // Segments put back together are the input, so a chunk taken from one message boundary to
    // the next goes on as it came (the usual case): no copy. Otherwise they are what may go now.
    if (fromBoundary && !streamed && this.#reader.atBoundary)
      return { out: chunk, records, unaudited: this.#unaudited };
    return { out: joinSegments(segs), records, unaudited: this.#unaudited };
  }

  /** A whole message: the fast decoder, unless its texts may outgrow what the audit keeps. */
  #observe(type: number, body: Buffer): QueryRecord[] {
    if (body.length > this.#limits.maxQueryBytes && isStreamedFrontendType(type)) {
      // The streaming decoder, so a long text gets the same prefix and hash as if it had streamed.
      return this.#auditor.observeStreamed(decodeStreamed(type, body, this.#limits, this.#maxName));
    }
    return this.#auditor.observe(decodeFrontendMessage(type, body));
  }
}

/** The bytes of `segs` in order, as one buffer (a view when there is only one). */
function joinSegments(segs: Segment[]): Buffer {
  const bytes = segs.map(segmentBytes);
  return bytes.length === 1 ? (bytes[0] as Buffer) : Buffer.concat(bytes);
}

function segmentBytes(s: Segment): Buffer {
  switch (s.kind) {
    case 'raw':
    case 'body':
      return s.bytes;
    case 'message':
      return s.raw;
    case 'begin':
      return s.header;
  }
}
