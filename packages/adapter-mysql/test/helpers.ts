import { writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import type { AuditSink } from '@gatehouse/audit';
import { type ConfigFile, createGateway, type Gateway } from '@gatehouse/core';
import { type CertFiles, type ClientRun, runClient, userCert } from '../../core/test/helpers.js';

// Shared with the other database adapters' tests (core/test/helpers.ts).
export { type CertFiles, userCert };

import { type MysqlAdapterOptions, mysql } from '../src/index.js';
import { MARIADB } from './peers.js';

export interface MysqlGateway {
  gw: Gateway;
  /** Main TLS port (ALPN gatehouse-mysql). */
  port: number;
  /** Dedicated MySQL port. */
  mysqlPort: number;
  dir: string;
  hostCaFile: string;
  hostCaPem: string;
  close(): Promise<void>;
}

/** `values`: more config (merged with mysql_listen); `auditSinks`: extra audit sinks. */
export async function startMysqlGateway(
  opts: MysqlAdapterOptions = {},
  values: ConfigFile = {},
  auditSinks: AuditSink[] = [],
): Promise<MysqlGateway> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'gh-mygw-'));
  const gw = await createGateway({
    dataDir: dir,
    secondFactor: 'off',
    values: { ...values, mysql_listen: '127.0.0.1:0' },
    auditSinks,
    env: {},
  });
  gw.use(mysql(opts));
  const l = await gw.listen({ host: '127.0.0.1', port: 0 });
  const hostCaPem = gw.authorities
    .get('host')
    .map((k) => k.x509CertPem)
    .join('\n');
  const hostCaFile = path.join(dir, 'host-ca.pem');
  writeFileSync(hostCaFile, hostCaPem);
  const mysqlPort = l.dedicated.mysql?.port;
  if (!mysqlPort) throw new Error('the dedicated MySQL listener did not open');
  return {
    gw,
    port: l.port,
    mysqlPort,
    dir,
    hostCaFile,
    hostCaPem,
    async close() {
      await gw.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export type Run = ClientRun;

/** The real mariadb client, never reading any option file. */
export function mariadb(args: string[], opts: Parameters<typeof runClient>[2] = {}): Promise<Run> {
  return runClient(MARIADB, ['--no-defaults', '--connect-timeout=20', ...args], opts);
}

/**
 * A minimal local tunnel like `gatehouse proxy db`: plain MySQL on loopback,
 * TLS + ALPN gatehouse-mysql + the user's certificate towards the gateway.
 */
export async function localTunnel(
  gatewayPort: number,
  caPem: string,
  cert: CertFiles,
): Promise<{ port: number; close(): Promise<void> }> {
  const server = net.createServer((local) => {
    const remote = tls.connect({
      host: '127.0.0.1',
      port: gatewayPort,
      servername: 'localhost',
      ca: caPem,
      cert: cert.certPem,
      key: cert.keyPem,
      ALPNProtocols: ['gatehouse-mysql'],
    });
    local.pipe(remote).pipe(local);
    local.on('error', () => remote.destroy());
    remote.on('error', () => local.destroy());
    local.on('close', () => remote.destroy());
    remote.on('close', () => local.destroy());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () =>
      new Promise<void>((r) => {
        server.close(() => r());
      }),
  };
}
