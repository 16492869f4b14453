/**
 * Bad input at every stage of every protocol, replayed against the real
 * daemon (`gatehouse start --config`, so a crash shows as the process dying)
 * with real upstreams: OpenSSH sshd, PostgreSQL, MariaDB and the Kubernetes
 * fixture API server. Each row of the table drives a fresh connection to one
 * stage (before the first byte, mid-sniff, mid-TLS, during authentication,
 * inside an authenticated session) and then misbehaves: garbage, a reset, a
 * half-close, a stall or a trickle, a huge declared length, half a message.
 * The gateway must end the connection (or keep an idle authenticated one),
 * say why in the client's protocol where it can, and audit the refusal;
 * meanwhile real clients (ssh, gatehouse ssh, psql, mariadb, kubectl, curl)
 * keep working, and afterwards the daemon's open descriptors are back near
 * where they were.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AuditEvent } from '@gatehouse/audit';
import { createGateway, loadConfig } from '@gatehouse/core';
import { freePort, type Sshd } from '@gatehouse/core/testing';
import { type ParsedKey, Client as SshClient, utils as sshUtils } from 'ssh2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type FixtureApiServer, startFixtureApiServer } from '../../../adapter-k8s/test/fixture-apiserver.js';
import { encodeHandshakeResponse } from '../../../adapter-mysql/src/wire/codec.js';
import { CLIENT, GATEWAY_CAPABILITIES } from '../../../adapter-mysql/src/wire/constants.js';
import { type Mariadb, startMariadb } from '../../../adapter-mysql/test/peers.js';
import { type Postgres, startPostgres } from '../../../adapter-postgres/test/peers.js';
import { withCertificate } from '../../../adapter-ssh/src/ssh2.js';
import { foreignCert, runClient, userCert } from '../../../core/test/helpers.js';
import { admin, auditEvents, type Daemon, PASSWORD, run, startDaemon, startNodeSshd } from '../harness.js';
import {
  auditMatches,
  type Case,
  cases,
  describeEvents,
  type Expect,
  eventOf,
  type Outcome,
  type RunOptions,
  runCase,
  Semaphore,
  type Stage,
  verdict,
} from './matrix.js';
import {
  captureClientHello,
  GARBAGE,
  my,
  Probe,
  pg,
  sshPacket,
  wsCloseCode,
  wsFrame,
  wsOpcodes,
} from './probe.js';

const CLUSTER = 'stages';
/** Short deadlines, so every stall ends quickly; real clients still make them on a loaded machine. */
const FIRST_BYTE_MS = 3_000;
const HANDSHAKE_MS = 6_000;
const REQUEST_MS = 6_000;
/** PROXY headers are honoured from this address only (the other cases connect from 127.77.x.y). */
const TRUSTED = '127.88.0.1';

const login = `ghs${Math.random().toString(36).slice(2, 7)}`;
let d: Daemon;
let sshd: Sshd;
let pgdb: Postgres;
let mdb: Mariadb;
let kube: FixtureApiServer;
let dir: string;
let home: string;
let port: number;
let mysqlPort: number;

interface Pem {
  cert: string;
  key: string;
}

/** What the stage openers need: credentials and captured first flights. */
interface Ctx {
  hello: Buffer;
  alice: Pem;
  pgRoute: Pem;
  myRoute: Pem;
  expired: Pem;
  foreign: Pem;
  sshKey: ParsedKey;
  sshForged: ParsedKey;
}
let ctx: Ctx;

const aliceEnv = () => ({ GATEHOUSE_HOME: join(home, '.gatehouse'), HOME: home });
const gh = (args: string[], input?: string) =>
  run(args, { env: aliceEnv(), ...(input === undefined ? {} : { input }) });

beforeAll(async () => {
  execFileSync('useradd', ['-m', '-s', '/bin/sh', login]);
  execFileSync('usermod', ['-p', '*', login]);
  dir = mkdtempSync(join(tmpdir(), 'gh-stages-'));
  home = join(dir, 'alice');
  execFileSync('mkdir', ['-p', home]);
  // A fixed port: the gateway tells clients its configured MySQL address (gatehouse db login writes it).
  mysqlPort = await freePort();
  d = await startDaemon({
    cluster: CLUSTER,
    extraConfig:
      `mysql_listen: 127.0.0.1:${mysqlPort}\n` +
      'listener:\n' +
      `  first_byte_timeout: ${FIRST_BYTE_MS}ms\n` +
      `  handshake_timeout: ${HANDSHAKE_MS}ms\n` +
      `  request_timeout: ${REQUEST_MS}ms\n` +
      `  proxy_protocol_trusted: [${TRUSTED}/32]\n`,
  });
  port = Number(d.proxy.split(':').pop());
  const pgCa = await admin(d, ['ca', 'export', '--format', 'postgres']);
  const myCa = await admin(d, ['ca', 'export', '--format', 'mariadb']);
  const kubeconfig = join(dir, 'upstream.kubeconfig');
  [sshd, pgdb, mdb, kube] = await Promise.all([
    // Many probes reach node1 at once (web terminals, joins): more than sshd's default 10 unauthenticated.
    startNodeSshd(d, ['PrintMotd no', 'MaxStartups 500']),
    startPostgres({ dbCaPem: pgCa.stdout, roles: ['alice'], databases: ['app'] }),
    startMariadb({ clientCaPem: myCa.stdout }),
    startFixtureApiServer({ dir }),
  ]);
  writeFileSync(kubeconfig, kube.kubeconfig);
  await mdb.sql(
    `CREATE DATABASE shop; CREATE USER alice@'%' REQUIRE SUBJECT '/CN=alice/O=${CLUSTER}'; GRANT ALL ON shop.* TO alice@'%'`,
  );
  const pgCaFile = join(dir, 'pg-server-ca.pem');
  const myCaFile = join(dir, 'my-server-ca.pem');
  writeFileSync(pgCaFile, pgdb.serverCaPem);
  writeFileSync(myCaFile, mdb.serverCaPem);
  await Promise.all([
    admin(
      d,
      [
        'users',
        'add',
        'alice',
        '--roles',
        'access',
        '--logins',
        login,
        '--traits',
        'db_users=alice',
        'db_names=app,shop',
        'kube_groups=developers',
        '--password-stdin',
      ],
      `${PASSWORD}\n`,
    ),
    admin(d, ['nodes', 'add', 'node1', '--addr', `127.0.0.1:${sshd.port}`]),
    admin(d, [
      'db',
      'add',
      'orders',
      '--protocol',
      'postgres',
      '--uri',
      `localhost:${pgdb.port}`,
      '--ca-file',
      pgCaFile,
    ]),
    admin(d, [
      'db',
      'add',
      'shop',
      '--protocol',
      'mysql',
      '--uri',
      `localhost:${mdb.port}`,
      '--ca-file',
      myCaFile,
    ]),
    admin(d, ['kube', 'add', 'prod', '--kubeconfig', kubeconfig]),
  ]);
  const li = await gh(
    ['login', '--proxy', d.proxy, '--ca-pin', d.pin, '--user', 'alice', '--password-stdin', '--json'],
    `${PASSWORD}\n`,
  );
  expect(li.code, li.stderr).toBe(0);
  const files = (JSON.parse(li.stdout) as { files: Record<string, string> }).files;
  for (const r of await Promise.all([
    gh(['db', 'login', 'orders', '--db-name', 'app']),
    gh(['db', 'login', 'shop', '--db-name', 'shop']),
    gh(['kube', 'login', 'prod', '--static', '--kubeconfig', join(home, 'kubeconfig')]),
  ])) {
    expect(r.code, r.stderr).toBe(0);
  }
  // ssh -J straight to the main port, with the login's key, certificate and known_hosts.
  writeFileSync(
    join(home, 'ssh_config'),
    [
      'Host *',
      `  IdentityFile ${files.ssh_key}`,
      `  CertificateFile ${files.ssh_cert}`,
      '  IdentitiesOnly yes',
      `  UserKnownHostsFile ${join(home, '.gatehouse', 'known_hosts')}`,
      '  GlobalKnownHostsFile /dev/null',
      '  StrictHostKeyChecking yes',
      '  BatchMode yes',
      '',
    ].join('\n'),
  );
  const pgService = readFileSync(join(home, '.pg_service.conf'), 'utf8');
  const myCnf = readFileSync(join(home, '.my.cnf'), 'utf8');
  const field = (text: string, key: string) => {
    const v = new RegExp(`^${key}=(.+)$`, 'm').exec(text)?.[1];
    if (!v) throw new Error(`no ${key} in\n${text}`);
    return readFileSync(v.trim(), 'utf8');
  };
  // A certificate that expired a minute ago, from the real user CA, and one from a CA nobody trusts.
  const gw = await createGateway({ config: await loadConfig({ file: d.configFile, env: {} }), env: {} });
  let expired: Pem;
  try {
    const e = await userCert(gw, dir, 'expired', { user: 'alice', roles: ['access'] }, -30_000);
    expired = { cert: e.certPem, key: e.keyPem };
  } finally {
    await gw.close();
  }
  const f = foreignCert(dir);
  const certLine = readFileSync(files.ssh_cert!, 'utf8').trim().split(/\s+/)[1]!;
  const certBlob = Buffer.from(certLine, 'base64');
  const forged = Buffer.from(certBlob);
  // The CA's signature is the certificate's last bytes.
  forged[forged.length - 1] = (forged[forged.length - 1] ?? 0) ^ 0xff;
  const parsed = sshUtils.parseKey(readFileSync(files.ssh_key!)) as ParsedKey;
  ctx = {
    hello: await captureClientHello({ ALPNProtocols: ['http/1.1'], servername: 'localhost' }),
    alice: { cert: readFileSync(files.tls_cert!, 'utf8'), key: readFileSync(files.tls_key!, 'utf8') },
    pgRoute: { cert: field(pgService, 'sslcert'), key: field(pgService, 'sslkey') },
    myRoute: { cert: field(myCnf, 'ssl-cert'), key: field(myCnf, 'ssl-key') },
    expired,
    foreign: { cert: readFileSync(f.cert, 'utf8'), key: readFileSync(f.key, 'utf8') },
    sshKey: withCertificate(parsed, certBlob),
    sshForged: withCertificate(parsed, forged),
  };
}, 120_000);

