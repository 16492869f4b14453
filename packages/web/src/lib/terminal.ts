/**
 * The web terminal's pure parts: where a tab's WebSocket goes, what the
 * server's text frames mean (docs/web-terminal-protocol.md), the Alt+digit
 * tab keys, and what a tab says when its session is over. The page
 * (pages/terminal.tsx) wires these to xterm.js and the DOM.
 */

import { fillPath } from '../api/client';
import {
  type JoinMode,
  TERMINAL_WS_CLOSE,
  TERMINAL_WS_PATHS,
  type TerminalClientFrame,
  type TerminalServerFrame,
} from '../api/routes';

/** What a tab is attached to: a new shell on a node, or a live session joined. */
export type TabTarget =
  /** `mfaToken`: the single-use proof of a per-session MFA check for this node and login (require_session_mfa). */
  | { kind: 'shell'; node: string; login: string; mfaToken?: string | undefined }
  | { kind: 'join'; session: string; mode: JoinMode };

/** The same-origin WebSocket URL for a tab (the session cookie authenticates it). */
export function socketUrl(
  loc: { protocol: string; host: string },
  target: TabTarget,
  size: { cols: number; rows: number },
): string {
  const scheme = loc.protocol === 'http:' ? 'ws:' : 'wss:';
  if (target.kind === 'join') {
    const q = new URLSearchParams({ mode: target.mode });
    return `${scheme}//${loc.host}${fillPath(TERMINAL_WS_PATHS.join, { id: target.session })}?${q}`;
  }
  const q = new URLSearchParams({
    node: target.node,
    login: target.login,
    cols: String(size.cols),
    rows: String(size.rows),
  });
  if (target.mfaToken) q.set('mfa_token', target.mfaToken);
  return `${scheme}//${loc.host}${TERMINAL_WS_PATHS.terminal}?${q}`;
}

/** The terminal page's own URL for a target, for links that open it in a new browser tab. */
export function terminalPageUrl(target?: TabTarget): string {
  if (!target) return '/web/terminal';
  const q =
    target.kind === 'shell'
      ? new URLSearchParams({ node: target.node, login: target.login })
      : new URLSearchParams({ join: target.session, mode: target.mode });
  return `/web/terminal?${q}`;
}

/** The tab the terminal page opens with, from its query string (none when it names nothing valid). */
export function targetFromSearch(search: URLSearchParams): TabTarget | undefined {
  const join = search.get('join');
  if (join) {
    const mode = search.get('mode');
    return { kind: 'join', session: join, mode: mode === 'peer' ? 'peer' : 'observer' };
  }
  const node = search.get('node');
  const login = search.get('login');
  if (node && login) return { kind: 'shell', node, login };
  return undefined;
}

/** A tab's label before the server has said more. */
export function targetTitle(target: TabTarget): string {
  return target.kind === 'shell' ? `${target.login}@${target.node}` : `join ${target.session}`;
}

/** The resize frame a viewer sends when its window changes. */
export function resizeFrame(cols: number, rows: number): string {
  const f: TerminalClientFrame = { type: 'resize', cols, rows };
  return JSON.stringify(f);
}

/** The key fields of a KeyboardEvent that matter for tab switching. */
export interface KeyLike {
  altKey: boolean;
  ctrlKey: boolean;
  metaKey: boolean;
  shiftKey: boolean;
  code: string;
  key: string;
}

/**
 * Alt+1..9 selects a tab: the 0-based index, or undefined for any other key.
 * The physical key (code) counts, so layouts where Alt changes the character
 * (or digits need Shift, as on AZERTY) still work.
 */
export function altDigit(e: KeyLike): number | undefined {
  if (!e.altKey || e.ctrlKey || e.metaKey) return undefined;
  const m = /^(?:Digit|Numpad)([1-9])$/.exec(e.code) ?? (e.shiftKey ? null : /^([1-9])$/.exec(e.key));
  return m ? Number(m[1]) - 1 : undefined;
}

