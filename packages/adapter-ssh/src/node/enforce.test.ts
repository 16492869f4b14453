import { describe, expect, it } from 'vitest';
import { auditFor, cgroupWrapper, needsEnforcement, openRecorded, toBpfPolicy } from './enforce.js';

const base = { session_id: 's1', server: 'node1', login: 'dev', user: 'alice' };

describe('node enforcement', () => {
  it('audits exits of programs only (a forked subshell is not a command) and lost events as deltas', () => {
    const execed = new Set<number>();
    const lost = { total: 0 };
    expect(auditFor({ type: 'exit', pid: 7, exitCode: 0, ts: 1n }, base, execed, lost)).toBeUndefined();
    expect(
      auditFor(
        {
          type: 'exec',
          pid: 7,
          ppid: 1,
          uid: 1000,
          file: '/bin/ls',
          argv: ['ls'],
          truncated: false,
          ret: 0,
          ts: 1n,
        },
        base,
        execed,
        lost,
      ),
    ).toEqual({
      ...base,
      type: 'session.command',
      pid: 7,
      ppid: 1,
      uid: 1000,
      program: '/bin/ls',
      argv: ['ls'],
    });
    expect(auditFor({ type: 'exit', pid: 7, signal: 9, ts: 2n }, base, execed, lost)).toEqual({
      ...base,
      type: 'session.command.exit',
      pid: 7,
      signal: 9,
    });
    expect(auditFor({ type: 'lost', total: 5 }, base, execed, lost)).toMatchObject({ lost: 5, total: 5 });
    expect(auditFor({ type: 'lost', total: 5 }, base, execed, lost)).toBeUndefined();
    expect(auditFor({ type: 'lost', total: 12 }, base, execed, lost)).toMatchObject({ lost: 7, total: 12 });
  });

  it('takes the policy from the certificate as it is and knows when the kernel is needed', () => {
    const none = { enhancedRecording: [], restrictNetwork: { deny: [], allow: [] } };
    expect(needsEnforcement(none)).toBe(false);
    expect(needsEnforcement({ ...none, enhancedRecording: ['disk'] })).toBe(true);
    expect(needsEnforcement({ ...none, restrictNetwork: { deny: [], allow: ['10.0.0.0/8'] } })).toBe(true);
    expect(
      toBpfPolicy({ enhancedRecording: ['command'], restrictNetwork: { deny: ['a'], allow: [] } }),
    ).toEqual({
      record: ['command'],
      deny: ['a'],
      allow: [],
    });
    // A kind from a newer gateway is refused, not silently left unrecorded.
    expect(() => toBpfPolicy({ ...none, enhancedRecording: ['command', 'future'] })).toThrow(
      'this node cannot record future',
    );
  });

  it('moves the first process into the session cgroup before it execs the plan', () => {
    expect(
      cgroupWrapper('/cg/s1/cgroup.procs', { file: '/usr/bin/setpriv', args: ['--reuid=5', '--', 'sh'] }),
    ).toEqual({
      file: '/bin/sh',
      args: [
        '-c',
        'echo $$ > "$0" && exec "$@"',
        '/cg/s1/cgroup.procs',
        '/usr/bin/setpriv',
        '--reuid=5',
        '--',
        'sh',
      ],
    });
  });

  it("records opens by the roles' path prefixes; defaults leave out loader and kernel noise; paths that can lead anywhere are always recorded", () => {
    const byDefault = openRecorded(undefined);
    expect(['/etc/hostname', '/tmp/x', '/dev/shm/link', '/procfoo'].filter(byDefault)).toEqual([
      '/etc/hostname',
      '/tmp/x',
      '/dev/shm/link',
      '/procfoo',
    ]);
    expect(
      [
        '/proc/self/stat',
        '/usr/lib/x86_64-linux-gnu/libc.so.6',
        '/etc/ld.so.cache',
        '/dev/null',
        '/sys/x',
      ].filter(byDefault),
    ).toEqual([]);
    // Through /proc or .. to somewhere else: still recorded.
    expect(
      ['/proc/self/root/etc/shadow', '/proc/1/fd/3', '/dev/fd/3', '/proc/../etc/shadow', 'hostname'].every(
        byDefault,
      ),
    ).toBe(true);

    const noEtc = openRecorded({ include: [], exclude: ['/etc'] });
    expect(noEtc('/etc/hostname')).toBe(false);
    expect(noEtc('/etc')).toBe(false);
    expect(noEtc('/etcetera/x')).toBe(true);
    expect(noEtc('/tmp/x')).toBe(true);
    expect(noEtc('/usr/lib/libc.so.6')).toBe(false);
    // A relative path cannot be placed: recorded (a cd must not hide an open).
    expect(noEtc('hostname')).toBe(true);

    const only = openRecorded({ include: ['/srv/app/', '/proc'], exclude: ['/srv/app/cache'] });
    expect(only('/srv/app/config.yml')).toBe(true);
    expect(only('/srv/app/cache/x')).toBe(false);
    expect(only('/srv/other')).toBe(false);
    expect(only('/etc/hostname')).toBe(false);
    // include overrides the defaults.
    expect(only('/proc/self/status')).toBe(true);
    expect(openRecorded({ include: ['/'], exclude: [] })('/usr/lib/libc.so.6')).toBe(true);
  });
});
