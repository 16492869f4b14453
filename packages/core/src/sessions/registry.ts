import type { Joiner, TerminalHandle, TerminalViewer } from './terminal.js';

/** A live session as `gatehouse sessions ls` shows it. */
export interface LiveSessionInfo {
  id: string;
  kind: 'ssh' | 'kube' | 'db' | 'desktop';
  /** Gatehouse user who owns the session. */
  user: string;
  login?: string | undefined;
  /** Node, database, cluster or desktop name. */
  server: string;
  /** ISO time the session started. */
  started: string;
  remoteAddr?: string | undefined;
  /** A pty shell (recorded) rather than a command, file transfer or forward. */
  interactive?: boolean | undefined;
  command?: string | undefined;
}

/** What the adapter that owns a session lets core do to it. */
export interface LiveSessionControl {
  /**
   * Attaches a second viewer to the session's terminal (core has authorized
   * and audits the join). Absent, or throwing GatehouseError, when the
   * session has no terminal to share (a command, a file transfer).
   */
  join?(joiner: Joiner, viewer: TerminalViewer): TerminalHandle;
  /** Ends the session now, telling the user `reason`; the adapter audits the end. */
  terminate(reason: string): void;
  /** Access may have changed (a lock appeared): re-check it and end the session if it is gone. */
  recheck(): void;
}

/**
 * Live sessions of ONE gateway process, so an admin can list and end them
 * and a new lock reaches sessions that are already running. Adapters
 * register each session for as long as it runs.
 */
export class SessionRegistry {
  readonly #live = new Map<string, { info: LiveSessionInfo; control: LiveSessionControl }>();

  /** Returns the function that unregisters the session (call it once the session ended). */
  register(info: LiveSessionInfo, control: LiveSessionControl): () => void {
    const entry = { info: { ...info }, control };
    this.#live.set(info.id, entry);
    return () => {
      if (this.#live.get(info.id) === entry) this.#live.delete(info.id);
    };
  }

  list(): LiveSessionInfo[] {
    return [...this.#live.values()]
      .map((e) => ({ ...e.info }))
      .sort((a, b) => a.started.localeCompare(b.started));
  }

  get(id: string): LiveSessionInfo | undefined {
    const e = this.#live.get(id);
    return e ? { ...e.info } : undefined;
  }

  /** Adds what the adapter learned after registering (a pty shell started: `interactive`). */
  update(id: string, patch: Pick<Partial<LiveSessionInfo>, 'interactive' | 'command'>): void {
    const e = this.#live.get(id);
    if (e) Object.assign(e.info, patch);
  }

  /** The control of a live session (core's join endpoint), or undefined. */
  control(id: string): LiveSessionControl | undefined {
    return this.#live.get(id)?.control;
  }

  /** Ends one session; false when no such session runs here. */
  kill(id: string, reason: string): boolean {
    const e = this.#live.get(id);
    if (!e) return false;
    e.control.terminate(reason);
    return true;
  }

  /** Asks every session to re-check its access (called when locks change). */
  recheckAll(): void {
    for (const e of this.#live.values()) e.control.recheck();
  }

  get size(): number {
    return this.#live.size;
  }
}
