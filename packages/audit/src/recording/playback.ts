/**
 * Playback and export of recordings. Pure transforms over an event stream
 * (no file or network I/O): the CLI, the API and the web player feed them
 * from a RecordingStore and send the result wherever they need.
 */
import { encodeEvent } from './codec.js';
import type { RecordingEvent, RecordingMeta } from './types.js';

export type RecordingFormat = 'json' | 'asciicast' | 'text';

export const RECORDING_FORMATS: readonly RecordingFormat[] = ['json', 'asciicast', 'text'];

/** asciicast v2 (https://docs.asciinema.org/manual/asciicast/v2/): a header line, then one event per line. */
export async function* toAsciicast(
  meta: RecordingMeta,
  events: AsyncIterable<RecordingEvent>,
): AsyncGenerator<string, void, undefined> {
  const header: Record<string, unknown> = {
    version: 2,
    width: meta.cols,
    height: meta.rows,
    timestamp: Math.floor(Date.parse(meta.started) / 1000),
    title: asciicastTitle(meta),
  };
  if (meta.command !== undefined) header.command = meta.command;
  yield `${JSON.stringify(header)}\n`;
  // Separate streaming decoders: a multi-byte character split across two
  // events comes out whole in the later one, never as U+FFFD.
  const out = new TextDecoder('utf-8');
  const inp = new TextDecoder('utf-8');
  let last = 0;
  for await (const e of events) {
    last = e.t;
    const at = e.t / 1000;
    switch (e.type) {
      case 'output':
      case 'input': {
        const text = (e.type === 'output' ? out : inp).decode(e.data, { stream: true });
        if (text !== '') yield `${JSON.stringify([at, e.type === 'output' ? 'o' : 'i', text])}\n`;
        break;
      }
      case 'resize':
        yield `${JSON.stringify([at, 'r', `${e.cols}x${e.rows}`])}\n`;
        break;
      case 'marker':
        yield `${JSON.stringify([at, 'm', e.text])}\n`;
        break;
      case 'desktop_input':
        // asciicast has no pointer or key events; the JSON export keeps them.
        break;
    }
  }
  const rest = out.decode();
  if (rest !== '') yield `${JSON.stringify([last / 1000, 'o', rest])}\n`;
}

function asciicastTitle(m: RecordingMeta): string {
  const target = m.login ? `${m.login}@${m.server}` : m.server;
  return `${m.user} ${target}${m.command ? ` ${m.command}` : ''} (${m.session_id})`;
}

/** The output bytes, concatenated (what the user saw, for grep). */
export async function* toText(
  events: AsyncIterable<RecordingEvent>,
): AsyncGenerator<Uint8Array, void, undefined> {
  for await (const e of events) if (e.type === 'output') yield e.data;
}

/** JSON lines, the storage encoding (binary data base64). */
export async function* toJson(
  events: AsyncIterable<RecordingEvent>,
): AsyncGenerator<string, void, undefined> {
  for await (const e of events) yield `${encodeEvent(e)}\n`;
}

export interface PlayOptions {
  /** Playback speed multiplier (default 1; 2 = twice as fast). */
  speed?: number;
  /** Idle gaps longer than this are shortened to it (recording time, before speed; default: no cap). */
  maxIdleMs?: number;
  write: (data: Uint8Array) => void | Promise<void>;
  sleep?: (ms: number) => Promise<void>;
  onResize?: (cols: number, rows: number) => void;
  onMarker?: (text: string) => void;
  signal?: AbortSignal;
}

export interface PlayResult {
  /** Output bytes written. */
  bytes: number;
  /** Total time slept, in ms. */
  sleptMs: number;
  /** Whether the signal stopped playback early. */
  aborted: boolean;
}

/** Replays output with the recorded timing (scaled by speed, idle gaps capped). */
export async function play(events: AsyncIterable<RecordingEvent>, opts: PlayOptions): Promise<PlayResult> {
  const speed = opts.speed ?? 1;
  if (!(speed > 0) || !Number.isFinite(speed))
    throw new RangeError(`speed must be a positive number, not ${speed}`);
  const maxIdle = opts.maxIdleMs ?? Number.POSITIVE_INFINITY;
  if (!(maxIdle >= 0)) throw new RangeError(`maxIdleMs must be >= 0, not ${maxIdle}`);
  const sleep = opts.sleep ?? defaultSleep;
  const result: PlayResult = { bytes: 0, sleptMs: 0, aborted: false };
  let prev = 0;
  for await (const e of events) {
    if (opts.signal?.aborted) {
      result.aborted = true;
      break;
    }
    if (e.type === 'input' || e.type === 'desktop_input') continue;
    const delay = Math.min(Math.max(0, e.t - prev), maxIdle) / speed;
    prev = e.t;
    if (delay > 0) {
      await sleep(delay);
      result.sleptMs += delay;
    }
    if (e.type === 'output') {
      await opts.write(e.data);
      result.bytes += e.data.byteLength;
    } else if (e.type === 'resize') opts.onResize?.(e.cols, e.rows);
    else opts.onMarker?.(e.text);
  }
  return result;
}

function defaultSleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A recording as bytes in one of the export formats (what the API streams and the CLI prints). */
export async function* exportRecording(
  meta: RecordingMeta,
  events: AsyncIterable<RecordingEvent>,
  format: RecordingFormat,
): AsyncGenerator<Uint8Array, void, undefined> {
  if (format === 'text') {
    yield* toText(events);
    return;
  }
  const lines = format === 'asciicast' ? toAsciicast(meta, events) : toJson(events);
  // Lines are small: batch them so a stream is not one write per event, but
  // hand over what we have whenever the source has to wait (a live recording
  // being followed), so a quiet session is not held back until it ends.
  const it = lines[Symbol.asyncIterator]();
  let batch = '';
  let next = it.next();
  for (;;) {
    const r = batch === '' ? await next : await Promise.race([next, nextTick()]);
    if (r === WAITING) {
      yield Buffer.from(batch, 'utf8');
      batch = '';
      continue;
    }
    if (r.done) break;
    batch += r.value;
    next = it.next();
    if (batch.length >= 16_384) {
      yield Buffer.from(batch, 'utf8');
      batch = '';
    }
  }
  if (batch !== '') yield Buffer.from(batch, 'utf8');
}

const WAITING = Symbol('waiting');
function nextTick(): Promise<typeof WAITING> {
  return new Promise((resolve) => setImmediate(() => resolve(WAITING)));
}

export function isRecordingFormat(s: unknown): s is RecordingFormat {
  return typeof s === 'string' && (RECORDING_FORMATS as readonly string[]).includes(s);
}

/** Collects a string or byte stream (tests and small exports). */
export async function collect(stream: AsyncIterable<string | Uint8Array>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const p of stream) parts.push(typeof p === 'string' ? Buffer.from(p, 'utf8') : Buffer.from(p));
  return Buffer.concat(parts);
}
