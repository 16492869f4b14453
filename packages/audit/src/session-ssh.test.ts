import { describe, expect, it } from 'vitest';
import { SshSessionAudit } from './session-ssh.js';
import { MemoryAuditLog } from './testing/index.js';

const base = {
  session_id: 's1',
  user: 'alice',
  server: 'web1',
  login: 'root',
  addr: { remote: '127.0.0.1' },
};

describe('SshSessionAudit', () => {
  it('emits start, exec, forward, sftp and one end, all with the session fields', async () => {
    const log = new MemoryAuditLog();
    let t = 1000;
    const s = new SshSessionAudit(log, base, { now: () => t });
    await s.onSessionStart();
    await s.onExec({ command: 'uname -a', exitCode: 0 });
    await s.onExec({ command: 'sleep 9', signal: 'TERM' });
    await s.onPortForward({ direction: 'local', target: '127.0.0.1:80', origin: '127.0.0.1:5000' });
    await s.onPortForward({ direction: 'remote', target: '127.0.0.1:0', error: 'denied' });
    await s.onSftp({ action: 'write', path: '/tmp/f', bytes: 3 });
    t = 1400;
    await s.onSessionEnd({ reason: 'certificate expired' });
    await s.onSessionEnd({ error: 'ignored: already ended' });
    expect(log.events.map((e) => [e.type, e.code])).toEqual([
      ['session.start', 'GH2100I'],
      ['exec', 'GH2102I'],
      ['exec', 'GH2102I'],
      ['port_forward', 'GH2103I'],
      ['port_forward', 'GH2103W'],
      ['sftp', 'GH2104I'],
      ['session.end', 'GH2101I'],
    ]);
    for (const e of log.events) expect(e).toMatchObject(base);
    expect(log.events[1]).toMatchObject({ command: 'uname -a', exit_code: 0 });
    expect(log.events[2]).toMatchObject({ signal: 'TERM' });
    expect(log.events[2]).not.toHaveProperty('exit_code');
    expect(log.events[5]).toMatchObject({ action: 'write', path: '/tmp/f', bytes: 3 });
    expect(log.events[6]).toMatchObject({
      duration_ms: 400,
      reason: 'certificate expired',
      interactive: false,
      recorded: false,
    });
  });

  it('marks the session interactive and recorded once a recorded pty ran', async () => {
    const log = new MemoryAuditLog();
    const s = new SshSessionAudit(log, base);
    await s.onSessionStart();
    s.markInteractive(true);
    s.markInteractive(false);
    await s.onSessionEnd();
    expect(log.events[1]).toMatchObject({ type: 'session.end', interactive: true, recorded: true });
  });

  it('a failed start ends the session: no end event follows', async () => {
    const log = new MemoryAuditLog();
    const s = new SshSessionAudit(log, base);
    await s.onSessionStartFailed('node refused');
    await s.onSessionEnd();
    expect(log.events.map((e) => e.code)).toEqual(['GH2100W']);
  });
});
