/**
 * The desktop player's model (pure: no DOM beyond EventTarget and
 * MessageEvent, so it is unit-tested in Node). A desktop recording holds
 * every byte the live IronRDP client was sent (the RDCleanPath answer, then
 * the desktop's PDUs). Playback hands those bytes to the same client through
 * a WebSocket stand-in (`ReplaySocket`): RDP graphics are a delta stream, so
 * a position is reached by feeding everything before it as fast as the
 * client takes it, and going back means a new client session fed from the
 * start. See docs/decisions/0025-rdp.md.
 */
import { describeActivity, desktopActivity } from '../../../audit/src/recording/desktop';
import { MAX_MARKS, type PlayerEvent, type TimelineMark } from './player';

/** The bytes to replay, in order, with their recording times. */
export interface ReplayChunk {
  t: number;
  data: Uint8Array;
}

/**
 * What the player hands the client: the recorded bytes cut into PDUs, with
 * the static virtual channels' PDUs (clipboard, sound, dynamic channels)
 * left out. Only the I/O and user channels draw the screen; the channels a
 * client asks for depend on the browser (IronRDP adds the clipboard channel
 * only once the page's clipboard check finishes), and a PDU for a channel
 * the playback client did not ask for ends its session. Leaving the
 * clipboard out also keeps a recording from writing to the viewer's
 * clipboard.
 */
export function replayChunks(events: readonly PlayerEvent[]): ReplayChunk[] {
  const out: ReplayChunk[] = [];
  const framer = new ServerFramer();
  let first = true;
  for (const e of events) {
    if (e.type !== 'output') continue;
    if (first) {
      // The RDCleanPath answer: one DER message, handed over as recorded.
      first = false;
      out.push({ t: e.t, data: e.data });
      continue;
    }
    for (const data of framer.push(e.data)) out.push({ t: e.t, data });
  }
  return out;
}

/** MCS_GLOBAL_CHANNEL: the I/O channel every RDP server uses. */
const IO_CHANNEL = 1003;
const MCS_BASE_CHANNEL = 1001;

/**
 * Cuts the desktop's byte stream into TPKT and fast-path PDUs and drops
 * MCS Send Data Indications on channels other than the I/O and user
 * channels. Bytes it cannot frame end the filtering: from there on
 * everything passes through as it is.
 */
export class ServerFramer {
  #buf: Uint8Array = new Uint8Array(0);
  #userChannel: number | undefined;
  #passThrough = false;

