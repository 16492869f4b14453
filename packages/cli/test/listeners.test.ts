import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import {
  fetchPinnedCa,
  GatehouseClient,
  type NodeView,
  type PingResponse,
  parseHostPort,
} from '@gatehouse/core';
import { freePort } from '@gatehouse/core/testing';
import { afterEach, describe, expect, it } from 'vitest';
import { waitFor } from '../../core/test/helpers.js';
import { admin, auditEvents, type Daemon, run, startDaemon, startEmbedded } from './harness.js';

/**
 * Where the daemon's listeners go, in each mode (config file or the embedded
 * quick start), and what clients are told about them (the BUILT binary: run
 * `npx tsc -b` first).
 */
const daemons: Daemon[] = [];
const held: net.Server[] = [];

afterEach(async () => {
  for (const d of daemons.splice(0)) {
    await d.stop();
    rmSync(d.root, { recursive: true, force: true });
  }
  for (const s of held.splice(0)) await new Promise((r) => s.close(r));
});

async function track(p: Promise<Daemon>): Promise<Daemon> {
  const d = await p;
  daemons.push(d);
  return d;
}

/** GET /v1/ping from the daemon, trusting its pinned CA. */
async function ping(d: Daemon): Promise<PingResponse> {
  const { host, port } = parseHostPort(d.proxy);
  const ca = await fetchPinnedCa({ host, port, pin: d.pin });
  const client = new GatehouseClient({ proxy: d.proxy, caPem: ca.caPem });
  try {
    return await client.ping();
  } finally {
    client.close();
  }
}

/** The first packet a MySQL listener sends (the server speaks first). */
function greeting(port: number): Promise<Buffer> {
  return new Promise<Buffer>((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('data', (b) => {
      s.destroy();
      resolve(b);
    });
    s.once('error', reject);
  });
}

/** A port some other program holds. */
async function occupiedPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  held.push(s);
  return (s.address() as net.AddressInfo).port;
}

