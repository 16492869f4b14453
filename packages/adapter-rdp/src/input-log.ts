import type { DesktopButton, DesktopInput } from '@gatehouse/audit';
import {
  clientFrame,
  decodeFastPathInput,
  decodeSlowPathInput,
  type InputEvent,
  PTRFLAGS,
  PTRXFLAGS,
} from './wire/input.js';
import { RdpWireError } from './wire/tpkt.js';

export interface InputLogOptions {
  /** Where summarised input goes (the session recorder). */
  record: (input: DesktopInput) => void;
  /** Called once when the client's stream cannot be followed any more; nothing is recorded after. */
  onGiveUp: (reason: string) => void;
  now?: () => number;
  /** Pointer moves closer together than this are coalesced into the last one (default 100 ms). */
  moveIntervalMs?: number;
  /** Events other than moves recorded per second at most; the rest are counted (default 100). */
  maxPerSecond?: number;
}

/** Bytes of an incomplete frame held at most (a TPKT frame is at most 64 KiB, CredSSP 1 MiB). */
const MAX_PENDING = (1 << 20) + 8;

/** Scancodes (set 1) of the keys the log names; they type nothing. */
const SC = { CTRL: 0x1d, ALT: 0x38, DEL: 0x53, LWIN: 0x5b, RWIN: 0x5c } as const;

/**
 * A tap on the client-to-desktop stream (it never changes or delays the
 * relay) that turns input PDUs into the recording's input events:
 * - key presses with no key identity (releases are left out), except the
 *   two keys that type nothing: Ctrl+Alt+Del and the Windows key;
 * - button presses and releases, wheel turns, pointer moves at most one per
 *   `moveIntervalMs` (the last position wins);
 * - at most `maxPerSecond` other events per second; the ones left out are
 *   counted in a `dropped` event, so a flooding client cannot grow the
 *   recording without bound.
 * Everything else the client sends (connection sequence, CredSSP, virtual
 * channels such as the clipboard) is stepped over, never recorded.
 */
export class InputLog {
  readonly #o: InputLogOptions;
  readonly #now: () => number;
  readonly #moveMs: number;
  readonly #max: number;
  #buf: Buffer = Buffer.alloc(0);
  #beforeMcs = true;
  #stopped = false;
  #ctrl = false;
  #alt = false;
  #x = 0;
  #y = 0;
  #lastMove = Number.NEGATIVE_INFINITY;
  #pendingMove: { x: number; y: number } | undefined;
  #moveTimer: NodeJS.Timeout | undefined;
  #windowStart = Number.NEGATIVE_INFINITY;
  #inWindow = 0;
  #dropped = 0;

  constructor(o: InputLogOptions) {
    this.#o = o;
    this.#now = o.now ?? Date.now;
    this.#moveMs = o.moveIntervalMs ?? 100;
    this.#max = o.maxPerSecond ?? 100;
  }

