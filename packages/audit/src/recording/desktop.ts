/**
 * What a desktop recording shows of the user's input, as a timeline: bursts
 * of typing (how many keys, never which), clicks, the named keys and the
 * gateway's markers. Pure and free of Node APIs: the CLI prints it and the
 * web player draws it as timeline marks.
 */
import type { DesktopButton, RecordingEvent } from './types.js';

export type DesktopActivity =
  | { t: number; kind: 'typing'; keys: number; until: number }
  | { t: number; kind: 'click'; button: DesktopButton; x: number; y: number }
  | { t: number; kind: 'key'; key: 'ctrl+alt+del' | 'windows' }
  | { t: number; kind: 'scroll'; turns: number }
  | { t: number; kind: 'dropped'; events: number }
  | { t: number; kind: 'marker'; text: string };

/** Key presses (or wheel turns) closer together than this are one burst. */
export const BURST_GAP_MS = 2000;

/** The activity of a desktop recording, oldest first, at most `max` entries. */
export function desktopActivity(events: Iterable<RecordingEvent>, max = 10_000): DesktopActivity[] {
  const out: DesktopActivity[] = [];
  let typing: Extract<DesktopActivity, { kind: 'typing' }> | undefined;
  let scroll: (Extract<DesktopActivity, { kind: 'scroll' }> & { last: number }) | undefined;
  const push = (a: DesktopActivity) => {
    if (out.length < max) out.push(a);
  };
  const endTyping = () => {
    if (typing) push(typing);
    typing = undefined;
  };
  const endScroll = () => {
    if (scroll) push({ t: scroll.t, kind: 'scroll', turns: scroll.turns });
    scroll = undefined;
  };
  for (const e of events) {
    if (out.length >= max) break;
    if (e.type === 'marker') {
      endTyping();
      endScroll();
      push({ t: e.t, kind: 'marker', text: e.text });
      continue;
    }
    if (e.type !== 'desktop_input') continue;
    const i = e.input;
    // Pointer moves happen while typing and scrolling; they end no burst.
    if (i.kind === 'move') continue;
    if (typing && (i.kind !== 'key' || i.special || e.t - typing.until > BURST_GAP_MS)) endTyping();
    if (scroll && (i.kind !== 'wheel' || e.t - scroll.last > BURST_GAP_MS)) endScroll();
    switch (i.kind) {
      case 'key':
        if (i.special) push({ t: e.t, kind: 'key', key: i.special });
        else {
          typing ??= { t: e.t, kind: 'typing', keys: 0, until: e.t };
          typing.keys++;
          typing.until = e.t;
        }
        break;
      case 'button':
        if (i.down) push({ t: e.t, kind: 'click', button: i.button, x: i.x, y: i.y });
        break;
      case 'wheel':
        scroll ??= { t: e.t, kind: 'scroll', turns: 0, last: e.t };
        scroll.turns++;
        scroll.last = e.t;
        break;
      case 'dropped':
        push({ t: e.t, kind: 'dropped', events: i.n });
        break;
    }
  }
  endTyping();
  endScroll();
  return out;
}

/** One line of text for an activity (the CLI's timeline, the player's mark labels). */
export function describeActivity(a: DesktopActivity): string {
  switch (a.kind) {
    case 'typing':
      return `typing: ${a.keys} key${a.keys === 1 ? '' : 's'}`;
    case 'click':
      return `${a.button} click at ${a.x},${a.y}`;
    case 'key':
      return a.key === 'windows' ? 'Windows key' : 'Ctrl+Alt+Del';
    case 'scroll':
      return `scroll: ${a.turns} wheel turn${a.turns === 1 ? '' : 's'}`;
    case 'dropped':
      return `${a.events} input events over the recording's rate limit, not recorded`;
    case 'marker':
      return a.text.replace(/[\x00-\x1f\x7f]/g, ' ');
  }
}
