import type { RecordingMeta, RecordingStore, SessionRecorder } from '@gatehouse/audit';
import {
  decodeChannelMessage,
  ERROR,
  exitCodeOf,
  parseResize,
  RESIZE,
  STDERR,
  STDIN,
  STDOUT,
} from './wire/channel.js';
import { WsFrameParser } from './wire/websocket.js';

/**
 * Watches both directions of a relayed exec/attach WebSocket and feeds the
 * recorder: stdout/stderr as output, stdin as input, resizes, and the exit
 * code from the status channel. It never changes the bytes it sees; when
 * the stream cannot be parsed it calls onError (the session then ends).
 */
export class ExecTap {
  readonly #rec: SessionRecorder | undefined;
  readonly #protocol: string;
  readonly #client = new WsFrameParser();
  readonly #server = new WsFrameParser();
  readonly #onError: (err: Error) => void;
  /** Channel of the message a continuation frame belongs to, per direction. */
  #clientChannel = -1;
  #serverChannel = -1;
  #failed = false;
  exitCode: number | undefined;

  private constructor(rec: SessionRecorder | undefined, protocol: string, onError: (err: Error) => void) {
    this.#rec = rec;
    this.#protocol = protocol;
    this.#onError = onError;
  }

  static async create(o: {
    recordings: RecordingStore;
    protocol: string;
    meta: Omit<RecordingMeta, 'started' | 'ended' | 'output_bytes'>;
    onError: (err: Error) => void;
  }): Promise<ExecTap> {
    const rec = await o.recordings.create(o.meta, { onError: o.onError });
    return new ExecTap(rec, o.protocol, o.onError);
  }

  /** No recorder (role turned recording off): still reads the exit code for audit. */
  static unrecorded(protocol: string): ExecTap {
    return new ExecTap(undefined, protocol, () => {});
  }

  fromClient(chunk: Buffer): void {
    this.#feed(chunk, true);
  }

  fromServer(chunk: Buffer): void {
    this.#feed(chunk, false);
  }

  marker(text: string): void {
    this.#rec?.marker(text);
  }

  async close(): Promise<void> {
    await this.#rec?.close();
  }

  #feed(chunk: Buffer, fromClient: boolean): void {
    if (this.#failed) return;
    try {
      const frames = (fromClient ? this.#client : this.#server).push(chunk);
      for (const f of frames) {
        if (f.opcode !== 0 && f.opcode !== 1 && f.opcode !== 2) continue;
        let channel: number;
        let data: Buffer;
        if (f.opcode === 0) {
          channel = fromClient ? this.#clientChannel : this.#serverChannel;
          data = f.payload;
        } else {
          ({ channel, data } = decodeChannelMessage(this.#protocol, f.payload));
          if (fromClient) this.#clientChannel = channel;
          else this.#serverChannel = channel;
        }
        this.#onMessage(fromClient, channel, data);
      }
    } catch (err) {
      this.#failed = true;
      this.#onError(err as Error);
    }
  }

  #onMessage(fromClient: boolean, channel: number, data: Buffer): void {
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
