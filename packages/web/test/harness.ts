import { createHash, type X509Certificate } from 'node:crypto';
import { mkdir, mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import { Secret, TOTP } from 'otpauth';
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core';
import { build } from 'vite';

const webRoot = fileURLToPath(new URL('..', import.meta.url));

/**
 * Builds the UI from the current sources into a temp dir, so the browser tests
 * never run against a stale packages/web/dist. Returns the output directory.
 */
export async function buildUi(): Promise<string> {
  const outDir = await mkdtemp(path.join(os.tmpdir(), 'gh-web-dist-'));
  await build({
    configFile: path.join(webRoot, 'vite.config.ts'),
    root: webRoot,
    logLevel: 'warn',
    // Vitest sets NODE_ENV=test, which would give React's development build and
    // JSX; the browser tests run what users get.
    define: { 'process.env.NODE_ENV': JSON.stringify('production') },
    oxc: { jsx: { runtime: 'automatic', importSource: 'react', development: false } },
    build: { outDir, emptyOutDir: true, reportCompressedSize: false },
  });
  return outDir;
}

/** Chromium flags this machine needs (shared/PEERS.md "Browser tests"). */
export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/**
 * Debian's Chromium, trusting exactly one extra key: the gateway's listener
 * certificate is issued by the cluster's own host CA, which the browser does
 * not know. Pinning its SPKI hash (instead of ignoring every certificate
 * error) keeps the test honest about which server it talks to.
 */
export async function launchChromium(spkiPins: string[]): Promise<Browser> {
  return chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: [...CHROMIUM_ARGS, `--ignore-certificate-errors-spki-list=${spkiPins.join(',')}`],
    timeout: 60_000,
  });
}

/**
 * base64(sha256(SPKI DER)) of the certificate a gateway presents, as
 * Chromium's pin flag wants it. The certificate is verified against the
 * cluster's CA first (`caPem`, from `gw.exportCa('x509', { type: 'host' })`), so the pin is of
 * the gateway under test and nothing else.
 */
export function serverSpkiPin(port: number, caPem: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ca: caPem }, () => {
      const der = s.getPeerX509Certificate();
      s.end();
      if (!der) return reject(new Error('the server presented no certificate'));
      resolve(spkiPinOf(der));
    });
    s.once('error', reject);
  });
}

export function spkiPinOf(cert: X509Certificate): string {
  const spki = cert.publicKey.export({ type: 'spki', format: 'der' });
  return createHash('sha256').update(spki).digest('base64');
}

/** An independent TOTP computation (RFC 6238 defaults), as an authenticator app would do it. */
export function totpNow(secretBase32: string, at: Date): string {
  return new TOTP({
    secret: Secret.fromBase32(secretBase32),
    digits: 6,
    period: 30,
    algorithm: 'SHA1',
  }).generate({
    timestamp: at.getTime(),
  });
}

/** Where screenshots go: kept after the run as test artifacts (packages/web/test-artifacts, gitignored). */
export async function artifactsDir(): Promise<string> {
  const dir = process.env.GATEHOUSE_WEB_ARTIFACTS ?? path.join(webRoot, 'test-artifacts');
  await mkdir(dir, { recursive: true });
  return dir;
}

/** How long a UI step may take before a test fails (the shared machine is slow at times). */
export const UI_TIMEOUT = 15_000;

/**
 * One Chromium for a test file, trusting the listed gateways' certificates,
 * with screenshots going to the artifacts dir and every Content Security
 * Policy violation any page reports collected (tests assert there were none).
 */
export class UiBrowser {
  readonly cspViolations: string[] = [];

  private constructor(
    readonly browser: Browser,
    readonly shots: string,
  ) {}

  static async launch(gateways: { port: number; caPem: string }[]): Promise<UiBrowser> {
    const pins = await Promise.all(gateways.map((g) => serverSpkiPin(g.port, g.caPem)));
    return new UiBrowser(await launchChromium(pins), await artifactsDir());
  }

  /** A fresh browser profile (its own cookies and storage) on the gateway at `port`. */
  async newPage(
    port: number,
    viewport = { width: 1280, height: 860 },
  ): Promise<{ context: BrowserContext; page: Page }> {
    const context = await this.browser.newContext({ baseURL: `https://localhost:${port}`, viewport });
    context.setDefaultTimeout(UI_TIMEOUT);
    // On the context, so pages it opens later (target=_blank) are watched too.
    context.on('console', (m) => {
      if (/Content Security Policy/i.test(m.text())) this.cspViolations.push(m.text());
    });
    const page = await context.newPage();
    return { context, page };
  }

  async shot(page: Page, name: string, opts: { fullPage?: boolean } = {}): Promise<void> {
    await page.screenshot({ path: path.join(this.shots, `${name}.png`), fullPage: opts.fullPage ?? true });
  }

  close(): Promise<void> {
    return this.browser.close();
  }
}

/** Signs in through the login page (from the page the app sent us to, with `stay`). */
export async function signIn(
  page: Page,
  user: string,
  password: string,
  code?: string,
  opts: { stay?: boolean } = {},
): Promise<void> {
  if (!opts.stay) await page.goto('/web/login');
  await page.getByLabel('User').fill(user);
  await page.getByLabel('Password').fill(password);
  if (code !== undefined) await page.getByLabel('Authenticator code').fill(code);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByTestId('current-user').filter({ hasText: user }).waitFor();
}

/**
 * Clicks Search on the audit log page and resolves once the gateway has
 * answered that very search (`matches` tells it by its query parameters).
 * Rows read before then may be those of the search before it: the page's
 * first, unfiltered search has already drawn a table.
 */
export async function searchAuditLog(page: Page, matches: (q: URLSearchParams) => boolean): Promise<void> {
  const answered = page.waitForResponse((r) => {
    const url = new URL(r.url());
    return url.pathname === '/v1/audit/events' && matches(url.searchParams);
  });
  await page.getByRole('button', { name: 'Search' }).click();
  const res = await answered;
  if (!res.ok()) throw new Error(`the audit search answered HTTP ${res.status()}: ${await res.text()}`);
}

/**
 * Replaces the role editor's text as typing would (CodeMirror reads input
 * events). Not locator.fill: that edits the contenteditable with
 * execCommand, whose inserted style attributes the CSP refuses.
 */
export async function typeRole(page: Page, text: string): Promise<void> {
  await page.getByLabel('Role YAML').click();
  await page.keyboard.press('ControlOrMeta+A');
  await page.keyboard.press('Delete');
  await page.keyboard.insertText(text);
}