afterAll(async () => {
  await Promise.all([sshd?.stop(), pgdb?.stop(), mdb?.stop(), kube?.close()]);
  if (d) {
    await d.stop();
    rmSync(d.root, { recursive: true, force: true });
  }
  if (dir) rmSync(dir, { recursive: true, force: true });
  execFileSync('userdel', ['-r', '-f', login], { stdio: 'ignore' });
});

// ---------------------------------------------------------------------------
// Expectations, in the client's own protocol.

const closes = (...parts: Partial<Expect>[]): Expect => Object.assign({ end: 'closed' as const }, ...parts);
const staysOpen: Expect = { end: 'open' };
const survives: Expect = { end: 'any' };
const audit = (type: AuditEvent['type'], reason?: string, status?: number): Partial<Expect> => ({
  audit: { type, ...(reason ? { reason } : {}), ...(status ? { status } : {}) },
});
const reply = (what: string, test: (b: Buffer) => boolean): Partial<Expect> => ({ reply: { what, test } });
const pgError = (re: RegExp) =>
  reply(`a PostgreSQL ErrorResponse matching ${re}`, (b) => re.test(pg.errorMessage(b) ?? ''));
/** The startup deadline the client hears about is the configured one (listener.handshake_timeout). */
const pgStartupDeadline = pgError(new RegExp(`no startup packet within ${HANDSHAKE_MS} ms`));
const myErr = (code: number) => reply(`a MySQL ERR packet ${code}`, (b) => my.err(b)?.code === code);
const anyMyErr = reply('a MySQL ERR packet', (b) => my.err(b) !== undefined);
const httpStatus = (status: number) =>
  reply(`HTTP ${status}`, (b) => b.toString('latin1').startsWith(`HTTP/1.1 ${status} `));
const wsClose = (code: number) => reply(`a WebSocket close ${code}`, (b) => wsCloseCode(b) === code);
/** An SSH_MSG_DISCONNECT among the bytes (in clear: no keys are exchanged yet). */
const sshDisconnect = reply('an SSH DISCONNECT', (b) => {
  for (let start = 0; start < Math.min(b.length, 2048); start++) {
    let i = start;
    while (i + 6 <= b.length) {
      const len = b.readUInt32BE(i);
      if (len < 5 || len > 35_000) break;
      if (b[i + 5] === 1) return true;
      i += 4 + len;
    }
  }
  return false;
});
const targetErr = reply('an ERR line from the SSH target handshake', (b) => b.toString().startsWith('ERR '));

// ---------------------------------------------------------------------------
// Stage openers.

type S = Stage<Ctx>;
type P = Probe;

const tlsTo = (p: P, o: { alpn?: string[]; sni?: string; pem?: Pem } = {}) =>
  p.startTls({
    ALPNProtocols: o.alpn ?? ['http/1.1'],
    servername: o.sni ?? 'localhost',
    ...(o.pem ? { cert: o.pem.cert, key: o.pem.key } : {}),
  });

function proxyV1(src: string): Buffer {
  return Buffer.from(`PROXY TCP4 ${src} 127.0.0.1 40000 ${port}\r\n`);
}

function proxyV2(src: string, opts: { versionCommand?: number; declared?: number } = {}): Buffer {
  const b = Buffer.alloc(28);
  Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]).copy(b, 0);
  b[12] = opts.versionCommand ?? 0x21;
  b[13] = 0x11;
  b.writeUInt16BE(opts.declared ?? 12, 14);
  for (const [i, part] of src.split('.').entries()) b[16 + i] = Number(part);
  for (const [i, part] of [127, 0, 0, 1].entries()) b[20 + i] = part;
  b.writeUInt16BE(40000, 24);
  b.writeUInt16BE(port, 26);
  return b;
}

