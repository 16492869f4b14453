import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { GatehouseError } from '../errors.js';
import { resolveAuditSinks } from './audit-sinks.js';
import { loadConfig } from './load.js';

const load = (text: string) => loadConfig({ env: {}, overrides: { dataDir: '/tmp/x' }, text });

/** The lint messages of a config that must not load. */
async function lint(
  text: string,
): Promise<{ line: number; key: string; message: string; suggestion?: string }[]> {
  const err = await load(text).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(GatehouseError);
  return (err as GatehouseError).details?.messages as never;
}

describe('config: audit.sinks', () => {
  const dir = mkdtempSync(join(tmpdir(), 'gh-sinks-cfg-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('reads each sink type, with secrets from files', async () => {
    const secret = join(dir, 'hook.key');
    const pw = join(dir, 'es.pw');
    writeFileSync(secret, 'k3y\n');
    writeFileSync(pw, 'hunter2\n');
    const c = await load(
      [
        'audit:',
        '  sinks:',
        '    - { type: syslog, protocol: udp, addr: "127.0.0.1:514" }',
        '    - type: loki',
        '      url: http://loki:3100',
        '      labels: { env: prod }',
        '    - { type: elasticsearch, url: "https://es:9200", username: gh, password_file: ' +
          pw +
          ', on_full: drop_oldest }',
        `    - { type: webhook, name: siem, url: "https://siem/in", secret_file: ${secret}, max_spool_bytes: 4096 }`,
        '',
      ].join('\n'),
    );
    const sinks = await resolveAuditSinks(c.audit.sinks);
    expect(sinks).toEqual([
      { type: 'syslog', protocol: 'udp', host: '127.0.0.1', port: 514 },
      { type: 'loki', url: 'http://loki:3100', labels: { env: 'prod' } },
      {
        type: 'elasticsearch',
        url: 'https://es:9200',
        username: 'gh',
        password: 'hunter2',
        onFull: 'drop_oldest',
      },
      { type: 'webhook', name: 'siem', url: 'https://siem/in', secret: 'k3y', maxSpoolBytes: 4096 },
    ]);
  });

  it('a malformed sink entry is reported with its line and key', async () => {
    const text = [
      'cluster_name: acme', // 1
      'audit:', // 2
      '  sinks:', // 3
      '    - type: syslog', // 4
      '      protocol: tcp', // 5
      '      addr: "127.0.0.1:514"', // 6
      '    - type: webhook', // 7
      '      url: https://siem/in', // 8
      '      secret: inline-secret', // 9: secrets only through *_file
      '    - type: loki', // 10
      '      url: loki:3100', // 11: not a URL
      '      on_full: drop_newest', // 12
      '    - type: kafka', // 13
      '',
    ].join('\n');
    const msgs = await lint(text);
    const by = (key: string) => msgs.find((m) => m.key === key);
    expect(by('audit.sinks.1.secret')).toMatchObject({ line: 9, message: 'unknown key "secret"' });
    expect(by('audit.sinks.1.secret')?.suggestion).toMatch(/secret_file/);
    expect(by('audit.sinks.1.secret_file')).toMatchObject({ line: 7 });
    expect(by('audit.sinks.2.url')).toMatchObject({ line: 11 });
    expect(by('audit.sinks.2.url')?.message).toMatch(/http:\/\/ or https:\/\//);
    expect(by('audit.sinks.2.on_full')).toMatchObject({ line: 12 });
    expect(by('audit.sinks.3.type')).toMatchObject({ line: 13 });
    // The good entry is not blamed.
    expect(msgs.some((m) => m.key.startsWith('audit.sinks.0'))).toBe(false);
  });

  it('a secret file that cannot be read names its key', async () => {
    const c = await load(
      'audit:\n  sinks:\n    - { type: webhook, url: "http://h/x", secret_file: /nonexistent/hook.key }\n',
    );
    await expect(resolveAuditSinks(c.audit.sinks)).rejects.toThrow(
      /audit\.sinks\.0\.secret_file: cannot read \/nonexistent\/hook\.key/,
    );
  });

  it('two sinks of one type need their own names (each names a spool file)', async () => {
    const c = await load(
      'audit:\n  sinks:\n    - { type: syslog, protocol: udp, addr: "a:514" }\n    - { type: syslog, protocol: tcp, addr: "b:514" }\n',
    );
    await expect(resolveAuditSinks(c.audit.sinks)).rejects.toThrow(
      /audit\.sinks\.1\.name: audit\.sinks\.0 is already named "syslog"/,
    );
  });

  it('syslog over tls needs a CA to verify the receiver', async () => {
    const c = await load('audit:\n  sinks:\n    - { type: syslog, protocol: tls, addr: "h:6514" }\n');
    await expect(resolveAuditSinks(c.audit.sinks)).rejects.toThrow(
      /audit\.sinks\.0\.ca_file: protocol tls needs ca_file/,
    );
  });
});
