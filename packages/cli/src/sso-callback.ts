import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { type ErrorCode, GatehouseError } from '@gatehouse/core/lite';

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

/** A loopback listener that takes one callback from the browser. */
export interface LoopbackCallback<T> {
  /** http://127.0.0.1:PORT/callback: where the gateway sends the browser back to. */
  redirectUrl: string;
  /** What `accept` made of the callback's query (or the gateway's error, thrown). */
  result: Promise<T>;
  close(): void;
}

/**
 * A random port on 127.0.0.1 that takes exactly one callback (like `tsh
 * login`): an SSO login's one-time code, or a security key's answer from the
 * gateway's /web/mfa page. `?error=GH_ERR_...&message=...` rejects with that
 * error; anything else is handed to `accept`, whose throw rejects too.
 */
export async function listenForCallback<T>(opts: {
  accept: (query: URLSearchParams) => T;
  /** How long to wait for the browser, and what the wait ending says. */
  waitMs: number;
  timeout: () => GatehouseError;
  /** The code of an error the gateway sent without a valid one, and what to do next. */
  failure: { code: ErrorCode; hint: string };
  /** The titles of the page the browser shows after the callback. */
  titles: { ok: string; failed: string };
}): Promise<LoopbackCallback<T>> {
  let settle: { resolve: (v: T) => void; reject: (e: Error) => void } | undefined;
  const result = new Promise<T>((resolve, reject) => {
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
    const html = (title: string, body: string) =>
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(page(title, body));
    const err = url.searchParams.get('error');
    let value: T;
    try {
      if (err) {
        throw new GatehouseError(
          (/^GH_ERR_[A-Z_]+$/.test(err) ? err : opts.failure.code) as ErrorCode,
          url.searchParams.get('message') ?? 'the gateway sent an error',
          { hint: opts.failure.hint },
        );
      }
      value = opts.accept(url.searchParams);
    } catch (e) {
      html(
        opts.titles.failed,
        `${escapeHtml((e as Error).message)}<br>See the terminal for what to do next.`,
      );
      s.reject(e as Error);
      return;
    }
    html(opts.titles.ok, 'You can close this window and return to the terminal.');
    s.resolve(value);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  const timer = setTimeout(() => {
    settle?.reject(opts.timeout());
    settle = undefined;
  }, opts.waitMs);
  timer.unref();
  return {
    redirectUrl: `http://127.0.0.1:${port}${PATH}`,
    result,
    close() {
      clearTimeout(timer);
      server.closeAllConnections();
      server.close();
    },
  };
}

/**
 * The loopback listener of an SSO login. The gateway redirects the browser
 * here with a one-time code, which is worth nothing without the verifier
 * that never leaves this process (nor without the private keys the
 * certificates are issued for).
 */
export async function listenForSsoCallback(): Promise<SsoCallback> {
  const verifier = randomBytes(32).toString('base64url');
  const challenge = createHash('sha256').update(verifier).digest('base64url');
  const cb = await listenForCallback({
    accept: (q) => {
      const c = q.get('code');
      if (!c) {
        throw new GatehouseError('GH_ERR_SSO_IDP_ERROR', 'the gateway sent no code', { hint: SSO_RETRY });
      }
      return c;
    },
    waitMs: WAIT_MS,
    timeout: () =>
      new GatehouseError('GH_ERR_SSO_STATE_INVALID', 'the browser did not come back within 10 minutes', {
        hint: 'run the login again and finish it in the browser',
      }),
    failure: { code: 'GH_ERR_SSO_IDP_ERROR', hint: SSO_RETRY },
    titles: { ok: 'Login successful', failed: 'Login failed' },
  });
  return { redirectUrl: cb.redirectUrl, challenge, verifier, code: cb.result, close: cb.close };
}

const SSO_RETRY = 'run the login again; if it keeps failing, ask an admin (gatehouse sso test NAME)';

/** Opens `url` in a browser (unless `browser` is "none"), and always prints it ("... visit this URL to WHAT"). */
export function openBrowser(
  url: string,
  browser: string | undefined,
  err: (s: string) => void,
  what = 'log in',
): void {
  err(`If the browser does not open, visit this URL to ${what}:\n\n  ${url}\n\n`);
  if (browser === 'none') return;
  const cmd = browser ?? (process.platform === 'darwin' ? 'open' : 'xdg-open');
  const child = spawn(cmd, [url], { stdio: 'ignore', detached: true });
  // No browser here (a server, a container): the URL printed above is the way in.
  child.on('error', (e) => err(`(could not start ${cmd}: ${e.message})\n`));
  child.unref();
}
