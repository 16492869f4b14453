import { type CertFiles, type ClientRun, runClient, userCert } from '../../core/test/helpers.js';

// Shared with the other database adapters' tests (core/test/helpers.ts).
export { type CertFiles, userCert };

export type Run = ClientRun;

export function conninfo(o: Record<string, string | number | undefined>): string {
  return Object.entries(o)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `${k}='${String(v).replace(/['\\]/g, '\\$&')}'`)
    .join(' ');
}

/** Runs the real psql; `onSpawn` gets the child (e.g. to send SIGINT). */
export function psql(args: string[], opts: Parameters<typeof runClient>[2] = {}): Promise<Run> {
  return runClient('psql', ['-X', '-v', 'ON_ERROR_STOP=1', ...args], {
    timeoutMs: 45_000,
    ...opts,
    env: { PGCONNECT_TIMEOUT: '20', ...opts.env },
  });
}
