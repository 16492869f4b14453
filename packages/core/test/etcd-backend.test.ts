import { randomBytes } from 'node:crypto';
import { afterAll } from 'vitest';
import { EtcdBackend } from '../src/backend/etcd.js';
import { backendContract } from '../src/testing/backend-contract.js';
import { type EtcdServer, startEtcd } from '../src/testing/etcd.js';

let server: Promise<EtcdServer> | undefined;
const etcd = () => {
  server ??= startEtcd();
  return server;
};
afterAll(async () => {
  if (server) await (await server).cleanup();
});

backendContract(
  'etcd',
  async (clock) => {
    const { endpoint } = await etcd();
    // One etcd for the file; each test gets a prefix of its own, so tests never see each other's keys.
    const prefix = `t-${randomBytes(6).toString('hex')}/`;
    // A long lease grace: etcd's own (real-time) lease expiry must not race the suite's sweepExpired().
    const open = () => EtcdBackend.open({ endpoints: [endpoint], prefix, clock, leaseGraceMs: 120_000 });
    const backend = await open();
    return {
      backend,
      reopen: open,
      cleanup: async () => {
        await backend.close();
        const admin = await EtcdBackend.open({ endpoints: [endpoint], prefix });
        for (const item of await admin.range('')) await admin.delete(item.key);
        await admin.close();
      },
    };
  },
  { persistent: true },
);
