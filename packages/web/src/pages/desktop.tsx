import type { UserInteraction } from '@devolutions/iron-remote-desktop';
import { useEffect, useRef, useState } from 'react';
import { useApp } from '../app';
import { useSessionMfa } from '../components/session-mfa';
import { ErrorBox } from '../components/ui';
import {
  desktopFromSearch,
  desktopSocketUrl,
  desktopTitle,
  explainDesktopError,
  type LiveDesktop,
} from '../lib/desktop';
import { connectIron, desktopSizeForWindow, ironErrorDetail, isIronError, mountIron } from '../lib/iron';
import { DesktopPlayer } from './desktop-player';

/** Window size changes settle for this long before the desktop is asked to follow. */
const RESIZE_SETTLE_MS = 300;

type State =
  | { state: 'connecting' }
  | { state: 'connected' }
  | { state: 'ended'; message: string }
  | { state: 'error'; message: string; error?: unknown };

/**
 * A remote desktop in a browser tab of its own: the IronRDP web component
 * draws it; the gateway relays RDCleanPath to the desktop and logs in with
 * the credential it holds, so no Windows password is asked for here. With
 * `?recording=ID` the tab is the desktop player instead.
 */
export default function DesktopPage() {
  const target = desktopFromSearch(new URLSearchParams(window.location.search));
  if (!target) {
    return (
      <main className="narrow">
        <ErrorBox error={new Error('no desktop named: open one from the Resources page')} />
      </main>
    );
  }
  if (target.kind === 'playback') return <DesktopPlayer target={target} />;
  return <LiveDesktopView target={target} />;
}

function LiveDesktopView({ target }: { target: LiveDesktop }) {
  const { api } = useApp();
  const host = useRef<HTMLDivElement>(null);
  const ui = useRef<UserInteraction | undefined>(undefined);
  const [status, setStatus] = useState<State>({ state: 'connecting' });
  const { desktop, login } = target;
  // With require_session_mfa the desktop asks for a check before its token (the effect reads the latest ask).
  const mfa = useSessionMfa();
  const askMfa = useRef(mfa.ask);
  askMfa.current = mfa.ask;

  useEffect(() => {
    if (!host.current) return;
    document.title = `${desktopTitle({ kind: 'live', desktop, login })} - Gatehouse`;
    let stopped = false;
    const unmount = mountIron(
      host.current,
      async (u) => {
        ui.current = u;
        try {
          const mfaToken = await askMfa.current(
            { kind: 'desktop', desktop, login },
            `desktop ${desktop} as ${login}`,
          );
          if (stopped) return;
          const t = await api.desktopToken(desktop, login, mfaToken);
          const conn = {
            user: login,
            destination: t.destination,
            token: t.token,
            url: desktopSocketUrl(window.location, t.path),
          };
          const session = await connectIron(u, conn);
          if (stopped) return;
          u.setVisibility(true);
          u.setEnableClipboard(true);
          setStatus({ state: 'connected' });
          const end = await session.run();
          if (!stopped) setStatus({ state: 'ended', message: end.reason() || 'the desktop session ended' });
        } catch (e) {
          if (stopped) return;
          if (isIronError(e)) {
            setStatus({
              state: 'error',
              message: explainDesktopError(e.rdcleanpathDetails()),
              error: ironErrorDetail(e),
            });
            return;
          }
          setStatus({ state: 'error', message: 'the desktop could not be opened', error: e });
        }
      },
      (error) => setStatus({ state: 'error', message: 'the desktop client could not start', error }),
    );
    // The remote desktop follows the window (the Display Control channel: the desktop
    // reactivates at the new size, where it supports that; else the canvas scales to fit).
    let settle: ReturnType<typeof setTimeout> | undefined;
    const onResize = () => {
      clearTimeout(settle);
      settle = setTimeout(() => {
        const { width, height } = desktopSizeForWindow();
        ui.current?.resize(width, height);
      }, RESIZE_SETTLE_MS);
    };
    window.addEventListener('resize', onResize);
    return () => {
      stopped = true;
      clearTimeout(settle);
      window.removeEventListener('resize', onResize);
      unmount();
    };
  }, [api, desktop, login]);

  return (
    <main className="desktop-page" data-state={status.state}>
      <div className="desktop-bar">
        <strong>{desktopTitle(target)}</strong>
        <button
          type="button"
          disabled={status.state !== 'connected'}
          onClick={() => ui.current?.ctrlAltDel()}
        >
          Ctrl+Alt+Del
        </button>
        <button type="button" disabled={status.state !== 'connected'} onClick={() => ui.current?.metaKey()}>
          Windows key
        </button>
        <button
          type="button"
          disabled={status.state !== 'connected'}
          onClick={() => host.current?.requestFullscreen()}
        >
          Full screen
        </button>
        <span className="desktop-status" data-testid="desktop-status">
          {status.state === 'connecting'
            ? 'Connecting…'
            : status.state === 'connected'
              ? 'Connected'
              : status.message}
        </span>
      </div>
      {mfa.prompt}
      {status.state === 'error' && status.error ? <ErrorBox error={status.error} /> : null}
      <div className="desktop-screen" ref={host} />
    </main>
  );
}
