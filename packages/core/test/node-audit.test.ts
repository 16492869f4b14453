/**
 * POST /v1/nodes/audit against a real gateway over HTTPS: a joined node's
 * signed batches land in the audit log with `server` from its certificate;
 * forged names, foreign certificates, wrong keys, stale or replayed batches,
 * event types a node may not send are refused (and audited). The rate
 * bound is in src/nodes/audit-ingest.test.ts (a fixed clock).
 */
import { generateKeyPairSync, type KeyObject, sign } from 'node:crypto';
import type { AuditEvent } from '@gatehouse/audit';
import {
  ed25519PublicKeyToSsh,
  GatehouseClient,
  isGatehouseError,
  type NodeAuditPayload,
  SshCertSigner,
  signNodeAudit,
} from '@gatehouse/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type TestGateway } from './helpers.js';

let tg: TestGateway;
let client: GatehouseClient;

interface TestNode {
  name: string;
  cert: string;
  key: KeyObject;
}

async function joinNode(name: string): Promise<TestNode> {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const t = await tg.gw.admin.createJoinToken({ kind: 'node' });
  const res = await client.joinNode({
    token: t.token,
    name,
    addr: '127.0.0.1:3022',
    host_public_key: ed25519PublicKeyToSsh(publicKey),
  });
  return { name, cert: res.host_cert, key: privateKey };
}

const signer = (k: KeyObject) => (data: Buffer) => sign(null, data, k);

function payload(
  boot: string,
  from: number,
  events: Record<string, unknown>[],
  ts = Date.now(),
): NodeAuditPayload {
  return {
    ts,
    boot,
    events: events.map((event, i) => ({ seq: from + i, time: new Date(ts - 1000).toISOString(), event })),
  };
}

const command = (argv: string[], server = 'ignored') => ({
  type: 'session.command',
  session_id: 'sess-1',
  server,
  login: 'root',
  user: 'alice',
  pid: 10,
  ppid: 1,
  uid: 0,
  program: argv[0],
  argv,
});

async function refusal(p: Promise<unknown>): Promise<{ code: string; message: string }> {
  try {
    await p;
  } catch (e) {
    if (isGatehouseError(e)) return { code: e.code, message: e.message };
    throw e;
  }
  throw new Error('expected a refusal');
}

async function events(types: string[]): Promise<AuditEvent[]> {
  return (await tg.gw.admin.searchAudit({ types, limit: 1000 })).events;
}

beforeAll(async () => {
  tg = await startGateway();
  client = new GatehouseClient({ proxy: `127.0.0.1:${tg.port}`, caPem: tg.caPem });
});

afterAll(async () => {
  client?.close();
  await tg?.close();
});

