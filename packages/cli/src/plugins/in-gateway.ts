import type { Gateway, PluginConfigEntry } from '@gatehouse/core';
import { GatehouseError } from '@gatehouse/core';
import { KINDS, type Kind, type PluginApi, pluginConfig, startPluginParts } from '../commands/plugin.js';

/** The first wait after a plugin failed to start; it doubles up to MAX_BACKOFF_MS. */
const FIRST_BACKOFF_MS = 1000;
const MAX_BACKOFF_MS = 60_000;

export interface GatewayPlugins {
  stop(): Promise<void>;
}

/**
 * The gateway config's `plugins:` (docs/decisions/0036-access-requests.md):
 * the same plugin code as `gatehouse plugin run`, in the gateway's process.
 * Each acts as its configured user through core's authorized API
 * (`gw.authorizedAdmin(user)`, `gw.watchAccessRequests(user, ...)`), so
 * its roles are checked on every call as a bot's certificate is: no
 * shortcut around core. A plugin that fails to start (its callback port
 * taken, its state file unreadable) is started again after a backoff
 * (1 s doubling to 60 s); the watch inside it reconnects by itself.
 * The sections are checked first: a bad one stops `gatehouse start`.
 */
export function startGatewayPlugins(
  gw: Pick<Gateway, 'authorizedAdmin' | 'watchAccessRequests'>,
  entries: readonly PluginConfigEntry[],
  base: string,
  log: (msg: string) => void,
): GatewayPlugins {
  const configs = entries.map((e, i) => {
    const kinds = KINDS.filter((k) => e[k] !== undefined);
    if (kinds.length !== 1) {
      throw new GatehouseError(
        'GH_ERR_CONFIG_INVALID',
        `plugins[${i}]: needs exactly one of ${KINDS.join(', ')} (has ${kinds.join(', ') || 'none'})`,
        { hint: 'one plugin per entry; see gatehouse plugin run --help for its keys' },
      );
    }
    const kind = kinds[0] as Kind;
    return { kind, user: e.user, cfg: pluginConfig(e, kind, base, `plugins[${i}] (${kind})`) };
  });
  const stop = new AbortController();
  const loops = configs.map(({ kind, user, cfg }) => {
    const name = `${kind} (as ${user})`;
    const api: PluginApi = () => ({
      api: {
        listAccessRequests: () => gw.authorizedAdmin(user).listAccessRequests(),
        reviewAccessRequest: (id, req) => gw.authorizedAdmin(user).reviewAccessRequest(id, req),
        watchAccessRequests: (after, signal) => gw.watchAccessRequests(user, after, signal ?? stop.signal),
      },
      close: () => {},
    });
    const say = (m: string) => log(`plugin ${name}: ${m}`);
    return (async () => {
      let wait = FIRST_BACKOFF_MS;
      while (!stop.signal.aborted) {
        let running: Awaited<ReturnType<typeof startPluginParts>>;
        try {
          running = await startPluginParts(cfg, api, say);
        } catch (e) {
          say(`did not start: ${(e as Error).message} (trying again in ${wait} ms)`);
          await sleep(wait, stop.signal);
          wait = Math.min(wait * 2, MAX_BACKOFF_MS);
          continue;
        }
        say(
          running.callbacks
            ? `running; callbacks on port ${running.callbacks.port}${running.path}`
            : 'running',
        );
        await sleep(Number.POSITIVE_INFINITY, stop.signal);
        await running.stop();
      }
    })();
  });
  return {
    async stop() {
      stop.abort();
      await Promise.all(loops);
    },
  };
}

/** Resolves after `ms` or when `signal` aborts, whichever is first. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const t = Number.isFinite(ms) ? setTimeout(done, ms) : undefined;
    function done() {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done);
  });
}
