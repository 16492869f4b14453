import { describe, expect, it } from 'vitest';
import { loadConfig } from './load.js';

describe('loadConfig: listener admission', () => {
  it('fills the defaults: 512 slots, 32 per source (/32, /64), a quarter kept for known sources, 1 min windows', async () => {
    const c = await loadConfig({ env: {}, overrides: { dataDir: '/tmp/x' } });
    expect(c.listener).toMatchObject({
      firstByteTimeoutMs: 10_000,
      sshBannerAfterMs: 2_000,
      handshakeTimeoutMs: 10_000,
      maxConcurrentHandshakes: 512,
      perSourceMaxHandshakes: 32,
      perSourceNetblock: { ipv4: 32, ipv6: 64 },
      knownSources: { reservedHandshakes: 128, ttlMs: 12 * 3600_000, max: 10_000 },
      rejectAudit: { windowMs: 60_000, maxSources: 1024 },
    });
  });

  it('computes the reserve from the percentage, rounding down (a tiny table keeps none)', async () => {
    const small = await loadConfig({
      env: {},
      overrides: { dataDir: '/tmp/x' },
      text: 'listener:\n  max_concurrent_handshakes: 2\n',
    });
    expect(small.listener.knownSources.reservedHandshakes).toBe(0);
    const c = await loadConfig({
      env: {},
      overrides: { dataDir: '/tmp/x' },
      text:
        'listener:\n  max_concurrent_handshakes: 100\n  per_source_netblock: { ipv6: 48 }\n' +
        '  known_sources: { reserved_percent: 40, ttl: 1h }\n  reject_audit: { window: 10s }\n',
    });
    expect(c.listener.knownSources).toMatchObject({ reservedHandshakes: 40, ttlMs: 3600_000 });
    expect(c.listener.perSourceNetblock).toEqual({ ipv4: 32, ipv6: 48 });
    expect(c.listener.rejectAudit.windowMs).toBe(10_000);
  });

  it('names the key of a bad value', async () => {
    const load = (text: string) => loadConfig({ env: {}, overrides: { dataDir: '/tmp/x' }, text });
    await expect(load('listener:\n  reject_audit: { window: 10ms }\n')).rejects.toThrow(
      /window[\s\S]*at least 1s/,
    );
    await expect(load('listener:\n  per_source_netblock: { ipv4: 33 }\n')).rejects.toThrow(/ipv4/);
    await expect(load('listener:\n  known_sources: { reserved_percent: 100 }\n')).rejects.toThrow(
      /reserved_percent/,
    );
    await expect(load('listener:\n  per_source_max: 3\n')).rejects.toThrow(/per_source_max/);
  });
});

describe('loadConfig: mysql_listen and builtin_node', () => {
  const defaults = { mysql_listen: '127.0.0.1:3036', builtin_node: true };

  it('a mode default sits under the file, the environment over it, the flag over both', async () => {
    const file = 'mysql_listen: 127.0.0.1:4000\n';
    expect((await loadConfig({ defaults, env: {} })).mysqlListen).toEqual({ host: '127.0.0.1', port: 3036 });
    expect((await loadConfig({ defaults, text: file, env: {} })).mysqlListen?.port).toBe(4000);
    const env = { GATEHOUSE_MYSQL_LISTEN: '127.0.0.1:5000' };
    expect((await loadConfig({ defaults, text: file, env })).mysqlListen?.port).toBe(5000);
    const flag = { mysqlListen: '127.0.0.1:6000' };
    expect((await loadConfig({ defaults, text: file, env, overrides: flag })).mysqlListen?.port).toBe(6000);
  });

  it('off turns MySQL off in every place it can be set', async () => {
    expect(
      (await loadConfig({ defaults, text: 'mysql_listen: "off"\n', env: {} })).mysqlListen,
    ).toBeUndefined();
    expect(
      (await loadConfig({ defaults, env: { GATEHOUSE_MYSQL_LISTEN: 'off' } })).mysqlListen,
    ).toBeUndefined();
    expect(
      (await loadConfig({ defaults, env: {}, overrides: { mysqlListen: 'off' } })).mysqlListen,
    ).toBeUndefined();
  });

  it('names the flag or variable a bad address came from', async () => {
    await expect(loadConfig({ env: {}, overrides: { mysqlListen: 'x' } })).rejects.toThrow(
      'invalid --mysql-listen value "x"',
    );
    await expect(loadConfig({ env: { GATEHOUSE_MYSQL_LISTEN: 'y' } })).rejects.toThrow(
      'invalid GATEHOUSE_MYSQL_LISTEN value "y"',
    );
    await expect(loadConfig({ env: {}, text: 'mysql_listen: z\n' })).rejects.toThrow('mysql_listen');
  });

  it('builtin_node: off by default, on from the mode default, and a file can say either', async () => {
    expect((await loadConfig({ env: {} })).builtinNode).toBe(false);
    expect((await loadConfig({ defaults, env: {} })).builtinNode).toBe(true);
    expect((await loadConfig({ defaults, text: 'builtin_node: false\n', env: {} })).builtinNode).toBe(false);
    expect((await loadConfig({ text: 'builtin_node: true\n', env: {} })).builtinNode).toBe(true);
  });
});

