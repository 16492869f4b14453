// Certificate issuance throughput on one core (main thread, sequential):
// Gatehouse's CertificateAuthorities side by side with @peculiar/x509,
// sshpk and `ssh-keygen -s`. Goals: >= 2,000 SSH and >= 1,000 X.509 per second.
// Gatehouse is measured twice: with a do-nothing audit emitter (the signing
// alone, comparable with the libraries) and as a gateway issues, waiting for
// each cert.issue event to be in the hash-chained JSON-lines record (and
// indexed on the index thread), which is what a login pays.
import 'reflect-metadata';
import { execFile } from 'node:child_process';
import { generateKeyPairSync, randomBytes, webcrypto } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import {
  AesGcmSealer,
  CertificateAuthorities,
  createGateway,
  IDENTITY_EXTENSION_OID,
  MemoryBackend,
  systemClock,
} from '@gatehouse/core';
import * as px from '@peculiar/x509';
import sshpk from 'sshpk';

export const description =
  'certificate issuance per second: Gatehouse vs @peculiar/x509, sshpk, ssh-keygen -s';

const execFileP = promisify(execFile);
const GOALS = { ssh: 2000, x509: 1000 };
const SSH_KEYGEN_MAX = 300;

function parseArgs(argv) {
  const o = { seconds: 3, json: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--json') o.json = true;
    else if (a === '--seconds') o.seconds = Number(argv[++i]);
    else if (a.startsWith('--seconds=')) o.seconds = Number(a.slice('--seconds='.length));
    else throw new Error(`unknown option ${a} (options: --seconds N, --json)`);
  }
  if (!(o.seconds > 0)) throw new Error('--seconds must be a positive number');
  return o;
}

/** Runs `fn` back to back for `seconds` (or `max` times) and returns certs/s. */
async function measure(seconds, fn, max = Number.POSITIVE_INFINITY) {
  for (let i = 0; i < 20 && i < max; i++) await fn(); // warm up JIT and caches
  const end = performance.now() + seconds * 1000;
  const start = performance.now();
  const cpu = process.cpuUsage();
  let n = 0;
  while (performance.now() < end && n < max) {
    await fn();
    n++;
  }
  const elapsed = (performance.now() - start) / 1000;
  // This process's CPU (every thread: the audit index thread too) per cert: steadier than
  // certs/s on a shared machine. ssh-keygen's own CPU is in its children, not here.
  const used = process.cpuUsage(cpu);
  return { count: n, seconds: elapsed, perSecond: n / elapsed, cpuUsPerCert: (used.user + used.system) / n };
}

