import { generateKeyPairSync, sign } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GatehouseError, type NodeAuditPayload, type NodeAuditRequest, systemClock } from '@gatehouse/core';
import { afterEach, describe, expect, it } from 'vitest';
import { NodeAuditForwarder } from './audit-forward.js';

const { privateKey } = generateKeyPairSync('ed25519');
const dirs: string[] = [];

afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function forwarder(dir: string, send: (req: NodeAuditRequest) => Promise<void>, logs: string[] = []) {
  return new NodeAuditForwarder({
    dir,
    cert: 'ssh-ed25519-cert-v01@openssh.com AAAA',
    sign: (d) => sign(null, d, privateKey),
    send: async (req) => {
      await send(req);
      const p = JSON.parse(req.payload) as NodeAuditPayload;
      return { accepted: p.events.length, duplicates: 0, refused: [] };
    },
    clock: systemClock,
    log: (_level, msg) => logs.push(msg),
    retryInitialMs: 10,
    retryMaxMs: 20,
  });
}

const open = (path: string) => ({
  type: 'session.open' as const,
  session_id: 's',
  server: 'n',
  login: 'root',
  pid: 1,
  path,
  flags: 0,
  result: 3,
});

describe('NodeAuditForwarder', () => {
  it('keeps events on disk while the gateway refuses them, and a new process sends the old spool first, in order, one boot per batch', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gh-fwd-'));
    dirs.push(dir);
    const logs: string[] = [];
    let attempts = 0;
    const down = forwarder(
      dir,
      async () => {
        attempts++;
        throw new GatehouseError('GH_ERR_UPSTREAM_UNAVAILABLE', 'connection refused');
      },
      logs,
    );
    for (const p of ['/a', '/b', '/c']) await down.emit(open(p));
    // Wait for a few retries, then stop this process with nothing delivered.
    await new Promise<void>((r) => {
      const t = setInterval(() => {
        if (attempts >= 3) {
          clearInterval(t);
          r();
        }
      }, 5);
    });
    await down.close();
    expect(down.pending()).toBe(3);
    // One line per outage, not per retry.
    expect(logs.filter((l) => l.includes('stay spooled'))).toHaveLength(1);

    const sent: NodeAuditPayload[] = [];
    const up = forwarder(dir, async (req) => {
      sent.push(JSON.parse(req.payload) as NodeAuditPayload);
    });
    await up.emit(open('/d'));
    await up.flush();
    await up.close();
    expect(sent.map((b) => b.events.map((e) => [e.seq, (e.event as { path: string }).path]))).toEqual([
      [
        [1, '/a'],
        [2, '/b'],
        [3, '/c'],
      ],
      [[1, '/d']],
    ]);
    // Two processes, two boots: the gateway tells their sequences apart.
    expect(sent[0]!.boot).not.toBe(sent[1]!.boot);
    expect(up.pending()).toBe(0);
    expect(existsSync(join(dir, 'gateway.spool.jsonl'))).toBe(false);
  });
});
