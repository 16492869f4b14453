import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdir, readdir, readFile, unlink, writeFile } from 'node:fs/promises';
import net from 'node:net';
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

/** Whether a Unix socket accepts a connection now. */
function accepts(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const c = net.createConnection({ path: socketPath });
    c.once('connect', () => {
      c.destroy();
      resolve(true);
    });
    c.once('error', () => resolve(false));
  });
}

/** A headless X server on a display number nobody uses (shared/PEERS.md). */
export async function startXvfb(): Promise<{ display: string; stop(): Promise<void> }> {
  // Xvfb picks a free display itself and writes its number to fd 1 once it accepts
  // connections: no display guessed at random can race another test's server (two
  // servers on one number, the loser's clients then failing "cannot open display").
  const child = spawn(XVFB, ['-displayfd', '1', '-screen', '0', '1024x768x24', '-nolisten', 'tcp'], {
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  try {
    const n = await new Promise<string>((resolve, reject) => {
      let out = '';
      const timer = setTimeout(() => reject(new Error('Xvfb did not report a display within 15 s')), 15_000);
      child.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        const m = /^(\d+)\n/.exec(out);
        if (m) {
          clearTimeout(timer);
          resolve(m[1]!);
        }
      });
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`Xvfb exited (${signal ?? code}) before it reported a display`));
      });
    });
    child.stdout!.resume();
    return { display: `:${n}`, stop: stopper(child) };
  } catch (err) {
    child.kill('SIGKILL');
    throw err;
  }
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
  // A free port can be taken by another process before the server binds it (the machine
  // is shared): the server then exits at once, and a new port is tried.
  let failure = '';
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    const child = spawn(
      SHADOW,
      [`/port:${port}`, '/bind-address:127.0.0.1', '+auth', '/sec:nla', `/sam-file:${sam}`],
      {
        env: { ...process.env, DISPLAY: display, HOME: dir },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    // Its last words (FreeRDP logs to both streams), for a start that fails.
    let log = '';
    const keep = (d: Buffer) => (log = (log + d.toString()).slice(-2000));
    child.stdout!.on('data', keep);
    child.stderr!.on('data', keep);
    try {
      await waitForPort(port, child, 15_000, 'freerdp-shadow-cli');
      child.stdout!.removeListener('data', keep).resume();
      child.stderr!.removeListener('data', keep).resume();
      return { port, stop: stopper(child) };
    } catch (err) {
      await stopper(child)();
      failure = `${(err as Error).message}: ${log}`;
    }
  }
  throw new Error(failure);
}

export const XRDP = '/usr/sbin/xrdp';
export const XRDP_SESMAN = '/usr/sbin/xrdp-sesman';
/** The Unix account xrdp logs in (PAM, so it needs a password); only these tests use it. */
export const XRDP_USER = 'gh-rdp';

async function pidsOf(args: string[]): Promise<number[]> {
  const r = await run('ps', ['-o', 'pid=', ...args]).catch(() => ({ stdout: '' }));
  return r.stdout
    .split('\n')
    .map((l) => Number(l.trim()))
    .filter((n) => Number.isInteger(n) && n > 0);
}

/**
 * xrdp + xorgxrdp with TLS security only (no NLA), as shared/PEERS.md
 * describes: a copy of xrdp.ini on a free port with our certificate, a
 * copy of sesman.ini (xrdp 0.9 finds sesman at the port in
 * /etc/xrdp/sesman.ini, so the copy keeps it). The account gets a fresh
 * password and an ~/.xsession painting the root window `color`, so a
 * screenshot tells a logged-in session from xrdp's login dialog.
 */
/**
 * Removes the sockets (and X lock files) that ended xrdp sessions left in
 * sesman's display range. sesman skips every display with a socket file, so
 * they pile up across runs until it answers "no display in range (10 to 60)
 * is available" and every login fails. Only sockets that accept no
 * connection are removed: a live session (of another run too) keeps its own.
 */