/** How a tab's session is over, as the tab shows it. `close` = the tab goes away on its own. */
export interface Ending {
  close: boolean;
  /** One line, e.g. "Session ended: locked by admin". */
  message: string;
  hint?: string | undefined;
  code?: string | undefined;
}

/**
 * Everything the server said before the socket closed, and how it closed:
 * the tab's last words. A clean shell exit (code 0, no reason) closes the
 * tab; anything else stays on screen with why.
 */
export function describeEnd(
  last: Extract<TerminalServerFrame, { type: 'end' | 'error' }> | undefined,
  close: { code: number; reason: string; opened: boolean },
  role: 'owner' | JoinMode,
): Ending {
  if (last?.type === 'error') {
    return { close: false, message: last.message, hint: last.hint, code: last.code };
  }
  if (last?.type === 'end') {
    if (last.reason) return { close: false, message: `Session ended: ${last.reason}` };
    if (last.exit_code === undefined || last.exit_code === 0) {
      // A joiner keeps the tab: the owner's shell exiting is news to them.
      return role === 'owner'
        ? { close: true, message: 'The shell exited.' }
        : { close: false, message: 'The session ended: its shell exited.' };
    }
    return { close: false, message: `The shell exited with status ${last.exit_code}.` };
  }
  if (!close.opened) {
    // A refused upgrade reaches a browser only as close code 1006, never its HTTP answer.
    return {
      close: false,
      message: 'The gateway refused the terminal connection.',
      hint:
        'you may not be allowed this node, login or session, the session may have ended, or you are ' +
        'signed out; the audit log has the reason',
    };
  }
  const why = close.reason ? `: ${close.reason}` : '';
  switch (close.code) {
    case TERMINAL_WS_CLOSE.policy:
      return { close: false, message: `The gateway closed the terminal: it refused a message${why}.` };
    case TERMINAL_WS_CLOSE.tooBig:
      return { close: false, message: 'The gateway closed the terminal: a message was too large.' };
    case 1001:
      return {
        close: false,
        message: `The gateway is going away${why}.`,
        hint: 'open a new tab to reconnect',
      };
    default:
      return {
        close: false,
        message: `The connection to the gateway was lost (code ${close.code}${why}).`,
        hint: 'check your network and that the gateway runs, then open a new tab; the shell on the node has ended',
      };
  }
}

/** A login a form can use as is: node logins may be role patterns (`dev-*`, `{{internal.logins}}`). */
export function concreteLogins(logins: readonly string[] | undefined): string[] {
  return [...new Set((logins ?? []).filter((l) => l !== '' && !/[*?{}^$[\]]/.test(l)))];
}

/** A path on a node for the files API: as typed, trimmed; relative paths are in the login's home. */
export function cleanRemotePath(path: string): string | undefined {
  const p = path.trim();
  return p === '' || p.endsWith('/') ? undefined : p;
}

/** The name a downloaded file gets: the last path segment. */
export function baseName(path: string): string {
  return path.split('/').filter(Boolean).pop() ?? 'download';
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(1)} MiB`;
  return `${(n / 1024 ** 3).toFixed(2)} GiB`;
}

/** "3.0 KiB of 12.0 KiB (25%)", or just the bytes so far when the total is unknown. */
export function formatProgress(done: number, total: number | undefined): string {
  if (total === undefined || total <= 0) return formatBytes(done);
  return `${formatBytes(done)} of ${formatBytes(total)} (${Math.floor((done / total) * 100)}%)`;
}

/**
 * Which join buttons to show for other users' sessions, from the user's
 * roles (deny wins, as in core's checkJoin). Only a hint for the page: core
 * decides on every join and refuses what the roles do not allow.
 */
export function joinModesOf(
  roles: readonly { allow: { join_sessions?: JoinMode[] }; deny: { join_sessions?: JoinMode[] } }[],
): JoinMode[] {
  return (['observer', 'peer'] as const).filter(
    (m) =>
      roles.some((r) => r.allow.join_sessions?.includes(m)) &&
      !roles.some((r) => r.deny.join_sessions?.includes(m)),
  );
}