const WS_KEY = 'dGhlIHNhbXBsZSBub25jZQ==';
function wsUpgrade(path: string): string {
  return (
    `GET ${path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
    `Sec-WebSocket-Key: ${WS_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n`
  );
}

/**
 * Opens alice's web terminal on node1 on `p`; resolves with the live
 * session's id. With `shell`, waits for the shell's first output too (the
 * session is joinable once its terminal on the node is open).
 */
async function openTerminal(p: P, c: Ctx, o: { shell?: boolean } = {}): Promise<string> {
  await tlsTo(p, { pem: c.alice });
  p.write(wsUpgrade(`/v1/ws/terminal?node=node1&login=${login}&cols=80&rows=24`));
  const b = await p.expect(
    (x) => /"type":"session"/.test(x.toString('latin1')),
    'the terminal session frame',
    20_000,
  );
  const text = b.toString('latin1');
  expect(text).toMatch(/^HTTP\/1\.1 101 /);
  const id = /"session_id":"([^"]+)"/.exec(text)![1]!;
  if (o.shell) {
    const frames = text.indexOf('\r\n\r\n') + 4;
    await p.expect((x) => wsOpcodes(x, frames).includes(0x2), 'output from the shell', 20_000);
  }
  return id;
}

/** An SSH client logged in to the proxy itself (the outer hop of ssh -J) over the probe's socket. */
function sshLogin(p: P, key: ParsedKey): Promise<SshClient> {
  return new Promise((resolve, reject) => {
    const client = new SshClient();
    client.on('error', (e) => reject(e));
    client.on('ready', () => {
      client.removeAllListeners('error');
      client.on('error', () => undefined);
      resolve(client);
    });
    let tried = false;
    client.connect({
      sock: p.raw,
      username: 'alice',
      // ssh2 takes a parsed key (with its certificate) only from an authHandler.
      authHandler: (_methods, _partial, next) => {
        if (tried) return next(false as never);
        tried = true;
        next({ type: 'publickey', username: 'alice', key } as never);
      },
      hostVerifier: () => true,
      // AES-GCM leaves the packet length in clear, so a probe can write one.
      algorithms: { cipher: ['aes128-gcm@openssh.com'] },
      readyTimeout: 20_000,
    });
  });
}

function myHandshake(o: { ssl: boolean; protocol41?: boolean }): Buffer {
  const caps =
    (GATEWAY_CAPABILITIES | (o.ssl ? CLIENT.SSL : 0)) & ~(o.protocol41 === false ? CLIENT.PROTOCOL_41 : 0);
  return encodeHandshakeResponse({
    capabilities: caps,
    maxPacket: 16 * 1024 * 1024,
    charset: 45,
    user: 'alice',
    authResponse: Buffer.alloc(0),
    database: 'shop',
    authPlugin: 'mysql_native_password',
  });
}

const myGreeting = (p: P) =>
  p.expect((b) => my.packets(b).length > 0 && b[4] === 10, 'the MySQL greeting', 15_000);
const mySslRequest = () => {
  const b = Buffer.alloc(32);
  b.writeUInt32LE((GATEWAY_CAPABILITIES | CLIENT.SSL) >>> 0, 0);
  b.writeUInt32LE(16 * 1024 * 1024, 4);
  b[8] = 45;
  return my.packet(1, b);
};

const GSSENC_REQUEST = Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30]);
const SSH_BANNER = 'SSH-2.0-probe\r\n';
const sshBannerIn = (p: P) =>
  p.expect((b) => /^SSH-2\.0-Gatehouse/.test(b.toString('latin1')), 'the SSH banner');
/** A KEXINIT whose first name-list claims 4 GiB. */
const badKexinit = sshPacket(
  Buffer.concat([Buffer.from([20]), Buffer.alloc(16, 7), Buffer.from([0xff, 0xff, 0xff, 0xff])]),
);
/** A binary packet length past any limit (also what AES-GCM leaves in clear after login). */
const hugeSshLength = Buffer.from([0x7f, 0xff, 0xff, 0xf0, 0, 0, 0, 0]);
/** The start of a 64-byte packet (a multiple of the cipher block, as ssh2 checks), then nothing. */
const halfSshPacket = Buffer.from([0, 0, 0, 60, 6, 1, 2, 3]);
/** A 1 KiB packet that a trickle never finishes. */
const slowSshPacket = Buffer.concat([Buffer.from([0, 0, 0x03, 0xfc, 4, 20]), Buffer.alloc(1018, 1)]);

const HTTP_HEAD = 'GET /v1/ping HTTP/1.1\r\nHost: localhost\r\n';
const slowHeader = Buffer.from(`X-Slow: ${'a'.repeat(200)}`);
const oversizedHeaders = `${HTTP_HEAD}X-Big: ${'a'.repeat(40_000)}\r\n\r\n`;
const bodyStart =
  'POST /v1/login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{"user":';

// ---------------------------------------------------------------------------
// The table: every stage, and what each fault there must lead to.

const garbageReject = (type: AuditEvent['type'], reason: string, ...more: Partial<Expect>[]) =>
  closes(audit(type, reason), ...more);

const STAGES: S[] = [
  // The shared port, before anything is known.
  {
    name: 'TCP: connected, nothing sent',
    entry: 'main port',
    open: async () => {},
    send: { trickle: Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54]) },
    faults: {
      garbage: garbageReject('listener.reject', 'unknown_protocol'),
      reset: survives,
      fin: closes(),
      stall: closes(audit('listener.reject', 'first_byte_timeout')),
      trickle: closes(audit('listener.reject', 'first_byte_timeout')),
    },
  },
  {
    name: 'sniff: a partial SSH banner ("SS")',
    entry: 'main port',
    open: async (p) => p.write('SS'),
    faults: {
      garbage: garbageReject('listener.reject', 'unknown_protocol'),
      reset: survives,
      // Audited as unknown bytes, or as the deadline when a loaded machine reads the FIN late.
      fin: closes(audit('listener.reject')),
      stall: closes(audit('listener.reject', 'first_byte_timeout')),
    },
  },
  {
    name: 'sniff: half a PostgreSQL SSLRequest',
    entry: 'main port',
    open: async (p) => p.write(pg.sslRequest.subarray(0, 5)),
    faults: {
      garbage: garbageReject('listener.reject', 'unknown_protocol'),
      reset: survives,
      // Audited as unknown bytes, or as the deadline when a loaded machine reads the FIN late.
      fin: closes(audit('listener.reject')),
      stall: closes(audit('listener.reject', 'first_byte_timeout')),
    },
  },
  {
    name: 'sniff: a PostgreSQL startup declaring 2 GiB',
    entry: 'main port',
    open: async (p) => p.write(Buffer.from([0x7f, 0xff, 0xff, 0xff, 0, 3, 0, 0])),
    faults: { none: closes(audit('listener.reject', 'unknown_protocol')) },
  },
  // TLS on the shared port, before a route is chosen.
  {
    name: 'PostgreSQL: GSSENCRequest answered N, again and again',
    entry: 'main port',
    open: async (p) => {
      p.write(GSSENC_REQUEST);
      await p.expect((b) => b.toString() === 'N', 'N');
    },
    send: { repeat: GSSENC_REQUEST },
    faults: {
      repeat: closes(audit('listener.reject', 'first_byte_timeout')),
      stall: closes(audit('listener.reject', 'first_byte_timeout')),
      garbage: closes(audit('listener.reject', 'unknown_protocol')),
    },
  },
  {
    name: 'TLS: a partial ClientHello',
    entry: 'TLS',
    open: async (p, c) => p.write(c.hello.subarray(0, 40)),
    send: {
      garbage: Buffer.concat(Array(20).fill(GARBAGE)),
      trickle: Buffer.alloc(4096, 0),
    },
    faults: {
      garbage: closes(audit('listener.reject', 'tls_handshake_failed')),
      reset: survives,
      fin: closes(),
      stall: closes(audit('listener.reject', 'handshake_timeout')),
      trickle: closes(audit('listener.reject', 'handshake_timeout')),
    },
  },
  {
    name: 'TLS: ClientHello answered, nothing more',
    entry: 'TLS',
    open: async (p, c) => {
      p.write(c.hello);
      await p.expect((b) => b[0] === 0x16, 'a ServerHello');
    },
    faults: {
      garbage: closes(audit('listener.reject', 'tls_handshake_failed')),
      reset: survives,
      fin: closes(),
      stall: closes(audit('listener.reject', 'handshake_timeout')),
    },
  },
  {
    name: 'TLS: an ALPN protocol nobody serves',
    entry: 'TLS',
    open: async (p) => {
      await tlsTo(p, { alpn: ['gatehouse-nope'] }).catch(() => undefined);
    },
    faults: { none: closes(audit('listener.reject', 'tls_handshake_failed')) },
  },
  {
    name: 'TLS: a client certificate from a foreign CA',
    entry: 'TLS',
    open: async (p, c) => {
      await tlsTo(p, { pem: c.foreign });
    },
    faults: { none: closes(audit('listener.reject', 'client_cert_untrusted')) },
  },
  {
    name: 'TLS: an expired Gatehouse certificate',
    entry: 'TLS',
    open: async (p, c) => {
      await tlsTo(p, { pem: c.expired, alpn: ['gatehouse-ssh'] });
    },
    faults: { none: closes(audit('listener.reject', 'client_cert_untrusted')) },
  },
  // The HTTPS API.
  {
    name: 'HTTPS: TLS up, no request yet',
    entry: 'HTTPS API',
    open: async (p) => {
      await tlsTo(p);
    },
    faults: {
      garbage: closes(httpStatus(400), audit('http.reject', undefined, 400)),
      reset: survives,
      fin: closes(),
      stall: closes(httpStatus(408), audit('http.reject', undefined, 408)),
    },
  },
  {
    name: 'HTTPS: a malformed request line',
    entry: 'HTTPS API',
    open: async (p) => {
      await tlsTo(p);
      p.write('GET /v1/ping HTTP/1.1 extra\r\nHost: localhost\r\n\r\n');
    },
    faults: { none: closes(httpStatus(400), audit('http.reject', undefined, 400)) },
  },
  {
    name: 'HTTPS: oversized request headers',
    entry: 'HTTPS API',
    open: async (p) => {
      await tlsTo(p);
      p.write(oversizedHeaders);
    },
    faults: { none: closes(httpStatus(431), audit('http.reject', undefined, 431)) },
  },
  {
    name: 'HTTPS: request headers half sent',
    entry: 'HTTPS API',
    open: async (p) => {
      await tlsTo(p);
      p.write(HTTP_HEAD);
    },
    send: { trickle: slowHeader },
    faults: {
      garbage: closes(httpStatus(400), audit('http.reject', undefined, 400)),
      reset: survives,
      fin: closes(),
      stall: closes(httpStatus(408), audit('http.reject', undefined, 408)),
      trickle: closes(httpStatus(408), audit('http.reject', undefined, 408)),
    },
  },
  {
    name: 'HTTPS: a login body that never ends',
    entry: 'HTTPS API',
    open: async (p) => {
      await tlsTo(p);
      p.write(bodyStart);
    },
    // Enough garbage to fill the declared body and run past it.
    send: { garbage: Buffer.concat([GARBAGE, GARBAGE, GARBAGE]), trickle: Buffer.alloc(400, 0x20) },
    faults: {
      garbage: closes(httpStatus(400), audit('http.reject', undefined, 400)),
      reset: survives,
      // A client that gives up mid-body is a refused request too, not an internal error.
      fin: closes(audit('http.reject', undefined, 400)),
      stall: closes(httpStatus(408), audit('http.reject', undefined, 408)),
      trickle: closes(httpStatus(408), audit('http.reject', undefined, 408)),
    },
  },
  {
    name: 'HTTPS: a chunked body with a bad chunk size',
    entry: 'HTTPS API',
    open: async (p) => {
      await tlsTo(p);
      p.write(
        'POST /v1/login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n',
      );
    },
    faults: { none: closes(httpStatus(400), audit('http.reject', undefined, 400)) },
  },
  {
    name: 'HTTPS: a declared body over max_body_bytes',
    entry: 'HTTPS API',
    open: async (p) => {
      await tlsTo(p);
      p.write(
        'POST /v1/login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 1000000000000\r\n\r\n{',
      );
    },
    faults: { none: closes(httpStatus(413), audit('http.reject', undefined, 413)) },
  },
  // WebSockets on the API's listener.
  {
    name: 'WebSocket: an upgrade without credentials',
    entry: 'WebSocket',
    open: async (p) => {
      await tlsTo(p);
      p.write(wsUpgrade(`/v1/ws/terminal?node=node1&login=${login}&cols=80&rows=24`));
    },
    faults: { none: closes(httpStatus(401), audit('http.reject', undefined, 401)) },
  },
  {
    name: 'WebSocket: an authenticated upgrade with a malformed key',
    entry: 'WebSocket',
    open: async (p, c) => {
      await tlsTo(p, { pem: c.alice });
      p.write(
        wsUpgrade(`/v1/ws/terminal?node=node1&login=${login}&cols=80&rows=24`).replace(WS_KEY, 'short'),
      );
    },
    faults: { none: closes(httpStatus(400), audit('http.reject', undefined, 400)) },
  },
  {
    name: 'WebSocket: web terminal open (authenticated)',
    entry: 'WebSocket',
    open: async (p, c) => {
      await openTerminal(p, c);
    },
    send: {
      'reserved opcode': wsFrame(0x3, Buffer.from('x')),
      'unmasked frame': wsFrame(0x2, Buffer.from('ls\n'), { mask: false }),
      huge: wsFrame(0x2, Buffer.alloc(0), { declaredLength: 2 ** 40 }),
      half: wsFrame(0x2, Buffer.alloc(10), { declaredLength: 100 }),
    },
    faults: {
      garbage: closes(wsClose(1002)),
      'reserved opcode': closes(wsClose(1002)),
      'unmasked frame': closes(wsClose(1002)),
      huge: closes(wsClose(1009)),
      half: staysOpen,
      stall: staysOpen,
      reset: survives,
      fin: closes(),
    },
  },
  ...(() => {
    // Joining needs a live session: alice's own web terminal, opened beside the probe.
    const owners = new Map<string, { probe: P; id: string }>();
    const join: S = {
      name: 'WebSocket: join of a live session (authenticated)',
      entry: 'WebSocket',
      prepare: async (c) => {
        const owner = await Probe.connect(port, c.addr);
        owners.set(c.addr, { probe: owner, id: await openTerminal(owner, c, { shell: true }) });
      },
      open: async (p, c) => {
        await tlsTo(p, { pem: c.alice });
        p.write(wsUpgrade(`/v1/ws/sessions/${owners.get(c.addr)!.id}/join?mode=observer`));
        await p.expect(
          (b) => /"type":"session"/.test(b.toString('latin1')),
          'the join session frame',
          20_000,
        );
      },
      after: (c) => {
        owners.get(c.addr)?.probe.close();
        owners.delete(c.addr);
      },
      send: {
        'unmasked frame': wsFrame(0x1, Buffer.from('{}'), { mask: false }),
        huge: wsFrame(0x1, Buffer.alloc(0), { declaredLength: 2 * 1024 * 1024 }),
        half: wsFrame(0x1, Buffer.alloc(3), { declaredLength: 50 }),
      },
      faults: {
        garbage: closes(wsClose(1002)),
        'unmasked frame': closes(wsClose(1002)),
        huge: closes(wsClose(1009)),
        half: staysOpen,
        reset: survives,
        fin: closes(),
      },
    };
    return [join];
  })(),
  // Kubernetes, routed by SNI.
  {
    name: 'Kubernetes: TLS up (SNI prod.kube.stages), no request yet',
    entry: 'Kubernetes',
    open: async (p, c) => {
      await tlsTo(p, { sni: `prod.kube.${CLUSTER}`, alpn: [], pem: c.alice });
    },
    send: { trickle: Buffer.from(`${HTTP_HEAD}${slowHeader}`) },
    faults: {
      garbage: closes(httpStatus(400), audit('http.reject', undefined, 400)),
      reset: survives,
      fin: closes(),
      stall: closes(httpStatus(408), audit('http.reject', undefined, 408)),
      trickle: closes(httpStatus(408), audit('http.reject', undefined, 408)),
    },
  },
  {
    name: 'Kubernetes: oversized request headers',
    entry: 'Kubernetes',
    open: async (p, c) => {
      await tlsTo(p, { sni: `prod.kube.${CLUSTER}`, alpn: [], pem: c.alice });
      p.write(oversizedHeaders);
    },
    faults: { none: closes(httpStatus(431), audit('http.reject', undefined, 431)) },
  },
  // SSH on the shared port (the outer hop of ssh -J).
  {
    name: 'SSH: banner exchanged',
    entry: 'SSH',
    open: async (p) => {
      p.write(SSH_BANNER);
      await sshBannerIn(p);
    },
    send: { trickle: slowSshPacket, huge: hugeSshLength, half: halfSshPacket },
    faults: {
      garbage: closes(audit('ssh.reject', 'malformed'), sshDisconnect),
      huge: closes(audit('ssh.reject', 'malformed'), sshDisconnect),
      half: closes(audit('ssh.reject', 'handshake_timeout')),
      reset: survives,
      fin: closes(),
      stall: closes(audit('ssh.reject', 'handshake_timeout')),
      trickle: closes(audit('ssh.reject', 'handshake_timeout')),
    },
  },
  {
    name: 'SSH: an SSH-1 banner',
    entry: 'SSH',
    open: async (p) => p.write('SSH-1.5-ancient\r\n'),
    faults: { none: closes(audit('ssh.reject', 'malformed')) },
  },
  {
    name: 'SSH: a banner that never ends',
    entry: 'SSH',
    open: async (p) => p.write('SSH-2.0-'),
    // ssh2 refuses an identification line past 8 KiB.
    send: { trickle: Buffer.alloc(1000, 0x61), garbage: Buffer.alloc(9000, 0x61) },
    faults: {
      trickle: closes(audit('ssh.reject')),
      garbage: closes(audit('ssh.reject', 'malformed')),
      stall: closes(audit('ssh.reject', 'handshake_timeout')),
    },
  },
  {
    name: 'SSH: a malformed KEXINIT',
    entry: 'SSH',
    open: async (p) => {
      p.write(SSH_BANNER);
      await sshBannerIn(p);
      p.write(badKexinit);
    },
    faults: { none: closes(audit('ssh.reject', 'malformed'), sshDisconnect) },
  },
  {
    name: 'SSH: a user certificate with a forged signature',
    entry: 'SSH',
    open: async (p, c) => {
      const err = await sshLogin(p, c.sshForged).then(
        () => undefined,
        (e: Error) => e,
      );
      expect(err?.message).toMatch(/authentication methods failed/);
    },
    faults: { none: closes(audit('ssh.reject', 'auth_failed')) },
  },
  {
    name: 'SSH: logged in to the proxy (outer hop)',
    entry: 'SSH',
    open: async (p, c) => {
      await sshLogin(p, c.sshKey);
    },
    // After login the cipher is AES-GCM: lengths are multiples of its 16-byte block.
    send: { huge: hugeSshLength, half: Buffer.from([0, 0, 0, 64, 1, 2, 3, 4, 5, 6, 7, 8]) },
    faults: {
      garbage: closes(),
      huge: closes(),
      half: staysOpen,
      stall: staysOpen,
      reset: survives,
      fin: closes(),
    },
  },
  // SSH inside TLS (ALPN gatehouse-ssh, what gatehouse ssh uses).
  {
    name: 'SSH in TLS: TLS up, no target line',
    entry: 'SSH in TLS',
    open: async (p, c) => {
      await tlsTo(p, { alpn: ['gatehouse-ssh'], pem: c.alice });
    },
    send: { trickle: Buffer.from('GATEHOUSE-SSH/1 node1:22') },
    faults: {
      garbage: closes(targetErr, audit('ssh.reject', 'malformed')),
      reset: survives,
      fin: closes(),
      stall: closes(audit('ssh.reject', 'handshake_timeout')),
      trickle: closes(audit('ssh.reject', 'handshake_timeout')),
    },
  },
  {
    name: 'SSH in TLS: target accepted, banner exchanged',
    entry: 'SSH in TLS',
    open: async (p, c) => {
      await tlsTo(p, { alpn: ['gatehouse-ssh'], pem: c.alice });
      p.write('GATEHOUSE-SSH/1 node1:22\n');
      await p.expect((b) => /^OK\nSSH-2\.0-Gatehouse/.test(b.toString('latin1')), 'OK and the SSH banner');
      p.write(SSH_BANNER);
    },
    send: { trickle: slowSshPacket, huge: hugeSshLength, 'malformed KEXINIT': badKexinit },
    faults: {
      garbage: closes(audit('ssh.reject', 'malformed'), sshDisconnect),
      'malformed KEXINIT': closes(audit('ssh.reject', 'malformed'), sshDisconnect),
      huge: closes(audit('ssh.reject', 'malformed'), sshDisconnect),
      reset: survives,
      fin: closes(),
      stall: closes(audit('ssh.reject', 'handshake_timeout')),
      trickle: closes(audit('ssh.reject', 'handshake_timeout')),
    },
  },
  // PostgreSQL on the shared port.
  {
    name: 'PostgreSQL: plaintext startup half sent',
    entry: 'PostgreSQL',
    open: async (p) => p.write(pg.startup({ user: 'alice', database: 'app' }).subarray(0, 12)),
    faults: {
      garbage: closes(pgError(/./), audit('db.reject', 'malformed')),
      reset: survives,
      fin: closes(),
      stall: closes(pgStartupDeadline, audit('db.reject', 'timeout')),
    },
  },
  {
    name: 'PostgreSQL: a CancelRequest with an unknown key',
    entry: 'PostgreSQL',
    open: async (p) => p.write(pg.cancel(12345, 67890)),
    faults: { none: closes(audit('db.cancel')) },
  },
  {
    name: 'PostgreSQL: half a CancelRequest',
    entry: 'PostgreSQL',
    open: async (p) => p.write(pg.cancel(12345, 67890).subarray(0, 12)),
    faults: {
      reset: survives,
      fin: closes(),
      stall: closes(pgStartupDeadline, audit('db.reject', 'timeout')),
    },
  },
  {
    name: 'PostgreSQL: SSLRequest answered, no ClientHello',
    entry: 'PostgreSQL',
    open: async (p) => {
      p.write(pg.sslRequest);
      await p.expect((b) => b.toString() === 'S', 'S');
    },
    send: { 'a plaintext startup instead of TLS': pg.startup({ user: 'alice', database: 'app' }) },
    faults: {
      garbage: closes(audit('listener.reject', 'tls_handshake_failed')),
      'a plaintext startup instead of TLS': closes(audit('listener.reject', 'tls_handshake_failed')),
      reset: survives,
      fin: closes(),
      stall: closes(audit('listener.reject', 'handshake_timeout')),
    },
  },
  {
    name: 'PostgreSQL in TLS: no startup yet',
    entry: 'PostgreSQL',
    open: async (p, c) => {
      p.write(pg.sslRequest);
      await p.expect((b) => b.toString() === 'S', 'S');
      p.mark();
      await tlsTo(p, { alpn: ['postgresql'], pem: c.pgRoute });
    },
    send: {
      // A startup packet declaring 2000 bytes, sent one byte at a time.
      trickle: Buffer.concat([Buffer.from([0, 0, 0x07, 0xd0, 0, 3, 0, 0]), Buffer.alloc(1992, 0x61)]),
      huge: Buffer.from([0x7f, 0xff, 0xff, 0xff, 0, 3, 0, 0]),
      half: pg.startup({ user: 'alice', database: 'app' }).subarray(0, 12),
      // 20 bytes declared, the last parameter name never terminated.
      'a malformed startup packet': Buffer.concat([
        Buffer.from([0, 0, 0, 20, 0, 3, 0, 0]),
        Buffer.from('user\0alice\0x'),
      ]),
    },
    faults: {
      garbage: closes(pgError(/./), audit('db.reject', 'malformed')),
      huge: closes(pgError(/./), audit('db.reject', 'oversized')),
      half: closes(pgStartupDeadline, audit('db.reject', 'timeout')),
      'a malformed startup packet': closes(pgError(/./), audit('db.reject', 'malformed')),
      reset: survives,
      fin: closes(),
      stall: closes(pgStartupDeadline, audit('db.reject', 'timeout')),
      trickle: closes(pgStartupDeadline, audit('db.reject', 'timeout')),
    },
  },
  {
    name: 'PostgreSQL in TLS: a startup without a client certificate',
    entry: 'PostgreSQL',
    open: async (p) => {
      p.write(pg.sslRequest);
      await p.expect((b) => b.toString() === 'S', 'S');
      p.mark();
      await tlsTo(p, { alpn: ['postgresql'] });
      p.write(pg.startup({ user: 'alice', database: 'app' }));
    },
    faults: { none: closes(pgError(/./), audit('access.denied')) },
  },
  {
    name: 'PostgreSQL in TLS: an authenticated session',
    entry: 'PostgreSQL',
    open: async (p, c) => {
      p.write(pg.sslRequest);
      await p.expect((b) => b.toString() === 'S', 'S');
      p.mark();
      await tlsTo(p, { alpn: ['postgresql'], pem: c.pgRoute });
      p.write(pg.startup({ user: 'alice', database: 'app' }));
      await p.expect(pg.ready, 'ReadyForQuery', 20_000);
    },
    send: {
      huge: pg.header('Q', 0x7ffffff0),
      half: Buffer.concat([pg.header('Q', 100), Buffer.from('select')]),
    },
    faults: {
      garbage: closes(pgError(/unknown message type/)),
      huge: closes(pgError(/limit/)),
      half: staysOpen,
      stall: staysOpen,
      reset: survives,
      fin: closes(),
    },
  },
  // MySQL on its own port.
  {
    name: 'MySQL: greeting received',
    entry: 'MySQL port',
    port: 'mysql',
    open: async (p) => {
      await myGreeting(p);
    },
    send: {
      trickle: Buffer.concat([my.header(1, 64), Buffer.alloc(64, 0x41)]),
      huge: my.header(1, 0xffffff),
      half: Buffer.concat([my.header(1, 64), Buffer.alloc(10)]),
    },
    faults: {
      garbage: closes(anyMyErr, audit('db.reject')),
      huge: closes(myErr(1153), audit('db.reject', 'oversized')),
      half: closes(myErr(1159), audit('db.reject', 'timeout')),
      reset: survives,
      fin: closes(),
      stall: closes(myErr(1159), audit('db.reject', 'timeout')),
      trickle: closes(myErr(1159), audit('db.reject', 'timeout')),
    },
  },
  {
    name: 'MySQL: SSLRequest sent, no ClientHello',
    entry: 'MySQL port',
    port: 'mysql',
    open: async (p) => {
      await myGreeting(p);
      p.write(mySslRequest());
    },
    faults: {
      garbage: closes(audit('listener.reject', 'tls_handshake_failed')),
      reset: survives,
      fin: closes(),
      stall: closes(audit('db.reject', 'timeout')),
    },
  },
  {
    name: 'MySQL: a client certificate from a foreign CA',
    entry: 'MySQL port',
    port: 'mysql',
    open: async (p, c) => {
      await myGreeting(p);
      p.write(mySslRequest());
      p.mark();
      await tlsTo(p, { alpn: [], pem: c.foreign });
    },
    faults: { none: closes(myErr(1045), audit('listener.reject', 'client_cert_untrusted')) },
  },
  {
    name: 'MySQL: TLS up, no handshake response',
    entry: 'MySQL port',
    port: 'mysql',
    open: async (p, c) => {
      await myGreeting(p);
      p.write(mySslRequest());
      p.mark();
      await tlsTo(p, { alpn: [], pem: c.myRoute });
    },
    send: {
      huge: my.header(2, 0xffffff),
      half: Buffer.concat([my.header(2, 64), Buffer.alloc(10)]),
      'a malformed handshake response': my.packet(2, myHandshake({ ssl: true, protocol41: false })),
    },
    faults: {
      garbage: closes(anyMyErr, audit('db.reject')),
      'a malformed handshake response': closes(myErr(1043), audit('db.reject', 'malformed')),
      huge: closes(myErr(1153), audit('db.reject', 'oversized')),
      half: closes(myErr(1159), audit('db.reject', 'timeout')),
      reset: survives,
      fin: closes(),
      stall: closes(myErr(1159), audit('db.reject', 'timeout')),
    },
  },
  {
    name: 'MySQL: an authenticated session',
    entry: 'MySQL port',
    port: 'mysql',
    open: async (p, c) => {
      await myGreeting(p);
      p.write(mySslRequest());
      p.mark();
      await tlsTo(p, { alpn: [], pem: c.myRoute });
      p.write(my.packet(2, myHandshake({ ssl: true })));
      await p.expect((b) => my.packets(b)[0]?.payload[0] === 0x00, 'an OK packet', 20_000);
    },
    send: {
      garbage: my.packet(0, GARBAGE),
      half: Buffer.concat([my.header(0, 64), Buffer.from([3]), Buffer.from('select')]),
    },
    faults: {
      // A well-framed unknown command is the database's to answer; the session goes on.
      garbage: { end: 'open', ...myErr(1047) },
      half: staysOpen,
      stall: staysOpen,
      reset: survives,
      fin: closes(),
    },
  },
  // MySQL inside TLS (ALPN gatehouse-mysql, what gatehouse proxy db uses).
  {
    name: 'MySQL in TLS: a handshake without a client certificate',
    entry: 'MySQL in TLS',
    open: async (p) => {
      await tlsTo(p, { alpn: ['gatehouse-mysql'] });
      await myGreeting(p);
      p.mark();
      p.write(my.packet(1, myHandshake({ ssl: false })));
    },
    faults: { none: closes(anyMyErr, audit('access.denied')) },
  },
  {
    name: 'MySQL in TLS: greeting received',
    entry: 'MySQL in TLS',
    open: async (p, c) => {
      await tlsTo(p, { alpn: ['gatehouse-mysql'], pem: c.myRoute });
      await myGreeting(p);
    },
    send: {
      huge: my.header(1, 0xffffff),
      'a malformed handshake response': my.packet(1, myHandshake({ ssl: false, protocol41: false })),
    },
    faults: {
      garbage: closes(anyMyErr, audit('db.reject')),
      'a malformed handshake response': closes(myErr(1043), audit('db.reject', 'malformed')),
      huge: closes(myErr(1153), audit('db.reject', 'oversized')),
      reset: survives,
      fin: closes(),
      stall: closes(myErr(1159), audit('db.reject', 'timeout')),
    },
  },
  // PROXY protocol headers.
  {
    name: 'PROXY v1 from an untrusted source',
    entry: 'PROXY',
    open: async (p, c) => p.write(proxyV1(c.addr)),
    faults: { none: closes(audit('listener.reject', 'proxy_protocol_untrusted')) },
  },
  {
    name: 'PROXY v2 from an untrusted source',
    entry: 'PROXY',
    open: async (p, c) => p.write(proxyV2(c.addr)),
    faults: { none: closes(audit('listener.reject', 'proxy_protocol_untrusted')) },
  },
  {
    name: 'PROXY v1 (trusted): header half sent',
    entry: 'PROXY',
    trusted: true,
    open: async (p) => p.write('PROXY TCP4 10.9.'),
    faults: {
      garbage: closes(audit('listener.reject', 'proxy_protocol_malformed')),
      reset: survives,
      fin: closes(),
      stall: closes(),
    },
  },
  {
    name: 'PROXY v2 (trusted): an unknown version',
    entry: 'PROXY',
    trusted: true,
    open: async (p, c) => p.write(proxyV2(c.addr, { versionCommand: 0x31 })),
    faults: { none: closes() },
  },
  {
    name: 'PROXY v2 (trusted): a header declaring 64 KiB, half sent',
    entry: 'PROXY',
    trusted: true,
    open: async (p, c) => p.write(proxyV2(c.addr, { declared: 0xffff })),
    faults: { stall: closes(), reset: survives, fin: closes() },
  },
  {
    name: 'PROXY v1 (trusted): header accepted, nothing after',
    entry: 'PROXY',
    trusted: true,
    open: async (p, c) => p.write(proxyV1(c.addr)),
    send: { 'a second PROXY header': proxyV1('10.1.1.1') },
    faults: {
      garbage: closes(audit('listener.reject', 'unknown_protocol')),
      'a second PROXY header': closes(audit('listener.reject', 'proxy_protocol_untrusted')),
      reset: survives,
      fin: closes(),
      stall: closes(audit('listener.reject', 'first_byte_timeout')),
    },
  },
  {
    name: 'PROXY v2 (trusted) then SSH: banner exchanged',
    entry: 'PROXY',
    trusted: true,
    open: async (p, c) => {
      p.write(proxyV2(c.addr));
      p.write(SSH_BANNER);
      await sshBannerIn(p);
    },
    faults: {
      garbage: closes(audit('ssh.reject', 'malformed')),
      stall: closes(audit('ssh.reject', 'handshake_timeout')),
    },
  },
  {
    name: 'PROXY v1 (trusted) then a plaintext PostgreSQL startup',
    entry: 'PROXY',
    trusted: true,
    open: async (p, c) => {
      p.write(proxyV1(c.addr));
      p.write(pg.startup({ user: 'alice', database: 'app' }));
    },
    faults: { none: closes(pgError(/TLS|SSL/i), audit('db.reject', 'plaintext')) },
  },
  {
    name: 'PROXY v2 (trusted) then HTTPS: a malformed JSON login',
    entry: 'PROXY',
    trusted: true,
    open: async (p, c) => {
      p.write(proxyV2(c.addr));
      await tlsTo(p);
      p.write(
        'POST /v1/login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 3\r\nConnection: close\r\n\r\n{x}',
      );
    },
    faults: { none: closes(httpStatus(400), audit('http.reject', undefined, 400)) },
  },
];

/**
 * Rows showing a known bug in code someone else is changing right now: they
 * run, and their tests are expected to fail (it.fails) until the fix lands;
 * then they fail and say so, and the row leaves this table.
 */
// Rows a known, not yet fixed bug makes fail (run as it.fails, so the fix shows): none now.
const KNOWN_BUGS: Record<string, string> = {};

const CASES: Case<Ctx>[] = cases(STAGES).map((c) => {
  const bug = KNOWN_BUGS[`${c.stage.name} × ${c.fault}`];
  return bug ? { ...c, expect: { ...c.expect, bug } } : c;
});

// Error lines a known, not yet fixed bug prints (none now: a MySQL handshake reset was one).
const KNOWN_ERROR_LOGS: { re: RegExp; bug: string }[] = [];
const outcomes = new Map<number, Outcome>();

// ---------------------------------------------------------------------------
// Real clients, which must keep working while the matrix runs.

interface ClientResult {
  name: string;
  ok: boolean;
  detail: string;
}

const REAL_CLIENTS: Record<string, () => Promise<{ ok: boolean; detail: string }>> = {
  'ssh -J (SSH on the main port)': async () => {
    const r = await runClient(
      'ssh',
      [
        '-F',
        join(home, 'ssh_config'),
        '-J',
        `alice@127.0.0.1:${port}`,
        `${login}@node1`,
        'echo',
        'via-main-port',
      ],
      { timeoutMs: 30_000 },
    );
    return { ok: r.code === 0 && r.stdout === 'via-main-port\n', detail: `${r.code} ${r.stdout}${r.stderr}` };
  },
  'gatehouse ssh (SSH inside TLS)': async () => {
    const r = await gh(['ssh', `${login}@node1`, 'echo', 'via-tls']);
    return { ok: r.code === 0 && r.stdout === 'via-tls\n', detail: `${r.code} ${r.stdout}${r.stderr}` };
  },
  psql: async () => {
    const r = await runClient('psql', ['-X', '-At', 'service=orders', '-c', 'select 40 + 2'], {
      env: { HOME: home },
      timeoutMs: 30_000,
    });
    return { ok: r.code === 0 && r.stdout.trim() === '42', detail: `${r.code} ${r.stdout}${r.stderr}` };
  },
  mariadb: async () => {
    const r = await runClient(
      'mariadb',
      ['--defaults-group-suffix=_shop', '-N', '-B', '-e', 'SELECT 40 + 2'],
      {
        env: { HOME: home },
        timeoutMs: 30_000,
      },
    );
    return { ok: r.code === 0 && r.stdout.trim() === '42', detail: `${r.code} ${r.stdout}${r.stderr}` };
  },
  'kubectl get pods': async () => {
    const r = await runClient(
      'kubectl',
      [
        '--kubeconfig',
        join(home, 'kubeconfig'),
        '--cache-dir',
        mkdtempSync(join(dir, 'kcache-')),
        'get',
        'pods',
      ],
      { timeoutMs: 30_000 },
    );
    return {
      ok: r.code === 0 && /web-1\s+1\/1\s+Running/.test(r.stdout),
      detail: `${r.code} ${r.stdout}${r.stderr}`,
    };
  },
  'curl /v1/ping': async () => {
    const r = await runClient('curl', ['-sk', '--max-time', '20', `https://127.0.0.1:${port}/v1/ping`], {
      timeoutMs: 30_000,
    });
    return {
      ok: r.code === 0 && r.stdout.includes(`"cluster_name":"${CLUSTER}"`),
      detail: `${r.code} ${r.stdout}${r.stderr}`,
    };
  },
};

