import { describe, expect, it } from 'vitest';
import {
  commandMarks,
  decodeRecording,
  fitFontSize,
  formatClock,
  MAX_FONT_PX,
  MIN_FONT_PX,
  type PlayerEvent,
  parseT,
  searchOutput,
  stripAnsi,
  Timeline,
  timelineMarks,
} from './player';

const b64 = (s: string) => Buffer.from(s).toString('base64');
const out = (t: number, s: string): PlayerEvent => ({ t, type: 'output', data: new TextEncoder().encode(s) });

describe('decodeRecording', () => {
  it('decodes every event type from JSON lines', () => {
    const text = [
      `{"t":0,"type":"output","data":"${b64('$ ')}"}`,
      `{"t":155,"type":"input","data":"${b64('ls\r')}"}`,
      '{"t":1155,"type":"resize","cols":120,"rows":40}',
      '{"t":1155,"type":"marker","text":"bob joined"}',
      '',
    ].join('\n');
    const ev = decodeRecording(text);
    expect(ev.map((e) => e.type)).toEqual(['output', 'input', 'resize', 'marker']);
    expect(new TextDecoder().decode((ev[1] as { data: Uint8Array }).data)).toBe('ls\r');
    expect(ev[2]).toEqual({ t: 1155, type: 'resize', cols: 120, rows: 40 });
  });

  it('names the bad line', () => {
    expect(() => decodeRecording('{"t":0,"type":"marker","text":""}\nnot json')).toThrow(
      'line 2 is not JSON',
    );
    expect(() => decodeRecording('{"t":-1,"type":"marker"}')).toThrow('line 1 has no valid time');
    expect(() => decodeRecording('{"t":1,"type":"resize","cols":1.5,"rows":1}')).toThrow('bad terminal size');
    expect(() => decodeRecording('{"t":1,"type":"video"}')).toThrow('unknown event type');
  });

  it('plays every terminal size the recorder writes (a 0x0 or 20000-column resize made the whole recording unplayable)', () => {
    // fuzz counterexample {"t":0,"type":"resize","cols":0,"rows":0}: the audit codec writes and
    // reads sizes 0-65535, the player refused everything outside 1-10000.
    const ev = decodeRecording(
      ['{"t":0,"type":"resize","cols":0,"rows":0}', '{"t":1,"type":"resize","cols":20000,"rows":65535}'].join(
        '\n',
      ),
    );
    expect(ev).toEqual([
      { t: 0, type: 'resize', cols: 0, rows: 0 },
      { t: 1, type: 'resize', cols: 10_000, rows: 10_000 },
    ]);
  });

  it('names the line whose data is not base64 (atob threw a DOMException that named none)', () => {
    // fuzz counterexample {"t":0,"type":"output","data":"!"}.
    expect(() =>
      decodeRecording('{"t":0,"type":"marker","text":""}\n{"t":0,"type":"output","data":"!"}'),
    ).toThrow('recording line 2 has data that is not base64');
  });

  it('keeps binary output byte-exact', () => {
    const ev = decodeRecording(
      `{"t":0,"type":"output","data":"${Buffer.from([0, 255, 27]).toString('base64')}"}`,
    );
    expect([...(ev[0] as { data: Uint8Array }).data]).toEqual([0, 255, 27]);
  });
});

describe('Timeline', () => {
  // Output at 0, 1 s, then an idle minute, then 61.5 s.
  const events = [out(0, 'a'), out(1000, 'b'), out(61_000, 'c'), out(61_500, 'd')];
  const tl = new Timeline(events, 2000);

  it('shortens idle gaps to maxIdleMs', () => {
    expect(tl.play).toEqual([0, 1000, 3000, 3500]);
    expect(tl.duration).toBe(3500);
    expect(tl.realDuration).toBe(61_500);
  });

  it('maps playback time to recording time and back', () => {
    expect(tl.toReal(500)).toBe(500);
    expect(tl.toReal(2000)).toBe(2000);
    expect(tl.toReal(3000)).toBe(61_000);
    expect(tl.toReal(3250)).toBe(61_250);
    expect(tl.toPlay(61_250)).toBe(3250);
    expect(tl.toPlay(30_000)).toBe(3000);
    expect(tl.toPlay(500)).toBe(500);
  });

  it('counts the events to show at a time', () => {
    expect(tl.countAtPlay(0)).toBe(1);
    expect(tl.countAtPlay(2999)).toBe(2);
    expect(tl.countAtPlay(3000)).toBe(3);
    expect(tl.countAtReal(61_499)).toBe(3);
    expect(tl.countAtReal(1e9)).toBe(4);
  });

  it('an empty recording has zero duration', () => {
    const empty = new Timeline([], 2000);
    expect(empty.duration).toBe(0);
    expect(empty.countAtPlay(100)).toBe(0);
    expect(empty.toReal(100)).toBe(0);
  });
});

