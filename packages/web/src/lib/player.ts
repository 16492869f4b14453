/**
 * The session player's model: recorded events (the API's JSON lines, see
 * docs/decisions/0008-recordings.md), a timeline with idle gaps shortened,
 * and text search. Pure: no DOM, no timers, so it is unit-tested in Node.
 */
import type { AuditEvent, DesktopInput, RecordingEvent } from '../api/routes';

export type PlayerEvent = RecordingEvent;

/** One line of `GET /v1/recordings/:id/events?format=json`. */
export function decodeLine(line: string, lineNo: number): PlayerEvent {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    throw new Error(`recording line ${lineNo} is not JSON`);
  }
  const o = v as Record<string, unknown>;
  if (!o || typeof o !== 'object' || typeof o.t !== 'number' || !Number.isFinite(o.t) || o.t < 0) {
    throw new Error(`recording line ${lineNo} has no valid time`);
  }
  const t = o.t;
  switch (o.type) {
    case 'output':
    case 'input':
      if (typeof o.data !== 'string') throw new Error(`recording line ${lineNo} has no data`);
      try {
        return { t, type: o.type, data: fromBase64(o.data) };
      } catch (err) {
        // atob's DOMException names no line; the caller shows this message.
        throw new Error(`recording line ${lineNo} has data that is not base64`, { cause: err });
      }
    case 'resize':
      if (!isDim(o.cols) || !isDim(o.rows))
        throw new Error(`recording line ${lineNo} has a bad terminal size`);
      // Every size the format holds plays (xterm raises 0 to its minimum); larger than the player draws is capped.
      return { t, type: 'resize', cols: Math.min(o.cols, MAX_SHOWN), rows: Math.min(o.rows, MAX_SHOWN) };
    case 'marker':
      return { t, type: 'marker', text: typeof o.text === 'string' ? o.text : '' };
    case 'desktop_input': {
      const input = decodeDesktopInput(o.input);
      if (!input) throw new Error(`recording line ${lineNo} has a bad desktop input`);
      return { t, type: 'desktop_input', input };
    }
    default:
      throw new Error(`recording line ${lineNo} has an unknown event type`);
  }
}

/** A desktop input event's fields as the player uses them (the timeline's marks); undefined when malformed. */
function decodeDesktopInput(v: unknown): DesktopInput | undefined {
  if (!v || typeof v !== 'object') return undefined;
  const o = v as Record<string, unknown>;
  const x = isDim(o.x) ? o.x : 0;
  const y = isDim(o.y) ? o.y : 0;
  switch (o.kind) {
    case 'key':
      return o.special === 'ctrl+alt+del' || o.special === 'windows'
        ? { kind: 'key', special: o.special }
        : { kind: 'key' };
    case 'move':
      return { kind: 'move', x, y };
    case 'button': {
      const b = o.button;
      if (b !== 'left' && b !== 'right' && b !== 'middle' && b !== 'x1' && b !== 'x2') return undefined;
      return { kind: 'button', button: b, down: o.down === true, x, y };
    }
    case 'wheel':
      return {
        kind: 'wheel',
        delta: typeof o.delta === 'number' && Number.isFinite(o.delta) ? o.delta : 0,
        horizontal: o.horizontal === true,
        x,
        y,
      };
    case 'dropped':
      return { kind: 'dropped', n: typeof o.n === 'number' && Number.isFinite(o.n) ? o.n : 0 };
    default:
      return undefined;
  }
}

/** Sizes the recording format holds (the recorder writes what the client's terminal said). */
function isDim(n: unknown): n is number {
  return typeof n === 'number' && Number.isInteger(n) && n >= 0 && n <= 65535;
}

/** The largest terminal the player draws. */
const MAX_SHOWN = 10_000;

export function decodeRecording(text: string): PlayerEvent[] {
  const out: PlayerEvent[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const l = lines[i]!;
    if (l.trim()) out.push(decodeLine(l, i + 1));
  }
  return out;
}

