import { cpSync, readdirSync, readFileSync, rmSync, truncateSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { VerifyChainResult } from '@gatehouse/audit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addAccessUser, type Daemon, PASSWORD, restartDaemon, run, startDaemon } from './harness.js';

/**
 * `gatehouse audit verify` on the record a real daemon wrote, with local
 * admin commands writing into the same files at the same time (two
 * processes, one chain), then edited by hand the ways an intruder would.
 */
describe('gatehouse audit verify', () => {
  let d: Daemon;
  let auditDir: string;
  let pristine: string;
  const adminHome = () => ({ GATEHOUSE_HOME: join(d.root, 'home-admin') });

  const verify = async (args: string[] = []): Promise<{ code: number | null; r: VerifyChainResult }> => {
    const out = await run(['--config', d.configFile, 'audit', 'verify', '--json', ...args]);
    expect(out.stderr).toBe('');
    return { code: out.code, r: JSON.parse(out.stdout) as VerifyChainResult };
  };
  const files = () => readdirSync(auditDir).filter((f) => /^events-.*\.jsonl$/.test(f));
  const ordered = () => {
    const r = files().map((f) => ({ f, n: Number(/\.(\d+)\.jsonl$/.exec(f)?.[1] ?? 0) }));
    return r.sort((a, b) => a.n - b.n).map((x) => x.f);
  };
  const linesOf = (f: string) => readFileSync(join(auditDir, f), 'utf8').split('\n').slice(0, -1);
  const writeLines = (f: string, lines: string[]) =>
    writeFileSync(join(auditDir, f), `${lines.join('\n')}\n`);
  const idOf = (line: string) => (JSON.parse(line) as { id: string }).id;
  const restore = () => {
    rmSync(auditDir, { recursive: true, force: true });
    cpSync(pristine, auditDir, { recursive: true });
  };

  beforeAll(async () => {
    // Small files, so the record spans several and a file can go missing from the middle.
    d = await startDaemon({ cluster: 'chaintest', extraConfig: 'audit:\n  max_file_bytes: 4096\n' });
    auditDir = join(d.dataDir, 'audit');
    const a = await run(
      ['accept-invite', '--proxy', d.proxy, '--ca-pin', d.pin, d.adminToken, '--password-stdin'],
      {
        env: adminHome(),
        input: `${PASSWORD}\n`,
      },
    );
    expect(a.code, a.stderr).toBe(0);
    // The daemon (logins, refusals) and local admin commands (another process) write into the same files.
    for (let i = 0; i < 4; i++) {
      await addAccessUser(d, `user${i}`, 'root');
      const bad = await run(
        ['login', '--proxy', d.proxy, '--ca-pin', d.pin, '--user', `user${i}`, '--password-stdin'],
        {
          env: { GATEHOUSE_HOME: join(d.root, `home-${i}`) },
          input: 'wrong password\n',
        },
      );
      expect(bad.code).not.toBe(0);
      const ok = await run(
        ['login', '--proxy', d.proxy, '--ca-pin', d.pin, '--user', 'admin', '--password-stdin'],
        {
          env: adminHome(),
          input: `${PASSWORD}\n`,
        },
      );
      expect(ok.code, ok.stderr).toBe(0);
    }
  }, 120_000);

  afterAll(async () => {
    await d?.stop();
    if (d) rmSync(d.root, { recursive: true, force: true });
  });

  it('finds the untouched record intact, offline and through the proxy', async () => {
    const { code, r } = await verify();
    expect(code).toBe(0);
    expect(r.ok).toBe(true);
    expect(r.problems).toEqual([]);
    expect(r.warnings).toEqual([]);
    expect(r.files).toBeGreaterThanOrEqual(3);
    const all = ordered().flatMap(linesOf);
    expect(r.events).toBe(all.length);
    expect(r.first).toMatchObject({ seq: 1, from: 'genesis' });
    // Both processes wrote: local admin events (local:<user>) and the daemon's logins.
    expect(all.some((l) => l.includes('"user.create"'))).toBe(true);
    expect(all.some((l) => l.includes('"user.login"'))).toBe(true);

    const remote = await run(['audit', 'verify'], { env: adminHome() });
    expect(remote.code, remote.stderr).toBe(0);
    expect(remote.stdout).toMatch(
      /^OK: \d+ events in \d+ files verified \(seq 1\.\.\d+, from the first event\)/,
    );

    // A user without audit:read is refused (and the refusal is audited by the daemon).
    const user = await run(
      ['login', '--proxy', d.proxy, '--ca-pin', d.pin, '--user', 'user0', '--password-stdin'],
      {
        env: { GATEHOUSE_HOME: join(d.root, 'home-0') },
        input: `${PASSWORD}\n`,
      },
    );
    expect(user.code, user.stderr).toBe(0);
    const denied = await run(['audit', 'verify'], { env: { GATEHOUSE_HOME: join(d.root, 'home-0') } });
    expect(denied.code).toBe(1);
    expect(denied.stderr).toMatch(/audit/);

    // From here on the record must not change under the tests: stop the daemon, keep a copy.
    await d.stop();
    pristine = join(d.root, 'audit-pristine');
    cpSync(auditDir, pristine, { recursive: true });
  }, 60_000);

  it('reports one edited event with its id, file and line', async () => {
    restore();
    const f = ordered()[1] as string;
    const lines = linesOf(f);
    const target = lines[1] as string;
    lines[1] = target.replace(/"user":"[^"]*"/, '"user":"mallory"');
    expect(lines[1]).not.toBe(target);
    writeLines(f, lines);
    const { code, r } = await verify();
    expect(code).toBe(1);
    expect(r.problems).toEqual([
      expect.objectContaining({ kind: 'edited', file: f, line: 2, id: idOf(target) }),
    ]);
    const human = await run(['--config', d.configFile, 'audit', 'verify']);
    expect(human.code).toBe(1);
    expect(human.stdout).toContain(`TAMPERED: 1 problem`);
    expect(human.stdout).toContain(`edited: ${f}:2: event ${idOf(target)} was changed after it was written`);
  });

  it('reports one deleted event', async () => {
    restore();
    const f = ordered()[1] as string;
    const lines = linesOf(f);
    const gone = lines.splice(2, 1)[0] as string;
    writeLines(f, lines);
    const { code, r } = await verify();
    expect(code).toBe(1);
    expect(r.problems).toEqual([
      expect.objectContaining({ kind: 'deleted', file: f, line: 3, id: idOf(lines[2] as string) }),
    ]);
    expect(r.problems[0]?.message).toMatch(/^1 event \(seq \d+\) missing before/);
    expect(r.problems[0]?.seq).toBe((JSON.parse(gone) as { chain: { seq: number } }).chain.seq);
  });

  it('reports two swapped events', async () => {
    restore();
    const f = ordered()[1] as string;
    const lines = linesOf(f);
    const [a, b] = [lines[1] as string, lines[2] as string];
    lines[1] = b;
    lines[2] = a;
    writeLines(f, lines);
    const { code, r } = await verify();
    expect(code).toBe(1);
    expect(r.problems).toEqual([
      expect.objectContaining({ kind: 'reordered', file: f, line: 2, id: idOf(b) }),
    ]);
    expect(r.problems[0]?.message).toContain(idOf(a));
  });

  it('reports a file removed from the middle', async () => {
    restore();
    const [before, gone, after] = ordered().slice(0, 3) as [string, string, string];
    unlinkSync(join(auditDir, gone));
    const { code, r } = await verify();
    expect(code).toBe(1);
    expect(r.problems).toEqual([
      expect.objectContaining({
        kind: 'file_missing',
        file: after,
        line: 1,
        id: idOf(linesOf(after)[0] as string),
      }),
    ]);
    expect(r.problems[0]?.message).toContain(`between ${before} and ${after}: an event file was removed`);
  });

  it('a last line cut short by a crash is "truncated", and the restarted daemon continues the chain', async () => {
    restore();
    const newest = ordered().at(-1) as string;
    const path = join(auditDir, newest);
    const size = readFileSync(path).length;
    truncateSync(path, size - 25);
    let { code, r } = await verify();
    expect(code).toBe(0);
    expect(r.ok).toBe(true);
    expect(r.warnings).toEqual([
      expect.objectContaining({ kind: 'truncated', file: newest, line: linesOf(newest).length + 1 }),
    ]);
    const human = await run(['--config', d.configFile, 'audit', 'verify']);
    expect(human.stdout).toMatch(/^OK: /);
    expect(human.stdout).toContain('warning: truncated:');
    expect(human.stdout).not.toMatch(/TAMPERED|edited/);

    // The next daemon on this data dir links its events past the torn line.
    d = await restartDaemon(d);
    const login = await run(
      ['login', '--proxy', d.proxy, '--ca-pin', d.pin, '--user', 'admin', '--password-stdin'],
      {
        env: adminHome(),
        input: `${PASSWORD}\n`,
      },
    );
    expect(login.code, login.stderr).toBe(0);
    await d.stop();
    ({ code, r } = await verify());
    expect(code).toBe(0);
    expect(r.problems).toEqual([]);
    expect(r.warnings.map((w) => w.kind)).toEqual(['truncated']);
    const all = ordered().flatMap(linesOf);
    expect(all.some((l) => l.includes('"gateway.start"'))).toBe(true);
    // Every whole event counts; the torn line (terminated by the next writer, or left at the end of a full file) does not.
    const whole = all.filter((l) => {
      try {
        JSON.parse(l);
        return true;
      } catch {
        return false;
      }
    });
    expect(whole.length).toBeGreaterThan(0);
    expect(r.events).toBe(whole.length);
  }, 60_000);
});
