/**
 * Session recordings: what interactive sessions (SSH shells, kubectl exec,
 * desktops) showed, with a timestamp on every event, written while the
 * session runs and playable while it is still being written.
 */

export type RecordingKind = 'ssh' | 'kube' | 'desktop';

/** One recorded event. `t` is milliseconds since the recording started. */
export type RecordingEvent =
  | { t: number; type: 'output'; data: Uint8Array }
  | { t: number; type: 'input'; data: Uint8Array }
  | { t: number; type: 'resize'; cols: number; rows: number }
  /** Something worth a line in the player: a join, a leave, the end reason. */
  | { t: number; type: 'marker'; text: string }
  /** What a desktop client did (keys, pointer), summarised: see `DesktopInput`. */
  | { t: number; type: 'desktop_input'; input: DesktopInput };

/** Mouse buttons a desktop client reports (RDP's three buttons and the two extended ones). */
export type DesktopButton = 'left' | 'right' | 'middle' | 'x1' | 'x2';

/**
 * A desktop client's input as a recording keeps it (decision 0025). Key
 * presses carry no key identity, as SSH recordings keep no keystrokes at all:
 * a password typed into the remote desktop must not be readable from the
 * recording. Only two keys that type nothing are named (the secure attention
 * sequence and the Windows key). Pointer moves are coalesced by the adapter.
 */
export type DesktopInput =
  | { kind: 'key'; special?: 'ctrl+alt+del' | 'windows' | undefined }
  | { kind: 'move'; x: number; y: number }
  | { kind: 'button'; button: DesktopButton; down: boolean; x: number; y: number }
  | { kind: 'wheel'; delta: number; horizontal: boolean; x: number; y: number }
  /** Events left out by the adapter's rate bound since the last one recorded. */
  | { kind: 'dropped'; n: number };

export interface RecordingMeta {
  session_id: string;
  kind: RecordingKind;
  /** Gatehouse user who owns the session. */
  user: string;
  /** Unix login / kube user / desktop login. */
  login?: string | undefined;
  /** Node, cluster or desktop name. */
  server: string;
  /** The command, when the session ran one (exec). */
  command?: string | undefined;
  /** ISO time of the first event (t = 0). */
  started: string;
  /** ISO time of the end; absent while the session is live. */
  ended?: string | undefined;
  cols: number;
  rows: number;
  /** Bytes of output recorded so far (for listings). */
  output_bytes?: number | undefined;
  /** Bytes on disk (compressed chunks), set at the end. */
  stored_bytes?: number | undefined;
  /** Number of chunks, set at the end. */
  chunks?: number | undefined;
  /** The gateway that recorded it, when several share a store (PostgresRecordingStore). */
  gateway?: string | undefined;
  /** Set at the end when storing failed part-way: the recording is incomplete. */
  error?: string | undefined;
}

/**
 * What an adapter feeds for one session. Calls never block the session:
 * events are buffered and written as compressed chunks (at most one chunk
 * is lost if the process dies). A write failure is reported through
 * `onError` given at creation: the adapter must then end the session, since
 * an interactive session may not run unrecorded.
 */
export interface SessionRecorder {
  readonly sessionId: string;
  output(data: Uint8Array): void;
  input(data: Uint8Array): void;
  resize(cols: number, rows: number): void;
  marker(text: string): void;
  /** A desktop client's input (already summarised: no key identities). */
  desktopInput(input: DesktopInput): void;
  /** Flushes and marks the recording ended. Idempotent. */
  close(): Promise<void>;
  /**
   * Optional flow control for fast streams: true while the unwritten backlog
   * is above the high-water mark. An adapter that can pause its source
   * (e.g. stop reading from the target) should do so until `drain()`
   * resolves; one that ignores it still gets `onError` past the hard limit.
   */
  readonly needsDrain?: boolean;
  drain?(): Promise<void>;
}

export interface RecordingQuery {
  user?: string;
  kind?: RecordingKind;
  from?: string;
  to?: string;
  limit?: number;
}

export interface RecordingStore {
  create(
    meta: Omit<RecordingMeta, 'started' | 'ended' | 'output_bytes'>,
    opts?: { onError?: (err: Error) => void },
  ): Promise<SessionRecorder>;
  list(q?: RecordingQuery): Promise<RecordingMeta[]>;
  get(sessionId: string): Promise<RecordingMeta | undefined>;
  /**
   * Events in order. With `follow`, keeps yielding new events of a live
   * recording until it ends (or the signal aborts).
   */
  read(sessionId: string, opts?: { follow?: boolean; signal?: AbortSignal }): AsyncIterable<RecordingEvent>;
  /**
   * Finalizes recordings a dead process left live (its end, `error: reason`);
   * returns their session ids. Stores without live state need not have it.
   */
  recover?(reason: string): Promise<string[]>;
  /**
   * Throws unless `read` can give the whole recording from here (a shared
   * store: one another gateway has not uploaded yet). Called before a
   * playback starts streaming, so the refusal is a proper error answer.
   */
  assertReadable?(sessionId: string): Promise<void>;
  /**
   * Removes a finished recording for good (retention, `gatehouse recordings
   * rm`); false when there was none. The caller audits it first.
   */
  delete(sessionId: string): Promise<boolean>;
  close(): Promise<void>;
}
