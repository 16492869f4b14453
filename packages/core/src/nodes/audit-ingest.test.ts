import { generateKeyPairSync, sign } from 'node:crypto';
import { MemoryAuditLog } from '@gatehouse/audit/testing';
import { describe, expect, it } from 'vitest';
import { MemoryBackend } from '../backend/memory.js';
import { isGatehouseError } from '../errors.js';
import { ed25519PublicKeyToSsh, SshCertSigner } from '../pki/sshcert.js';
import { NodeAuditIngest, signNodeAudit } from './audit-ingest.js';

function setup() {
  const now = { ms: Date.parse('2026-06-01T00:00:00Z') };
  const ca = generateKeyPairSync('ed25519');
  const host = generateKeyPairSync('ed25519');
  const cert = new SshCertSigner(ca.privateKey).sign({
    type: 'host',
    publicKey: ed25519PublicKeyToSsh(host.publicKey),
    serial: 1n,
    keyId: 'web1',
    principals: ['web1'],
    validAfter: new Date(now.ms - 60_000),
    validBefore: new Date(now.ms + 24 * 3600_000),
  });
  const audit = new MemoryAuditLog();
  const ingest = new NodeAuditIngest({
    backend: new MemoryBackend(),
    clock: { now: () => new Date(now.ms) },
    audit,
    hostCaKeys: () => [ed25519PublicKeyToSsh(ca.publicKey)],
    nodeRegistered: async (n) => n === 'web1',
    eventsPerSecond: 100,
    eventsBurst: 1000,
  });
  let seq = 1;
  const batch = (n: number) => {
    const events = Array.from({ length: n }, (_, i) => ({
      seq: seq + i,
      time: new Date(now.ms).toISOString(),
      event: {
        type: 'session.open',
        session_id: 's',
        login: 'root',
        pid: 1,
        path: '/x',
        flags: 0,
        result: 3,
      },
    }));
    return signNodeAudit(cert.line, { ts: now.ms, boot: 'b', events }, (d) => sign(null, d, host.privateKey));
  };
  const send = async (n: number) => {
    const r = await ingest.ingest(batch(n), '127.0.0.1');
    seq += n;
    return r;
  };
  return { now, audit, send };
}

describe('NodeAuditIngest rate bound', () => {
  it('takes a burst, then tells the node to come back (429) until its rate refills; nothing of a refused batch is written', async () => {
    const { now, audit, send } = setup();
    expect((await send(500)).accepted).toBe(500);
    expect((await send(500)).accepted).toBe(500);
    let err: unknown;
    try {
      await send(100);
    } catch (e) {
      err = e;
    }
    expect(isGatehouseError(err) && err.code).toBe('GH_ERR_RATE_LIMITED');
    expect(isGatehouseError(err) && err.hint).toContain('retries in 1 s');
    expect(audit.events.filter((e) => e.type === 'session.open')).toHaveLength(1000);
    // Back-pressure is not an attack: no refusal event.
    expect(audit.events.some((e) => e.type === 'node.audit_refused')).toBe(false);
    now.ms += 1000;
    expect((await send(100)).accepted).toBe(100);
  });
});
