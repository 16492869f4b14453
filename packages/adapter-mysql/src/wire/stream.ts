import { type AuditText, type AuditTextLimits, TextDigest } from '@gatehouse/audit';
import { type PullDecoder, PullParser } from '@gatehouse/core';
import { MysqlWireError } from './codec.js';
import { COM } from './constants.js';
import { type ExecuteParams, streamExecuteParams } from './params.js';
import { type QueryCheck, QueryInspector } from './sql.js';

/**
 * A command read as it streams, reduced to what the relay checks and the
 * audit keeps: texts as a prefix (+ length + SHA-256), never whole.
 */
export type StreamedCommand =
  | { type: 'query'; sql: AuditText; check: QueryCheck }
  | { type: 'prepare'; sql: AuditText }
  /** `params` undefined: the statement is unknown to the gateway, or `undecodable` says why not read. */
  | { type: 'execute'; stmtId: number; params: ExecuteParams | undefined; undecodable?: string }
  | { type: 'send_long_data'; stmtId: number; paramId: number };

/** Commands whose size a client controls (statement text, bound values): these stream. */
export function isStreamedCommand(command: number): boolean {
  return (
    command === COM.QUERY ||
    command === COM.STMT_PREPARE ||
    command === COM.STMT_EXECUTE ||
    command === COM.STMT_SEND_LONG_DATA
  );
}

/** What the decoders need from the relay's statement memory. */
export interface StatementLookup {
  /** A prepared statement's parameter count, the types bound so far and what long data sent. */
  execute(
    stmtId: number,
  ): { numParams: number; types: number[] | undefined; longData: ReadonlyMap<number, AuditText> } | undefined;
  /** Where COM_STMT_SEND_LONG_DATA bytes for this parameter go (undefined: not remembered). */
  longData(stmtId: number, paramId: number): TextDigest | undefined;
}

/**
 * Decodes one command whose payload (command byte included) arrives in
 * pieces: `push` them, then `end()`. Throws MysqlWireError for a command that
 * may not stream (anything but COM_QUERY, COM_STMT_PREPARE, COM_STMT_EXECUTE
 * and COM_STMT_SEND_LONG_DATA: none of them is ever large).
 */
export class CommandStream {
  readonly #limits: AuditTextLimits;
  readonly #statements: StatementLookup;
  readonly #maxBuffered: number;
  #parser: PullParser<StreamedCommand> | undefined;
  #command = -1;
  /** The statement id of a COM_STMT_EXECUTE, once read. */
  readonly #execute = { stmtId: -1 };

  constructor(limits: AuditTextLimits, statements: StatementLookup, maxBuffered: number) {
    this.#limits = limits;
    this.#statements = statements;
    this.#maxBuffered = maxBuffered;
  }

  push(payload: Buffer): void {
    if (payload.length === 0) return;
    if (!this.#parser) {
      this.#command = payload[0] as number;
      this.#parser = new PullParser(
        this.#decoder(this.#command),
        (m) => new MysqlWireError('malformed', `command ${m}`),
      );
      payload = payload.subarray(1);
    }
    this.#parser.push(payload);
  }

  end(): StreamedCommand {
    if (!this.#parser) throw new MysqlWireError('malformed', 'empty command packet');
    try {
      return this.#parser.end();
    } catch (e) {
      // The server judges an execute it cannot read; the audit record says what the gateway could not read.
      if (this.#command !== COM.STMT_EXECUTE || !(e instanceof MysqlWireError)) throw e;
      return { type: 'execute', stmtId: this.#execute.stmtId, params: undefined, undecodable: e.message };
    }
  }

  #decoder(command: number): PullDecoder<StreamedCommand> {
    switch (command) {
      case COM.QUERY:
        return query(this.#limits);
      case COM.STMT_PREPARE:
        return prepare(this.#limits);
      case COM.STMT_EXECUTE:
        return execute(this.#limits, this.#statements, this.#execute);
      case COM.STMT_SEND_LONG_DATA:
        return sendLongData(this.#statements);
      default:
        throw new MysqlWireError(
          'too_large',
          `command 0x${command.toString(16)} of more than ${this.#maxBuffered} bytes is refused`,
        );
    }
  }
}

/** A whole payload through the streaming decoder: the same result as if it had streamed. */
export function decodeStreamed(
  payload: Buffer,
  limits: AuditTextLimits,
  statements: StatementLookup,
  maxBuffered: number,
): StreamedCommand {
  const s = new CommandStream(limits, statements, maxBuffered);
  s.push(payload);
  return s.end();
}

function* query(limits: AuditTextLimits): PullDecoder<StreamedCommand> {
  const d = new TextDigest(limits.maxQueryBytes);
  const inspector = new QueryInspector();
  yield {
    streamRest: (b) => {
      d.update(b);
      inspector.pushBytes(b);
    },
  };
  return { type: 'query', sql: d.result(), check: inspector.end() };
}

function* prepare(limits: AuditTextLimits): PullDecoder<StreamedCommand> {
  const d = new TextDigest(limits.maxQueryBytes);
  yield { streamRest: (b) => d.update(b) };
  return { type: 'prepare', sql: d.result() };
}

function* execute(
  limits: AuditTextLimits,
  statements: StatementLookup,
  seen: { stmtId: number },
): PullDecoder<StreamedCommand> {
  const stmtId = (yield { take: 4 }).readUInt32LE(0);
  seen.stmtId = stmtId;
  const st = statements.execute(stmtId);
  if (!st) {
    yield { streamRest: () => undefined };
    return { type: 'execute', stmtId, params: undefined };
  }
  try {
    const params = yield* streamExecuteParams(st.numParams, st.types, st.longData, limits);
    return { type: 'execute', stmtId, params };
  } catch (e) {
    if (!(e instanceof MysqlWireError)) throw e;
    yield { streamRest: () => undefined };
    return { type: 'execute', stmtId, params: undefined, undecodable: e.message };
  }
}

function* sendLongData(statements: StatementLookup): PullDecoder<StreamedCommand> {
  const head = yield { take: 6 };
  const stmtId = head.readUInt32LE(0);
  const paramId = head.readUInt16LE(4);
  const d = statements.longData(stmtId, paramId);
  yield { streamRest: (b) => d?.update(b) };
  return { type: 'send_long_data', stmtId, paramId };
}
