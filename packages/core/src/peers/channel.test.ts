import { generateKeyPairSync, randomBytes } from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';
import type { AuditEmitter, AuditEvent, AuditEventInput } from '@gatehouse/audit';
import { afterEach, describe, expect, it } from 'vitest';
import { MemoryBackend } from '../backend/memory.js';
import { systemClock } from '../clock.js';
import { AesGcmSealer } from '../crypto/seal.js';
import { CertificateAuthorities } from '../pki/authority.js';
import type { LiveSessionInfo, LiveSessions } from '../sessions/live.js';
import { PeerChannel } from './channel.js';
import type { GatewayRecord } from './registry.js';

/**
 * The internal channel's refusals, with real TLS on loopback: only a gateway
 * certificate of the same cluster gets an answer, a client checks it reached
 * the gateway it meant, and a peer that hangs is reported within the bound.
 * (The sessions themselves are a stand-in here; ha-sessions.test.ts runs the
 * real thing across three gateway processes.)
 */

class NullAudit implements AuditEmitter {
  async emit(e: AuditEventInput): Promise<AuditEvent> {
    return e as unknown as AuditEvent;
  }
  async record(): Promise<void> {}
  available(): boolean {
    return true;
  }
}

const SESSION: LiveSessionInfo = {
  id: 's1',
  kind: 'ssh',
  protocol: 'ssh',
  user: 'alice',
  server: 'node1',
  started: '2026-01-01T00:00:00.000Z',
  expires: '2026-01-01T08:00:00.000Z',
};
/** Only what the channel calls: one live session, s1. */
const liveSessions = {
  list: () => [SESSION],
  get: (id: string) => (id === SESSION.id ? SESSION : undefined),
  kill: (id: string) => id === SESSION.id,
  joinable: () => undefined,
} as unknown as LiveSessions;

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c();
});

async function cluster(name: string) {
  const backend = new MemoryBackend({ sweepIntervalMs: 0 });
  closers.push(() => backend.close());
  const sealer = new AesGcmSealer(randomBytes(32));
  const authorities = new CertificateAuthorities({
    backend,
    sealer,
    clock: systemClock,
    clusterName: name,
    audit: new NullAudit(),
  });
  await authorities.init();
  /** `channelCluster`: the cluster the channel admits (a misconfigured one, to see the URI check alone refuse). */
  const gateway = async (gw: string, channelCluster = name) => {
    const channel = new PeerChannel({
      clusterName: channelCluster,
      authorities,
      liveSessions,
      audit: new NullAudit(),
      clock: systemClock,
      log: () => {},
      clientName: () => `${gw}.admin`,
    });
    const at = await channel.listen(gw, '127.0.0.1', 0);
    closers.push(() => channel.close());
    const record: GatewayRecord = {
      name: gw,
      peer_addr: `127.0.0.1:${at.port}`,
      public_addr: 'lb:3080',
      version: 'test',
      started: new Date().toISOString(),
      instance: gw,
    };
    return { channel, record, port: at.port };
  };
  return { authorities, gateway };
}

/** A raw TLS client with `cert`: what the peer answers to GET /peer/v1/sessions (or how it ends). */
function rawGet(port: number, creds: { key: string; cert: string; ca: string[] }): Promise<string> {
  return new Promise((resolve) => {
    const s = tls.connect({ host: '127.0.0.1', port, ...creds, checkServerIdentity: () => undefined });
    let got = '';
    s.on('secureConnect', () =>
      s.write('GET /peer/v1/sessions HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n'),
    );
    s.on('data', (d) => {
      got += d;
    });
    s.on('error', (err) => resolve(`error: ${err.message}`));
    s.on('close', () => resolve(got === '' ? 'closed without an answer' : got));
  });
}

function newKey() {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return {
    key: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    pub: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
  };
}