export async function run(argv) {
  const opts = parseArgs(argv);
  const dir = await mkdtemp(path.join(os.tmpdir(), 'gh-bench-certs-'));
  const backend = new MemoryBackend({ sweepIntervalMs: 0 });
  // The real audit path: a gateway's own CAs, whose audit log is the gateway's (JSONL record + index).
  const gw = await createGateway({ dataDir: path.join(dir, 'gw'), secondFactor: 'off', env: {} });
  try {
    // A no-op emitter: the signing alone (the real audit path is measured below, with gw.authorities).
    const audit = { emit: async (e) => e };
    const cas = new CertificateAuthorities({
      backend,
      sealer: new AesGcmSealer(randomBytes(32)),
      clock: systemClock,
      clusterName: 'bench',
      audit,
    });
    await cas.init();

    const clientSsh = sshpk.parseKey(
      generateKeyPairSync('ed25519').publicKey.export({ type: 'spki', format: 'pem' }),
      'pem',
    );
    const clientSshLine = clientSsh.toString('ssh');
    const clientTls = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const clientTlsPem = clientTls.publicKey.export({ type: 'spki', format: 'pem' });
    const ttl = () => {
      const now = new Date();
      return { now, until: new Date(now.getTime() + 8 * 3600e3) };
    };
    const identity = (until) => ({
      user: 'alice',
      roles: ['dev', 'ops'],
      traits: { logins: ['alice', 'root', 'ubuntu'], db_users: ['reader'] },
      expires: until,
    });

    const rows = [];
    const add = (kind, name, r, note = '') => {
      rows.push({ kind, name, ...r, note });
      if (!opts.json) process.stderr.write(`  ${name}: ${Math.round(r.perSecond)}/s\n`);
    };
    if (!opts.json) process.stderr.write(`measuring, ${opts.seconds}s each, one core...\n`);

    // --- SSH
    add(
      'ssh',
      'gatehouse issueSshUserCert, no-op audit',
      await measure(opts.seconds, () => {
        const { now, until } = ttl();
        return cas.issueSshUserCert({
          publicKey: clientSshLine,
          keyId: 'alice',
          principals: ['alice', 'root', 'ubuntu'],
          validAfter: now,
          validBefore: until,
          permitPortForwarding: true,
          identity: identity(until),
        });
      }),
    );

    add(
      'ssh',
      'gatehouse issueSshUserCert, real audit',
      await measure(opts.seconds, () => {
        const { now, until } = ttl();
        return gw.authorities.issueSshUserCert({
          publicKey: clientSshLine,
          keyId: 'alice',
          principals: ['alice', 'root', 'ubuntu'],
          validAfter: now,
          validBefore: until,
          permitPortForwarding: true,
          identity: identity(until),
        });
      }),
      'waits for the cert.issue event (hash-chained JSON lines, indexed)',
    );

    const sshpkCa = sshpk.generatePrivateKey('ed25519');
    let serial = 0;
    add(
      'ssh',
      'sshpk.createCertificate (ed25519)',
      await measure(opts.seconds, () => {
        const { now, until } = ttl();
        const s = Buffer.alloc(8);
        s.writeBigUInt64BE(BigInt(++serial));
        const cert = sshpk.createCertificate(
          ['alice', 'root', 'ubuntu'].map((u) => sshpk.identityForUser(u)),
          clientSsh,
          sshpk.identityForUser('ca'),
          sshpkCa,
          { validFrom: now, validUntil: until, serial: s },
        );
        return cert.toString('openssh');
      }),
      'signs twice (X.509 + OpenSSH forms) in pure JS (tweetnacl)',
    );

    const caKey = path.join(dir, 'ca');
    const userPub = path.join(dir, 'user.pub');
    await execFileP('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', caKey]);
    await writeFile(userPub, `${clientSshLine}\n`);
    add(
      'ssh',
      'ssh-keygen -s (one process per cert)',
      await measure(
        opts.seconds,
        async () => {
          await execFileP('ssh-keygen', [
            '-q',
            '-s',
            caKey,
            '-I',
            'alice',
            '-n',
            'alice,root,ubuntu',
            '-V',
            '-1m:+8h',
            '-z',
            String(++serial),
            userPub,
          ]);
          return readFile(path.join(dir, 'user-cert.pub'), 'utf8');
        },
        SSH_KEYGEN_MAX,
      ),
      `bounded to ${SSH_KEYGEN_MAX} certs`,
    );

    // --- X.509
    add(
      'x509',
      'gatehouse issueX509UserCert, no-op audit',
      await measure(opts.seconds, () => {
        const { now, until } = ttl();
        return cas.issueX509UserCert({
          publicKeyPem: clientTlsPem,
          identity: identity(until),
          notBefore: now,
          notAfter: until,
        });
      }),
    );

    add(
      'x509',
      'gatehouse issueX509UserCert, real audit',
      await measure(opts.seconds, () => {
        const { now, until } = ttl();
        return gw.authorities.issueX509UserCert({
          publicKeyPem: clientTlsPem,
          identity: identity(until),
          notBefore: now,
          notAfter: until,
        });
      }),
      'waits for the cert.issue event (hash-chained JSON lines, indexed)',
    );

    // The library route for the same certificate (decision 0001 explains why leaves do not use it).
    const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
    const pxCa = await webcrypto.subtle.generateKey(alg, false, ['sign', 'verify']);
    const pxLeaf = await webcrypto.subtle.importKey(
      'spki',
      clientTls.publicKey.export({ type: 'spki', format: 'der' }),
      { name: 'ECDSA', namedCurve: 'P-256' },
      true,
      ['verify'],
    );
    const ext = Buffer.from(JSON.stringify({ v: 1, ...identity(new Date()) }));
    const utf8 = Buffer.concat([Buffer.from([0x0c, 0x81, ext.length]), ext]);
    add(
      'x509',
      '@peculiar/x509 X509CertificateGenerator.create',
      await measure(opts.seconds, async () => {
        const { now, until } = ttl();
        const c = await px.X509CertificateGenerator.create(
          {
            serialNumber: randomBytes(16)
              .toString('hex')
              .replace(/^[89a-f]/, '1'),
            subject: 'CN=alice, O=dev, O=ops',
            issuer: 'CN=Gatehouse user CA, O=bench',
            notBefore: now,
            notAfter: until,
            signingAlgorithm: alg,
            publicKey: pxLeaf,
            signingKey: pxCa.privateKey,
            extensions: [
              new px.BasicConstraintsExtension(false, undefined, true),
              new px.KeyUsagesExtension(px.KeyUsageFlags.digitalSignature, true),
              new px.ExtendedKeyUsageExtension([px.ExtendedKeyUsage.clientAuth]),
              new px.Extension(IDENTITY_EXTENSION_OID, false, utf8),
            ],
          },
          webcrypto,
        );
        return c.toString('pem');
      }),
      'WebCrypto ECDSA + ASN.1 schema serialization',
    );

    const base = { ssh: rows.find((r) => r.kind === 'ssh'), x509: rows.find((r) => r.kind === 'x509') };
    for (const r of rows) r.ratioVsGatehouse = r.perSecond / base[r.kind].perSecond;
    const real = {
      ssh: rows.find((r) => r.name === 'gatehouse issueSshUserCert, real audit'),
      x509: rows.find((r) => r.name === 'gatehouse issueX509UserCert, real audit'),
    };
    const goal = (kind, row) => ({
      goal: GOALS[kind],
      actual: row.perSecond,
      met: row.perSecond >= GOALS[kind],
    });
    const goals = {
      ssh: goal('ssh', base.ssh),
      x509: goal('x509', base.x509),
      ssh_real_audit: goal('ssh', real.ssh),
      x509_real_audit: goal('x509', real.x509),
    };
    const env = {
      node: process.version,
      cpu: os.cpus()[0]?.model ?? 'unknown',
      cores: os.cpus().length,
      seconds: opts.seconds,
    };

    if (opts.json) {
      process.stdout.write(`${JSON.stringify({ bench: 'certs', env, rows, goals }, null, 2)}\n`);
      return;
    }
    const fmt = (n) => Math.round(n).toLocaleString('en-US');
    const lines = [
      `certs: one core, ${opts.seconds}s per row, node ${env.node}, ${env.cpu}`,
      '',
      `${'kind'.padEnd(5)} ${'issuer'.padEnd(48)} ${'certs/s'.padStart(9)} ${'vs gatehouse'.padStart(13)} ${'CPU/cert'.padStart(9)}  note`,
      `${'-'.repeat(5)} ${'-'.repeat(48)} ${'-'.repeat(9)} ${'-'.repeat(13)} ${'-'.repeat(9)}  ${'-'.repeat(4)}`,
      ...rows.map(
        (r) =>
          `${r.kind.padEnd(5)} ${r.name.padEnd(48)} ${fmt(r.perSecond).padStart(9)} ${`${r.ratioVsGatehouse.toFixed(3)}x`.padStart(13)} ${`${fmt(r.cpuUsPerCert)} us`.padStart(9)}  ${r.note}`,
      ),
      '',
      `goal SSH  >= ${fmt(GOALS.ssh)}/s: signing alone ${goals.ssh.met ? 'met' : 'NOT met'} (${fmt(goals.ssh.actual)}/s), with the real audit ${goals.ssh_real_audit.met ? 'met' : 'NOT met'} (${fmt(goals.ssh_real_audit.actual)}/s)`,
      `goal X.509 >= ${fmt(GOALS.x509)}/s: signing alone ${goals.x509.met ? 'met' : 'NOT met'} (${fmt(goals.x509.actual)}/s), with the real audit ${goals.x509_real_audit.met ? 'met' : 'NOT met'} (${fmt(goals.x509_real_audit.actual)}/s)`,
    ];
    process.stdout.write(`${lines.join('\n')}\n`);
  } finally {
    await gw.close();
    await backend.close();
    await rm(dir, { recursive: true, force: true });
  }
}
