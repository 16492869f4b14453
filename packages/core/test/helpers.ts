import { execFileSync, spawn } from 'node:child_process';
import { createHash, generateKeyPairSync } from 'node:crypto';
import { chmodSync, closeSync, createReadStream, createWriteStream, openSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { Worker } from 'node:worker_threads';
import { type CreateGatewayOptions, createGateway, type Gateway, type Identity } from '../src/index.js';

export interface TestGateway {
  gw: Gateway;
  port: number;
  dir: string;
  caPem: string[];
  close(): Promise<void>;
}

/** A gateway in a temp data dir, listening on a free loopback port, second factor off. */
export async function startGateway(opts: CreateGatewayOptions = {}): Promise<TestGateway> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'gh-gw-'));
  const gw = await createGateway({ dataDir: dir, secondFactor: 'off', ...opts, env: {} });
  const { port } = await gw.listen({ host: '127.0.0.1', port: 0 });
  return {
    gw,
    port,
    dir,
    caPem: gw.authorities.get('host').map((k) => k.x509CertPem),
    async close() {
      await gw.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export function newTlsKey(): { privatePem: string; publicPem: string } {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return {
    privatePem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    publicPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
  };
}

/** A self-signed cert from a CA Gatehouse has never seen (made by the real openssl), for `cn`. */
export function foreignCert(dir: string, cn = 'mallory'): { cert: string; key: string } {
  const key = path.join(dir, 'foreign.key');
  const cert = path.join(dir, 'foreign.crt');
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      key,
      '-out',
      cert,
      '-subj',
      `/CN=${cn}`,
      '-days',
      '1',
    ],
    { stdio: 'ignore' },
  );
  return { cert, key };
}

/** Opens a raw TCP connection, sends bytes, resolves with what came back when the server closed. */
export function rawExchange(
  port: number,
  bytes: Buffer | string,
  opts: { wait?: number } = {},
): Promise<{ data: Buffer; closedByServer: boolean }> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host: '127.0.0.1' }, () => {
      if (bytes.length > 0) s.write(bytes);
    });
    const chunks: Buffer[] = [];
    let closedByServer = false;
    const t = setTimeout(() => s.destroy(), opts.wait ?? 5_000);
    s.on('data', (c) => chunks.push(c));
    s.on('end', () => {
      closedByServer = true;
    });
    s.on('close', () => {
      clearTimeout(t);
      resolve({ data: Buffer.concat(chunks), closedByServer });
    });
    s.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'ECONNRESET') closedByServer = true;
      else reject(e);
    });
  });
}

export function tlsConnect(port: number, opts: tls.ConnectionOptions): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ...opts }, () => resolve(s));
    s.once('error', reject);
  });
}

export async function waitFor<T>(
  fn: () => Promise<T | undefined> | T | undefined,
  what: string,
  ms = 5_000,
): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined && v !== false) return v as T;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

export interface CertFiles {
  cert: string;
  key: string;
  certPem: string;
  keyPem: string;
}

/** A Gatehouse user certificate as `gatehouse db login` would get it, the key written 0600 (libpq insists). */
export async function userCert(
  gw: Gateway,
  dir: string,
  name: string,
  identity: Partial<Identity> & { user: string },
  ttlMs = 3_600_000,
): Promise<CertFiles> {
  const k = newTlsKey();
  const now = Date.now();
  const issued = await gw.authorities.issueX509UserCert({
    publicKeyPem: k.publicPem,
    identity: { roles: [], traits: {}, expires: new Date(now + ttlMs), ...identity },
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + ttlMs),
  });
  const cert = path.join(dir, `${name}.crt`);
  const key = path.join(dir, `${name}.key`);
  writeFileSync(cert, issued.cert);
  writeFileSync(key, k.privatePem);
  chmodSync(key, 0o600);
  return { cert, key, certPem: issued.cert, keyPem: k.privatePem };
}

