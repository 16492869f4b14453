/** The desktop API's wire shapes, importable without the server side (the browser, the CLI client). */

export interface DesktopTokenView {
  /** The RDCleanPath proxy_auth value: single use, for this user, desktop and login. */
  token: string;
  /** The RDCleanPath destination the token is bound to (the desktop name). */
  destination: string;
  expires: string;
  /** Path of the RDCleanPath WebSocket on this gateway. */
  path: string;
}

export const DESKTOP_WS_PATH = '/v1/ws/desktop';
