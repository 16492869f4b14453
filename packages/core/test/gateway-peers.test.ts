import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { createGateway, isGatehouseError, loadConfig } from '../src/index.js';

/**
 * The gateway's side of decision 0039-gateway-peers in one process: the
 * registry record it publishes at listen and removes at close, and the
 * internal listener's address errors naming their setting.
 */
async function gatewayWith(yaml: string) {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'gh-peers-'));
  const config = await loadConfig({
    text: `data_dir: ${dir}\nlisten: 127.0.0.1:0\nauth: { second_factor: "off" }\n${yaml}`,
    env: {},
  });
  const gw = await createGateway({ config, env: {}, backend: 'memory' });
  return {
    gw,
    async close() {
      await gw.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

describe('gateway peers', () => {
  it('registers itself at listen with the address of its internal listener', async () => {
    const t = await gatewayWith('gateway: { name: gw-one }\n');
    try {
      await t.gw.listen();
      const self = t.gw.registry.self;
      expect(self).toMatchObject({ name: 'gw-one', peer_addr: expect.stringMatching(/^127\.0\.0\.1:\d+$/) });
      expect((await t.gw.registry.list()).map((g) => g.name)).toEqual(['gw-one']);
      expect(t.gw.gatewayName()).toBe('gw-one');
      // The internal address really is a listener (the mTLS channel).
      const port = Number(self!.peer_addr.split(':')[1]);
      await new Promise<void>((resolve, reject) => {
        const s = net.connect(port, '127.0.0.1', () => {
          s.destroy();
          resolve();
        });
        s.on('error', reject);
      });
    } finally {
      await t.close();
    }
  });

  it('an internal address that is taken stops listen with an error naming gateway.peer_listen', async () => {
    const busy = net.createServer();
    await new Promise<void>((r) => busy.listen(0, '127.0.0.1', r));
    const port = (busy.address() as net.AddressInfo).port;
    const t = await gatewayWith(`gateway: { name: gw-two, peer_listen: "127.0.0.1:${port}" }\n`);
    try {
      const err = await t.gw.listen().catch((e: unknown) => e);
      expect(isGatehouseError(err) && err.code).toBe('GH_ERR_LISTEN_FAILED');
      expect((err as Error).message).toBe(
        `gateway.peer_listen: 127.0.0.1:${port} is already in use by another process`,
      );
    } finally {
      await t.close();
      await new Promise((r) => busy.close(r));
    }
  });
});
