import '@devolutions/iron-remote-desktop';
import type { IronError, UserInteraction } from '@devolutions/iron-remote-desktop';
import { Backend, enableCredssp, init } from '@devolutions/iron-remote-desktop-rdp';
import { useEffect, useRef, useState } from 'react';
import { useApp } from '../app';
import { ErrorBox } from '../components/ui';
import { desktopFromSearch, desktopSocketUrl, desktopTitle, explainDesktopError } from '../lib/desktop';

type State =
  | { state: 'connecting' }
  | { state: 'connected' }
  | { state: 'ended'; message: string }
  | { state: 'error'; message: string; error?: unknown };

let wasmReady: Promise<void> | undefined;

/** IronErrorKind's names (the package declares the enum in its types but exports no value for it). */
const IRON_ERROR_KINDS = [
  'General',
  'WrongPassword',
  'LogonFailure',
  'AccessDenied',
  'RDCleanPath',
  'ProxyConnect',
  'NegotiationFailure',
];

function isIronError(e: unknown): e is IronError {
  return typeof e === 'object' && e !== null && typeof (e as IronError).kind === 'function';
}

/**
 * A remote desktop in a browser tab of its own: the IronRDP web component
 * draws it; the gateway relays RDCleanPath to the desktop and logs in with
 * the credential it holds, so no Windows password is asked for here.
 */
export default function DesktopPage() {
  const { api } = useApp();
  const host = useRef<HTMLDivElement>(null);
  const ui = useRef<UserInteraction | undefined>(undefined);
  const [status, setStatus] = useState<State>({ state: 'connecting' });
  const search = window.location.search;
  const target = desktopFromSearch(new URLSearchParams(search));

  useEffect(() => {
    const target = desktopFromSearch(new URLSearchParams(search));
    if (!target || !host.current) return;
    document.title = `${desktopTitle(target)} - Gatehouse`;
    let stopped = false;
    const el = document.createElement('iron-remote-desktop') as HTMLElement & { module?: unknown };
    el.module = Backend;
    el.setAttribute('scale', 'fit');
    el.setAttribute('flexcenter', 'true');
    el.setAttribute('verbose', 'false');
    const onReady = async (ev: Event) => {
      const u = (ev as CustomEvent<{ irgUserInteraction: UserInteraction }>).detail.irgUserInteraction;
      ui.current = u;
      try {
        // A recording plays through the same client: the gateway's playback socket answers
        // as the desktop did (no token there: the session cookie and recording rights count).
        const conn =
          target.kind === 'live'
            ? await api.desktopToken(target.desktop, target.login).then((t) => ({
                user: target.login,
                destination: t.destination,
                token: t.token,
                path: t.path,
              }))
            : {
                user: 'playback',
                destination: 'playback',
                token: 'playback',
                path: `/v1/ws/recordings/${encodeURIComponent(target.recording)}/desktop?speed=${target.speed}`,
              };
        const config = u
          .configBuilder()
          .withUsername(conn.user)
          .withPassword('')
          .withDestination(conn.destination)
          .withProxyAddress(desktopSocketUrl(window.location, conn.path))
          .withAuthToken(conn.token)
          .withDesktopSize({
            width: Math.max(640, window.innerWidth),
            height: Math.max(480, window.innerHeight - 40),
          })
          // The gateway logs in for the user; the browser never runs CredSSP (it has no password).
          .withExtension(enableCredssp(false))
          .build();
        const session = await u.connect(config);
        if (stopped) return;
        u.setVisibility(true);
        u.setEnableClipboard(true);
        setStatus({ state: 'connected' });
        const end = await session.run();
        if (!stopped) setStatus({ state: 'ended', message: end.reason() || 'the desktop session ended' });
      } catch (e) {
        if (stopped) return;
        if (isIronError(e)) {
          // IronRDP's errors are wasm objects: turn them into text the error box can show.
          const detail = new Error(`${IRON_ERROR_KINDS[e.kind()] ?? 'General'}: ${e.backtrace()}`);
          setStatus({ state: 'error', message: explainDesktopError(e.rdcleanpathDetails()), error: detail });
          return;
        }
        setStatus({ state: 'error', message: 'the desktop could not be opened', error: e });
      }
    };
    el.addEventListener('ready', onReady);
    wasmReady ??= init('INFO');
    wasmReady.then(
      () => {
        if (!stopped) host.current?.appendChild(el);
      },
      (error: unknown) => setStatus({ state: 'error', message: 'the desktop client could not start', error }),
    );
    return () => {
      stopped = true;
      el.removeEventListener('ready', onReady);
      ui.current?.shutdown();
      el.remove();
    };
  }, [api, search]);

  if (!target) {
    return (
      <main className="narrow">
        <ErrorBox error={new Error('no desktop named: open one from the Resources page')} />
      </main>
    );
  }
  return (
    <main className="desktop-page" data-state={status.state}>
      <div className="desktop-bar">
        <strong>{desktopTitle(target)}</strong>
        {target.kind === 'live' ? (
          <>
            <button
              type="button"
              disabled={status.state !== 'connected'}
              onClick={() => ui.current?.ctrlAltDel()}
            >
              Ctrl+Alt+Del
            </button>
            <button
              type="button"
              disabled={status.state !== 'connected'}
              onClick={() => ui.current?.metaKey()}
            >
              Windows key
            </button>
          </>
        ) : null}
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
      {status.state === 'error' && status.error ? <ErrorBox error={status.error} /> : null}
      <div className="desktop-screen" ref={host} />
    </main>
  );
}
