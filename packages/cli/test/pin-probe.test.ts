import { rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../../core/test/helpers.js';
import { admin, type Daemon, PASSWORD, run, startDaemon } from './harness.js';

/**
 * `--ca-pin` makes the CLI connect once to read the proxy's certificate
 * chain before it trusts anything. That connection used to be torn down
 * right after the CLI's side of the handshake, before the gateway's side
 * had finished: each login left a half-open connection that the listener
 * audited as a rejected connection (handshake_timeout) seconds later.
 */

interface Reject {
  reason: string;
  error: string;
  addr?: { remote?: string };
}

let d: Daemon;
const home = () => join(d.root, 'home-admin');

async function rejects(): Promise<Reject[]> {
  const r = await admin(d, ['audit', 'search', '--type', 'listener.reject', '--json', '--limit', '1000']);
  return (JSON.parse(r.stdout) as { events: Reject[] }).events;
}

beforeAll(async () => {
  // Short deadlines, so a half-open connection is audited soon after it is left behind.
  d = await startDaemon({
    cluster: 'probe',
    extraConfig: 'listener:\n  first_byte_timeout: 1s\n  handshake_timeout: 1s\n',
  });
});

afterAll(async () => {
  if (d) expect(await d.stop(), d.err()).toBe(0);
  if (d) rmSync(d.root, { recursive: true, force: true });
});

describe('the CA pin check', () => {
  it('accept-invite, login and ca export with --ca-pin, right or wrong, leave no listener.reject behind (each left a handshake_timeout)', async () => {
    const env = { GATEHOUSE_HOME: home() };
    const pin = ['--proxy', d.proxy, '--ca-pin', d.pin];
    const steps = [
      await run(['accept-invite', ...pin, d.adminToken, '--password-stdin'], { env, input: `${PASSWORD}\n` }),
      await run(['login', ...pin, '--user', 'admin', '--password-stdin'], { env, input: `${PASSWORD}\n` }),
      await run(['ca', 'export', '--format', 'known_hosts', ...pin], { env }),
    ];
    for (const s of steps) {
      expect(s.stderr).toBe('');
      expect(s.code).toBe(0);
    }
    // A pin that does not match is refused, and its connection closed just as cleanly.
    const wrong = await run(
      ['ca', 'export', '--format', 'known_hosts', '--proxy', d.proxy, '--ca-pin', `sha256:${'0'.repeat(64)}`],
      {
        env,
      },
    );
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toContain('presented no CA matching pin');

    // A canary that connects now and stays silent is refused after the
    // first-byte deadline; any connection the commands above left open was
    // opened earlier and has a deadline no later, so once the canary's
    // refusal is in the audit log, theirs would be too.
    const canary: Socket = connect(Number(d.proxy.split(':')[1]), '127.0.0.1');
    canary.on('error', () => {
      // The gateway closes it: that is the point of it.
    });
    await new Promise<void>((resolve) => canary.once('connect', () => resolve()));
    const mine = `127.0.0.1:${canary.localPort}`;
    try {
      await waitFor(
        async () => (await rejects()).some((e) => e.addr?.remote === mine),
        "the canary's listener.reject",
        20_000,
      );
    } finally {
      canary.destroy();
    }
    const others = (await rejects()).filter((e) => e.addr?.remote !== mine);
    expect(others).toEqual([]);
  });
});
