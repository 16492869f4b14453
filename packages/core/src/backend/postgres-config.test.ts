import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parsePostgresUri, postgresConnection } from './postgres-config.js';

describe('backend.uri for PostgreSQL', () => {
  it('reads user, password, host, port, database; verify-full over TCP and no TLS on a socket by default', () => {
    expect(parsePostgresUri('postgres://gh%40corp:p%2Fw@db1.internal:6432/gate')).toEqual({
      host: 'db1.internal',
      port: 6432,
      user: 'gh@corp',
      password: 'p/w',
      database: 'gate',
      sslmode: 'verify-full',
    });
    expect(parsePostgresUri('postgresql:///gate?host=/run/postgresql')).toMatchObject({
      host: '/run/postgresql',
      port: 5432,
      sslmode: 'disable',
    });
  });

  it('says what is wrong', () => {
    expect(parsePostgresUri('db1:5432')).toMatch(/scheme must be postgres|not a URI/);
    expect(parsePostgresUri('postgres://db1')).toMatch(/no database name/);
    expect(parsePostgresUri('postgres://db1/a?connect_timeout=3')).toMatch(
      /unknown parameter "connect_timeout"/,
    );
  });
});

describe('postgresConnection', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'gh-pgconf-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('takes the password from password_file, else the URI, else GATEHOUSE_BACKEND_PASSWORD', async () => {
    const file = path.join(dir, 'pw');
    await writeFile(file, 'from-file\nignored second line\n');
    const env = { GATEHOUSE_BACKEND_PASSWORD: 'from-env' };
    const uri = 'postgres://gh@db1/gate';
    expect((await postgresConnection({ type: 'postgres', uri, passwordFile: file }, env)).password).toBe(
      'from-file',
    );
    expect(
      (await postgresConnection({ type: 'postgres', uri: 'postgres://gh:in-uri@db1/gate' }, env)).password,
    ).toBe('in-uri');
    expect((await postgresConnection({ type: 'postgres', uri }, env)).password).toBe('from-env');
    await expect(
      postgresConnection({ type: 'postgres', uri: 'postgres://gh:in-uri@db1/gate', passwordFile: file }, env),
    ).rejects.toMatchObject({
      code: 'GH_ERR_CONFIG_INVALID',
      hint: expect.stringContaining('backend.password_file'),
    });
  });

  it('verifies the server certificate unless the URI says sslmode=disable (no unverified TLS)', async () => {
    const ca = path.join(dir, 'ca.pem');
    await writeFile(ca, 'PEM');
    const full = await postgresConnection({
      type: 'postgres',
      uri: 'postgres://gh@db1/gate',
      tls: { caFile: ca },
    });
    expect(full.ssl).toMatchObject({ ca: 'PEM' });
    expect((full.ssl as { rejectUnauthorized?: boolean }).rejectUnauthorized).not.toBe(false);
    await expect(
      postgresConnection({ type: 'postgres', uri: 'postgres://gh@db1/gate?sslmode=require' }),
    ).rejects.toMatchObject({
      code: 'GH_ERR_CONFIG_INVALID',
      message: expect.stringMatching(/sslmode=require does not verify the server/),
    });
    const off = await postgresConnection({ type: 'postgres', uri: 'postgres://gh@db1/gate?sslmode=disable' });
    expect(off.ssl).toBe(false);
    await expect(
      postgresConnection({
        type: 'postgres',
        uri: 'postgres://gh@db1/gate?sslmode=disable',
        tls: { caFile: ca },
      }),
    ).rejects.toMatchObject({ code: 'GH_ERR_CONFIG_INVALID' });
    await expect(
      postgresConnection({ type: 'postgres', uri: 'postgres://gh@db1/gate', tls: { certFile: ca } }),
    ).rejects.toMatchObject({ message: expect.stringMatching(/cert_file and key_file/) });
    await expect(
      postgresConnection({
        type: 'postgres',
        uri: 'postgres://gh@db1/gate',
        tls: { caFile: path.join(dir, 'nope') },
      }),
    ).rejects.toMatchObject({
      code: 'GH_ERR_CONFIG_INVALID',
      hint: expect.stringContaining('backend.tls.ca_file'),
    });
  });
});
