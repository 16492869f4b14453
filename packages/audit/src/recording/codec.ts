/**
 * One recording event per JSON line. Pure: no I/O. Binary payloads are
 * base64 so a line is always valid UTF-8 JSON whatever the terminal sent.
 */
import type { DesktopButton, DesktopInput, RecordingEvent } from './types.js';

export function encodeEvent(e: RecordingEvent): string {
  switch (e.type) {
    case 'output':
    case 'input':
      return `{"t":${e.t},"type":"${e.type}","data":"${base64(e.data)}"}`;
    case 'resize':
      return `{"t":${e.t},"type":"resize","cols":${dim(e.cols)},"rows":${dim(e.rows)}}`;
    case 'marker':
      return JSON.stringify({ t: e.t, type: 'marker', text: e.text });
    case 'desktop_input':
      return JSON.stringify({ t: e.t, type: 'desktop_input', input: e.input });
  }
}

export function base64(data: Uint8Array): string {
  return Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('base64');
}

export class RecordingFormatError extends Error {
  override name = 'RecordingFormatError';
}

/** Parses one line; throws RecordingFormatError on anything that is not an event. */
export function decodeEvent(line: string): RecordingEvent {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch (err) {
    throw new RecordingFormatError('recording line is not JSON', { cause: err });
  }
  if (typeof v !== 'object' || v === null) throw new RecordingFormatError('recording line is not an object');
  const o = v as Record<string, unknown>;
  const t = o.t;
  if (typeof t !== 'number' || !Number.isFinite(t) || t < 0) {
    throw new RecordingFormatError('recording event has no valid timestamp');
  }
  switch (o.type) {
    case 'output':
    case 'input': {
      if (typeof o.data !== 'string') throw new RecordingFormatError(`${o.type} event has no data`);
      const buf = Buffer.from(o.data, 'base64');
      return { t, type: o.type, data: new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength) };
    }
    case 'resize': {
      const { cols, rows } = o;
      if (!isDim(cols) || !isDim(rows)) throw new RecordingFormatError('resize event has bad dimensions');
      return { t, type: 'resize', cols, rows };
    }
    case 'marker':
      if (typeof o.text !== 'string') throw new RecordingFormatError('marker event has no text');
      return { t, type: 'marker', text: o.text };
    case 'desktop_input':
      return { t, type: 'desktop_input', input: decodeDesktopInput(o.input) };
    default:
      throw new RecordingFormatError(`unknown recording event type ${JSON.stringify(o.type)}`);
  }
}

const BUTTONS: readonly DesktopButton[] = ['left', 'right', 'middle', 'x1', 'x2'];
const SPECIAL_KEYS = ['ctrl+alt+del', 'windows'] as const;

/** A desktop input as the recorder wrote it; anything else (a key with a code, say) is refused. */
function decodeDesktopInput(v: unknown): DesktopInput {
  if (typeof v !== 'object' || v === null) throw new RecordingFormatError('desktop_input event has no input');
  const o = v as Record<string, unknown>;
  const coord = (k: string) => {
    const n = o[k];
    if (!isDim(n)) throw new RecordingFormatError(`desktop_input ${String(o.kind)} has a bad ${k}`);
    return n;
  };
  switch (o.kind) {
    case 'key': {
      if (o.special === undefined) return { kind: 'key' };
      const special = SPECIAL_KEYS.find((k) => k === o.special);
      if (!special) throw new RecordingFormatError('desktop_input key has an unknown special key');
      return { kind: 'key', special };
    }
    case 'move':
      return { kind: 'move', x: coord('x'), y: coord('y') };
    case 'button': {
      const button = BUTTONS.find((b) => b === o.button);
      if (!button || typeof o.down !== 'boolean')
        throw new RecordingFormatError('desktop_input button has no button or state');
      return { kind: 'button', button, down: o.down, x: coord('x'), y: coord('y') };
    }
    case 'wheel': {
      const { delta } = o;
      if (typeof delta !== 'number' || !Number.isInteger(delta) || Math.abs(delta) > 0xffff)
        throw new RecordingFormatError('desktop_input wheel has a bad delta');
      if (typeof o.horizontal !== 'boolean')
        throw new RecordingFormatError('desktop_input wheel has no axis');
      return { kind: 'wheel', delta, horizontal: o.horizontal, x: coord('x'), y: coord('y') };
    }
    case 'dropped': {
      const { n } = o;
      if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 1)
        throw new RecordingFormatError('desktop_input dropped has a bad count');
      return { kind: 'dropped', n };
    }
    default:
      throw new RecordingFormatError(`unknown desktop input kind ${JSON.stringify(o.kind)}`);
  }
}

/**
 * A size as decodeEvent reads it back. Sizes come from clients (an SSH
 * window-change carries any uint32): one the decoder refuses would make its
 * whole chunk, and the playback after it, unreadable.
 */
function dim(n: number): number {
  return Number.isNaN(n) ? 0 : Math.min(Math.max(Math.trunc(n), 0), MAX_DIM);
}

const MAX_DIM = 65535;

function isDim(n: unknown): n is number {
  return typeof n === 'number' && Number.isInteger(n) && n >= 0 && n <= MAX_DIM;
}

/** Splits a decompressed chunk into events (a trailing newline is optional). */
export function decodeChunk(text: string): RecordingEvent[] {
  const out: RecordingEvent[] = [];
  for (const line of text.split('\n')) if (line !== '') out.push(decodeEvent(line));
  return out;
}
