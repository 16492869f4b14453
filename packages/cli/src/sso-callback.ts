import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { GatehouseError, type SsoStartResponse } from '@gatehouse/core';

/** How long the CLI waits for the browser to come back (the gateway's attempt lasts 10 minutes). */
const WAIT_MS = 10 * 60_000;
const PATH = '/callback';

export interface SsoCallback {
  /** http://127.0.0.1:PORT/callback: where the gateway sends the browser with the one-time code. */
  redirectUrl: string;
  /** base64url SHA-256 of the verifier: the gateway binds the code to it. */
  challenge: string;
  /** Known only to this process: redeeming the code needs it. */
  verifier: string;
  /** The code the browser brought (or the gateway's error, thrown). */
  code: Promise<string>;
  close(): void;
}

const page = (title: string, body: string) =>
  `<!doctype html><meta charset="utf-8"><title>${title}</title><body style="font-family:sans-serif;margin:3em"><h1>${title}</h1><p>${body}</p>`;

const escapeHtml = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

/**
 * The loopback listener of an SSO login (like `tsh login`): a random port on
 * 127.0.0.1 that takes exactly one callback. The gateway redirects the
 * browser here with a one-time code, which is worth nothing without the
 * verifier that never leaves this process (nor without the private keys
 * the certificates are issued for).
 */
export async function listenForSsoCallback(): Promise<SsoCallback> {
  const verifier = randomBytes(32).toString('base64url');
  const challenge = createHash('sha256').update(verifier).digest('base64url');
  let settle: { resolve: (c: string) => void; reject: (e: Error) => void } | undefined;
  const code = new Promise<string>((resolve, reject) => {
    settle = { resolve, reject };
  });
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    if (req.method !== 'GET' || url.pathname !== PATH || !settle) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
      return;
    }
    const s = settle;
    settle = undefined;
    const err = url.searchParams.get('error');
    const c = url.searchParams.get('code');
    if (err || !c) {
      const message = url.searchParams.get('message') ?? 'the gateway sent no code';
      res
        .writeHead(200, { 'content-type': 'text/html; charset=utf-8' })
        .end(page('Login failed', `${escapeHtml(message)}<br>See the terminal for what to do next.`));
      s.reject(
        new GatehouseError(
          (err && /^GH_ERR_[A-Z_]+$/.test(err) ? err : 'GH_ERR_SSO_IDP_ERROR') as 'GH_ERR_SSO_IDP_ERROR',
          message,
          { hint: 'run the login again; if it keeps failing, ask an admin (gatehouse sso test NAME)' },
        ),
      );
      return;
    }
    res
      .writeHead(200, { 'content-type': 'text/html; charset=utf-8' })
      .end(page('Login successful', 'You can close this window and return to the terminal.'));
    s.resolve(c);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  const timer = setTimeout(() => {
    settle?.reject(
      new GatehouseError('GH_ERR_SSO_STATE_INVALID', 'the browser did not come back within 10 minutes', {
        hint: 'run the login again and finish it in the browser',
      }),
    );
    settle = undefined;
  }, WAIT_MS);
  timer.unref();
  return {
    redirectUrl: `http://127.0.0.1:${port}${PATH}`,
    challenge,
    verifier,
    code,
    close() {
      clearTimeout(timer);
      server.closeAllConnections();
      server.close();
    },
  };
}

/** Opens the login URL in a browser (unless `browser` is "none"), and always prints it. */
export function openBrowser(
  start: SsoStartResponse,
  browser: string | undefined,
  err: (s: string) => void,
): void {
  err(`If the browser does not open, visit this URL to log in:\n\n  ${start.auth_url}\n\n`);
  if (browser === 'none') return;
  const cmd = browser ?? (process.platform === 'darwin' ? 'open' : 'xdg-open');
  const child = spawn(cmd, [start.auth_url], { stdio: 'ignore', detached: true });
  // No browser here (a server, a container): the URL printed above is the way in.
  child.on('error', (e) => err(`(could not start ${cmd}: ${e.message})\n`));
  child.unref();
}
