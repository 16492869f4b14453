import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createWebHandler,
  DESKTOP_PAGE_CSP,
  defaultWebDir,
  isApiPath,
  safeRelativePath,
  WEB_CSP,
} from './static.js';

async function serveDir(dir: string): Promise<{ url: string; close(): Promise<void> }> {
  const server = http.createServer(createWebHandler({ dir }));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () => new Promise((r) => server.close(() => r())),
  };
}

describe('web UI static files', () => {
  let root: string;
  let built: { url: string; close(): Promise<void> };
  let empty: { url: string; close(): Promise<void> };

  beforeAll(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'gh-web-'));
    await mkdir(path.join(root, 'dist', 'assets'), { recursive: true });
    await mkdir(path.join(root, 'unbuilt'));
    await writeFile(path.join(root, 'dist', 'index.html'), '<!doctype html><title>ui</title>');
    await writeFile(path.join(root, 'dist', 'assets', 'index-abc123.js'), 'console.log(1)');
    await writeFile(path.join(root, 'dist', 'robots.txt'), 'User-agent: *');
    await writeFile(path.join(root, 'secret.txt'), 'outside the web root');
    built = await serveDir(path.join(root, 'dist'));
    empty = await serveDir(path.join(root, 'unbuilt'));
  });
  afterAll(async () => {
    await built?.close();
    await empty?.close();
    await rm(root, { recursive: true, force: true });
  });

  it('serves index.html at / with no-cache and the strict CSP', async () => {
    const r = await fetch(`${built.url}/`);
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect(r.headers.get('cache-control')).toBe('no-cache');
    expect(r.headers.get('content-security-policy')).toBe(WEB_CSP);
    expect(WEB_CSP).toContain("script-src 'self'");
    expect(WEB_CSP).toContain("frame-ancestors 'none'");
    // Inline <style> elements only (xterm.js); never inline scripts or style attributes.
    expect(WEB_CSP.match(/unsafe-[a-z-]+/g)).toEqual(['unsafe-inline']);
    expect(WEB_CSP).toContain("style-src-elem 'self' 'unsafe-inline'");
    expect(WEB_CSP).toContain("style-src 'self';");
    expect(r.headers.get('x-frame-options')).toBe('DENY');
    expect(r.headers.get('x-content-type-options')).toBe('nosniff');
    expect(await r.text()).toContain('<title>ui</title>');
  });

  it('loosens the CSP for the desktop page only: WebAssembly, its data: module, style attributes', async () => {
    const desk = await fetch(`${built.url}/web/desktop?name=win1&login=Administrator`);
    expect(desk.headers.get('content-security-policy')).toBe(DESKTOP_PAGE_CSP);
    expect(DESKTOP_PAGE_CSP).toContain("script-src 'self' 'wasm-unsafe-eval';");
    expect(DESKTOP_PAGE_CSP).toContain("connect-src 'self' data:;");
    expect(DESKTOP_PAGE_CSP).toContain("style-src-attr 'unsafe-inline'");
    // Everything else as strict as every other page.
    expect(DESKTOP_PAGE_CSP).toContain("img-src 'self';");
    expect(DESKTOP_PAGE_CSP).toContain("frame-ancestors 'none'");
    for (const other of ['/web/resources', '/web/desktops', '/web/desktop/x']) {
      expect((await fetch(`${built.url}${other}`)).headers.get('content-security-policy')).toBe(WEB_CSP);
    }
  });

  it('serves hashed assets as immutable for a year', async () => {
    const r = await fetch(`${built.url}/assets/index-abc123.js`);
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toBe('text/javascript; charset=utf-8');
    expect(r.headers.get('cache-control')).toBe('public, max-age=31536000, immutable');
    expect(await r.text()).toBe('console.log(1)');
  });

  it('falls back to index.html for client-side routes, but not for a missing asset', async () => {
    const page = await fetch(`${built.url}/web/invite/tok123`);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('<title>ui</title>');
    const asset = await fetch(`${built.url}/assets/index-gone.js`);
    expect(asset.status).toBe(404);
    expect(asset.headers.get('cache-control')).toBe('no-store');
  });

  it('serves other root files with revalidation', async () => {
    const r = await fetch(`${built.url}/robots.txt`);
    expect(r.status).toBe(200);
    expect(r.headers.get('cache-control')).toBe('no-cache');
  });

  it('answers HEAD without a body and refuses other methods', async () => {
    const head = await fetch(`${built.url}/assets/index-abc123.js`, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.headers.get('content-length')).toBe('14');
    const post = await fetch(`${built.url}/web/login`, { method: 'POST', body: 'x' });
    expect(post.status).toBe(405);
    expect(post.headers.get('allow')).toBe('GET, HEAD');
  });

  it('never serves a file outside the web root', async () => {
    // fetch() normalizes the path, so send raw request targets.
    const get = (target: string) =>
      new Promise<{ status: number; body: string }>((resolve, reject) => {
        const u = new URL(built.url);
        const req = http.request({ host: u.hostname, port: u.port, path: target, method: 'GET' }, (res) => {
          let body = '';
          res.on('data', (c) => {
            body += c;
          });
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        });
        req.on('error', reject);
        req.end();
      });
    // Encoded slashes survive URL parsing and decode to "..": refused.
    const slashes = await get('/..%2f..%2fsecret.txt');
    expect(slashes.status).toBe(400);
    expect(slashes.body).not.toContain('outside the web root');
    // Encoded dots are resolved by the URL parser inside the root: never above it.
    const dots = await get('/assets/%2e%2e/%2e%2e/secret.txt');
    expect(dots.body).not.toContain('outside the web root');
  });

  it('answers 503 with how to build when the UI was never built', async () => {
    const r = await fetch(`${empty.url}/`);
    expect(r.status).toBe(503);
    const body = await r.text();
    expect(body).toContain('The web UI is not built');
    expect(body).toContain('npm run build');
    expect(r.headers.get('content-security-policy')).toBe(WEB_CSP);
  });

  it('splits paths between the API and the UI', () => {
    expect(isApiPath('/v1/ping')).toBe(true);
    expect(isApiPath('/v1')).toBe(true);
    expect(isApiPath('/v1?x=1')).toBe(true);
    expect(isApiPath('/v10/x')).toBe(false);
    expect(isApiPath('/')).toBe(false);
    expect(isApiPath('/web/login')).toBe(false);
    expect(safeRelativePath('/a/./b//c')).toBe('a/b/c');
    expect(safeRelativePath('/a/%2e%2e/b')).toBe('b');
    expect(safeRelativePath('/a/..%2f..%2fb')).toBeUndefined();
    expect(safeRelativePath('/a%00b')).toBeUndefined();
    expect(safeRelativePath('/a%5cb')).toBeUndefined();
    expect(safeRelativePath('/%E0%A4%A')).toBeUndefined();
    expect(defaultWebDir().replace(/\\/g, '/')).toMatch(/packages\/web\/dist\/$/);
  });
});
