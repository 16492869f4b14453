import '@xterm/xterm/css/xterm.css';
import { Terminal } from '@xterm/xterm';
import { type FormEvent, useCallback, useEffect, useMemo, useRef, useState } from 'react';
import type { AuditEvent, RecordingMeta } from '../api/routes';
import { Link, useApp } from '../app';
import { PlaybackControls, usePlaybackClock, useTimeline } from '../components/playback';
import { CopyCommand, ErrorBox, Loading, Notice } from '../components/ui';
import { shortId, target } from '../lib/names';
import {
  commandMarks,
  decodeRecording,
  fitFontSize,
  formatClock,
  MAX_FONT_PX,
  type PlayerEvent,
  parseT,
  type SearchHit,
  searchOutput,
  type TimelineMark,
  timelineMarks,
} from '../lib/player';

/** How often a live session's recording is re-read while watching. */
const LIVE_POLL_MS = 1000;

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => {
      clearTimeout(t);
      resolve();
    });
  });
}

type Load =
  | { state: 'loading' }
  | { state: 'error'; error: unknown }
  | { state: 'ok'; meta: RecordingMeta; events: PlayerEvent[]; live: LiveState };

/** For a session still running: following its recording as it is written. */
type LiveState = 'no' | 'following' | 'ended' | { dropped: unknown };

/** The session player: a terminal replaying the recording, with a scrub bar, speed, idle skipping and search. */
export default function PlayerPage({ id }: { id: string }) {
  const { api } = useApp();
  const [load, setLoad] = useState<Load>({ state: 'loading' });
  const [n, setN] = useState(0);

  // biome-ignore lint/correctness/useExhaustiveDependencies: n is the reload counter
  useEffect(() => {
    let live = true;
    const stop = new AbortController();
    setLoad({ state: 'loading' });
    (async () => {
      const meta = await api.getRecording(id);
      if (meta.ended) {
        const events = decodeRecording(await api.recordingText(id));
        if (live) setLoad({ state: 'ok', meta, events, live: 'no' });
        return;
      }
      // Watching a live session: re-read what has been recorded every second
      // until the recording says it ended. (The meta is read first: once it
      // says ended, every chunk is already written.)
      let events = decodeRecording(await api.recordingText(id));
      if (!live) return;
      setLoad({ state: 'ok', meta, events, live: 'following' });
      try {
        for (;;) {
          await sleep(LIVE_POLL_MS, stop.signal);
          if (!live) return;
          const now = await api.getRecording(id);
          const next = decodeRecording(await api.recordingText(id));
          if (!live) return;
          if (now.ended) {
            setLoad({ state: 'ok', meta: now, events: next, live: 'ended' });
            return;
          }
          if (next.length !== events.length) {
            events = next;
            setLoad({ state: 'ok', meta, events, live: 'following' });
          }
        }
      } catch (dropped) {
        if (live) setLoad({ state: 'ok', meta, events, live: { dropped } });
      }
    })().catch((error: unknown) => live && setLoad({ state: 'error', error }));
    return () => {
      live = false;
      stop.abort();
    };
  }, [api, id, n]);

  return (
    <>
      <p>
        <Link to="/web/recordings">← All recordings</Link>
      </p>
      {load.state === 'loading' ? <Loading what="the recording" /> : null}
      {load.state === 'error' ? <ErrorBox error={load.error} onRetry={() => setN((x) => x + 1)} /> : null}
      {load.state === 'ok' ? (
        <Player
          key={n}
          meta={load.meta}
          events={load.events}
          live={load.live}
          onReload={() => setN((x) => x + 1)}
        />
      ) : null}
    </>
  );
}

