import type { Readable } from 'node:stream';
import type { Identity } from '../identity/types.js';
import type { ClientTicket } from '../pki/credentials.js';
import type { JoinMode } from '../rbac/types.js';

export type { JoinMode };

/**
 * One viewer's end of a live terminal (a web terminal tab, `gatehouse join`):
 * what the session sends TO the viewer. Transport-free; core maps it onto a
 * WebSocket (docs/web-terminal-protocol.md).
 */
export interface TerminalViewer {
  /** Terminal output for the viewer's screen. */
  output(data: Uint8Array): void;
  /** The session's terminal size (on attach, and whenever the owner resizes). */
  resize(cols: number, rows: number): void;
  /**
   * The session is over for this viewer: the shell exited (`exitCode`), the
   * gateway ended it (`reason`: lock, expiry, kill), or the node went away.
   * No call follows.
   */
  end(info: { reason?: string | undefined; exitCode?: number | undefined }): void;
}

/** What a viewer sends INTO the session, returned when it attaches. */
export interface TerminalHandle {
  /** The live session this handle belongs to (as `gatehouse sessions ls` lists it). */
  readonly sessionId: string;
  /** Keystrokes; an observer's are dropped by the session. */
  input(data: Uint8Array): void;
  /** The viewer's window size; the session's pty follows its owner only. */
  resize(cols: number, rows: number): void;
  /** The viewer left (closed the tab, the socket dropped). Idempotent. */
  detach(): void;
}

/** Who joins a session, already authorized by core. */
export interface Joiner {
  user: string;
  mode: JoinMode;
  remoteAddr: string;
}

/** A request for a new interactive shell from a caller that is not an SSH client. */
export interface TerminalRequest {
  /** The caller, authenticated by core (web session or client certificate). */
  identity: Identity;
  /** Core's word that the caller may log in to the gateway's SSH proxy as `login` (for a client certificate). */
  ticket: ClientTicket;
  node: string;
  login: string;
  cols: number;
  rows: number;
  remoteAddr: string;
}

/** A file on a node, read or written by a caller that is not an SSH client. */
export interface FileRequest {
  identity: Identity;
  /** As TerminalRequest.ticket. */
  ticket: ClientTicket;
  node: string;
  login: string;
  /** Absolute, or relative to the login's home directory. */
  path: string;
  remoteAddr: string;
}

/**
 * Shells and files on nodes for the web terminal, provided by the SSH
 * adapter. Every call goes through the same authorization, audit and
 * recording as an OpenSSH client's session (the adapter decides nothing
 * itself; it calls core's Authorizer). Failures reject with GatehouseError.
 */
export interface TerminalService {
  /** Opens a pty shell; resolves once it runs (the live session is registered by then). */
  open(req: TerminalRequest, viewer: TerminalViewer): Promise<TerminalHandle>;
  /** Downloads a file (audited like an SFTP read). */
  readFile(req: FileRequest): Promise<{ size: number; stream: Readable }>;
  /** Uploads a file, replacing it (audited like an SFTP write); resolves with the bytes written. */
  writeFile(req: FileRequest, body: Readable): Promise<{ bytes: number }>;
}

/** The one slot for a TerminalService: the SSH adapter fills it in register(). */
export class TerminalRegistry {
  #service: TerminalService | undefined;

  provide(service: TerminalService): void {
    if (this.#service) throw new Error('a terminal service is already registered');
    this.#service = service;
  }

  /** The service, or undefined when no SSH adapter runs in this gateway. */
  get(): TerminalService | undefined {
    return this.#service;
  }
}
