import { useEffect, useMemo, useState } from 'react';
import { formatClock, type PlayerEvent, SPEEDS, Timeline, type TimelineMark } from '../lib/player';
import { Marks } from './timeline-marks';

/**
 * What the terminal player and the desktop player share: the timeline with
 * "skip idle", the clock that advances while playing, and the control bar.
 * Each player draws its own screen from the position `t`.
 */

/** Gaps longer than this play as this long when "skip idle" is on. */
const MAX_IDLE_MS = 2000;
const TICK_MS = 50;

/** The recording's timeline, with idle gaps shortened while `skipIdle` is on (the default). */
export function useTimeline(events: PlayerEvent[]) {
  const [skipIdle, setSkipIdle] = useState(true);
  const timeline = useMemo(
    () => new Timeline(events, skipIdle ? MAX_IDLE_MS : Number.MAX_SAFE_INTEGER),
    [events, skipIdle],
  );
  return { timeline, skipIdle, setSkipIdle };
}

/** While `playing`, advances `t` in playback time (idle gaps shortened), scaled by speed; stops at the end. */
export function usePlaybackClock(
  timeline: Timeline,
  playing: boolean,
  speed: number,
  setT: (f: (cur: number) => number) => void,
  setPlaying: (p: boolean) => void,
): void {
  useEffect(() => {
    if (!playing) return;
    let last = performance.now();
    const timer = setInterval(() => {
      const now = performance.now();
      const dp = (now - last) * speed;
      last = now;
      setT((cur) => {
        const p = timeline.toPlay(cur) + dp;
        if (p >= timeline.duration) {
          setPlaying(false);
          return timeline.realDuration;
        }
        return timeline.toReal(p);
      });
    }, TICK_MS);
    return () => clearInterval(timer);
  }, [playing, speed, timeline, setT, setPlaying]);
}

/** Play/pause, the scrub bar with its marks, the clock, speed and "skip idle". */
export function PlaybackControls({
  timeline,
  t,
  seek,
  marks,
  playing,
  setPlaying,
  canPlay,
  speed,
  setSpeed,
  skipIdle,
  setSkipIdle,
}: {
  timeline: Timeline;
  t: number;
  seek: (to: number) => void;
  marks: TimelineMark[];
  playing: boolean;
  setPlaying: (p: boolean) => void;
  canPlay: boolean;
  speed: number;
  setSpeed: (s: number) => void;
  skipIdle: boolean;
  setSkipIdle: (s: boolean) => void;
}) {
  const atEnd = t >= timeline.realDuration;
  return (
    <>
      <button
        type="button"
        className="primary"
        disabled={!canPlay}
        onClick={() => {
          if (!playing && atEnd) seek(0);
          setPlaying(!playing);
        }}
      >
        {playing ? 'Pause' : 'Play'}
      </button>
      <div className="scrub">
        <input
          type="range"
          aria-label="Position"
          min={0}
          max={Math.max(1, Math.round(timeline.duration))}
          step={10}
          value={Math.round(timeline.toPlay(t))}
          onChange={(e) => seek(timeline.toReal(Number(e.target.value)))}
        />
        <Marks
          marks={marks}
          timeline={timeline}
          onSeek={(to) => {
            setPlaying(false);
            seek(to);
          }}
        />
      </div>
      <span className="clock" data-testid="position" data-t={Math.floor(t)}>
        {formatClock(timeline.toPlay(t))} / {formatClock(timeline.duration)}
      </span>
      <label className="inline">
        Speed
        <select value={speed} onChange={(e) => setSpeed(Number(e.target.value))} aria-label="Speed">
          {SPEEDS.map((s) => (
            <option key={s} value={s}>
              {s}x
            </option>
          ))}
        </select>
      </label>
      <label className="inline">
        <input type="checkbox" checked={skipIdle} onChange={(e) => setSkipIdle(e.target.checked)} />
        Skip idle
      </label>
    </>
  );
}