  /** Bytes the client sent, in order. */
  push(chunk: Buffer): void {
    if (this.#stopped) return;
    this.#buf = this.#buf.length === 0 ? chunk : Buffer.concat([this.#buf, chunk]);
    try {
      for (;;) {
        const f = clientFrame(this.#buf, this.#beforeMcs);
        if (!f) break;
        const frame = this.#buf.subarray(0, f.length);
        this.#buf = this.#buf.subarray(f.length);
        if (f.kind === 'tpkt') {
          this.#beforeMcs = false;
          for (const e of decodeSlowPathInput(frame) ?? []) this.#event(e);
        } else if (f.kind === 'fastpath') {
          for (const e of decodeFastPathInput(frame)) this.#event(e);
        }
      }
      if (this.#buf.length > MAX_PENDING) throw new RdpWireError('a client PDU is larger than any RDP PDU');
      // Keep no reference into a large chunk for a few pending bytes.
      if (this.#buf.length > 0 && this.#buf.length < chunk.length) this.#buf = Buffer.from(this.#buf);
    } catch (err) {
      // A tap must never take the relay (or the gateway) down: anything unexpected ends the
      // input recording with a marker that says why, like bytes it cannot parse.
      this.#giveUp(err instanceof RdpWireError ? err.message : `internal error: ${String(err)}`);
    }
  }

  /** Writes a coalesced move still waiting and any dropped count. */
  flush(): void {
    if (this.#moveTimer) clearTimeout(this.#moveTimer);
    this.#moveTimer = undefined;
    this.#writeMove();
    this.#writeDropped();
  }

  /** Stops (the session ended): the last move and the dropped count are written. */
  close(): void {
    this.flush();
    this.#stopped = true;
    this.#buf = Buffer.alloc(0);
  }

  #giveUp(reason: string): void {
    this.flush();
    this.#stopped = true;
    this.#buf = Buffer.alloc(0);
    this.#o.onGiveUp(reason);
  }

  #event(e: InputEvent): void {
    switch (e.type) {
      case 'scancode': {
        if (e.code === SC.CTRL) this.#ctrl = !e.release;
        else if (e.code === SC.ALT) this.#alt = !e.release;
        if (e.release) return;
        if (e.code === SC.DEL && this.#ctrl && this.#alt)
          this.#counted({ kind: 'key', special: 'ctrl+alt+del' });
        else if (e.extended && (e.code === SC.LWIN || e.code === SC.RWIN))
          this.#counted({ kind: 'key', special: 'windows' });
        else this.#counted({ kind: 'key' });
        return;
      }
      case 'unicode':
        if (!e.release) this.#counted({ kind: 'key' });
        return;
      case 'mouse':
        this.#mouse(e.flags, e.x, e.y);
        return;
      case 'mousex': {
        this.#x = e.x;
        this.#y = e.y;
        const button: DesktopButton | undefined =
          e.flags & PTRXFLAGS.BUTTON1 ? 'x1' : e.flags & PTRXFLAGS.BUTTON2 ? 'x2' : undefined;
        if (button) this.#button(button, (e.flags & PTRXFLAGS.DOWN) !== 0);
        return;
      }
      case 'relative': {
        // No absolute position: buttons are placed where the pointer was last seen.
        const button = buttonOf(e.flags);
        if (button) this.#button(button, (e.flags & PTRFLAGS.DOWN) !== 0);
        return;
      }
      case 'sync':
        return;
    }
  }

  #mouse(flags: number, x: number, y: number): void {
    if (flags & (PTRFLAGS.WHEEL | PTRFLAGS.HWHEEL)) {
      const r = flags & PTRFLAGS.ROTATION_MASK;
      // A 9-bit two's complement rotation (WHEEL_NEGATIVE is its sign bit).
      const delta = r & PTRFLAGS.WHEEL_NEGATIVE ? r - 0x200 : r;
      this.#counted({
        kind: 'wheel',
        delta,
        horizontal: (flags & PTRFLAGS.HWHEEL) !== 0,
        x: this.#x,
        y: this.#y,
      });
      return;
    }
    this.#x = x;
    this.#y = y;
    const button = buttonOf(flags);
    if (button) this.#button(button, (flags & PTRFLAGS.DOWN) !== 0);
    else if (flags & PTRFLAGS.MOVE) this.#move();
  }

  #button(button: DesktopButton, down: boolean): void {
    this.#counted({ kind: 'button', button, down, x: this.#x, y: this.#y });
  }

  #move(): void {
    this.#pendingMove = { x: this.#x, y: this.#y };
    const wait = this.#lastMove + this.#moveMs - this.#now();
    if (wait <= 0) {
      this.#writeMove();
      return;
    }
    this.#moveTimer ??= setTimeout(() => {
      this.#moveTimer = undefined;
      this.#writeMove();
    }, wait);
    this.#moveTimer.unref?.();
  }

  #writeMove(): void {
    const m = this.#pendingMove;
    if (!m) return;
    this.#pendingMove = undefined;
    this.#lastMove = this.#now();
    this.#o.record({ kind: 'move', x: m.x, y: m.y });
  }

  #writeDropped(): void {
    if (this.#dropped === 0) return;
    this.#o.record({ kind: 'dropped', n: this.#dropped });
    this.#dropped = 0;
  }

  /** A non-move event under the per-second bound; a move waiting is written first, to keep the order. */
  #counted(input: DesktopInput): void {
    const now = this.#now();
    if (now - this.#windowStart >= 1000) {
      this.#windowStart = now;
      this.#inWindow = 0;
      this.#writeDropped();
    }
    if (this.#inWindow >= this.#max) {
      this.#dropped++;
      return;
    }
    this.#inWindow++;
    if (this.#moveTimer) clearTimeout(this.#moveTimer);
    this.#moveTimer = undefined;
    this.#writeMove();
    this.#o.record(input);
  }
}

function buttonOf(flags: number): DesktopButton | undefined {
  if (flags & PTRFLAGS.BUTTON1) return 'left';
  if (flags & PTRFLAGS.BUTTON2) return 'right';
  if (flags & PTRFLAGS.BUTTON3) return 'middle';
  return undefined;
}