export interface ClientRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs a real client program (psql, mariadb) to completion with `input` on
 * stdin (or the file `inputFile`, which never passes through this process)
 * and a minimal environment (HOME: `cwd`, so no user option files);
 * killed after `timeoutMs`. `onSpawn` gets the child (e.g. to send SIGINT).
 */
export function runClient(
  program: string,
  args: string[],
  opts: {
    env?: NodeJS.ProcessEnv;
    input?: string;
    inputFile?: string;
    cwd?: string;
    timeoutMs?: number;
    onSpawn?: (c: ReturnType<typeof spawn>) => void;
  } = {},
): Promise<ClientRun> {
  return new Promise((resolve, reject) => {
    const stdin = opts.inputFile ? openSync(opts.inputFile, 'r') : 'pipe';
    const child = spawn(program, args, {
      env: { PATH: process.env.PATH, HOME: opts.cwd ?? '/nonexistent', ...opts.env },
      cwd: opts.cwd,
      stdio: [stdin, 'pipe', 'pipe'],
    });
    if (typeof stdin === 'number') closeSync(stdin);
    let stdout = '';
    let stderr = '';
    // Both are pipes (stdio above); the types cannot tell once stdin may be a file descriptor.
    child.stdout?.on('data', (d) => {
      stdout += d;
    });
    child.stderr?.on('data', (d) => {
      stderr += d;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
    // A program that exits before reading its input (a refused login) closes the pipe:
    // its exit status is the result, not the write that could not land.
    child.stdin?.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code !== 'EPIPE') reject(e);
    });
    child.stdin?.end(opts.input ?? '');
    opts.onSpawn?.(child);
  });
}

/**
 * The peak RSS of this process (which hosts the gateway in integration
 * tests) while something runs, sampled from a worker thread so that a
 * main thread busy copying a large buffer is still measured.
 */
export async function peakRss<T>(
  fn: () => Promise<T>,
): Promise<{ result: T; baseline: number; peak: number }> {
  const worker = new Worker(
    `const { parentPort } = require('node:worker_threads');
     let peak = process.memoryUsage.rss();
     const t = setInterval(() => { peak = Math.max(peak, process.memoryUsage.rss()); }, 2);
     parentPort.on('message', () => { clearInterval(t); parentPort.postMessage(Math.max(peak, process.memoryUsage.rss())); });`,
    { eval: true },
  );
  await new Promise<void>((resolve, reject) => {
    worker.once('online', () => resolve());
    worker.once('error', reject);
  });
  const baseline = process.memoryUsage.rss();
  try {
    const result = await fn();
    const peak = await new Promise<number>((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
      worker.postMessage('stop');
    });
    return { result, baseline, peak };
  } finally {
    await worker.terminate();
  }
}

/** Writes `head`, `count` × `unit`, then `tail` to `file` a megabyte at a time, so a huge test input never sits in memory. */
export async function writeRepeated(
  file: string,
  head: string,
  unit: string,
  count: number,
  tail: string,
): Promise<void> {
  const out = createWriteStream(file);
  const done = new Promise<void>((resolve, reject) => {
    out.on('finish', resolve);
    out.on('error', reject);
  });
  const write = async (s: string) => {
    if (!out.write(s)) await new Promise<void>((r) => out.once('drain', () => r()));
  };
  await write(head);
  const perBlock = Math.max(1, Math.floor((1024 * 1024) / unit.length));
  const block = unit.repeat(perBlock);
  let left = count;
  while (left >= perBlock) {
    await write(block);
    left -= perBlock;
  }
  await write(unit.repeat(left));
  out.end(tail);
  await done;
}

/** SHA-256 (hex) of bytes `start`..`end` (exclusive) of a file, read in pieces. */
export async function fileSha256(file: string, start = 0, end?: number): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(file, {
    start,
    ...(end !== undefined ? { end: end - 1 } : {}),
  })) {
    h.update(chunk as Buffer);
  }
  return h.digest('hex');
}