function Player({
  meta,
  events,
  live,
  onReload,
}: {
  meta: RecordingMeta;
  events: PlayerEvent[];
  live: LiveState;
  onReload: () => void;
}) {
  const { navigate } = useApp();
  const { timeline, skipIdle, setSkipIdle } = useTimeline(events);
  const startMs = Date.parse(meta.started);
  const initialT = parseT(new URLSearchParams(window.location.search).get('t'));
  /** Recording time of what is on screen; the single source of truth for position. */
  const [t, setT] = useState(() => Math.min(initialT ?? 0, timeline.realDuration));
  const [playing, setPlaying] = useState(false);
  /** Watching live: the screen stays at the newest event until the user scrubs or plays. */
  const [following, setFollowing] = useState(live === 'following' && initialT === undefined);
  const [speed, setSpeed] = useState(1);
  const [query, setQuery] = useState('');
  const [hits, setHits] = useState<SearchHit[] | undefined>();
  const [hit, setHit] = useState(0);
  const host = useRef<HTMLDivElement>(null);
  /** The scroll box around the terminal: its width decides the font size. */
  const screenBox = useRef<HTMLDivElement>(null);
  /** What goes full screen: the controls and the terminal. */
  const stage = useRef<HTMLDivElement>(null);
  const [fullscreen, setFullscreen] = useState(false);
  const commands = useCommandMarks(meta, timeline.realDuration);
  const marks = useMemo(
    () => [...timelineMarks(events), ...commands].sort((a, b) => a.t - b.t),
    [events, commands],
  );
  const term = useRef<Terminal | undefined>(undefined);
  /** How many events the terminal has been fed. */
  const fed = useRef(0);

  useEffect(() => {
    if (!host.current) return;
    const tm = new Terminal({
      cols: meta.cols,
      rows: meta.rows,
      disableStdin: true,
      convertEol: false,
      scrollback: 5000,
      fontFamily: 'ui-monospace, "SFMono-Regular", Menlo, Consolas, "Liberation Mono", monospace',
      fontSize: 13,
    });
    tm.open(host.current);
    term.current = tm;
    fed.current = 0;
    // Wide recordings (167 columns and more) get a smaller font that fits the
    // width, down to a readable minimum; below that the box scrolls sideways.
    const fit = () => {
      const box = screenBox.current;
      const screen = host.current?.querySelector<HTMLElement>('.xterm-screen');
      const size = tm.options.fontSize ?? 13;
      if (!box || !screen || screen.offsetWidth === 0) return;
      const cellPerPx = screen.offsetWidth / tm.cols / size;
      // The box's padding and the terminal's own (6 px each side).
      const next = fitFontSize(
        box.clientWidth - 24,
        tm.cols,
        cellPerPx,
        document.fullscreenElement ? 28 : MAX_FONT_PX,
      );
      if (next !== size) tm.options.fontSize = next;
    };
    fit();
    const sub = tm.onResize(fit);
    const ro = new ResizeObserver(fit);
    if (screenBox.current) ro.observe(screenBox.current);
    return () => {
      ro.disconnect();
      sub.dispose();
      tm.dispose();
      term.current = undefined;
    };
  }, [meta.cols, meta.rows]);

  useEffect(() => {
    const onChange = () => setFullscreen(document.fullscreenElement === stage.current);
    document.addEventListener('fullscreenchange', onChange);
    return () => document.removeEventListener('fullscreenchange', onChange);
  }, []);
  const toggleFullscreen = () => {
    if (document.fullscreenElement) void document.exitFullscreen();
    else void stage.current?.requestFullscreen();
  };

  /** Brings the terminal to recording time `to`: forward by feeding events, backward by replaying from the start. */
  const render = useCallback(
    (to: number) => {
      const tm = term.current;
      if (!tm) return;
      const target = timeline.countAtReal(to);
      if (target < fed.current) {
        tm.reset();
        tm.resize(meta.cols, meta.rows);
        fed.current = 0;
      }
      for (let i = fed.current; i < target; i++) {
        const e = events[i]!;
        if (e.type === 'output') tm.write(e.data);
        else if (e.type === 'resize') tm.resize(e.cols, e.rows);
        else if (e.type === 'marker')
          tm.write(`\r\n\x1b[2m[gatehouse: ${e.text.replace(/[\x00-\x1f]/g, ' ')}]\x1b[0m\r\n`);
      }
      fed.current = target;
    },
    [events, timeline, meta.cols, meta.rows],
  );

  useEffect(() => render(t), [render, t]);

  useEffect(() => {
    if (following) setT(timeline.realDuration);
  }, [following, timeline]);

  usePlaybackClock(timeline, playing, speed, setT, setPlaying);

  const seek = (to: number) => {
    setFollowing(false);
    setT(Math.max(0, Math.min(to, timeline.realDuration)));
  };
  const link = `${window.location.origin}/web/recordings/${encodeURIComponent(meta.session_id)}?t=${Math.floor(t)}`;

  const search = (e: FormEvent) => {
    e.preventDefault();
    const found = searchOutput(events, query);
    setHits(found);
    setHit(0);
    if (found[0]) {
      setPlaying(false);
      seek(found[0].t);
    }
  };
  const goHit = (i: number) => {
    if (!hits || hits.length === 0) return;
    const k = (i + hits.length) % hits.length;
    setHit(k);
    setPlaying(false);
    seek(hits[k]!.t);
  };

  const wall = new Date(startMs + t);

  return (
    <>
      <h1>
        Session {target(meta)}{' '}
        <code className="session-id" title={meta.session_id}>
          {shortId(meta.session_id)}
        </code>{' '}
        <span className="muted">
          by {meta.user}, {new Date(startMs).toLocaleString()}
        </span>
      </h1>
      {meta.command || marks.some((m) => m.kind === 'command') ? (
        <p className="muted" data-testid="first-command">
          {meta.command ? 'Command' : 'First command'}:{' '}
          <code>{meta.command ?? marks.find((m) => m.kind === 'command')?.label}</code>
        </p>
      ) : null}
      {live === 'following' ? (
        <Notice>
          <span className="badge warn" data-testid="live">
            Live
          </span>{' '}
          This session is still running; you are watching it as it is recorded (read-only).{' '}
          {following ? null : (
            <button type="button" className="link" onClick={() => setFollowing(true)}>
              Go to now
            </button>
          )}
        </Notice>
      ) : null}
      {live === 'ended' ? (
        <Notice kind="success">The session has ended; the whole recording is here.</Notice>
      ) : null}
      {typeof live === 'object' ? (
        <>
          <ErrorBox error={live.dropped} />
          <button type="button" onClick={onReload}>
            Reconnect
          </button>
        </>
      ) : null}
      {meta.error ? (
        <div className="error" role="alert">
          <strong>This recording is incomplete: {meta.error}</strong>
        </div>
      ) : null}
      {events.length === 0 ? <Notice>Nothing was recorded yet.</Notice> : null}
      <div className="player-stage" ref={stage} data-testid="player-stage">
        <div className="player-bar">
          <PlaybackControls
            timeline={timeline}
            t={t}
            seek={seek}
            marks={marks}
            playing={playing}
            setPlaying={(p) => {
              // Playing or pausing leaves the live edge.
              setFollowing(false);
              setPlaying(p);
            }}
            canPlay={events.length > 0}
            speed={speed}
            setSpeed={setSpeed}
            skipIdle={skipIdle}
            setSkipIdle={setSkipIdle}
          />
          <button type="button" onClick={toggleFullscreen} aria-pressed={fullscreen}>
            {fullscreen ? 'Exit full screen' : 'Full screen'}
          </button>
        </div>
        <p className="wallclock">
          On screen:{' '}
          <time dateTime={wall.toISOString()} data-testid="wallclock">
            {wall.toLocaleString()}
          </time>
          <span className="muted"> ({wall.toISOString()})</span>
        </p>
        <div className="player-screen" ref={screenBox} data-testid="player-screen">
          <div className="terminal" ref={host} data-testid="terminal" />
        </div>
      </div>
      <div className="columns">
        <section className="card">
          <h2>Link to this moment</h2>
          <CopyCommand command={link} />
          <button
            type="button"
            onClick={() => navigate(link.slice(window.location.origin.length), { replace: true })}
          >
            Put it in the address bar
          </button>
        </section>
        <section className="card">
          <h2>Search the output</h2>
          <form className="inline" onSubmit={search}>
            <input
              aria-label="Search the recording"
              value={query}
              onChange={(e) => setQuery(e.target.value)}
            />
            <button type="submit">Find</button>
          </form>
          {hits ? (
            hits.length === 0 ? (
              <p data-testid="search-status">No match for “{query}”.</p>
            ) : (
              <>
                <p data-testid="search-status">
                  Match {hit + 1} of {hits.length} at {formatClock(timeline.toPlay(hits[hit]!.t))}{' '}
                  <button type="button" onClick={() => goHit(hit - 1)}>
                    Previous
                  </button>{' '}
                  <button type="button" onClick={() => goHit(hit + 1)}>
                    Next
                  </button>
                </p>
                <p className="muted">…{hits[hit]!.context}…</p>
              </>
            )
          ) : null}
        </section>
      </div>
    </>
  );
}

/**
 * The programs the kernel saw this session run (enhanced recording:
 * `session.command` audit events with the recording's session id), as
 * timeline marks. Best effort: a viewer who may not search the audit log
 * still gets the recording, without them.
 */
function useCommandMarks(meta: RecordingMeta, realDuration: number): TimelineMark[] {
  const { api } = useApp();
  const [events, setEvents] = useState<AuditEvent[]>([]);
  useEffect(() => {
    let live = true;
    api
      .searchAudit({ session_id: meta.session_id, types: ['session.command'], limit: 1000 })
      .then((page) => live && setEvents(page.events))
      .catch(() => live && setEvents([]));
    return () => {
      live = false;
    };
  }, [api, meta.session_id]);
  return useMemo(
    () => commandMarks(events, meta.started, realDuration),
    [events, meta.started, realDuration],
  );
}
