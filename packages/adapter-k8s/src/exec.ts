import type { RecordingMeta, RecordingStore, SessionRecorder } from '@gatehouse/audit';
import {
  channelOpcode,
  decodeChannelMessage,
  ERROR,
  encodeChannelMessage,
  exitCodeOf,
  parseResize,
  RESIZE,
  STDERR,
  STDIN,
  STDOUT,
} from './wire/channel.js';
import { HEADERS, headerBlockOf, SpdyFrameParser, SpdyHeaderDecoder, SYN_STREAM } from './wire/spdy.js';
import { kubeStatus } from './wire/status.js';
import { encodeWsFrame, WsFrameParser } from './wire/websocket.js';

/** How the upgraded connection carries the remote-command channels. */
export type ExecFraming = 'websocket' | 'spdy';

/** SPDY names each channel's stream in its `streamtype` header. */
const SPDY_STREAM_TYPES: Record<string, number> = {
  stdin: STDIN,
  stdout: STDOUT,
  stderr: STDERR,
  error: ERROR,
  resize: RESIZE,
};

/**
 * Watches both directions of a relayed exec/attach stream (WebSocket, or
 * SPDY) and feeds the recorder: stdout/stderr as output, stdin as input,
 * resizes, and the exit code from the status channel. It never changes the
 * bytes it sees; when the stream cannot be parsed it calls onError (the
 * session then ends).
 */
export class ExecTap {
  readonly #rec: SessionRecorder | undefined;
  readonly #protocol: string;
  readonly #onError: (err: Error) => void;
  readonly #feedDirection: (chunk: Buffer, fromClient: boolean) => void;
  readonly #framing: ExecFraming;
  /** The WebSocket parser of the server's direction (undefined for SPDY). */
  #serverWs: WsFrameParser | undefined;
  #failed = false;
  /** Whether the client-facing stream was between messages before the last server chunk was fed. */
  #boundaryBeforeLast = true;
  /** The last server chunk was kept from the client (a content guard matched in it). */
  #lastWithheld = false;
  /** Sees each channel's data as it is decoded (content guards); default none. */
  onData: ((fromClient: boolean, channel: number, data: Buffer) => void) | undefined;
  exitCode: number | undefined;

  private constructor(
    rec: SessionRecorder | undefined,
    framing: ExecFraming,
    protocol: string,
    onError: (err: Error) => void,
  ) {
    this.#rec = rec;
    this.#protocol = protocol;
    this.#onError = onError;
    this.#framing = framing;
    this.#feedDirection = framing === 'spdy' ? this.#spdyFeeder() : this.#wsFeeder();
  }

  static async create(o: {
    recordings: RecordingStore;
    framing: ExecFraming;
    protocol: string;
    meta: Omit<RecordingMeta, 'started' | 'ended' | 'output_bytes'>;
    onError: (err: Error) => void;
  }): Promise<ExecTap> {
    const rec = await o.recordings.create(o.meta, { onError: o.onError });
    return new ExecTap(rec, o.framing, o.protocol, o.onError);
  }

  /** No recorder (role turned recording off): still reads the exit code for audit. */
  static unrecorded(framing: ExecFraming, protocol: string): ExecTap {
    return new ExecTap(undefined, framing, protocol, () => {});
  }

  fromClient(chunk: Buffer): void {
    this.#feed(chunk, true);
  }

  fromServer(chunk: Buffer): void {
    this.#boundaryBeforeLast = this.#serverWs?.atMessageBoundary ?? false;
    this.#lastWithheld = false;
    this.#feed(chunk, false);
  }

  /** The chunk just fed from the server was not passed to the client. */
  withheld(): void {
    this.#lastWithheld = true;
  }

  marker(text: string): void {
    this.#rec?.marker(text);
  }

