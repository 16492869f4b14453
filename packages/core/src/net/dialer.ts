import net from 'node:net';
import { GatehouseError } from '../errors.js';

export interface DialTarget {
  host: string;
  port: number;
}

/**
 * How adapters reach targets. Never raw net.connect in an adapter: a reverse
 * tunnel from an agent will implement this same interface.
 */
export interface Dialer {
  dial(target: DialTarget, opts?: { signal?: AbortSignal; timeoutMs?: number }): Promise<net.Socket>;
}

/** Plain TCP with a connect timeout. */
export const directDialer: Dialer = {
  dial(target, opts = {}) {
    const timeoutMs = opts.timeoutMs ?? 10_000;
    return new Promise((resolve, reject) => {
      const sock = net.connect({ host: target.host, port: target.port, noDelay: true });
      const fail = (err: Error) => {
        cleanup();
        sock.destroy();
        reject(
          new GatehouseError(
            'GH_ERR_UPSTREAM_UNAVAILABLE',
            `cannot reach ${target.host}:${target.port}: ${err.message}`,
            {
              cause: err,
              hint: 'check that the target is running and reachable from the gateway',
            },
          ),
        );
      };
      const timer = setTimeout(() => fail(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
      const onAbort = () => fail(new Error('aborted'));
      const cleanup = () => {
        clearTimeout(timer);
        opts.signal?.removeEventListener('abort', onAbort);
        sock.off('error', fail);
      };
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      sock.once('error', fail);
      sock.once('connect', () => {
        cleanup();
        resolve(sock);
      });
    });
  },
};
