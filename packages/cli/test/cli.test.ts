import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/**
 * Drives the BUILT binary (run `npx tsc -b` first) against a real
 * `gatehouse start` in a temp data dir, with a temp GATEHOUSE_HOME per user.
 */
const BIN = fileURLToPath(new URL('../bin/gatehouse.js', import.meta.url));
const DIST = fileURLToPath(new URL('../dist/main.js', import.meta.url));
const PASSWORD = 'correct horse battery staple';

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(args: string[], opts: { env?: NodeJS.ProcessEnv; input?: string } = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    // A GATEHOUSE_DATA_DIR from the caller's shell would switch admin verbs to local mode.
    const env: NodeJS.ProcessEnv = { ...process.env };
    delete env.GATEHOUSE_DATA_DIR;
    Object.assign(env, opts.env);
    const child = spawn(process.execPath, [BIN, ...args], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => {
      stdout += d;
    });
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    child.stdin.end(opts.input ?? '');
  });
}

const mode = (p: string) => statSync(p).mode & 0o777;

describe('gatehouse CLI against a running gateway', () => {
  let root: string;
  let dataDir: string;
  let configFile: string;
  let daemon: ChildProcess;
  let daemonOut = '';
  let daemonErr = '';
  let proxy: string;
  let pin: string;
  let adminToken: string;
  const homes = { admin: '', alice: '', stranger: '' };
  const as = (who: keyof typeof homes) => ({ GATEHOUSE_HOME: homes[who] });

  beforeAll(async () => {
    if (!existsSync(DIST))
      throw new Error(`${DIST} is missing: run \`npx tsc -b\` before the CLI integration tests`);
    root = mkdtempSync(join(tmpdir(), 'gh-cli-'));
    dataDir = join(root, 'data');
    for (const who of Object.keys(homes) as (keyof typeof homes)[]) homes[who] = join(root, `home-${who}`);
    configFile = join(root, 'gatehouse.yaml');
    writeFileSync(
      configFile,
      `cluster_name: clitest\ndata_dir: ${dataDir}\nlisten: 127.0.0.1:0\nauth:\n  second_factor: "off"\n  login_rate_per_minute: 1000\n`,
    );
    daemon = spawn(process.execPath, [BIN, 'start', '--config', configFile], {
      env: { ...process.env, GATEHOUSE_HOME: join(root, 'home-daemon') },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    daemon.stderr!.on('data', (d) => {
      daemonErr += d;
    });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`gatehouse start printed no invite:\n${daemonOut}\n${daemonErr}`)),
        30_000,
      );
      daemon.on('exit', (code) =>
        reject(new Error(`gatehouse start exited with ${code}:\n${daemonOut}\n${daemonErr}`)),
      );
      daemon.stdout!.on('data', (d) => {
        daemonOut += d;
        const m = /gatehouse accept-invite --proxy (\S+) --ca-pin (sha256:[0-9a-f]{64}) (\S+)/.exec(
          daemonOut,
        );
        if (m) {
          clearTimeout(timer);
          proxy = m[1]!;
          pin = m[2]!;
          adminToken = m[3]!;
          resolve();
        }
      });
    });
  });

  afterAll(async () => {
    if (daemon && daemon.exitCode === null) {
      const exited = new Promise<number | null>((r) => daemon.once('exit', (code) => r(code)));
      daemon.kill('SIGTERM');
      const code = await exited;
      // Checked here because a daemon that cannot shut down cleanly is a bug worth a red test.
      expect(code, daemonErr).toBe(0);
    }
    if (root) rmSync(root, { recursive: true, force: true });
  });

  it('start prints the address, cluster and CA pin', () => {
    expect(daemonOut).toMatch(/Gatehouse listening on 127\.0\.0\.1:\d+/);
    expect(daemonOut).toContain('cluster:   clitest');
    expect(daemonOut).toContain(`--ca-pin ${pin}`);
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

  it('status --json shows identity, roles, logins, expiry and paths from local files', async () => {
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
    };
    expect(s.user).toBe('alice');
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
