import type { DesktopInput } from '@gatehouse/audit';
import { describe, expect, it } from 'vitest';
import { InputLog } from './input-log.js';
import {
  encodeFastPathInput,
  encodeSlowPathInput,
  type InputEvent,
  PTRFLAGS,
  PTRXFLAGS,
} from './wire/input.js';

function setup(opts: { maxPerSecond?: number } = {}) {
  let now = 0;
  const out: { t: number; input: DesktopInput }[] = [];
  const gaveUp: string[] = [];
  const log = new InputLog({
    record: (input) => out.push({ t: now, input }),
    onGiveUp: (r) => gaveUp.push(r),
    now: () => now,
    ...opts,
  });
  // The connection sequence starts with TPKT frames: after one, 0x30 is a fast-path header.
  log.push(Buffer.from('0300000c02f0800401000100', 'hex'));
  return {
    log,
    out,
    gaveUp,
    at: (t: number) => {
      now = t;
    },
  };
}

const key = (code: number, release = false, extended = false): InputEvent => ({
  type: 'scancode',
  code,
  release,
  extended,
});

describe('InputLog', () => {
  it('records key presses without saying which key, and names Ctrl+Alt+Del and the Windows key', () => {
    const { log, out } = setup();
    // "pw" typed as scancodes and as unicode, then Ctrl+Alt+Del and the left Windows key.
    log.push(encodeFastPathInput([key(0x19), key(0x19, true), key(0x11), key(0x11, true)]));
    log.push(
      encodeSlowPathInput([
        { type: 'unicode', code: 0x70, release: false },
        { type: 'unicode', code: 0x70, release: true },
      ]),
    );
    log.push(
      encodeFastPathInput([
        key(0x1d),
        key(0x38),
        key(0x53, false, true),
        key(0x53, true, true),
        key(0x38, true),
        key(0x1d, true),
      ]),
    );
    log.push(encodeFastPathInput([key(0x5b, false, true), key(0x5b, true, true)]));
    // Del alone after the modifiers were released is an ordinary key.
    log.push(encodeFastPathInput([key(0x53, false, true)]));
    expect(out.map((o) => o.input)).toEqual([
      { kind: 'key' },
      { kind: 'key' },
      { kind: 'key' },
      // Ctrl and Alt are key presses too (they type nothing, but are not named).
      { kind: 'key' },
      { kind: 'key' },
      { kind: 'key', special: 'ctrl+alt+del' },
      { kind: 'key', special: 'windows' },
      { kind: 'key' },
    ]);
    expect(JSON.stringify(out)).not.toMatch(/code|0x19|25/);
  });

  it('records clicks, wheel turns and extended buttons where the pointer is', () => {
    const { log, out } = setup();
    log.push(
      encodeFastPathInput([
        { type: 'mouse', flags: PTRFLAGS.MOVE, x: 10, y: 20 },
        { type: 'mouse', flags: PTRFLAGS.DOWN | PTRFLAGS.BUTTON1, x: 11, y: 21 },
        { type: 'mouse', flags: PTRFLAGS.BUTTON1, x: 11, y: 21 },
        { type: 'mouse', flags: PTRFLAGS.WHEEL | PTRFLAGS.WHEEL_NEGATIVE | 0x188, x: 0, y: 0 },
        { type: 'mouse', flags: PTRFLAGS.HWHEEL | 0x78, x: 0, y: 0 },
        { type: 'mousex', flags: PTRXFLAGS.DOWN | PTRXFLAGS.BUTTON2, x: 12, y: 22 },
      ]),
    );
    expect(out.map((o) => o.input)).toEqual([
      { kind: 'move', x: 10, y: 20 },
      { kind: 'button', button: 'left', down: true, x: 11, y: 21 },
      { kind: 'button', button: 'left', down: false, x: 11, y: 21 },
      { kind: 'wheel', delta: -120, horizontal: false, x: 11, y: 21 },
      { kind: 'wheel', delta: 120, horizontal: true, x: 11, y: 21 },
      { kind: 'button', button: 'x2', down: true, x: 12, y: 22 },
    ]);
  });

  it('coalesces pointer moves: at most one per interval, the last position wins, none lost before a click', () => {
    const { log, out, at } = setup();
    const move = (x: number) => encodeFastPathInput([{ type: 'mouse', flags: PTRFLAGS.MOVE, x, y: 0 }]);
    log.push(move(1));
    for (let i = 2; i <= 50; i++) {
      at(i);
      log.push(move(i));
    }
    expect(out.map((o) => o.input)).toEqual([{ kind: 'move', x: 1, y: 0 }]);
    at(60);
    log.push(encodeFastPathInput([{ type: 'mouse', flags: PTRFLAGS.DOWN | PTRFLAGS.BUTTON2, x: 50, y: 0 }]));
    expect(out.map((o) => o.input)).toEqual([
      { kind: 'move', x: 1, y: 0 },
      { kind: 'move', x: 50, y: 0 },
      { kind: 'button', button: 'right', down: true, x: 50, y: 0 },
    ]);
    at(500);
    log.push(move(7));
    log.close();
    expect(out.at(-1)?.input).toEqual({ kind: 'move', x: 7, y: 0 });
  });

  it('bounds a flood: past the per-second limit events are counted, not recorded', () => {
    const { log, out, at } = setup({ maxPerSecond: 10 });
    for (let i = 0; i < 20; i++) log.push(encodeFastPathInput(Array.from({ length: 100 }, () => key(0x1e))));
    expect(out).toHaveLength(10);
    at(1000);
    log.push(encodeFastPathInput([key(0x1e)]));
    expect(out.slice(10).map((o) => o.input)).toEqual([{ kind: 'dropped', n: 1990 }, { kind: 'key' }]);
  });

  it('steps over CredSSP and the connection sequence, split anywhere', () => {
    const out: DesktopInput[] = [];
    const log = new InputLog({ record: (i) => out.push(i), onGiveUp: (r) => expect.fail(r) });
    const ts = Buffer.concat([Buffer.from([0x30, 0x81, 0x90]), Buffer.alloc(0x90, 0x30)]);
    const stream = Buffer.concat([
      ts,
      Buffer.from('0300000c02f0800401000100', 'hex'),
      encodeFastPathInput([key(0x1e), key(0x1e, true)]),
      encodeSlowPathInput([{ type: 'mouse', flags: PTRFLAGS.DOWN | PTRFLAGS.BUTTON3, x: 3, y: 4 }]),
    ]);
    for (let i = 0; i < stream.length; i += 7) log.push(stream.subarray(i, i + 7));
    expect(out).toEqual([{ kind: 'key' }, { kind: 'button', button: 'middle', down: true, x: 3, y: 4 }]);
  });

  it('gives up once on a stream it cannot follow, and records nothing after', () => {
    const { log, out, gaveUp } = setup();
    log.push(Buffer.from([0x01, 0x02, 0x03]));
    log.push(encodeFastPathInput([key(0x1e)]));
    expect(gaveUp).toEqual([expect.stringMatching(/unknown client PDU/)]);
    expect(out).toEqual([]);
  });
});