async function clearDeadXrdpDisplays(): Promise<void> {
  for (const dir of ['/run/xrdp/sockdir', '/tmp/.X11-unix']) {
    const names = await readdir(dir).catch(() => [] as string[]);
    for (const name of names) {
      const m = /(\d+)$/.exec(name);
      const n = m ? Number(m[1]) : Number.NaN;
      if (!(n >= 10 && n <= 60)) continue;
      const file = path.join(dir, name);
      if (await accepts(file)) continue;
      await unlink(file).catch(() => undefined);
      if (dir === '/tmp/.X11-unix') await unlink(`/tmp/.X${n}-lock`).catch(() => undefined);
    }
  }
}

export async function startXrdp(
  dir: string,
  color: [number, number, number],
  /** What the session runs after painting the screen (default: nothing, it just stays up). */
  session = 'exec sleep 600',
): Promise<{ port: number; user: string; password: string; home: string; stop(): Promise<void> }> {
  const xdir = path.join(dir, 'xrdp');
  await mkdir(xdir, { recursive: true });
  await clearDeadXrdpDisplays();
  const { cert, key } = await selfSigned(xdir, 'xrdp');
  if ((await run('id', ['-u', XRDP_USER]).catch(() => undefined)) === undefined) {
    await run('useradd', [
      '--create-home',
      '--shell',
      '/bin/sh',
      '--comment',
      'Gatehouse RDP test login',
      XRDP_USER,
    ]);
  }
  const password = `Pw-${Math.random().toString(36).slice(2)}-x`;
  await new Promise<void>((resolve, reject) => {
    const c = spawn('chpasswd', [], { stdio: ['pipe', 'ignore', 'inherit'] });
    c.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`chpasswd exited ${code}`))));
    c.stdin!.end(`${XRDP_USER}:${password}\n`);
  });
  const hex = color.map((c) => c.toString(16).padStart(2, '0')).join('');
  const home = `/home/${XRDP_USER}`;
  await writeFile(path.join(home, '.xsession'), `#!/bin/sh\nxsetroot -solid '#${hex}'\n${session}\n`, {
    mode: 0o755,
  });
  await run('chown', [`${XRDP_USER}:`, path.join(home, '.xsession')]);
  const port = await freePort();
  const ini = (await readFile('/etc/xrdp/xrdp.ini', 'utf8'))
    .replace(/^port=3389$/m, `port=tcp://127.0.0.1:${port}`)
    .replace(/^security_layer=.*$/m, 'security_layer=tls')
    .replace(/^certificate=.*$/m, `certificate=${cert}`)
    .replace(/^key_file=.*$/m, `key_file=${key}`);
  await writeFile(path.join(xdir, 'xrdp.ini'), ini);
  await writeFile(path.join(xdir, 'sesman.ini'), await readFile('/etc/xrdp/sesman.ini', 'utf8'));
  const sesman = spawn(XRDP_SESMAN, ['-n', '-c', path.join(xdir, 'sesman.ini')], { stdio: 'ignore' });
  const xrdp = spawn(XRDP, ['-n', '-c', path.join(xdir, 'xrdp.ini')], { stdio: 'ignore' });
  await waitForPort(port, xrdp, 15_000, 'xrdp');
  return {
    port,
    user: XRDP_USER,
    password,
    home,
    async stop() {
      // The sessions sesman started run as the test account (Xorg, chansrv, ~/.xsession)
      // or as sesman's children: end exactly those, by id.
      const pids = [...(await pidsOf(['--ppid', String(sesman.pid)])), ...(await pidsOf(['-u', XRDP_USER]))];
      await stopper(xrdp)();
      await stopper(sesman)();
      for (const pid of pids) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // Already gone: nothing left to end.
        }
      }
    },
  };
}

/**
 * Waits for every start to settle, then fails with the first failure: unlike
 * Promise.all, a peer that starts after another failed is still assigned
 * (by the caller's .then) and so still stopped by afterAll.
 */
export async function allStarted(starts: Promise<unknown>[]): Promise<void> {
  const settled = await Promise.allSettled(starts);
  const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
}
