import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import type { AccessRequestChange, AccessRequestView, AdminApi } from '@gatehouse/core';

/** The one-line summary chat plugins post (and update) for a request. */
export function requestText(r: AccessRequestView): string {
  const what = [...r.roles, ...(r.resources ?? []).map((x) => `${x.kind}/${x.name}`)].join(', ');
  return `Access request ${r.id} from ${r.user} for ${what}: ${r.state}${r.reason ? ` (reason: ${r.reason})` : ''}`;
}

/**
 * A review a person made in a tool, made by the plugin's bot user with the
 * person in `reason`; core decides. Core's refusal comes back as a message
 * for the person, not as an error.
 */
export async function reviewFromTool(
  api: () => { api: Pick<AdminApi, 'reviewAccessRequest'>; close(): void },
  id: string,
  verdict: 'approve' | 'deny',
  reason: string,
): Promise<{ ok: true; request: AccessRequestView } | { ok: false; message: string }> {
  const c = api();
  try {
    return { ok: true, request: await c.api.reviewAccessRequest(id, { verdict, reason }) };
  } catch (e) {
    return { ok: false, message: (e as Error).message };
  } finally {
    c.close();
  }
}

/**
 * What every notification plugin shares (docs/decisions/0036-access-requests.md
 * "Plugins"): it watches access requests through the API as its bot user
 * (the watch route, `GET /v1/requests/watch`), tells its tool about each new
 * request and each change of state, and remembers what it told and the
 * watch's cursor (a state file written after every post), so a restart
 * neither loses a change nor posts twice, and a tool that was down gets what
 * it missed. Plugins only translate: reviews go back through the API, where
 * core decides.
 */
export interface NotifyTarget {
  /**
   * Tells the tool about `r`; `prev` is what this plugin told it before
   * (its reference, e.g. a Slack message ts), undefined for a new request.
   * Returns the reference to keep. Throws when the tool is unreachable:
   * the change is tried again after the reconnect.
   */
  notify(r: AccessRequestView, prev: Posted | undefined): Promise<string | undefined>;
}

export interface Posted {
  state: AccessRequestView['state'];
  /** Reviews already told (a pending request with a new approval is an update too). */
  reviews: number;
  ref?: string | undefined;
}

/** What was last posted per request id, and the watch cursor of the last change handled. */
export interface PluginState {
  cursor: number;
  requests: Record<string, Posted>;
}

export function readState(file: string): PluginState {
  try {
    const v = JSON.parse(readFileSync(file, 'utf8')) as Partial<PluginState>;
    if (typeof v.cursor !== 'number' || typeof v.requests !== 'object' || v.requests === null) {
      throw new Error('not a plugin state file (no cursor and requests)');
    }
    return { cursor: v.cursor, requests: v.requests };
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { cursor: 0, requests: {} };
    throw new Error(`cannot read the plugin state file ${file}: ${(e as Error).message}`, { cause: e });
  }
}

/** Written whole and renamed into place: a crash leaves the old state or the new one, never half. */
function writeState(file: string, state: PluginState): void {
  writeFileSync(`${file}.tmp`, JSON.stringify(state), { mode: 0o600 });
  renameSync(`${file}.tmp`, file);
}

/** The API calls a watcher makes as its bot user. */
export interface WatchApi extends Pick<AdminApi, 'listAccessRequests'> {
  watchAccessRequests(after: number, signal?: AbortSignal): AsyncIterable<AccessRequestChange>;
}

export interface WatcherOptions {
  /** The API as the plugin's bot user (a fresh client per connection picks up a renewed login). */
  api: () => { api: WatchApi; close(): void };
  target: NotifyTarget;
  stateFile: string;
  /** The wait before reconnecting after the watch or the tool failed (doubling up to 30 s). */
  retryMs: number;
  log: (msg: string) => void;
}

const MAX_RETRY_MS = 30_000;

/**
 * Watches requests and notifies. Each connection starts with a resync (the
 * list of requests, so one forgotten by the gateway is forgotten here and a
 * change a failed post left untold is told), then follows the watch from
 * the saved cursor. `stop()` ends it.
 */
export class RequestWatcher {
  readonly #o: WatcherOptions;
  #state: PluginState;
  readonly #stop = new AbortController();
  #loop: Promise<void> | undefined;

  constructor(o: WatcherOptions) {
    this.#o = o;
    this.#state = readState(o.stateFile);
  }

  start(): void {
    this.#loop = this.#run();
  }

  async stop(): Promise<void> {
    this.#stop.abort();
    await this.#loop;
  }

  async #run(): Promise<void> {
    const signal = this.#stop.signal;
    let wait = this.#o.retryMs;
    while (!signal.aborted) {
      let c: ReturnType<WatcherOptions['api']> | undefined;
      try {
        c = this.#o.api();
        await this.resync(c.api);
        for await (const ch of c.api.watchAccessRequests(this.#state.cursor, signal)) {
          await this.#tell(ch.request, ch.cursor);
          wait = this.#o.retryMs;
        }
        if (!signal.aborted) this.#o.log('access request watch: the gateway closed it (reconnecting)');
      } catch (e) {
        if (signal.aborted) break;
        this.#o.log(`access request watch: ${(e as Error).message} (reconnecting in ${wait} ms)`);
      } finally {
        c?.close();
      }
      await new Promise<void>((r) => {
        const t = setTimeout(r, wait);
        signal.addEventListener('abort', () => {
          clearTimeout(t);
          r();
        });
      });
      wait = Math.min(wait * 2, MAX_RETRY_MS);
    }
  }

  /** Every listed request whose state or reviews changed since it was last told; forgets what is gone. */
  async resync(api: WatchApi): Promise<void> {
    const all = await api.listAccessRequests();
    for (const r of all.slice().reverse()) await this.#tell(r);
    const listed = new Set(all.map((r) => r.id));
    const gone = Object.keys(this.#state.requests).filter((id) => !listed.has(id));
    for (const id of gone) delete this.#state.requests[id];
    if (gone.length > 0) writeState(this.#o.stateFile, this.#state);
  }

  /** Tells the tool about `r` unless it was told this already; then the state (and cursor) is saved. */
  async #tell(r: AccessRequestView, cursor?: number): Promise<void> {
    const prev = this.#state.requests[r.id];
    const told = prev && prev.state === r.state && prev.reviews === r.reviews.length;
    // Closed before this plugin ever saw it (e.g. installed later): nothing to tell.
    if (!told && (prev || r.state === 'pending')) {
      const ref = await this.#o.target.notify(r, prev);
      this.#state.requests[r.id] = { state: r.state, reviews: r.reviews.length, ref: ref ?? prev?.ref };
    } else if (cursor === undefined || cursor <= this.#state.cursor) {
      return;
    }
    if (cursor !== undefined) this.#state.cursor = Math.max(this.#state.cursor, cursor);
    writeState(this.#o.stateFile, this.#state);
  }
}