export function fromBase64(s: string): Uint8Array {
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/**
 * Recording time (ms since start, `t`) against playback time, where every gap
 * between events longer than `maxIdleMs` counts as `maxIdleMs`. The scrub bar
 * and the clock run on playback time; links and the wall clock use `t`.
 */
export class Timeline {
  /** Event times (recording ms) and their playback times, same index. */
  readonly real: number[];
  readonly play: number[];

  constructor(
    readonly events: readonly PlayerEvent[],
    readonly maxIdleMs: number,
  ) {
    this.real = events.map((e) => e.t);
    this.play = [];
    let p = 0;
    for (let i = 0; i < events.length; i++) {
      if (i > 0) p += Math.min(this.real[i]! - this.real[i - 1]!, maxIdleMs);
      else p = Math.min(this.real[0]!, maxIdleMs);
      this.play.push(p);
    }
  }

  get duration(): number {
    return this.play.length ? this.play[this.play.length - 1]! : 0;
  }

  get realDuration(): number {
    return this.real.length ? this.real[this.real.length - 1]! : 0;
  }

  /** Number of events at or before playback time `p`. */
  countAtPlay(p: number): number {
    return upperBound(this.play, p);
  }

  /** Number of events at or before recording time `t`. */
  countAtReal(t: number): number {
    return upperBound(this.real, t);
  }

  /** Recording time shown at playback time `p` (inside a shortened gap, the gap's start). */
  toReal(p: number): number {
    const n = this.countAtPlay(p);
    if (n === 0) return 0;
    const i = n - 1;
    const next = i + 1 < this.real.length ? this.real[i + 1]! : this.real[i]!;
    return Math.min(this.real[i]! + (p - this.play[i]!), next);
  }

  /** Playback time of recording time `t`. */
  toPlay(t: number): number {
    const n = this.countAtReal(t);
    if (n === 0) return Math.min(t, this.maxIdleMs);
    const i = n - 1;
    return this.play[i]! + Math.min(t - this.real[i]!, this.maxIdleMs);
  }
}

/** Index of the first element greater than x (sorted ascending). */
function upperBound(a: readonly number[], x: number): number {
  let lo = 0;
  let hi = a.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (a[mid]! <= x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

// CSI, OSC (ended by BEL or ST), other two-byte escapes; then other C0 controls except newline/tab.
const ANSI =
  /\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]|[\x00-\x08\x0b-\x1f\x7f]/g;

export function stripAnsi(s: string): string {
  return s.replace(ANSI, '');
}

export interface SearchHit {
  /** Recording time of the output event that completes the match. */
  t: number;
  /** Index of that event. */
  index: number;
  /** The text around the match. */
  context: string;
}

/**
 * Case-insensitive search in what the terminal printed (escape sequences
 * removed). A match may span several output events (a typed command is
 * echoed a key at a time); it is placed at the event that completes it, so
 * jumping there shows the whole match on screen.
 */
export function searchOutput(events: readonly PlayerEvent[], query: string, max = 500): SearchHit[] {
  const q = query.toLowerCase();
  if (!q) return [];
  const decoder = new TextDecoder();
  let text = '';
  const starts: number[] = [];
  const owners: number[] = [];
  for (let i = 0; i < events.length; i++) {
    const e = events[i]!;
    if (e.type !== 'output') continue;
    starts.push(text.length);
    owners.push(i);
    text += decoder.decode(e.data, { stream: true });
  }
  text += decoder.decode();
  // Strip per whole text, keeping a map from stripped offsets back to events.
  const plain: string[] = [];
  const plainOwner: number[] = [];
  let seg = 0;
  let last = 0;
  const pushPlain = (from: number, to: number) => {
    for (let k = from; k < to; k++) {
      while (seg + 1 < starts.length && starts[seg + 1]! <= k) seg++;
      plain.push(text[k]!);
      plainOwner.push(owners[seg]!);
    }
  };
  ANSI.lastIndex = 0;
  for (let m = ANSI.exec(text); m; m = ANSI.exec(text)) {
    pushPlain(last, m.index);
    last = m.index + m[0].length;
  }
  pushPlain(last, text.length);
  const hay = plain.join('');
  const lower = hay.toLowerCase();
  const hits: SearchHit[] = [];
  for (let at = lower.indexOf(q); at !== -1 && hits.length < max; at = lower.indexOf(q, at + q.length)) {
    const index = plainOwner[at + q.length - 1]!;
    const context = hay
      .slice(Math.max(0, at - 30), at + q.length + 30)
      .replace(/\s+/g, ' ')
      .trim();
    hits.push({ t: events[index]!.t, index, context });
  }
  return hits;
}

/** "m:ss" or "h:mm:ss". */
export function formatClock(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${sec}` : `${m}:${sec}`;
}

/** `?t=` of a shareable link: whole recording milliseconds, or undefined when absent/invalid. */
export function parseT(v: string | null): number | undefined {
  if (v === null || !/^\d{1,12}$/.test(v)) return undefined;
  return Number(v);
}

export const SPEEDS = [0.5, 1, 2, 4, 8] as const;

/** A point on the scrub bar worth jumping to. */
export interface TimelineMark {
  /** Recording time. */
  t: number;
  /**
   * `exec`: a program the kernel saw the session run (enhanced recording), not a typed line.
   * `keys`, `click`, `special`: a desktop client's typing (a burst of key presses), clicks, and
   * Ctrl+Alt+Del or the Windows key.
   */
  kind: 'command' | 'exec' | 'join' | 'resize' | 'marker' | 'keys' | 'click' | 'special';
  label: string;
}

/** How many marks the bar shows at most (a long session would otherwise paint it solid). */
export const MAX_MARKS = 500;

/**
 * The marks of a recording: commands (lines typed, where the recording
 * holds the input: kubectl exec and other sessions that record it), joins
 * and leaves of other users, terminal resizes, and the gateway's other
 * markers (the end reason).
 */
export function timelineMarks(events: readonly PlayerEvent[]): TimelineMark[] {
  const out: TimelineMark[] = [];
  const decoder = new TextDecoder();
  let line = '';
  for (const e of events) {
    if (out.length >= MAX_MARKS) break;
    if (e.type === 'resize') out.push({ t: e.t, kind: 'resize', label: `resized to ${e.cols}×${e.rows}` });
    else if (e.type === 'marker') {
      const text = e.text.replace(/[\x00-\x1f\x7f]/g, ' ');
      out.push({ t: e.t, kind: /\b(joined|left)\b/.test(text) ? 'join' : 'marker', label: text });
    } else if (e.type === 'input') {
      for (const ch of decoder.decode(e.data, { stream: true })) {
        if (ch === '\r' || ch === '\n') {
          const cmd = line.trim();
          if (cmd) out.push({ t: e.t, kind: 'command', label: cmd });
          line = '';
        } else if (ch === '\x7f' || ch === '\b') line = line.slice(0, -1);
        else if (ch === '\x03' || ch === '\x15') line = '';
        else if (ch >= ' ') line += ch;
      }
    }
  }
  return out;
}

/** The smallest and largest font the player fits a recording's width with (px). */
export const MIN_FONT_PX = 11;
export const MAX_FONT_PX = 16;

/**
 * The font size that fits `cols` columns into `width` pixels, given how wide
 * one column is per pixel of font size (measured from the rendered
 * terminal); never below the readable minimum (the screen scrolls sideways
 * then) nor above the maximum (an 80-column recording stays a terminal).
 */
export function fitFontSize(width: number, cols: number, cellPerPx: number, max = MAX_FONT_PX): number {
  if (!(width > 0) || !(cols > 0) || !(cellPerPx > 0)) return MIN_FONT_PX;
  const size = Math.floor((width / (cols * cellPerPx)) * 2) / 2;
  return Math.max(MIN_FONT_PX, Math.min(max, size));
}

/**
 * Marks for a session's `session.command` audit events (enhanced recording:
 * every program it ran, background jobs included), placed on its recording's
 * timeline, oldest first. One that ran before the recording started or after
 * it ended sits at the start or the end.
 */
export function commandMarks(
  events: readonly AuditEvent[],
  startedIso: string,
  realDuration: number,
): TimelineMark[] {
  const start = Date.parse(startedIso);
  const out: TimelineMark[] = [];
  for (const e of events) {
    if (e.type !== 'session.command') continue;
    // A joined node's event may reach the gateway late (an outage): place it when the node saw it.
    const at = Date.parse(e.node_time ?? e.time) - start;
    if (!Number.isFinite(at)) continue;
    const t = Math.min(Math.max(0, at), realDuration);
    out.push({ t, kind: 'exec', label: e.argv.join(' ') || e.program });
  }
  return out.sort((a, b) => a.t - b.t).slice(0, MAX_MARKS);
}
