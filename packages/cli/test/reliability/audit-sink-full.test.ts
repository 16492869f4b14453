/**
 * An audit export sink whose receiver is gone, against the real daemon, a
 * real rsyslogd, a real sshd and OpenSSH: the sink's spool fills, new
 * sessions are refused saying the audit sink is full (on_full: block, the
 * default), and once rsyslogd is back everything reaches it, in order, and
 * the same command runs again.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import type { AuditEvent } from '@gatehouse/audit';
import { type Rsyslog, startRsyslog } from '@gatehouse/audit/testing';
import type { Sshd } from '@gatehouse/core/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeServerCa } from '../../../adapter-postgres/test/peers.js';
import { runClient } from '../../../core/test/helpers.js';
import {
  addAccessUser,
  addNode,
  auditEvents,
  BIN,
  type Daemon,
  PASSWORD,
  startDaemon,
  startNodeSshd,
} from '../harness.js';

const login = `ghs${randomBytes(3).toString('hex')}`;
let rs: Rsyslog;
let rsDir: string;
let d: Daemon;
let sshd: Sshd;
let home: string;

const gh = (args: string[], input = '') =>
  runClient(process.execPath, [BIN, ...args], {
    env: { ...process.env, GATEHOUSE_HOME: home },
    input,
    timeoutMs: 30_000,
  });

/** The events rsyslogd wrote, first copy of each id (the sink is at least once). */
function atRsyslog(): AuditEvent[] {
  const seen = new Set<string>();
  const out: AuditEvent[] = [];
  for (const l of rs.lines()) {
    const e = JSON.parse(l.msg) as AuditEvent;
    if (!seen.has(e.id)) {
      seen.add(e.id);
      out.push(e);
    }
  }
  return out;
}

beforeAll(async () => {
  execFileSync('useradd', ['-m', '-s', '/bin/sh', login]);
  execFileSync('usermod', ['-p', '*', login]);
  rsDir = execFileSync('mktemp', ['-d']).toString().trim();
  const ca = makeServerCa(rsDir);
  rs = await startRsyslog({ dir: rsDir, caFile: ca.caFile, certFile: ca.certFile, keyFile: ca.keyFile });
  d = await startDaemon({
    cluster: 'sinkfull',
    extraConfig:
      'audit:\n  sinks:\n' +
      `    - { type: syslog, name: siem, protocol: tcp, addr: "127.0.0.1:${rs.tcpPort}", max_spool_bytes: 8192 }\n`,
  });
  home = join(d.root, 'home-alice');
  await addAccessUser(d, 'alice', login);
  sshd = await startNodeSshd(d, ['PrintMotd no']);
  await addNode(d, 'node1', sshd.port);
  const r = await gh(
    ['login', '--proxy', d.proxy, '--user', 'alice', '--ca-pin', d.pin, '--password-stdin'],
    `${PASSWORD}\n`,
  );
  expect(r.code, r.stderr).toBe(0);
}, 90_000);

afterAll(async () => {
  await sshd?.stop();
  if (d) await d.stop();
  await rs?.stop();
  if (d) rmSync(d.root, { recursive: true, force: true });
  if (rsDir) rmSync(rsDir, { recursive: true, force: true });
  execFileSync('userdel', ['-r', '-f', login], { stdio: 'ignore' });
});

describe('reliability: a full audit sink fails closed and loses nothing', () => {
  it('refuses new sessions naming the sink while its receiver is down, and catches up when it returns', async () => {
    const ok = await gh(['ssh', `${login}@node1`, 'echo', 'first-$((6*7))']);
    expect(ok.stdout, ok.stderr).toContain('first-42');
    await expect.poll(() => atRsyslog().some((e) => e.type === 'exec'), { timeout: 20_000 }).toBe(true);

    await rs.stop();
    // Each command adds a few events to the spool; within a few the 8 KiB bound is reached.
    let refused: Awaited<ReturnType<typeof gh>> | undefined;
    for (let i = 0; i < 40 && !refused; i++) {
      const r = await gh(['ssh', `${login}@node1`, 'echo', `n-${i}`]);
      if (r.code !== 0) refused = r;
    }
    expect(refused, 'no command was refused').toBeDefined();
    expect(refused!.stdout).not.toMatch(/n-\d+/);
    expect(refused!.stderr).toMatch(/audit sink 'siem' is full/);
    expect(d.alive(), d.err()).toBe(true);

    await rs.start();
    // The gateway resumes by itself once the sink drains: the same kind of command runs again.
    await expect
      .poll(async () => (await gh(['ssh', `${login}@node1`, 'echo', 'back-$((1+1))'])).stdout, {
        timeout: 60_000,
        interval: 1_000,
      })
      .toContain('back-2');

    // Everything the local record has reached rsyslogd, in the record's order (after dedup by id).
    const local = auditEvents(d);
    await expect
      .poll(
        () => {
          const got = new Set(atRsyslog().map((e) => e.id));
          return local.filter((e) => !got.has(e.id)).map((e) => e.type);
        },
        { timeout: 60_000, interval: 500 },
      )
      .toEqual([]);
    const ids = new Set(local.map((e) => e.id));
    expect(
      atRsyslog()
        .filter((e) => ids.has(e.id))
        .map((e) => e.id),
    ).toEqual(local.map((e) => e.id));
    const types = local.map((e) => e.type);
    expect(types).toContain('audit.sink.full');
    expect(types).toContain('audit.sink.recovered');
    expect(
      local.some(
        (e) =>
          (e.type === 'access.denied' && /audit sink 'siem' is full/.test(e.reason)) ||
          (e.type === 'exec' && /audit sink 'siem' is full/.test(e.error ?? '')),
      ),
    ).toBe(true);
  }, 180_000);
});
