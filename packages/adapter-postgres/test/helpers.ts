import { spawn } from 'node:child_process';
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Gateway, Identity } from '@gatehouse/core';
import { newTlsKey } from '../../core/test/helpers.js';

export interface CertFiles {
  cert: string;
  key: string;
  certPem: string;
  keyPem: string;
}

/** A Gatehouse user certificate (as login would issue it), written 0600 for libpq. */
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
  const cert = join(dir, `${name}.crt`);
  const key = join(dir, `${name}.key`);
  writeFileSync(cert, issued.cert);
  writeFileSync(key, k.privatePem);
  chmodSync(key, 0o600);
  return { cert, key, certPem: issued.cert, keyPem: k.privatePem };
}

export interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export function conninfo(o: Record<string, string | number | undefined>): string {
  return Object.entries(o)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `${k}='${String(v).replace(/['\\]/g, '\\$&')}'`)
    .join(' ');
}

/** Runs the real psql; `onSpawn` gets the child (e.g. to send SIGINT). */
export function psql(
  args: string[],
  opts: {
    env?: NodeJS.ProcessEnv;
    input?: string;
    cwd?: string;
    timeoutMs?: number;
    onSpawn?: (c: ReturnType<typeof spawn>) => void;
  } = {},
): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn('psql', ['-X', '-v', 'ON_ERROR_STOP=1', ...args], {
      env: { PATH: process.env.PATH, HOME: opts.cwd ?? '/nonexistent', PGCONNECT_TIMEOUT: '20', ...opts.env },
      cwd: opts.cwd,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => {
      stdout += d;
    });
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 45_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
    child.stdin.end(opts.input ?? '');
    opts.onSpawn?.(child);
  });
}
