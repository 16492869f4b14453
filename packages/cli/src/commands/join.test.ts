import { describe, expect, it } from 'vitest';
import { endMessage, scanInput, windowSize } from './join.js';

const bytes = (s: string) => new TextEncoder().encode(s);
const text = (b: Uint8Array) => new TextDecoder().decode(b);

describe('scanInput', () => {
  it('a peer sends what it types, up to Ctrl-], which leaves and is not sent', () => {
    expect(scanInput(bytes('ls -l\r'), 'peer')).toEqual({ send: bytes('ls -l\r'), leave: false });
    const r = scanInput(bytes('pwd\r\x1dexit\r'), 'peer');
    expect(text(r.send)).toBe('pwd\r');
    expect(r.leave).toBe(true);
  });

  it('Ctrl-C goes into the session for a peer', () => {
    expect(scanInput(bytes('\x03'), 'peer')).toEqual({ send: bytes('\x03'), leave: false });
  });

  it('an observer sends nothing and leaves on Ctrl-] or Ctrl-C', () => {
    expect(scanInput(bytes('rm -rf /\r'), 'observer')).toEqual({ send: new Uint8Array(0), leave: false });
    expect(scanInput(bytes('x\x1d'), 'observer').leave).toBe(true);
    expect(scanInput(bytes('\x03'), 'observer').leave).toBe(true);
  });
});

describe('endMessage', () => {
  it('names the reason the gateway gave, else the exit code', () => {
    expect(endMessage({ reason: 'user alice is locked' })).toBe(
      'Gatehouse: session ended: user alice is locked',
    );
    expect(endMessage({ exit_code: 0 })).toBe('Gatehouse: session ended (the shell exited with 0)');
    expect(endMessage({})).toBe('Gatehouse: session ended');
  });
});

describe('windowSize', () => {
  it("is the terminal's size, and nothing for a pipe or a pty that was never sized", () => {
    expect(windowSize({ isTTY: true, columns: 120, rows: 40 })).toEqual({ cols: 120, rows: 40 });
    expect(windowSize({ isTTY: false, columns: 120, rows: 40 })).toBeUndefined();
    expect(windowSize({ isTTY: true, columns: 0, rows: 0 })).toBeUndefined();
    expect(windowSize({})).toBeUndefined();
  });
});