describe('searchOutput', () => {
  it('finds text across events and escape sequences, case-insensitively', () => {
    const events = [
      out(0, '$ ec'),
      out(10, 'ho \x1b[1;31mHel'),
      out(20, 'lo\x1b[0m world\r\n'),
      out(30, 'hello again'),
    ];
    const hits = searchOutput(events, 'hello');
    // The first match ends in the event at 20: only then is all of it on screen.
    expect(hits.map((h) => h.t)).toEqual([20, 30]);
    expect(hits[0]!.context).toContain('echo Hello world');
    expect(searchOutput(events, 'nothing')).toEqual([]);
    expect(searchOutput(events, '')).toEqual([]);
  });

  it('ignores input (the echo is in the output) and decodes split UTF-8', () => {
    const euro = new TextEncoder().encode('€');
    const events: PlayerEvent[] = [
      { t: 0, type: 'input', data: new TextEncoder().encode('secret') },
      { t: 5, type: 'output', data: euro.slice(0, 1) },
      { t: 6, type: 'output', data: euro.slice(1) },
    ];
    expect(searchOutput(events, 'secret')).toEqual([]);
    // The character is complete (and on screen) only with its last byte.
    expect(searchOutput(events, '€').map((h) => h.t)).toEqual([6]);
  });
});

describe('commandMarks', () => {
  const base = {
    id: 'x',
    code: 'GH2110I',
    cluster: 'c',
    session_id: 's',
    server: 'n',
    login: 'l',
    user: 'u',
    pid: 1,
    ppid: 0,
    uid: 1000,
  };
  const cmd = (time: string, argv: string[], program = '/bin/x') =>
    ({ ...base, type: 'session.command', time, argv, program }) as const;

  it('places session.command events at their recording time, oldest first, the rest clamped to the ends', () => {
    const started = '2026-05-01T09:30:00.000Z';
    const events = [
      cmd('2026-05-01T09:30:02.500Z', ['cat', '/etc/hosts']),
      cmd('2026-05-01T09:30:01.000Z', [], '/usr/bin/id'),
      cmd('2026-05-01T09:29:59.000Z', ['early']),
      cmd('2026-05-01T09:31:00.000Z', ['late']),
      { ...base, type: 'session.open', time: '2026-05-01T09:30:01.500Z', path: '/x', flags: 0, result: 3 },
    ] as const;
    expect(commandMarks(events as never, started, 10_000)).toEqual([
      { t: 0, kind: 'exec', label: 'early' },
      { t: 1000, kind: 'exec', label: '/usr/bin/id' },
      { t: 2500, kind: 'exec', label: 'cat /etc/hosts' },
      { t: 10_000, kind: 'exec', label: 'late' },
    ]);
  });

  it("places a joined node's event when the node saw it, not when the gateway wrote it (after an outage)", () => {
    const started = '2026-05-01T09:30:00.000Z';
    const late = { ...cmd('2026-05-01T09:45:00.000Z', ['spooled']), node_time: '2026-05-01T09:30:03.000Z' };
    expect(commandMarks([late] as never, started, 10_000)).toEqual([
      { t: 3000, kind: 'exec', label: 'spooled' },
    ]);
  });
});

describe('helpers', () => {
  it('strips ANSI escapes', () => {
    expect(stripAnsi('\x1b[1mbold\x1b[0m \x1b]0;title\x07x')).toBe('bold x');
  });
  it('formats clocks', () => {
    expect(formatClock(0)).toBe('0:00');
    expect(formatClock(61_999)).toBe('1:01');
    expect(formatClock(3_600_000 + 5000)).toBe('1:00:05');
  });
  it('parses ?t= strictly', () => {
    expect(parseT('1500')).toBe(1500);
    expect(parseT('-1')).toBeUndefined();
    expect(parseT('1e3')).toBeUndefined();
    expect(parseT(null)).toBeUndefined();
  });
});

describe('timeline marks', () => {
  const enc = (s: string) => new TextEncoder().encode(s);
  it('marks typed commands, joins, resizes and other markers at their times', () => {
    const marks = timelineMarks([
      { t: 0, type: 'resize', cols: 167, rows: 40 },
      { t: 100, type: 'input', data: enc('ls -') },
      { t: 200, type: 'input', data: enc('x\x7fl\r') },
      { t: 300, type: 'input', data: enc('\r') },
      { t: 400, type: 'marker', text: 'olga joined as observer' },
      { t: 500, type: 'input', data: enc('oops\x03uptime\n') },
      { t: 600, type: 'marker', text: 'session ended: locked' },
    ]);
    expect(marks).toEqual([
      { t: 0, kind: 'resize', label: 'resized to 167×40' },
      { t: 200, kind: 'command', label: 'ls -l' },
      { t: 400, kind: 'join', label: 'olga joined as observer' },
      { t: 500, kind: 'command', label: 'uptime' },
      { t: 600, kind: 'marker', label: 'session ended: locked' },
    ]);
  });

  it('fits a wide recording into the width, never below the readable minimum', () => {
    // 167 columns at 0.6 px of width per px of font in 1200 px: 11.5 px.
    expect(fitFontSize(1200, 167, 0.6)).toBe(11.5);
    expect(fitFontSize(700, 167, 0.6)).toBe(MIN_FONT_PX);
    expect(fitFontSize(1200, 80, 0.6)).toBe(MAX_FONT_PX);
    expect(fitFontSize(0, 80, 0.6)).toBe(MIN_FONT_PX);
  });
});
