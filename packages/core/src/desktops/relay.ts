import type { Duplex } from 'node:stream';
import type { Grant } from '../authz/grant.js';

/**
 * One browser WebSocket on the RDCleanPath route, authenticated by core
 * (web session, Origin) before the 101. The adapter speaks RDCleanPath on it
 * and asks core to redeem the token the request carries.
 */
export interface DesktopConnection {
  /** The WebSocket as bytes: every write is one binary message; messages arrive as chunks. */
  socket: Duplex;
  /** The signed-in Gatehouse user. */
  user: string;
  remoteAddr: string;
  /**
   * Closes the WebSocket with a close frame (after what was written); the
   * socket is dropped if the browser does not answer in time. Destroying
   * `socket` alone would leave the WebSocket open until the peer gives up.
   */
  close(reason: string): void;
  /** Core's check of the RDCleanPath proxy_auth: the Grant, or a rejection (GH_ERR_ACCESS_DENIED, audited). */
  redeem(token: string, destination: string): Promise<Grant>;
}

/** What the RDP adapter offers core's WebSocket route. */
export interface DesktopRelay {
  open(conn: DesktopConnection): void;
}

/** The one slot for a DesktopRelay: the RDP adapter fills it in register(). */
export class DesktopRelayRegistry {
  #relay: DesktopRelay | undefined;

  provide(relay: DesktopRelay): void {
    if (this.#relay) throw new Error('a desktop relay is already registered');
    this.#relay = relay;
  }

  get(): DesktopRelay | undefined {
    return this.#relay;
  }
}
