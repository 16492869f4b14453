import { startEtcd } from '@gatehouse/core/testing';
import { describe, expect, it } from 'vitest';
import { startDaemon } from './harness.js';

/** `gatehouse start --config` with `backend: { type: etcd }` against a real etcd. */
describe('gatehouse start with an etcd backend', () => {
  it('says etcd is unreachable and retries, then starts once etcd is up', async () => {
    const etcd = await startEtcd();
    try {
      await etcd.stop();
      let saidSo: () => void = () => {};
      const said = new Promise<void>((resolve) => {
        saidSo = resolve;
      });
      const starting = startDaemon({
        cluster: 'etcd-late',
        extraConfig: `backend:\n  type: etcd\n  endpoints: [${etcd.endpoint}]\n  prefix: late/\n  request_timeout: 2s\n`,
        onStderr: (err) => {
          if (err.includes('etcd is not reachable (attempt 2)')) saidSo();
        },
      });
      // Only once it has said so twice (so it retried) does etcd come up.
      await Promise.race([said, starting]);
      await etcd.start();
      const d = await starting;
      try {
        expect(d.err()).toMatch(
          new RegExp(
            `gatehouse: error: etcd is not reachable \\(attempt 1\\); retrying in \\d+ ms: etcd at ${etcd.endpoint.replace(/[.]/g, '\\.')} did not complete connect`,
          ),
        );
        expect(d.adminToken).not.toBe('');
        expect(d.alive()).toBe(true);
      } finally {
        await d.stop();
      }
    } finally {
      await etcd.cleanup();
    }
  });

  it('refuses an endpoint that is not a URL, naming backend.endpoints', async () => {
    const err = await startDaemon({
      cluster: 'etcd-bad',
      extraConfig: 'backend:\n  type: etcd\n  endpoints: [127.0.0.1:2379]\n',
    }).then(
      () => 'started',
      (e: Error) => e.message,
    );
    expect(err).toMatch(/gatehouse start exited with [1-9]/);
    expect(err).toContain('backend.endpoints: "127.0.0.1:2379" is not an etcd client URL');
  });
});