describe('PeerChannel', () => {
  it('a gateway of the same cluster lists and kills sessions on another', async () => {
    const c = await cluster('acme');
    const a = await c.gateway('gw-a');
    const b = await c.gateway('gw-b');
    expect(await a.channel.sessions(b.record)).toEqual([{ ...SESSION, gateway: 'gw-b' }]);
    expect(await a.channel.kill(b.record, 's1', 'admin')).toBe(true);
    expect(await a.channel.kill(b.record, 'nope', 'admin')).toBe(false);
  });

  it('answers nothing to a certificate that is not a gateway certificate of its cluster', async () => {
    const c = await cluster('acme');
    const b = await c.gateway('gw-b');
    const ca = c.authorities.trustedX509Pems('host');
    const now = Date.now();
    const window = { notBefore: new Date(now - 60_000), notAfter: new Date(now + 3600_000) };
    // Signed by the same host CA, but a listener certificate (no gateway URI SAN).
    const k1 = newKey();
    const server = await c.authorities.issueX509ServerCert({
      publicKeyPem: k1.pub,
      commonName: 'gw-b',
      dnsNames: ['gw-b'],
      ipAddresses: ['127.0.0.1'],
      ...window,
    });
    expect(await rawGet(b.port, { key: k1.key, cert: server.cert, ca })).not.toMatch(/HTTP\/1\.1 200/);
    // A user's client certificate (user CA).
    const k2 = newKey();
    const user = await c.authorities.issueX509UserCert({
      publicKeyPem: k2.pub,
      identity: { user: 'alice', roles: ['admin'], traits: {}, expires: window.notAfter },
      ...window,
    } as Parameters<CertificateAuthorities['issueX509UserCert']>[0]);
    expect(await rawGet(b.port, { key: k2.key, cert: user.cert, ca })).not.toMatch(/HTTP\/1\.1 200/);
    // A gateway certificate of this cluster: answered (the same raw client, so the refusals above are the certificates').
    const k3 = newKey();
    const gw = await c.authorities.issueGatewayCert({ publicKeyPem: k3.pub, name: 'gw-x', ...window });
    expect(await rawGet(b.port, { key: k3.key, cert: gw.cert, ca })).toMatch(/HTTP\/1\.1 200/);
    // A gateway certificate of this cluster's CA at a channel that admits only cluster "other": the TLS
    // layer accepts the chain, the gateway URI check alone refuses it.
    const strict = await c.gateway('gw-strict', 'other');
    expect(await rawGet(strict.port, { key: k3.key, cert: gw.cert, ca })).toBe('closed without an answer');
    // Another cluster's gateway: its CA is not trusted here.
    const other = await cluster('other');
    const x = await other.gateway('gw-x');
    await expect(x.channel.sessions({ ...b.record })).rejects.toMatchObject({
      code: 'GH_ERR_PEER_UNAVAILABLE',
    });
  });

  it('a client refuses a peer that is not the gateway the registry named', async () => {
    const c = await cluster('acme');
    const a = await c.gateway('gw-a');
    const b = await c.gateway('gw-b');
    // The address is gw-b's, but the registry (stale) says gw-c lives there.
    await expect(a.channel.sessions({ ...b.record, name: 'gw-c' })).rejects.toThrow(/not gateway gw-c/);
  });

  it('a peer that accepts connections but never answers is reported unreachable, not waited for', async () => {
    const c = await cluster('acme');
    const a = await c.gateway('gw-a');
    const sockets: net.Socket[] = [];
    const silent = net.createServer((s) => sockets.push(s));
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    closers.push(
      () =>
        new Promise<void>((r) => {
          for (const s of sockets) s.destroy();
          silent.close(() => r());
        }),
    );
    const port = (silent.address() as net.AddressInfo).port;
    await expect(
      a.channel.sessions({ ...a.record, name: 'gw-frozen', peer_addr: `127.0.0.1:${port}` }),
    ).rejects.toMatchObject({
      code: 'GH_ERR_PEER_UNAVAILABLE',
      message: expect.stringMatching(/no answer within/),
    });
  });
});