async function realClientsRound(): Promise<ClientResult[]> {
  return Promise.all(
    Object.entries(REAL_CLIENTS).map(async ([name, f]) => {
      try {
        return { name, ...(await f()) };
      } catch (e) {
        return { name, ok: false, detail: (e as Error).message };
      }
    }),
  );
}

/** The daemon's open file descriptors. */
function openFds(): number {
  return readdirSync(`/proc/${d.pid}/fd`).length;
}

const RUN: RunOptions = {
  ports: { main: 0, mysql: 0 },
  trustedSource: TRUSTED,
  closeWithinMs: Math.max(FIRST_BYTE_MS, HANDSHAKE_MS, REQUEST_MS) + 10_000,
  staysOpenForMs: Math.max(FIRST_BYTE_MS, HANDSHAKE_MS, REQUEST_MS) + 1_000,
  trickleEveryMs: 300,
  opening: new Semaphore(16),
};

describe('reliability: bad input at every stage, real clients served meanwhile', () => {
  let baselineFds = 0;
  const rounds: ClientResult[][] = [];
  /** Per case: the audit events about it, once every expected one arrived (or the wait ran out). */
  const events = new Map<number, AuditEvent[]>();

  it('real clients work before the attacks (and warm up what they share)', async () => {
    const round = await realClientsRound();
    baselineFds = openFds();
    expect(round.filter((r) => !r.ok)).toEqual([]);
  });

  it(`plays ${CASES.length} cases while real clients keep working`, async () => {
    RUN.ports = { main: port, mysql: mysqlPort };
    let attacking = true;
    const attacks = Promise.all(
      CASES.map(async (c) => {
        outcomes.set(c.id, await runCase(c, ctx, RUN));
      }),
    ).finally(() => {
      attacking = false;
    });
    // Real clients, round after round, for as long as the attacks run.
    do rounds.push(await realClientsRound());
    while (attacking);
    await attacks;
    rounds.push(await realClientsRound());
    // Audit events are written asynchronously: wait until each expected one is there.
    const collect = () => {
      const all = auditEvents(d);
      for (const c of CASES)
        events.set(
          c.id,
          all.filter((e) => eventOf(e, c, outcomes.get(c.id))),
        );
      return CASES.every(
        (c) =>
          !c.expect.audit ||
          c.expect.bug !== undefined ||
          events.get(c.id)!.some((e) => auditMatches(e, c.expect.audit!)),
      );
    };
    await expect
      .poll(collect, { timeout: 10_000 })
      .toBe(true)
      .catch(() => undefined);
    // The matrix, for the log.
    console.log(
      CASES.map((c) => {
        const bad = problems(c);
        const mark = c.expect.bug ? (bad.length ? 'BUG ' : 'BUG?') : bad.length ? 'FAIL' : 'ok  ';
        return `${mark} ${c.stage.entry.padEnd(12)} ${c.stage.name} × ${c.fault}${bad.length ? `: ${bad.join('; ')}` : ''}`;
      }).join('\n'),
    );
    expect(d.alive(), d.err()).toBe(true);
    const failed = rounds.flatMap((r, i) =>
      r.filter((x) => !x.ok).map((x) => `round ${i + 1}: ${x.name}: ${x.detail}`),
    );
    expect(failed).toEqual([]);
    expect(rounds.length).toBeGreaterThanOrEqual(2);
  });

  /** What is wrong with a case's outcome and audit trail (empty when nothing). */
  function problems(c: Case<Ctx>): string[] {
    const out = outcomes.get(c.id);
    if (!out) return ['the case did not run'];
    const bad = verdict(c.expect, out);
    const want = c.expect.audit;
    const seen = events.get(c.id) ?? [];
    if (want && !seen.some((e) => auditMatches(e, want))) {
      bad.push(
        `no ${want.type}${want.reason ? ` ${want.reason}` : ''}${want.status ? ` ${want.status}` : ''} event` +
          (seen.length
            ? ` (its events: ${describeEvents(seen).replace(/\n/g, ' | ')})`
            : ' (no event at all)'),
      );
    }
    return bad;
  }

  // One test per row; a row showing a known bug in someone else's code is expected to fail until it is fixed.
  for (const c of CASES) {
    const name = `${c.stage.entry}: ${c.stage.name} × ${c.fault}`;
    if (c.expect.bug) it.fails(`${name} (known bug: ${c.expect.bug})`, () => expect(problems(c)).toEqual([]));
    else it(name, () => expect(problems(c)).toEqual([]));
  }

  it('every known-bug row names a case of the table', () => {
    const names = new Set(CASES.map((c) => `${c.stage.name} × ${c.fault}`));
    expect(Object.keys(KNOWN_BUGS).filter((k) => !names.has(k))).toEqual([]);
  });

  it('the daemon is alive and its descriptors return to the baseline (no leaked sockets)', async () => {
    expect(d.alive(), d.err()).toBe(true);
    await expect.poll(openFds, { timeout: 20_000 }).toBeLessThanOrEqual(baselineFds + 5);
    console.log(
      `daemon descriptors: ${baselineFds} before the matrix, ${openFds()} after; ${rounds.length} rounds of real clients`,
    );
    // Nothing went wrong inside: no error the gateway logged (it prints them on stderr), no crash trace.
    expect(d.err()).not.toMatch(/TypeError|Unhandled|uncaught/i);
    const errors = d
      .err()
      .split('\n')
      .filter((l) => l.startsWith('gatehouse: error:') && !KNOWN_ERROR_LOGS.some((k) => k.re.test(l)));
    expect(errors).toEqual([]);
  });
});
