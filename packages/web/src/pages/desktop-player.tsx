import { useCallback, useEffect, useMemo, useRef, useState } from 'react';
import type { RecordingMeta } from '../api/routes';
import { useApp } from '../app';
import { PlaybackControls, usePlaybackClock, useTimeline } from '../components/playback';
import { CopyCommand, ErrorBox, Loading, Notice } from '../components/ui';
import { type DesktopPlayback, desktopPlaybackUrl, desktopTitle } from '../lib/desktop';
import { desktopMarks, feedPlan, type ReplaySocket, replayChunks } from '../lib/desktop-player';
import { connectIron, ironErrorDetail, isIronError, mountIron, replayAddress } from '../lib/iron';
import { decodeRecording, type PlayerEvent } from '../lib/player';

type Load =
  | { state: 'loading' }
  | { state: 'error'; error: unknown }
  | { state: 'ok'; meta: RecordingMeta; events: PlayerEvent[] };

/** The desktop player: a recorded desktop session in the IronRDP client, with the SSH player's controls. */
export function DesktopPlayer({ target }: { target: DesktopPlayback }) {
  const { api } = useApp();
  const [load, setLoad] = useState<Load>({ state: 'loading' });
  const [n, setN] = useState(0);

  // biome-ignore lint/correctness/useExhaustiveDependencies: n is the reload counter
  useEffect(() => {
    document.title = `${desktopTitle(target)} - Gatehouse`;
    let live = true;
    setLoad({ state: 'loading' });
    (async () => {
      const meta = await api.getRecording(target.recording);
      if (meta.kind !== 'desktop') throw new Error(`recording ${target.recording} is not a desktop session`);
      const events = decodeRecording(await api.recordingText(target.recording));
      if (live) setLoad({ state: 'ok', meta, events });
    })().catch((error: unknown) => live && setLoad({ state: 'error', error }));
    return () => {
      live = false;
    };
  }, [api, target.recording, n]);

  if (load.state === 'loading')
    return (
      <main className="desktop-page" data-state="connecting">
        <Loading what="the recording" />
      </main>
    );
  if (load.state === 'error')
    return (
      <main className="desktop-page narrow" data-state="error">
        <ErrorBox error={load.error} onRetry={() => setN((x) => x + 1)} />
      </main>
    );
  return <Player target={target} meta={load.meta} events={load.events} />;
}

type Status = { state: 'connecting' } | { state: 'connected' } | { state: 'error'; error: unknown };

function Player({
  target,
  meta,
  events,
}: {
  target: DesktopPlayback;
  meta: RecordingMeta;
  events: PlayerEvent[];
}) {
  const { navigate } = useApp();
  const chunks = useMemo(() => replayChunks(events), [events]);
  const marks = useMemo(() => desktopMarks(events), [events]);
  const { timeline, skipIdle, setSkipIdle } = useTimeline(events);
  /** Recording time on screen: the one source of truth for position. */
  const [t, setT] = useState(() => Math.min(target.t ?? 0, timeline.realDuration));
  // A deep link opens paused at its moment; the list's Play link starts playing.
  const [playing, setPlaying] = useState(target.t === undefined);
  const [speed, setSpeed] = useState<number>(target.speed);
  const [status, setStatus] = useState<Status>({ state: 'connecting' });
  /** Client sessions started: a seek backwards starts a new one (RDP draws by deltas). */
  const [generation, setGeneration] = useState(0);
  const host = useRef<HTMLDivElement>(null);
  const socket = useRef<ReplaySocket | undefined>(undefined);
  const fed = useRef(0);
  const tNow = useRef(t);
  tNow.current = t;

  /** Hands the client everything up to recording time `to`, or starts over when `to` is behind it. */
  const feed = useCallback(
    (to: number) => {
      const s = socket.current;
      if (!s) return;
      const plan = feedPlan(chunks, fed.current, to);
      if (plan.restart) {
        socket.current = undefined;
        setGeneration((g) => g + 1);
        return;
      }
      for (let i = plan.from; i < plan.until; i++) s.push(chunks[i]!.data);
      fed.current = plan.until;
    },
    [chunks],
  );

  // One IronRDP client per generation, fed from the start up to the current position.
  // biome-ignore lint/correctness/useExhaustiveDependencies: a new generation is a new client session
  useEffect(() => {
    if (!host.current) return;
    let stopped = false;
    let mine: ReplaySocket | undefined;
    setStatus({ state: 'connecting' });
    const unmount = mountIron(
      host.current,
      async (u) => {
        const url = replayAddress((s) => {
          if (stopped) return;
          mine = s;
          socket.current = s;
          fed.current = 0;
          feed(tNow.current);
        });
        // No clipboard channel: a recording must not write to the viewer's clipboard.
        u.setEnableClipboard(false);
        try {
          const session = await connectIron(u, {
            user: 'playback',
            destination: 'playback',
            token: 'playback',
            url,
          });
          if (stopped) return;
          u.setVisibility(true);
          setStatus({ state: 'connected' });
          await session.run();
        } catch (e) {
          if (stopped) return;
          setStatus({ state: 'error', error: isIronError(e) ? ironErrorDetail(e) : e });
        }
      },
      (error) => setStatus({ state: 'error', error }),
    );
    return () => {
      stopped = true;
      if (socket.current === mine) socket.current = undefined;
      unmount();
      mine?.close();
    };
  }, [generation, feed]);

  useEffect(() => feed(t), [feed, t]);

  usePlaybackClock(timeline, playing, speed, setT, setPlaying);

  const seek = (to: number) => setT(Math.max(0, Math.min(to, timeline.realDuration)));
  const startMs = Date.parse(meta.started);
  const wall = new Date(startMs + t);
  const link = `${window.location.origin}${desktopPlaybackUrl(meta.session_id, { t })}`;

  return (
    <main className="desktop-page desktop-player" data-state={status.state}>
      <div className="desktop-bar player-bar">
        <strong>
          {meta.login ? `${meta.login} on ${meta.server}` : meta.server}{' '}
          <span className="muted">
            by {meta.user}, {new Date(startMs).toLocaleString()}
          </span>
        </strong>
        <PlaybackControls
          timeline={timeline}
          t={t}
          seek={seek}
          marks={marks}
          playing={playing}
          setPlaying={setPlaying}
          canPlay={chunks.length > 0}
          speed={speed}
          setSpeed={setSpeed}
          skipIdle={skipIdle}
          setSkipIdle={setSkipIdle}
        />
        <button type="button" onClick={() => host.current?.requestFullscreen()}>
          Full screen
        </button>
        <span className="desktop-status" data-testid="desktop-status">
          On screen:{' '}
          <time dateTime={wall.toISOString()} data-testid="wallclock">
            {wall.toLocaleString()}
          </time>
        </span>
      </div>
      {meta.error ? (
        <div className="error" role="alert">
          <strong>This recording is incomplete: {meta.error}</strong>
        </div>
      ) : null}
      {!meta.ended ? (
        <Notice>This session is still running: the player shows what was recorded so far.</Notice>
      ) : null}
      {status.state === 'error' ? <ErrorBox error={status.error} /> : null}
      <details className="card desktop-link">
        <summary>Link to this moment</summary>
        <CopyCommand command={link} />
        <button
          type="button"
          onClick={() => navigate(link.slice(window.location.origin.length), { replace: true })}
        >
          Put it in the address bar
        </button>
      </details>
      <div className="desktop-screen" ref={host} />
    </main>
  );
}
