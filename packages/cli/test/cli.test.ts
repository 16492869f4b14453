import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, type Daemon, PASSWORD, run, startDaemon } from './harness.js';

/**
 * Drives the BUILT binary against a real `gatehouse start` in a temp data
 * dir, with a temp GATEHOUSE_HOME per user.
 */
const mode = (p: string) => statSync(p).mode & 0o777;

describe('gatehouse CLI against a running gateway', () => {
  let root: string;
  let dataDir: string;
  let configFile: string;
  let d: Daemon;
  let proxy: string;
  let pin: string;
  let adminToken: string;
  const homes = { admin: '', alice: '', stranger: '', dora: '' };
  const as = (who: keyof typeof homes) => ({ GATEHOUSE_HOME: homes[who] });

  beforeAll(async () => {
    d = await startDaemon({ cluster: 'clitest' });
    ({ root, dataDir, configFile, proxy, pin, adminToken } = d);
    for (const who of Object.keys(homes) as (keyof typeof homes)[]) homes[who] = join(root, `home-${who}`);
  });

  afterAll(async () => {
    if (d) {
      const code = await d.stop();
      // Checked here because a daemon that cannot shut down cleanly is a bug worth a red test.
      expect(code, d.err()).toBe(0);
    }
    if (root) rmSync(root, { recursive: true, force: true });
  });

  it('start prints the address, cluster and CA pin', () => {
    expect(d.out()).toMatch(/Gatehouse listening on 127\.0\.0\.1:\d+/);
    expect(d.out()).toContain('cluster:   clitest');
    expect(d.out()).toContain(`--ca-pin ${pin}`);
    expect(proxy).toMatch(/^127\.0\.0\.1:[1-9]\d*$/);
  });

  it('refuses to trust the proxy without a pin, and says where to get one', async () => {
    const r = await run(['login', '--proxy', proxy, '--user', 'admin', '--password-stdin'], {
      env: as('stranger'),
      input: PASSWORD,
    });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^error: no CA pin given/m);
    expect(r.stderr).toMatch(/^hint: .*--ca-pin.*gatehouse start/m);
  });

  it('refuses a wrong pin', async () => {
    const wrong = `sha256:${'0'.repeat(64)}`;
    const r = await run(
      ['login', '--proxy', proxy, '--ca-pin', wrong, '--user', 'admin', '--password-stdin'],
      {
        env: as('stranger'),
        input: PASSWORD,
      },
    );
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`no CA matching pin ${wrong}`);
    expect(existsSync(join(homes.stranger, 'profile.json'))).toBe(false);
  });

  it('the first admin accepts the bootstrap invite and logs in', async () => {
    const a = await run(
      ['accept-invite', '--proxy', proxy, '--ca-pin', pin, adminToken, '--password-stdin'],
      {
        env: as('admin'),
        input: `${PASSWORD}\n`,
      },
    );
    expect(a.stderr).toBe('');
    expect(a.code).toBe(0);
    expect(a.stdout).toContain('Invite for admin');
    expect(a.stdout).toContain(`gatehouse login --proxy ${proxy} --ca-pin ${pin} --user admin`);

    const l = await run(['login', '--proxy', proxy, '--ca-pin', pin, '--user', 'admin', '--password-stdin'], {
      env: as('admin'),
      input: `${PASSWORD}\n`,
    });
    expect(l.stderr).toBe('');
    expect(l.code).toBe(0);
    expect(l.stdout).toContain('Logged in as admin to cluster clitest');
  });

  it('adds a user locally on the data dir (via --config), with a password from stdin', async () => {
    const r = await run(
      [
        '--config',
        configFile,
        'users',
        'add',
        'alice',
        '--roles',
        'access',
        '--logins',
        'root',
        '--password-stdin',
      ],
      { env: as('admin'), input: `${PASSWORD}\n` },
    );
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('User alice created with roles access');
  });

  it('accept-invite --password-stdin takes the first line: fed "pw\\npw" the password is "pw" (was "pw\\npw")', async () => {
    const add = await run(['--config', configFile, 'users', 'add', 'dora', '--roles', 'access'], {
      env: as('admin'),
    });
    expect(add.code, add.stderr).toBe(0);
    const token = /gatehouse accept-invite .* (\S+)$/m.exec(add.stdout)?.[1];
    expect(token).toBeTruthy();
    const pw = 'dora the explorer 42';
    // The password and its confirmation, as typed at the prompt.
    const a = await run(['accept-invite', '--proxy', proxy, '--ca-pin', pin, token!, '--password-stdin'], {
      env: as('dora'),
      input: `${pw}\n${pw}\n`,
    });
    expect(a.stderr).toBe('');
    expect(a.code).toBe(0);
    const l = await run(['login', '--proxy', proxy, '--ca-pin', pin, '--user', 'dora', '--password-stdin'], {
      env: as('dora'),
      input: `${pw}\r\n`,
    });
    expect(l.stderr).toBe('');
    expect(l.code).toBe(0);
    const help = await run(['accept-invite', '--help']);
    expect(help.stdout).toMatch(/--password-stdin\s+read the new password from the first line of stdin/);
  });

  it('lists users remotely as the logged-in admin', async () => {
    const r = await run(['users', 'ls', '--json'], { env: as('admin') });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const users = JSON.parse(r.stdout) as {
      name: string;
      roles: string[];
      traits: Record<string, string[]>;
    }[];
    const alice = users.find((u) => u.name === 'alice');
    expect(alice?.roles).toEqual(['access']);
    expect(alice?.traits.logins).toEqual(['root']);
    expect(users.map((u) => u.name)).toContain('admin');
  });

  it('reports a wrong password with an error and a hint, and stores nothing', async () => {
    const r = await run(['login', '--proxy', proxy, '--ca-pin', pin, '--user', 'alice', '--password-stdin'], {
      env: as('alice'),
      input: 'not the password',
    });
    expect(r.code).toBe(1);
    const lines = r.stderr.trim().split('\n');
    expect(lines[0]).toMatch(/^error: /);
    expect(lines[1]).toMatch(/^hint: ./);
    expect(existsSync(join(homes.alice, 'keys'))).toBe(false);
  });

  it('logs alice in with a pin and a password from stdin; keys are private and OpenSSH reads them', async () => {
    const r = await run(
      ['login', '--proxy', proxy, '--ca-pin', pin, '--user', 'alice', '--password-stdin', '--json'],
      {
        env: as('alice'),
        input: `${PASSWORD}\n`,
      },
    );
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout) as {
      user: string;
      logins: string[];
      cluster_name: string;
      files: Record<string, string>;
      ssh_cert?: string;
      tls_cert?: string;
    };
    expect(out.user).toBe('alice');
    expect(out.cluster_name).toBe('clitest');
    expect(out.logins).toContain('root');
    expect(out.ssh_cert).toBeUndefined();
    expect(out.tls_cert).toBeUndefined();
    for (const f of Object.values(out.files)) expect(mode(f), f).toBe(0o600);
    expect(mode(homes.alice)).toBe(0o700);
    // The real OpenSSH tools accept the key and read the principals from the certificate.
    const pub = execFileSync('ssh-keygen', ['-y', '-f', out.files.ssh_key!], { encoding: 'utf8' });
    expect(readFileSync(out.files.ssh_public_key!, 'utf8')).toContain(pub.trim().split(' ')[1]);
    const cert = execFileSync('ssh-keygen', ['-L', '-f', out.files.ssh_cert!], { encoding: 'utf8' });
    expect(cert).toMatch(/Principals:\s*\n\s*root/);
    const kh = readFileSync(join(homes.alice, 'known_hosts'), 'utf8');
    expect(kh).toMatch(/^@cert-authority \* ssh-ed25519 \S+ gatehouse-cluster=clitest$/m);
  });

  it('status --json shows identity, roles, logins, expiry and paths from local files, and the gateway that answered', async () => {
    const r = await run(['status', '--json'], { env: as('alice') });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const s = JSON.parse(r.stdout) as {
      user: string;
      cluster: string;
      proxy: string;
      roles: string[];
      logins: string[];
      expires: string;
      expired: boolean;
      files: Record<string, string>;
      gateway: { name: string; version: string } | null;
      peers: unknown[];
    };
    expect(s.user).toBe('alice');
    // One gateway alone on its backend: named, with no peers.
    expect(s.gateway?.name).toMatch(/:\d+$/);
    expect(s.peers).toEqual([]);
    expect(s.cluster).toBe('clitest');
    expect(s.proxy).toBe(proxy);
    expect(s.roles).toEqual(['access']);
    expect(s.logins).toContain('root');
    expect(s.expired).toBe(false);
    expect(new Date(s.expires).getTime()).toBeGreaterThan(Date.now());
    expect(existsSync(s.files.ssh_cert!)).toBe(true);
    expect(existsSync(s.files.tls_cert!)).toBe(true);
  });

  it('a non-admin is refused admin verbs with the server error and hint', async () => {
    const r = await run(['--debug', 'users', 'ls'], { env: as('alice') });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^error: /m);
    expect(r.stderr).toMatch(/^hint: /m);
    // --debug prints the code: the server's own refusal, not a transport failure.
    expect(r.stderr).toMatch(/^GH_ERR_ACCESS_DENIED$/m);
  });

  it('exports the host CA without login, given a pin', async () => {
    const r = await run(['ca', 'export', '--format', 'known_hosts', '--proxy', proxy, '--ca-pin', pin], {
      env: as('stranger'),
    });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^@cert-authority \S+ ssh-ed25519 /m);
  });

  it('lints a role file with line, column and a suggestion, exiting 1', async () => {
    const file = join(root, 'bad-role.yaml');
    writeFileSync(file, 'kind: role\nname: dev\nallow:\n  loginz: [root]\n');
    const r = await run(['--config', configFile, 'roles', 'lint', '-f', file], { env: as('admin') });
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(
      new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:4:3: .*loginz.*did you mean .logins`, 'm'),
    );
  });

  it('--data-dir alone opens a data dir made with a non-default cluster name', async () => {
    // No config file here: the cluster name must come from the data dir itself.
    const r = await run(['--data-dir', dataDir, 'users', 'get', 'alice', '--json'], { env: as('admin') });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect((JSON.parse(r.stdout) as { name: string }).name).toBe('alice');
  });

  it('exits 2 on usage errors', async () => {
    const r = await run(['users', 'add', 'bob'], { env: as('admin') });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("required option '--roles <roles>' not specified");
    const t = await run(['users', 'lock', 'bob', '--ttl', 'soon'], { env: as('admin') });
    expect(t.code).toBe(2);
    expect(t.stderr).toMatch(/^hint: write durations like/m);
  });

  it('audit search --since zzz (and every other bad time, duration or limit) is refused, naming the flag, value and forms (was ignored)', async () => {
    const cases: [string[], RegExp][] = [
      // These two ran as searches: an empty --since was dropped, 2026-02-30 became March 2.
      [['audit', 'search', '--since='], /--since "" is not a time/],
      [['audit', 'search', '--until', '2026-02-30'], /--until "2026-02-30" is not a time/],
      [
        ['audit', 'search', '--since', 'zzz'],
        /--since "zzz" is not a time: write a duration ago \(30s, .*\) or an ISO 8601 date/,
      ],
      [['audit', 'search', '--since', '1h', '--until', '2h'], /--since \(.*\) is after --until/],
      [['audit', 'search', '--limit', '1e9'], /--limit "1e9" is not a positive whole number/],
      [['audit', 'search', '--limit', '1000000000'], /--limit 1000000000 is more than 1000/],
      [['recordings', 'ls', '--since', ''], /--since "" is not a time/],
      [['recordings', 'ls', '--until', 'last week'], /--until "last week" is not a time/],
      [['recordings', 'ls', '--limit', '20000'], /--limit 20000 is more than 10000/],
      [['users', 'lock', 'alice', '--ttl', ''], /--ttl "" is not a duration/],
      [['tokens', 'add', '--type', 'node', '--ttl', '0s'], /--ttl "0s" is not a duration/],
    ];
    for (const [args, message] of cases) {
      const r = await run(['--config', configFile, ...args], { env: as('admin') });
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr, args.join(' ')).toMatch(new RegExp(`^error: ${message.source}`, 'm'));
      expect(r.stderr, args.join(' ')).toMatch(/^hint: ./m);
      expect(r.stdout, args.join(' ')).toBe('');
    }
  });

  it('audit search --all follows the cursors: pages of 7 give what one large page gives', async () => {
    const until = new Date().toISOString();
    const search = (extra: string[]) =>
      run(['--config', configFile, 'audit', 'search', '--json', '--until', until, ...extra], {
        env: as('admin'),
      });
    const one = await search(['--limit', '1000']);
    const paged = await search(['--all', '--limit', '7']);
    expect(paged.stderr).toBe('');
    expect(paged.code).toBe(0);
    const ids = (r: { stdout: string }) =>
      (JSON.parse(r.stdout) as { events: { id: string }[] }).events.map((e) => e.id);
    expect(JSON.parse(one.stdout).next_cursor).toBeUndefined();
    expect(ids(one).length).toBeGreaterThan(14);
    expect(ids(paged)).toEqual(ids(one));
  });

  it('admin verbs with neither a data dir nor a login name both ways out', async () => {
    const r = await run(['users', 'ls'], { env: as('stranger') });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^hint: .*--data-dir.*gatehouse login/m);
  });

  it('logout deletes the keys and status then asks for a login', async () => {
    const keysDir = join(homes.alice, 'keys');
    expect(existsSync(keysDir)).toBe(true);
    const r = await run(['logout'], { env: as('alice') });
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('Logged out alice');
    const left = execFileSync('find', [keysDir, '-type', 'f'], { encoding: 'utf8' });
    expect(left).toBe('');
    expect(readFileSync(join(homes.alice, 'known_hosts'), 'utf8')).not.toContain('gatehouse-cluster=clitest');
    const s = await run(['status'], { env: as('alice') });
    expect(s.code).toBe(1);
    expect(s.stderr).toMatch(/^hint: gatehouse login --proxy/m);
  });
});

describe('the gatehouse executable', () => {
  it('runs through its shebang (with the daemon V8 flag) and prints the version', () => {
    // Run directly, as npm's bin link is: the kernel reads `#!/usr/bin/env -S node --initial-old-space-size=64`.
    const out = execFileSync(BIN, ['--version'], { encoding: 'utf8' });
    const pkg = JSON.parse(readFileSync(join(BIN, '../../package.json'), 'utf8')) as { version: string };
    expect(out).toBe(`gatehouse ${pkg.version}\n`);
    expect(execFileSync(BIN, ['version'], { encoding: 'utf8' })).toBe(out);
  });
});