  push(data: Uint8Array): Uint8Array[] {
    if (this.#passThrough) return [data];
    const buf = this.#buf.length ? concat(this.#buf, data) : data;
    const out: Uint8Array[] = [];
    let off = 0;
    for (;;) {
      const len = frameLength(buf, off);
      if (len === 'bad') {
        this.#passThrough = true;
        out.push(buf.subarray(off));
        this.#buf = new Uint8Array(0);
        return out;
      }
      if (len === undefined) break;
      const frame = buf.subarray(off, off + len);
      off += len;
      if (this.#keep(frame)) out.push(frame);
    }
    this.#buf = buf.slice(off);
    return out;
  }

  #keep(f: Uint8Array): boolean {
    // TPKT, X.224 Data (02 f0 80), then the MCS PDU.
    if (f[0] !== 3 || f.length < 8 || f[4] !== 0x02 || f[5] !== 0xf0 || f[6] !== 0x80) return true;
    const mcs = f[7]!;
    if (mcs >> 2 === 11 && f.length >= 11) {
      // Attach User Confirm: the user channel (initiator) follows the result.
      this.#userChannel = ((f[9]! << 8) | f[10]!) + MCS_BASE_CHANNEL;
      return true;
    }
    if (mcs >> 2 !== 26 || f.length < 12) return true; // not a Send Data Indication
    const channel = (f[10]! << 8) | f[11]!;
    return channel === IO_CHANNEL || channel === this.#userChannel;
  }
}

/** Length of the PDU at `off`: undefined while incomplete, 'bad' for bytes that are neither TPKT nor fast-path. */
function frameLength(b: Uint8Array, off: number): number | 'bad' | undefined {
  if (b.length - off < 1) return undefined;
  const h = b[off]!;
  let len: number;
  if (h === 3) {
    if (b.length - off < 4) return undefined;
    len = (b[off + 2]! << 8) | b[off + 3]!;
    if (len < 4) return 'bad';
  } else if ((h & 0x3) === 0) {
    if (b.length - off < 2) return undefined;
    const l1 = b[off + 1]!;
    if (l1 & 0x80) {
      if (b.length - off < 3) return undefined;
      len = ((l1 & 0x7f) << 8) | b[off + 2]!;
    } else len = l1;
    if (len < 2) return 'bad';
  } else return 'bad';
  return b.length - off >= len ? len : undefined;
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

const MARK_KIND = {
  typing: 'keys',
  click: 'click',
  key: 'special',
  marker: 'marker',
  dropped: 'marker',
} as const;

/**
 * Timeline marks of a desktop recording: bursts of typing (how many keys,
 * never which), clicks, Ctrl+Alt+Del and the Windows key, and the
 * gateway's markers (the same activity `gatehouse play` prints).
 */
export function desktopMarks(events: readonly PlayerEvent[]): TimelineMark[] {
  const out: TimelineMark[] = [];
  for (const a of desktopActivity(events, MAX_MARKS)) {
    if (a.kind === 'scroll') continue;
    out.push({ t: a.t, kind: MARK_KIND[a.kind], label: describeActivity(a) });
  }
  return out;
}

/** How far a playback client has been fed. */
export interface FeedPosition {
  /** Chunks handed over. */
  fed: number;
}

/**
 * Which chunks to hand to the client to show recording time `to`: the ones
 * after `fed` up to and including `to`, or `restart` when `to` lies before
 * what the client already drew (it cannot go back: a new session starts).
 */
export function feedPlan(
  chunks: readonly ReplayChunk[],
  fed: number,
  to: number,
): { restart: boolean; from: number; until: number } {
  let until = 0;
  let lo = 0;
  let hi = chunks.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (chunks[mid]!.t <= to) lo = mid + 1;
    else hi = mid;
  }
  until = lo;
  // The first chunk (the RDCleanPath answer) is always fed: the client waits for it to connect.
  until = Math.max(until, Math.min(1, chunks.length));
  if (until < fed) return { restart: true, from: 0, until };
  return { restart: false, from: fed, until };
}

/**
 * A WebSocket as IronRDP uses it (addEventListener, binaryType, readyState,
 * send, close), fed by the player instead of a network. It opens at once;
 * what the client sends is dropped (nothing reaches any desktop); chunks
 * `push`ed before the client sent its RDCleanPath request wait for it, as a
 * gateway would.
 */
export class ReplaySocket extends EventTarget {
  static readonly CONNECTING = 0;
  static readonly OPEN = 1;
  static readonly CLOSING = 2;
  static readonly CLOSED = 3;
  readonly CONNECTING = 0;
  readonly OPEN = 1;
  readonly CLOSING = 2;
  readonly CLOSED = 3;
  readyState = 0;
  binaryType: 'blob' | 'arraybuffer' = 'blob';
  readonly protocol = '';
  readonly extensions = '';
  bufferedAmount = 0;
  #requested = false;
  #queue: Uint8Array[] = [];
  #scheduled = false;

  constructor(readonly url: string) {
    super();
    queueMicrotask(() => {
      if (this.readyState !== 0) return;
      this.readyState = 1;
      this.dispatchEvent(new Event('open'));
    });
  }

  /** Bytes from the recording, delivered as one message each, in order, never inside a call from the client. */
  push(data: Uint8Array): void {
    if (this.readyState > 1) return;
    this.#queue.push(data);
    this.#schedule();
  }

  send(_data: unknown): void {
    if (this.readyState !== 1 || this.#requested) return;
    // The client's first message is its RDCleanPath request: the recorded answer may follow.
    this.#requested = true;
    this.#schedule();
  }

  /** Messages arrive in a task of their own, as from a network (never re-entering the client's own call). */
  #schedule(): void {
    if (this.#scheduled || !this.#requested || this.#queue.length === 0) return;
    this.#scheduled = true;
    setTimeout(() => {
      this.#scheduled = false;
      const q = this.#queue;
      this.#queue = [];
      for (const d of q) this.#deliver(d);
    }, 0);
  }

  close(code = 1000, reason = ''): void {
    if (this.readyState >= 2) return;
    this.readyState = 3;
    this.#queue = [];
    // CloseEvent is a browser class (Node has none); the client reads only these fields.
    this.dispatchEvent(Object.assign(new Event('close'), { code, reason, wasClean: true }));
  }

  #deliver(data: Uint8Array): void {
    if (this.readyState !== 1) return;
    const copy = data.slice().buffer;
    this.dispatchEvent(new MessageEvent('message', { data: copy }));
  }
}
