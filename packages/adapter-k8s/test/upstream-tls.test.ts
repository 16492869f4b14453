import { mkdtemp, rm } from 'node:fs/promises';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type KubeUpstream, resolveUpstream } from '../src/upstream.js';
import { type FixtureApiServer, startFixtureApiServer } from './fixture-apiserver.js';

// The upstream's TLS settings are built once per cluster (one secure context shared by
// its pooled and its upgrade connections): the API server must still be verified
// against the kubeconfig's CA on both.
let dirs: string[] = [];
let trusted: FixtureApiServer;
let stranger: FixtureApiServer;

beforeAll(async () => {
  dirs = await Promise.all([1, 2].map(() => mkdtemp(path.join(os.tmpdir(), 'gh-kube-tls-'))));
  trusted = await startFixtureApiServer({ dir: dirs[0] as string });
  stranger = await startFixtureApiServer({ dir: dirs[1] as string });
}, 60_000);

afterAll(async () => {
  await trusted?.close();
  await stranger?.close();
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

function get(up: KubeUpstream, agent: https.Agent): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        hostname: up.hostname,
        port: up.port,
        path: `${up.pathPrefix}/version`,
        agent,
        headers: { ...up.headers, host: up.host },
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

describe('upstream TLS', () => {
  it('reaches the API server its kubeconfig names and trusts, pooled and fresh', async () => {
    const up = await resolveUpstream({ name: 'ok', kubeconfig: trusted.kubeconfig, labels: {} });
    try {
      expect(await get(up, up.agent)).toBe(200);
      expect(await get(up, up.upgradeAgent)).toBe(200);
    } finally {
      up.agent.destroy();
      up.upgradeAgent.destroy();
    }
  });

  it('refuses an API server whose certificate the kubeconfig CA did not sign, pooled and fresh', async () => {
    // The trusted fixture's CA and client certificate, pointed at the other fixture's server.
    const kubeconfig = trusted.kubeconfig.replace(trusted.url, stranger.url);
    const up = await resolveUpstream({ name: 'mitm', kubeconfig, labels: {} });
    try {
      for (const agent of [up.agent, up.upgradeAgent]) {
        await expect(get(up, agent)).rejects.toMatchObject({
          code: expect.stringMatching(
            /UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT_LOCALLY|SELF_SIGNED/,
          ),
        });
      }
      expect(stranger.requests).toHaveLength(0);
    } finally {
      up.agent.destroy();
      up.upgradeAgent.destroy();
    }
  });
});
