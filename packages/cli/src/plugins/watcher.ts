import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import type { AccessRequestView, AdminApi } from '@gatehouse/core';

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
 * "Plugins"): it watches access requests through the API as its bot user,
 * tells its tool about each new request and each change of state, and
 * remembers what it told (a state file written after every post), so a
 * restart does not post twice and a tool that was down gets what it missed.
 * Plugins only translate: reviews go back through the API, where core
 * decides.
 */
export interface NotifyTarget {
  /**
   * Tells the tool about `r`; `prev` is what this plugin told it before
   * (its reference, e.g. a Slack message ts), undefined for a new request.
   * Returns the reference to keep. Throws when the tool is unreachable:
   * the change is tried again next round.
   */
  notify(r: AccessRequestView, prev: Posted | undefined): Promise<string | undefined>;
}

export interface Posted {
  state: AccessRequestView['state'];
  /** Reviews already told (a pending request with a new approval is an update too). */
  reviews: number;
  ref?: string | undefined;
}

/** Per request id: what was last posted. */
export type PluginState = Record<string, Posted>;

export function readState(file: string): PluginState {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as PluginState;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw e;
  }
}

/** Written whole and renamed into place: a crash leaves the old state or the new one, never half. */
function writeState(file: string, state: PluginState): void {
  writeFileSync(`${file}.tmp`, JSON.stringify(state), { mode: 0o600 });
  renameSync(`${file}.tmp`, file);
}

export interface WatcherOptions {
  /** The API as the plugin's bot user (a fresh client each round picks up a renewed login). */
  api: () => { api: Pick<AdminApi, 'listAccessRequests'>; close(): void };
  target: NotifyTarget;
  stateFile: string;
  pollMs: number;
  log: (msg: string) => void;
}

/** Polls requests and notifies; `stop()` ends it after the round in flight. */
export class RequestWatcher {
  readonly #o: WatcherOptions;
  #state: PluginState;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;
  #round: Promise<void> | undefined;

  constructor(o: WatcherOptions) {
    this.#o = o;
    this.#state = readState(o.stateFile);
  }

  start(): void {
    const tick = () => {
      if (this.#stopped) return;
      this.#round = this.round().finally(() => {
        if (!this.#stopped) this.#timer = setTimeout(tick, this.#o.pollMs);
      });
    };
    tick();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#round;
  }

  /** One pass: every request whose state or reviews changed since it was last told. */
  async round(): Promise<void> {
    let c: ReturnType<WatcherOptions['api']> | undefined;
    try {
      c = this.#o.api();
      const all = await c.api.listAccessRequests();
      for (const r of all.slice().reverse()) {
        const prev = this.#state[r.id];
        if (prev && prev.state === r.state && prev.reviews === r.reviews.length) continue;
        // Closed before this plugin ever saw it (e.g. installed later): nothing to tell.
        if (!prev && r.state !== 'pending') continue;
        const ref = await this.#o.target.notify(r, prev);
        this.#state[r.id] = { state: r.state, reviews: r.reviews.length, ref: ref ?? prev?.ref };
        writeState(this.#o.stateFile, this.#state);
      }
      // Requests the gateway no longer keeps are forgotten here too.
      const listed = new Set(all.map((r) => r.id));
      const gone = Object.keys(this.#state).filter((id) => !listed.has(id));
      for (const id of gone) delete this.#state[id];
      if (gone.length > 0) writeState(this.#o.stateFile, this.#state);
    } catch (e) {
      this.#o.log(`access request watch: ${(e as Error).message} (trying again)`);
    } finally {
      c?.close();
    }
  }
}
