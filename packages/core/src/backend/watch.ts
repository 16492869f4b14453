import type { LogFn } from '../log.js';
import type { Backend, WatchEvent } from './types.js';

/**
 * Follows the changes under `prefix` until `signal` aborts: each one goes to
 * `onChange`. A watch that fails (the backend went away, a compacted
 * revision) is logged and started again a second later, and `onRestart` runs
 * first, so the caller re-reads what it follows in case a change was missed.
 */
export function watchPrefix(
  backend: Backend,
  prefix: string,
  signal: AbortSignal,
  onChange: (ev: WatchEvent) => void,
  onRestart: () => void,
  log: LogFn,
): void {
  void (async () => {
    while (!signal.aborted) {
      try {
        for await (const ev of backend.watch(prefix, { signal })) onChange(ev);
        return;
      } catch (err) {
        if (signal.aborted) return;
        log('error', `watching ${prefix} failed; restarting the watch`, err);
        onRestart();
        await new Promise((r) => setTimeout(r, 1000).unref());
      }
    }
  })();
}