describe('loadConfig: cluster_name', () => {
  it('a config file without cluster_name leaves it unset, so an existing data dir keeps its name (was: set to the default)', async () => {
    const c = await loadConfig({ text: 'listen: 127.0.0.1:0\n', env: {} });
    expect(c.clusterNameSet).toBe(false);
    expect((await loadConfig({ text: 'cluster_name: acme\n', env: {} })).clusterNameSet).toBe(true);
  });
});

describe('loadConfig: backend', () => {
  const load = (text: string) => loadConfig({ text, env: {} });

  it('defaults to SQLite in the data dir', async () => {
    expect((await load('')).backend).toEqual({ type: 'sqlite' });
  });

  it('reads an etcd backend with its defaults (prefix gatehouse/, 5 s requests, retry forever at start)', async () => {
    const c = await load(
      [
        'backend:',
        '  type: etcd',
        '  endpoints: [https://10.0.0.5:2379, https://10.0.0.6:2379]',
        '  tls: { ca_file: /etc/gatehouse/etcd-ca.pem, cert_file: c.pem, key_file: k.pem }',
        '  auth: { username: gatehouse, password_file: /etc/gatehouse/etcd-password }',
        '',
      ].join('\n'),
    );
    expect(c.backend).toEqual({
      type: 'etcd',
      endpoints: ['https://10.0.0.5:2379', 'https://10.0.0.6:2379'],
      prefix: 'gatehouse/',
      tls: { caFile: '/etc/gatehouse/etcd-ca.pem', certFile: 'c.pem', keyFile: 'k.pem' },
      auth: { username: 'gatehouse', passwordFile: '/etc/gatehouse/etcd-password' },
      requestTimeoutMs: 5000,
    });
    const timed = await load(
      'backend: { type: etcd, endpoints: [http://e:2379], prefix: acme/, request_timeout: 2s, startup_timeout: 1m }\n',
    );
    expect(timed.backend).toMatchObject({
      prefix: 'acme/',
      requestTimeoutMs: 2000,
      startupTimeoutMs: 60_000,
    });
  });

  it('names the key of a bad backend setting', async () => {
    await expect(load('backend: { type: etcd }\n')).rejects.toThrow(/backend\.endpoints/);
    await expect(load('backend: { type: etcd, endpoints: [http://e:2379], password: x }\n')).rejects.toThrow(
      /backend/,
    );
    await expect(load('backend: { type: zookeeper }\n')).rejects.toThrow(/backend\.type/);
  });

  it('reads a postgres backend with its password file and TLS files', async () => {
    const c = await loadConfig({
      env: {},
      overrides: { dataDir: '/tmp/x' },
      text: [
        'backend:',
        '  type: postgres',
        '  uri: postgres://gatehouse@db1.internal:5432/gatehouse',
        '  password_file: /etc/gatehouse/pg-password',
        '  tls: { ca_file: /etc/gatehouse/pg-ca.pem, server_name: db.internal }',
        '  pool_size: 4',
        '',
      ].join('\n'),
    });
    expect(c.backend).toEqual({
      type: 'postgres',
      uri: 'postgres://gatehouse@db1.internal:5432/gatehouse',
      passwordFile: '/etc/gatehouse/pg-password',
      tls: {
        caFile: '/etc/gatehouse/pg-ca.pem',
        certFile: undefined,
        keyFile: undefined,
        serverName: 'db.internal',
      },
      poolSize: 4,
    });
  });

  it('names backend.uri and says what is wrong with a bad URI, and rejects unknown keys', async () => {
    const load = (text: string) => loadConfig({ env: {}, overrides: { dataDir: '/tmp/x' }, text });
    await expect(load('backend: { type: postgres, uri: "http://db/gh" }\n')).rejects.toMatchObject({
      code: 'GH_ERR_CONFIG_INVALID',
      message: expect.stringMatching(/backend\.uri[\s\S]*scheme must be postgres/),
    });
    await expect(
      load('backend: { type: postgres, uri: "postgres://db/gh?sslmode=allow" }\n'),
    ).rejects.toMatchObject({
      message: expect.stringMatching(/sslmode must be one of disable, verify-ca, verify-full/),
    });
    await expect(
      load('backend: { type: postgres, uri: "postgres://db/gh", passwd: x }\n'),
    ).rejects.toMatchObject({
      code: 'GH_ERR_CONFIG_INVALID',
      message: expect.stringMatching(/passwd/),
    });
    await expect(load('backend: { type: etcd }\n')).rejects.toMatchObject({ code: 'GH_ERR_CONFIG_INVALID' });
  });
});