describe('listeners: moved, turned off, advertised as bound', () => {
  it('a second embedded gateway on the machine moves MySQL off 3036 (--mysql-listen) or turns it off (GATEHOUSE_MYSQL_LISTEN=off)', async () => {
    // Before: the quick start always bound 127.0.0.1:3036, so the second one failed with EADDRINUSE.
    const moved = await track(
      startEmbedded({ args: ['--listen', '127.0.0.1:0', '--mysql-listen', '127.0.0.1:0'] }),
    );
    const port = Number(/^ {2}mysql:\s+127\.0\.0\.1:(\d+)$/m.exec(moved.out())?.[1]);
    expect(port).toBeGreaterThan(0);
    expect(port).not.toBe(3036);
    // Clients are told the bound port, not the 0 of the setting.
    expect((await ping(moved)).mysql_listen).toBe(`127.0.0.1:${port}`);

    const off = await track(startEmbedded({ env: { GATEHOUSE_MYSQL_LISTEN: 'off' } }));
    expect(off.out()).not.toContain('mysql:');
    const p = await ping(off);
    expect(p.mysql_listen).toBeUndefined();
    // The public address clients are given is the bound one too (listen 127.0.0.1:0).
    expect(p.public_addr).toBe(off.proxy);
    expect(off.proxy).toMatch(/^127\.0\.0\.1:[1-9]\d*$/);
  });

  it('mysql_listen: 127.0.0.1:0 in a config is advertised with its bound port', async () => {
    const d = await track(startDaemon({ cluster: 'lsn', extraConfig: 'mysql_listen: 127.0.0.1:0\n' }));
    const port = Number(/^ {2}mysql:\s+127\.0\.0\.1:(\d+)$/m.exec(d.out())?.[1]);
    expect(port).toBeGreaterThan(0);
    expect((await ping(d)).mysql_listen).toBe(`127.0.0.1:${port}`);
    // The port really serves MySQL: the server speaks first with a protocol-10 greeting.
    expect((await greeting(port))[4]).toBe(10);
  });

  it('an address in use names the setting to change (was: "hint: this is unexpected")', async () => {
    const busy = await occupiedPort();
    const data = await track(startDaemon({ cluster: 'lsnbusy' }));
    await data.stop();
    const cfg = join(data.root, 'busy.yaml');
    writeFileSync(cfg, `data_dir: ${data.dataDir}\nlisten: 127.0.0.1:0\nmysql_listen: 127.0.0.1:${busy}\n`);
    const mysql = await run(['start', '--config', cfg]);
    expect(mysql.code).toBe(1);
    expect(mysql.stderr).toContain(
      `error: mysql_listen: 127.0.0.1:${busy} is already in use by another process`,
    );
    expect(mysql.stderr).toMatch(/^hint: .*--mysql-listen.*off turns it off/m);
    expect(mysql.stderr).not.toContain('unexpected');

    const main = await run([
      'start',
      '--config',
      cfg,
      '--listen',
      `127.0.0.1:${busy}`,
      '--mysql-listen',
      'off',
    ]);
    expect(main.code).toBe(1);
    expect(main.stderr).toContain(`error: listen: 127.0.0.1:${busy} is already in use by another process`);
    expect(main.stderr).toMatch(/^hint: .*--listen HOST:PORT/m);

    const env = await run(['start', '--config', cfg], { env: { GATEHOUSE_MYSQL_LISTEN: 'nowhere' } });
    expect(env.code).toBe(1);
    expect(env.stderr).toContain('error: invalid GATEHOUSE_MYSQL_LISTEN value "nowhere"');
    expect(env.stderr).toContain('hint: fix GATEHOUSE_MYSQL_LISTEN');
  });

  it('users add --data-dir prints an invite for the address the gateway listens on (was 127.0.0.1:3080)', async () => {
    const d = await track(startDaemon({ cluster: 'lsninv' }));
    expect(d.proxy).not.toBe('127.0.0.1:3080');
    const r = await run(['users', 'add', 'bob', '--roles', 'access', '--data-dir', d.dataDir]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`gatehouse accept-invite --proxy ${d.proxy} --ca-pin ${d.pin} `);
  });

  it('builtin_node: true serves this machine as a node with a config file; without it there is none', async () => {
    const listNodes = async (d: Daemon) =>
      JSON.parse((await admin(d, ['ls', '--json'])).stdout) as NodeView[];
    const on = await track(startDaemon({ cluster: 'lsnnode', extraConfig: 'builtin_node: true\n' }));
    const builtin = (await listNodes(on)).filter((n) => n.labels.builtin === 'true');
    expect(builtin).toHaveLength(1);
    const off = await track(startDaemon({ cluster: 'lsnnone' }));
    expect((await listNodes(off)).filter((n) => n.labels.builtin === 'true')).toEqual([]);
  });

  it("SIGHUP moves MySQL's listener to a new address or turns it off, and refuses an address in use", async () => {
    const d = await track(startDaemon({ cluster: 'lsnmove', extraConfig: 'mysql_listen: 127.0.0.1:0\n' }));
    const before = (await ping(d)).mysql_listen!;
    const oldPort = Number(before.split(':')[1]);
    const base = readFileSync(d.configFile, 'utf8');
    const reloads = () => auditEvents(d).filter((e) => e.type === 'gateway.reload');
    const hup = async (n: number) => {
      process.kill(d.pid, 'SIGHUP');
      return waitFor(() => reloads()[n - 1], `gateway.reload #${n}`, 15_000);
    };

    // An address another program holds: refused, MySQL stays where it was.
    const busy = await occupiedPort();
    writeFileSync(d.configFile, base.replace('mysql_listen: 127.0.0.1:0', `mysql_listen: 127.0.0.1:${busy}`));
    expect(await hup(1)).toMatchObject({
      success: false,
      error: `mysql_listen: 127.0.0.1:${busy} is already in use by another process`,
    });
    expect((await ping(d)).mysql_listen).toBe(before);
    expect((await greeting(oldPort))[4]).toBe(10);

    // Moved: the new port serves MySQL and is advertised; the old one is closed.
    const next = await freePort();
    writeFileSync(d.configFile, base.replace('mysql_listen: 127.0.0.1:0', `mysql_listen: 127.0.0.1:${next}`));
    expect(await hup(2)).toMatchObject({ success: true, applied: ['mysql_listen'], restart_required: [] });
    expect((await ping(d)).mysql_listen).toBe(`127.0.0.1:${next}`);
    expect((await greeting(next))[4]).toBe(10);
    await expect(greeting(oldPort)).rejects.toThrow(/ECONNREFUSED/);

    // Off: nothing listens and clients are told there is no MySQL listener.
    writeFileSync(d.configFile, base.replace('mysql_listen: 127.0.0.1:0', 'mysql_listen: "off"'));
    expect(await hup(3)).toMatchObject({ success: true, applied: ['mysql_listen'] });
    expect((await ping(d)).mysql_listen).toBeUndefined();
    await expect(greeting(next)).rejects.toThrow(/ECONNREFUSED/);
  });
});
