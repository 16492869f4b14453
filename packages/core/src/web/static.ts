import { createReadStream } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The built web UI (packages/web/dist), next to this package in the repo and
 * in the published layout alike: core/{src,dist}/web/static.* -> ../../../web/dist.
 */
export function defaultWebDir(): string {
  return fileURLToPath(new URL('../../../web/dist/', import.meta.url));
}

/**
 * The UI's Content-Security-Policy (docs/decisions/0013-web-ui.md): only our
 * own origin for scripts, styles, images and fetches; no framing, no <base>,
 * forms post only to us. `'self'` in connect-src covers same-origin wss: in
 * CSP Level 3 browsers, which the web terminal's websocket will need.
 *
 * One exception: xterm.js (the session player, the terminal) writes its
 * theme and cell sizes into <style> elements it creates at run time, whose
 * content no hash or nonce can cover. `style-src-elem` allows inline <style>
 * elements only; style attributes stay refused (`style-src 'self'`), scripts
 * stay 'self' only, and img-src/font-src 'self' stop an injected stylesheet
 * from sending anything to another origin.

 */
export const WEB_CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "style-src-elem 'self' 'unsafe-inline'",
  "img-src 'self'",
  "font-src 'self'",
  "connect-src 'self'",
  "object-src 'none'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
  "form-action 'self'",
].join('; ');

/**
 * The desktop page (/web/desktop, always opened as a page load of its own)
 * runs IronRDP's WebAssembly client, and only that page gets what it needs:
 * `'wasm-unsafe-eval'` to compile WebAssembly (not JS eval), `data:` in
 * connect-src because the npm build carries the module as a data: URL it
 * fetches (a data: URL reaches no network), and style attributes, which the
 * web component sets on its canvas (img-src stays 'self', so a style cannot
 * send anything out). Decision 0025.
 */
export const DESKTOP_PAGE_CSP = WEB_CSP.replace("script-src 'self'", "script-src 'self' 'wasm-unsafe-eval'")
  .replace("connect-src 'self'", "connect-src 'self' data:")
  .replace("style-src 'self'", "style-src 'self'; style-src-attr 'unsafe-inline'");
const DESKTOP_PAGE = 'web/desktop';

const BASE_HEADERS = {
  'content-security-policy': WEB_CSP,
  'x-frame-options': 'DENY',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin',
} as const;

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.woff2': 'font/woff2',
  '.txt': 'text/plain; charset=utf-8',
};

/** Hashed file names never change content, so browsers may keep them for a year. */
const IMMUTABLE = 'public, max-age=31536000, immutable';
/** index.html names the current hashed assets: revalidate it on every load. */
const REVALIDATE = 'no-cache';

export interface WebUiOptions {
  /** Directory with index.html and assets/ (vite build output). */
  dir: string;
}

/**
 * Serves the single-page app: files under `dir`, `/assets/*` with immutable
 * caching, every other GET path falling back to index.html (client-side
 * routes such as /web/invite/:token). If the UI was never built, answers 503
 * with how to build it instead of an empty page.
 */
export function createWebHandler(opts: WebUiOptions): (req: IncomingMessage, res: ServerResponse) => void {
  const root = path.resolve(opts.dir);
  return (req, res) => {
    serve(root, req, res).catch((err: unknown) => {
      if (res.headersSent) {
        res.destroy(err instanceof Error ? err : undefined);
        return;
      }
      sendPage(res, 500, 'Internal error', 'The web UI could not be served; see the gateway log.');
    });
  };
}

async function serve(root: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const method = req.method ?? 'GET';
  if (method !== 'GET' && method !== 'HEAD') {
    res.setHeader('allow', 'GET, HEAD');
    sendPage(res, 405, 'Method not allowed', 'The web UI only answers GET; the API lives under /v1/.');
    return;
  }
  const rel = safeRelativePath(req.url ?? '/');
  if (rel === undefined) {
    sendPage(res, 400, 'Bad request', 'Malformed path.');
    return;
  }
  const index = path.join(root, 'index.html');
  if (rel.startsWith('assets/')) {
    // A missing hashed asset is a stale page or a typo: an HTML fallback
    // would be parsed as script and fail obscurely, so say 404.
    const file = await regularFile(path.join(root, rel));
    if (!file) {
      sendPage(res, 404, 'Not found', 'No such asset; reload the page to get the current version.');
      return;
    }
    return sendFile(req, res, file.path, file.size, IMMUTABLE);
  }
  if (rel !== '' && rel !== 'index.html') {
    const file = await regularFile(path.join(root, rel));
    if (file) return sendFile(req, res, file.path, file.size, REVALIDATE);
  }
  const html = await readFile(index).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT' || err.code === 'ENOTDIR') return undefined;
    throw err;
  });
  if (!html) {
    sendPage(
      res,
      503,
      'The web UI is not built',
      'Build it with <code>npm run build</code> at the repository root (or ' +
        '<code>npm run build -w @gatehouse/web</code>) and reload this page. ' +
        'The API under /v1/ and every other protocol work without it.',
    );
    return;
  }
  res.writeHead(200, {
    ...BASE_HEADERS,
    ...(rel === DESKTOP_PAGE ? { 'content-security-policy': DESKTOP_PAGE_CSP } : {}),
    'content-type': TYPES['.html']!,
    'content-length': html.length,
    'cache-control': REVALIDATE,
  });
  res.end(method === 'HEAD' ? undefined : html);
}

/**
 * The URL path as a path relative to the web root, or undefined when it is
 * malformed or tries to leave the root (`..`, NUL, backslashes).
 */
export function safeRelativePath(url: string): string | undefined {
  let pathname: string;
  try {
    pathname = decodeURIComponent(new URL(url, 'https://gatehouse.invalid').pathname);
  } catch {
    return undefined;
  }
  if (pathname.includes('\0') || pathname.includes('\\')) return undefined;
  const parts = pathname.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.some((p) => p === '..')) return undefined;
  return parts.join('/');
}

async function regularFile(p: string): Promise<{ path: string; size: number } | undefined> {
  const s = await stat(p).catch(() => undefined);
  return s?.isFile() ? { path: p, size: s.size } : undefined;
}

function sendFile(
  req: IncomingMessage,
  res: ServerResponse,
  file: string,
  size: number,
  cache: string,
): void {
  res.writeHead(200, {
    ...BASE_HEADERS,
    'content-type': TYPES[path.extname(file).toLowerCase()] ?? 'application/octet-stream',
    'content-length': size,
    'cache-control': cache,
  });
  if (req.method === 'HEAD') {
    res.end();
    return;
  }
  const stream = createReadStream(file);
  stream.on('error', (err) => res.destroy(err));
  stream.pipe(res);
}

function sendPage(res: ServerResponse, status: number, title: string, bodyHtml: string): void {
  const html =
    '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Gatehouse: ' +
    title +
    '</title></head><body><h1>' +
    title +
    '</h1><p>' +
    bodyHtml +
    '</p></body></html>';
  res.writeHead(status, {
    ...BASE_HEADERS,
    'content-type': TYPES['.html']!,
    'content-length': Buffer.byteLength(html),
    'cache-control': 'no-store',
  });
  res.end(html);
}

/** True for paths the JSON API owns: everything under /v1. */
export function isApiPath(url: string | undefined): boolean {
  const u = url ?? '/';
  return u === '/v1' || u.startsWith('/v1/') || u.startsWith('/v1?');
}
