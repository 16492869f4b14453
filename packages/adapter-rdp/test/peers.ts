import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { freePort, waitForPort } from '@gatehouse/core/testing';

const run = promisify(execFile);

export const XVFB = '/usr/bin/Xvfb';
export const WESTON = '/usr/bin/weston';
export const XFREERDP = '/usr/bin/xfreerdp';
export const IMPORT = '/usr/bin/import';

function stopper(child: ChildProcess): () => Promise<void> {
  return () =>
    new Promise((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) {
        resolve();
        return;
      }
      child.once('exit', () => resolve());
      child.kill('SIGTERM');
      setTimeout(() => child.kill('SIGKILL'), 3000).unref();
    });
}

/** A headless X server on a display number nobody uses (shared/PEERS.md). */
export async function startXvfb(): Promise<{ display: string; stop(): Promise<void> }> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const n = 100 + Math.floor(Math.random() * 800);
    if (existsSync(`/tmp/.X11-unix/X${n}`) || existsSync(`/tmp/.X${n}-lock`)) continue;
    const child = spawn(XVFB, [`:${n}`, '-screen', '0', '1024x768x24', '-nolisten', 'tcp'], {
      stdio: 'ignore',
    });
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline && child.exitCode === null && !existsSync(`/tmp/.X11-unix/X${n}`)) {
      await new Promise((r) => setTimeout(r, 25));
    }
    if (child.exitCode === null && existsSync(`/tmp/.X11-unix/X${n}`))
      return { display: `:${n}`, stop: stopper(child) };
    child.kill('SIGKILL');
  }
  throw new Error('Xvfb did not start');
}

/** A self-signed certificate for 127.0.0.1 and localhost (PEM paths), made by openssl. */
export async function selfSigned(dir: string, name: string): Promise<{ cert: string; key: string }> {
  const cert = path.join(dir, `${name}.crt`);
  const key = path.join(dir, `${name}.key`);
  await run('openssl', [
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-days',
    '2',
    '-subj',
    `/CN=${name}`,
    '-addext',
    'subjectAltName=DNS:localhost,IP:127.0.0.1',
    '-keyout',
    key,
    '-out',
    cert,
  ]);
  return { cert, key };
}

export interface Weston {
  port: number;
  /** The TLS certificate weston presents (PEM). */
  certPem: string;
  stop(): Promise<void>;
}

/**
 * weston's RDP backend (TLS, any credentials) with a desktop of one solid
 * colour and no panel, so a screenshot of a client shows whether the remote
 * screen arrived.
 */
export async function startWeston(dir: string, color: [number, number, number]): Promise<Weston> {
  const wdir = path.join(dir, 'weston');
  await mkdir(path.join(wdir, 'run'), { recursive: true, mode: 0o700 });
  const { cert, key } = await selfSigned(wdir, 'weston');
  const hex = color.map((c) => c.toString(16).padStart(2, '0')).join('');
  const ini = path.join(wdir, 'weston.ini');
  await writeFile(
    ini,
    `[shell]\nbackground-color=0xff${hex}\npanel-position=none\nlocking=false\nstartup-animation=none\n`,
  );
  const port = await freePort();
  const child = spawn(
    WESTON,
    [
      '--backend=rdp-backend.so',
      '--address=127.0.0.1',
      `--port=${port}`,
      `--rdp-tls-cert=${cert}`,
      `--rdp-tls-key=${key}`,
      `--config=${ini}`,
    ],
    { env: { ...process.env, XDG_RUNTIME_DIR: path.join(wdir, 'run') }, stdio: 'ignore' },
  );
  await waitForPort(port, child, 15_000, 'weston');
  return { port, certPem: await readFile(cert, 'utf8'), stop: stopper(child) };
}

export interface XfreerdpRun {
  child: ChildProcess;
  output(): string;
  exited: Promise<number | null>;
}

/** xfreerdp under its own X display, TLS security, the front's certificate accepted. */
export function startXfreerdp(display: string, address: string, user: string): XfreerdpRun {
  let out = '';
  const child = spawn(
    XFREERDP,
    [`/v:${address}`, `/u:${user}`, '/p:', '/cert:ignore', '/sec:tls', '/size:800x600', '-grab-keyboard'],
    {
      env: { ...process.env, DISPLAY: display },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  child.stdout!.on('data', (d: Buffer) => (out += d));
  child.stderr!.on('data', (d: Buffer) => (out += d));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, output: () => out, exited };
}

/** Pixels of the root window of `display` within `tolerance` of `color` per channel. */
export async function countColor(
  display: string,
  dir: string,
  color: [number, number, number],
  tolerance = 6,
): Promise<number> {
  const shot = path.join(dir, `shot-${Date.now()}.rgb`);
  await run(IMPORT, ['-window', 'root', '-depth', '8', `rgb:${shot}`], {
    env: { ...process.env, DISPLAY: display },
  });
  const px = await readFile(shot);
  let n = 0;
  for (let i = 0; i + 2 < px.length; i += 3) {
    if (
      Math.abs(px[i]! - color[0]) <= tolerance &&
      Math.abs(px[i + 1]! - color[1]) <= tolerance &&
      Math.abs(px[i + 2]! - color[2]) <= tolerance
    ) {
      n++;
    }
  }
  return n;
}

export const SHADOW = '/usr/bin/freerdp-shadow-cli';
export const WINPR_HASH = '/usr/bin/winpr-hash';

/**
 * FreeRDP's shadow server on `display`, NLA required, one account in a
 * winpr-hash SAM file (shared/PEERS.md): stands in for a Windows host with
 * its default settings.
 */
export async function startShadow(
  dir: string,
  display: string,
  account: { user: string; password: string },
): Promise<{ port: number; stop(): Promise<void> }> {
  const sam = path.join(dir, 'shadow.sam');
  const { stdout } = await run(WINPR_HASH, ['-u', account.user, '-p', account.password, '-f', 'sam']);
  await writeFile(sam, stdout);
  const port = await freePort();
  const child = spawn(
    SHADOW,
    [`/port:${port}`, '/bind-address:127.0.0.1', '+auth', '/sec:nla', `/sam-file:${sam}`],
    {
      env: { ...process.env, DISPLAY: display, HOME: dir },
      stdio: 'ignore',
    },
  );
  await waitForPort(port, child, 15_000, 'freerdp-shadow-cli');
  return { port, stop: stopper(child) };
}
