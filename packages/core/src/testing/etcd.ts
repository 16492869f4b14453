import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { freePort, waitForPort } from './peers.js';

/** Debian's etcd-server (shared/PEERS.md); scripts/peers.mjs installs it. */
export const ETCD = '/usr/bin/etcd';

export interface EtcdTls {
  certFile: string;
  keyFile: string;
  /** When set, etcd requires client certificates signed by this CA. */
  clientCaFile?: string;
}

export interface EtcdServer {
  /** The client URL (http:// or https://127.0.0.1:port). */
  endpoint: string;
  clientPort: number;
  /** What etcd wrote to stderr so far (for failure messages). */
  log(): string;
  /** Stops etcd (SIGTERM, then SIGKILL); the data dir stays, so start() resumes the same store. */
  stop(): Promise<void>;
  /** Starts it again on the same ports and data dir after stop(). */
  start(): Promise<void>;
  /** Stops etcd and removes its directory. */
  cleanup(): Promise<void>;
}

/**
 * A real single-member etcd on free loopback ports (client and peer) in a
 * temporary directory, ready when /health says so. The caller must call
 * cleanup() (afterAll), which leaves no process or directory behind.
 */
export async function startEtcd(opts: { tls?: EtcdTls } = {}): Promise<EtcdServer> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'gh-etcd-'));
  const clientPort = await freePort();
  const peerPort = await freePort();
  const scheme = opts.tls ? 'https' : 'http';
  const endpoint = `${scheme}://127.0.0.1:${clientPort}`;
  const peer = `http://127.0.0.1:${peerPort}`;
  const args = [
    '--name',
    'gh-test',
    '--data-dir',
    path.join(dir, 'data'),
    '--listen-client-urls',
    endpoint,
    '--advertise-client-urls',
    endpoint,
    '--listen-peer-urls',
    peer,
    '--initial-advertise-peer-urls',
    peer,
    '--initial-cluster',
    `gh-test=${peer}`,
    '--initial-cluster-state',
    'new',
    '--logger',
    'zap',
    '--log-outputs',
    'stderr',
    // Small timings keep leader election (and so readiness after a restart) quick.
    '--heartbeat-interval',
    '50',
    '--election-timeout',
    '500',
    ...(opts.tls
      ? [
          '--cert-file',
          opts.tls.certFile,
          '--key-file',
          opts.tls.keyFile,
          ...(opts.tls.clientCaFile
            ? ['--client-cert-auth', '--trusted-ca-file', opts.tls.clientCaFile]
            : []),
        ]
      : []),
  ];
  let child: ChildProcess | undefined;
  let stderr = '';

  const start = async () => {
    if (child && child.exitCode === null && child.signalCode === null)
      throw new Error('etcd is already running');
    const c = spawn(ETCD, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    child = c;
    c.stderr?.on('data', (d: Buffer) => {
      // Keep the tail only: etcd logs every request at startup and on each election.
      stderr = (stderr + d.toString()).slice(-20_000);
    });
    try {
      await waitForPort(clientPort, c, 20_000, 'etcd');
      await waitHealthy(c);
    } catch (e) {
      await stop();
      throw new Error(`${(e as Error).message}\n${stderr}`);
    }
  };

  const waitHealthy = async (c: ChildProcess) => {
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline) {
      if (c.exitCode !== null) throw new Error(`etcd exited with ${c.exitCode}`);
      if (opts.tls) return; // /health would need the client certificate; the port is enough then.
      const healthy = await fetch(`${endpoint}/health`)
        .then(async (r) => ((await r.json()) as { health?: string }).health === 'true')
        .catch(() => false);
      if (healthy) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error('etcd did not report healthy within 20 s');
  };

  const stop = async () => {
    const c = child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => c.once('exit', () => resolve()));
    c.kill('SIGTERM');
    const timer = setTimeout(() => c.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(timer);
  };

  await start().catch(async (e: unknown) => {
    await rm(dir, { recursive: true, force: true });
    throw e;
  });
  return {
    endpoint,
    clientPort,
    log: () => stderr,
    stop,
    start,
    cleanup: async () => {
      await stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export interface TcpRelay {
  port: number;
  /** Drops every relayed connection and refuses new ones until restore(): a network cut. */
  cut(): void;
  restore(): void;
  close(): Promise<void>;
}

/** A loopback TCP relay to 127.0.0.1:targetPort that a test can cut, to break a client's connections only. */
export async function startTcpRelay(targetPort: number): Promise<TcpRelay> {
  const sockets = new Set<net.Socket>();
  let cut = false;
  const server = net.createServer((client) => {
    if (cut) {
      client.destroy();
      return;
    }
    const upstream = net.connect(targetPort, '127.0.0.1');
    for (const s of [client, upstream]) {
      sockets.add(s);
      // A reset on either side ends both; nothing else to report in a relay.
      s.on('error', () => s.destroy());
      s.on('close', () => {
        sockets.delete(s);
        client.destroy();
        upstream.destroy();
      });
    }
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    cut: () => {
      cut = true;
      for (const s of sockets) s.destroy();
    },
    restore: () => {
      cut = false;
    },
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
