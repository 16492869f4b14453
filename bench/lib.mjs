// Helpers the benches share: free ports, the Debian packages they need,
// medians over rounds run in rotating order, a proxy's CPU time, and a
// throwaway TLS server certificate for the database peers. (Not
// @gatehouse/core/testing: that entry point loads vitest.)
import { execFile, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** Installs the packages of the `[binary, 'package (hint)']` pairs whose binary is missing (root only). */
export function ensurePackages(need) {
  const missing = need.filter(([bin]) => !existsSync(bin));
  if (missing.length === 0) return;
  const pkgs = missing.map(([, p]) => p.split(' ')[0]);
  if (process.getuid?.() !== 0) {
    throw new Error(
      `missing ${missing.map(([b]) => b).join(', ')}: sudo apt-get install -y ${pkgs.join(' ')}`,
    );
  }
  process.stderr.write(`installing ${pkgs.join(' ')} (Debian packages the bench needs) ...\n`);
  execFileSync(
    'apt-get',
    ['-q', '-o', 'DPkg::Lock::Timeout=120', 'install', '-y', '--no-install-recommends', ...pkgs],
    { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } },
  );
}

/** The middle value (the mean of the two middle ones for an even count). */
export function median(xs) {
  if (xs.length === 0) return 0;
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

/**
 * The targets in the order round `round` runs them: rotated each round, so
 * that on a shared machine no target always runs first (or last) and a slow
 * spell hits every target alike.
 */
export function roundOrder(targets, round) {
  const k = round % targets.length;
  return [...targets.slice(k), ...targets.slice(0, k)];
}

let clockTicks;

/** User + system CPU milliseconds process `pid` has used so far (Linux /proc). */
export function processCpuMs(pid) {
  clockTicks ??= Number(execFileSync('getconf', ['CLK_TCK']).toString());
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the parenthesized command name; utime and stime are the 12th and 13th.
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(f[11]) + Number(f[12])) * 1000) / clockTicks;
}

/**
 * Starts measuring a proxy's CPU: process `pid`, or this process (every
 * thread: the in-process gateway) when pid is undefined. Returns a function
 * giving the CPU milliseconds used since.
 */
export function cpuMeter(pid) {
  const read =
    pid === undefined
      ? () => {
          const u = process.cpuUsage();
          return (u.user + u.system) / 1000;
        }
      : () => processCpuMs(pid);
  const start = read();
  return () => read() - start;
}

const ossl = (args) => execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });

/**
 * A bench CA and a server certificate for localhost/127.0.0.1 signed by it,
 * in `dir` (which must exist): ca.crt, server.key, server.crt.
 */
export function serverTls(dir) {
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  ossl([
    'req',
    '-x509',
    ...ec,
    '-keyout',
    `${dir}/ca.key`,
    '-out',
    `${dir}/ca.crt`,
    '-subj',
    '/CN=bench CA',
    '-days',
    '2',
  ]);
  ossl(['req', ...ec, '-keyout', `${dir}/server.key`, '-out', `${dir}/server.csr`, '-subj', '/CN=localhost']);
  writeFileSync(`${dir}/ext`, 'subjectAltName=DNS:localhost,IP:127.0.0.1\n');
  ossl([
    'x509',
    '-req',
    '-in',
    `${dir}/server.csr`,
    '-CA',
    `${dir}/ca.crt`,
    '-CAkey',
    `${dir}/ca.key`,
    '-CAcreateserial',
    '-out',
    `${dir}/server.crt`,
    '-days',
    '2',
    '-extfile',
    `${dir}/ext`,
  ]);
}

/**
 * `n` content guards as role YAML lines (under `options:`), for the benches
 * that measure their cost: three literals (canaries) to one pattern, the
 * patterns the kinds people write (fixed-prefix secrets, one with no fixed
 * start), none of which match the benches' data.
 */
export function guardLines(n, on) {
  const patterns = [
    'AKIA[0-9A-Z]{16}',
    'ghp_[A-Za-z0-9]{36}',
    '-----BEGIN [A-Z ]*PRIVATE KEY-----',
    'xox[baprs]-[0-9A-Za-z-]{10,48}',
    '[0-9]{3}-[0-9]{2}-[0-9]{4}-SSN',
  ];
  const lines = ['  guards:'];
  for (let i = 0; i < n; i++) {
    const target =
      i % 4 === 3
        ? `match: '${patterns[((i - 3) / 4) % patterns.length]}'`
        : `literal: gh-canary-${i}-7f3a9c`;
    lines.push(`    - { name: g${i}, ${target}, on: [${on.join(', ')}] }`);
  }
  return lines.join('\n');
}

const execFileP = promisify(execFile);

/**
 * A fresh Unix account for SSH sessions (root only), unlocked for key/cert
 * login: root's dotfiles may do slow work at every login and skew the
 * figures. Returns its name and a function that deletes it again.
 */
export async function addLoginAccount(prefix = 'ghb') {
  const login = `${prefix}${randomBytes(3).toString('hex')}`;
  await execFileP('useradd', ['-m', '-s', '/bin/bash', login]);
  await execFileP('usermod', ['-p', '*', login]);
  return { login, remove: () => execFileP('userdel', ['-r', '-f', login]) };
}

/**
 * Database session events in a gateway's JSON-lines record (the durable,
 * chained record a statement waits for) under `dataDir`, counted by type and
 * user: `${type} ${user}` (plus ` sessions` for a start marked db_audit:
 * sessions) -> count.
 */
function countRecorded(dataDir) {
  const dir = path.join(dataDir, 'audit');
  const counts = new Map();
  for (const f of readdirSync(dir).filter((n) => n.endsWith('.jsonl'))) {
    for (const line of readFileSync(path.join(dir, f), 'utf8').split('\n')) {
      if (!line.includes('"type":"db.session.')) continue;
      const e = JSON.parse(line);
      const key = `${e.type} ${e.user}${e.db_audit ? ` ${e.db_audit}` : ''}`;
      counts.set(key, (counts.get(key) ?? 0) + 1);
    }
  }
  return counts;
}

/**
 * Whether the gateway under `dataDir` audited what each target (with a
 * gateway `user`) was sent: every statement (`sent`: target name -> count) for
 * statement audit, and for `sessionsOnly` targets no statement but marked
 * session starts. Returns a row per target and `ok`.
 */
export function checkAudited(dataDir, targets, sent) {
  const recorded = countRecorded(dataDir);
  const audited = targets
    .filter((t) => t.user !== undefined)
    .map((t) => ({
      target: t.name,
      db_audit: t.sessionsOnly ? 'sessions' : 'statements',
      statements_sent: sent.get(t.name),
      statements_recorded: recorded.get(`db.session.query ${t.user}`) ?? 0,
      sessions_recorded: recorded.get(`db.session.start ${t.user}${t.sessionsOnly ? ' sessions' : ''}`) ?? 0,
    }));
  const ok = audited.every((a) =>
    a.db_audit === 'sessions'
      ? a.statements_recorded === 0 && a.sessions_recorded > 0
      : a.statements_recorded >= a.statements_sent,
  );
  return { audited, ok };
}
