import { execFileSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { type CreateGatewayOptions, createGateway, type Gateway } from '../src/index.js';

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

/** A self-signed cert from a CA Gatehouse has never seen (made by the real openssl). */
export function foreignCert(dir: string): { cert: string; key: string } {
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
      '/CN=mallory',
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
