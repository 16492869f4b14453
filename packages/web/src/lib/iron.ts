import '@devolutions/iron-remote-desktop';
import type { IronError, UserInteraction } from '@devolutions/iron-remote-desktop';
import { Backend, enableCredssp, init } from '@devolutions/iron-remote-desktop-rdp';
import { ReplaySocket } from './desktop-player';

/**
 * The IronRDP web component, shared by the live desktop tab and the desktop
 * player: one element per client session, the wasm module loaded once.
 */

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

export function isIronError(e: unknown): e is IronError {
  return typeof e === 'object' && e !== null && typeof (e as IronError).kind === 'function';
}

/** IronRDP's errors are wasm objects: as an Error the error box can show. */
export function ironErrorDetail(e: IronError): Error {
  return new Error(`${IRON_ERROR_KINDS[e.kind()] ?? 'General'}: ${e.backtrace()}`);
}

/**
 * Puts a new `<iron-remote-desktop>` into `host` once the wasm module is
 * loaded and calls `onReady` with its interaction handle. Returns the
 * cleanup (shuts the client down and removes the element).
 */
export function mountIron(
  host: HTMLElement,
  onReady: (u: UserInteraction) => void,
  onLoadError: (error: unknown) => void,
): () => void {
  let stopped = false;
  let ui: UserInteraction | undefined;
  const el = document.createElement('iron-remote-desktop') as HTMLElement & { module?: unknown };
  el.module = Backend;
  el.setAttribute('scale', 'fit');
  el.setAttribute('flexcenter', 'true');
  el.setAttribute('verbose', 'false');
  const ready = (ev: Event) => {
    ui = (ev as CustomEvent<{ irgUserInteraction: UserInteraction }>).detail.irgUserInteraction;
    if (!stopped) onReady(ui);
  };
  el.addEventListener('ready', ready);
  wasmReady ??= init('INFO');
  wasmReady.then(
    () => {
      if (!stopped) host.appendChild(el);
    },
    (error: unknown) => {
      if (!stopped) onLoadError(error);
    },
  );
  return () => {
    stopped = true;
    el.removeEventListener('ready', ready);
    ui?.shutdown();
    el.remove();
  };
}

/** Where and how the client connects: the gateway's RDCleanPath route, or a replay. */
export interface IronTarget {
  user: string;
  destination: string;
  token: string;
  url: string;
}

/** The remote desktop size for this window: all of it but the bar, never below 640x480. */
export function desktopSizeForWindow(): { width: number; height: number } {
  return { width: Math.max(640, window.innerWidth), height: Math.max(480, window.innerHeight - 40) };
}

/** Connects the element's client; the gateway logs in for the user, so the browser never runs CredSSP. */
export function connectIron(u: UserInteraction, t: IronTarget) {
  const config = u
    .configBuilder()
    .withUsername(t.user)
    .withPassword('')
    .withDestination(t.destination)
    .withProxyAddress(t.url)
    .withAuthToken(t.token)
    .withDesktopSize(desktopSizeForWindow())
    .withExtension(enableCredssp(false))
    .build();
  return u.connect(config);
}

/** The host of replay addresses: reserved (RFC 6761), so nothing could ever answer one. */
const REPLAY_PREFIX = 'wss://gatehouse-replay.invalid/';
const replays = new Map<string, (s: ReplaySocket) => void>();
let replaySeq = 0;

/**
 * A WebSocket address that, opened by IronRDP, gives a ReplaySocket to
 * `attach` instead of a network connection. The first use of it installs
 * the interception: a Proxy around the page's WebSocket constructor that
 * passes every other address to the real one.
 */
export function replayAddress(attach: (s: ReplaySocket) => void): string {
  if (!replays.size && !(window.WebSocket as { replaying?: boolean }).replaying) {
    const Real = window.WebSocket;
    const proxy = new Proxy(Real, {
      construct(target, args, newTarget) {
        const url = String(args[0]);
        const take = replays.get(url);
        if (!take) return Reflect.construct(target, args, newTarget);
        replays.delete(url);
        const s = new ReplaySocket(url);
        take(s);
        return s;
      },
      get(target, prop, receiver) {
        return prop === 'replaying' ? true : Reflect.get(target, prop, receiver);
      },
    });
    window.WebSocket = proxy;
  }
  const url = `${REPLAY_PREFIX}${++replaySeq}`;
  replays.set(url, attach);
  return url;
}