describe('joined node audit delivery', () => {
  it('writes a batch with server from the certificate, the node time and id; a batch sent again is not written twice', async () => {
    const n = await joinNode('web1');
    const p = payload('boot-a', 1, [
      command(['/bin/true', 'first'], 'web2'),
      command(['/bin/true', 'second']),
    ]);
    const req = signNodeAudit(n.cert, p, signer(n.key));
    expect(await client.nodeAudit(req)).toEqual({ accepted: 2, duplicates: 0, refused: [] });
    // No answer reached the node (say): it sends the same batch again.
    expect(await client.nodeAudit(signNodeAudit(n.cert, p, signer(n.key)))).toEqual({
      accepted: 0,
      duplicates: 2,
      refused: [],
    });
    const got = (await events(['session.command'])).filter((e) => e.session_id === 'sess-1');
    expect(got).toHaveLength(2);
    for (const e of got) {
      // The body said web2 for the first: the certificate says web1.
      expect(e.server).toBe('web1');
      expect(e.node_time).toBe(p.events[0]!.time);
    }
    expect(got.map((e) => e.node_event_id).sort()).toEqual(['boot-a:1', 'boot-a:2']);
    // A new node process (another boot) starts its sequence again and is written.
    const again = signNodeAudit(
      n.cert,
      payload('boot-b', 1, [command(['/bin/true', 'third'])]),
      signer(n.key),
    );
    expect((await client.nodeAudit(again)).accepted).toBe(1);
  });

  it('refuses a certificate from another CA that names a registered node, and audits the refusal', async () => {
    await joinNode('web3');
    const { privateKey: caKey } = generateKeyPairSync('ed25519');
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    const forged = new SshCertSigner(caKey).sign({
      type: 'host',
      publicKey: ed25519PublicKeyToSsh(publicKey),
      serial: 1n,
      keyId: 'web3',
      principals: ['web3'],
      validAfter: new Date(Date.now() - 60_000),
      validBefore: new Date(Date.now() + 3600_000),
    });
    const r = await refusal(
      client.nodeAudit(
        signNodeAudit(forged.line, payload('x', 1, [command(['/bin/forged'])]), signer(privateKey)),
      ),
    );
    expect(r.code).toBe('GH_ERR_UNAUTHENTICATED');
    expect(r.message).toContain('not signed by a trusted Gatehouse CA');
    const refused = (await events(['node.audit_refused'])).filter(
      (e) => (e as { claimed_node?: string }).claimed_node === 'web3',
    );
    expect(refused).toHaveLength(1);
    // Not attributed to web3: the certificate that named it is not the cluster's.
    // Refused before its payload was read: it counts no events.
    expect(refused[0]).toMatchObject({ events: 0, code: 'GH1074W', user: 'unknown' });
    expect(refused[0]!.server).toBeUndefined();
    expect(JSON.stringify(await events(['session.command']))).not.toContain('/bin/forged');
  });

  it("refuses a batch signed with another key than the certificate's (a stolen certificate alone is not enough)", async () => {
    const n = await joinNode('web4');
    const other = generateKeyPairSync('ed25519').privateKey;
    const r = await refusal(
      client.nodeAudit(signNodeAudit(n.cert, payload('x', 1, [command(['/bin/x'])]), signer(other))),
    );
    expect(r.code).toBe('GH_ERR_UNAUTHENTICATED');
    expect(r.message).toContain('not signed by the key');
  });

  it('refuses a batch signed long ago (a captured batch replayed later) and a node that was removed', async () => {
    const n = await joinNode('web5');
    const old = payload('x', 1, [command(['/bin/x'])], Date.now() - 3600_000);
    expect((await refusal(client.nodeAudit(signNodeAudit(n.cert, old, signer(n.key))))).message).toContain(
      "away from the gateway's time",
    );
    await tg.gw.admin.removeNode('web5');
    const r = await refusal(
      client.nodeAudit(signNodeAudit(n.cert, payload('x', 1, [command(['/bin/x'])]), signer(n.key))),
    );
    expect(r.message).toContain('node "web5" is not registered');
  });

  it('refuses, one by one, events a node may not send and events over the size limit; the rest is written', async () => {
    const n = await joinNode('web6');
    const p = payload('b', 1, [
      { type: 'user.login', success: true, user: 'admin', method: 'password' },
      command(['/bin/big', 'x'.repeat(20_000)]),
      command(['/bin/ok-after-refusals']),
    ]);
    const res = await client.nodeAudit(signNodeAudit(n.cert, p, signer(n.key)));
    expect(res.accepted).toBe(1);
    expect(res.refused.map((r) => r.seq)).toEqual([1, 2]);
    expect(res.refused[0]!.reason).toContain('may not send events of type "user.login"');
    expect(res.refused[1]!.reason).toContain('over the 16384 byte limit');
    const refused = (await events(['node.audit_refused'])).filter((e) => e.server === 'web6');
    expect(refused.map((e) => e.node_event_id).sort()).toEqual(['b:1', 'b:2']);
    expect((await events(['user.login'])).some((e) => e.server === 'web6')).toBe(false);
  });
});