  /**
   * What to send the client to end the session with `message` in kubectl's
   * own words: a Failure Status on the error channel (kubectl prints its
   * message) and a normal close. Undefined when that cannot be said cleanly
   * (SPDY, or the server's direction is mid-message): the caller just closes.
   */
  farewell(message: string, reason = 'Forbidden'): Buffer | undefined {
    const atBoundary = this.#lastWithheld ? this.#boundaryBeforeLast : this.#serverWs?.atMessageBoundary;
    if (this.#framing !== 'websocket' || this.#failed || !atBoundary) return undefined;
    const status = Buffer.from(JSON.stringify(kubeStatus(403, message, reason)));
    return Buffer.concat([
      encodeWsFrame(channelOpcode(this.#protocol), encodeChannelMessage(this.#protocol, ERROR, status)),
      // 1000: normal closure; the status above says why.
      encodeWsFrame(8, Buffer.from([0x03, 0xe8])),
    ]);
  }

  async close(): Promise<void> {
    await this.#rec?.close();
  }

  #feed(chunk: Buffer, fromClient: boolean): void {
    if (this.#failed) return;
    try {
      this.#feedDirection(chunk, fromClient);
    } catch (err) {
      this.#failed = true;
      this.#onError(err as Error);
    }
  }

  /** WebSocket: each message is one channel byte (or digit) and its data. */
  #wsFeeder(): (chunk: Buffer, fromClient: boolean) => void {
    const parsers = { client: new WsFrameParser(), server: new WsFrameParser() };
    this.#serverWs = parsers.server;
    /** Channel of the message a continuation frame belongs to, per direction. */
    const current = { client: -1, server: -1 };
    return (chunk, fromClient) => {
      const side = fromClient ? 'client' : 'server';
      for (const f of parsers[side].push(chunk)) {
        if (f.opcode !== 0 && f.opcode !== 1 && f.opcode !== 2) continue;
        let data: Buffer;
        if (f.opcode === 0) data = f.payload;
        else ({ channel: current[side], data } = decodeChannelMessage(this.#protocol, f.payload));
        this.#onMessage(fromClient, current[side], data);
      }
    };
  }

  /**
   * SPDY: the client opens one stream per channel (SYN_STREAM with a
   * `streamtype` header) and both sides send DATA frames on it. Only the
   * client's header blocks are decoded; they share one zlib context, so each
   * one is read in order (HEADERS frames too).
   */
  #spdyFeeder(): (chunk: Buffer, fromClient: boolean) => void {
    const parsers = { client: new SpdyFrameParser(), server: new SpdyFrameParser() };
    const clientHeaders = new SpdyHeaderDecoder();
    const channels = new Map<number, number>();
    return (chunk, fromClient) => {
      for (const f of parsers[fromClient ? 'client' : 'server'].push(chunk)) {
        if (f.kind === 'data') {
          const channel = channels.get(f.streamId);
          if (channel !== undefined && f.data.length > 0) this.#onMessage(fromClient, channel, f.data);
          continue;
        }
        if (!fromClient || (f.type !== SYN_STREAM && f.type !== HEADERS)) continue;
        const hb = headerBlockOf(f);
        if (!hb) continue;
        const headers = clientHeaders.decode(hb.block);
        const type = headers.get('streamtype');
        if (f.type === SYN_STREAM && type !== undefined && type in SPDY_STREAM_TYPES)
          channels.set(hb.streamId, SPDY_STREAM_TYPES[type]!);
      }
    };
  }

  #onMessage(fromClient: boolean, channel: number, data: Buffer): void {
    this.onData?.(fromClient, channel, data);
    if (fromClient) {
      if (channel === STDIN && data.length > 0) this.#rec?.input(data);
      else if (channel === RESIZE) {
        const r = parseResize(data);
        if (r) this.#rec?.resize(r.cols, r.rows);
      }
      return;
    }
    if ((channel === STDOUT || channel === STDERR) && data.length > 0) this.#rec?.output(data);
    else if (channel === ERROR) {
      const code = exitCodeOf(data);
      if (code !== undefined) this.exitCode = code;
    }
  }
}
