import { describe, expect, it } from 'vitest';
import { describeActivity, desktopActivity } from './desktop.js';
import type { DesktopInput, RecordingEvent } from './types.js';

const at = (t: number, input: DesktopInput): RecordingEvent => ({ t, type: 'desktop_input', input });

describe('desktopActivity', () => {
  it('groups typing and scrolling into bursts and keeps clicks, named keys, drops and markers', () => {
    const events: RecordingEvent[] = [
      { t: 0, type: 'output', data: new Uint8Array(3) },
      at(10, { kind: 'key' }),
      at(20, { kind: 'key' }),
      at(30, { kind: 'move', x: 1, y: 1 }),
      at(40, { kind: 'key' }),
      at(50, { kind: 'key', special: 'ctrl+alt+del' }),
      at(60, { kind: 'key' }),
      at(3000, { kind: 'key' }),
      at(3100, { kind: 'button', button: 'right', down: true, x: 3, y: 4 }),
      at(3150, { kind: 'button', button: 'right', down: false, x: 3, y: 4 }),
      at(3200, { kind: 'wheel', delta: -120, horizontal: false, x: 3, y: 4 }),
      at(3300, { kind: 'wheel', delta: -120, horizontal: false, x: 3, y: 4 }),
      at(4000, { kind: 'dropped', n: 7 }),
      { t: 5000, type: 'marker', text: 'ended\nby kill' },
    ];
    const a = desktopActivity(events);
    expect(a.map((x) => [x.t, describeActivity(x)])).toEqual([
      [10, 'typing: 3 keys'],
      [50, 'Ctrl+Alt+Del'],
      [60, 'typing: 1 key'],
      [3000, 'typing: 1 key'],
      [3100, 'right click at 3,4'],
      [3200, 'scroll: 2 wheel turns'],
      [4000, "7 input events over the recording's rate limit, not recorded"],
      [5000, 'ended by kill'],
    ]);
    expect(desktopActivity(events, 2)).toHaveLength(2);
  });
});
