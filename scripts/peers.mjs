#!/usr/bin/env node
// The real programs the integration tests drive. A missing one is a failure,
// not a skip: as root with apt-get we install it, otherwise we say how.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

const PEERS = [
  { bin: '/usr/sbin/sshd', pkg: 'openssh-server', why: 'sshd that trusts the user CA (PKI tests)' },
  { bin: '/usr/bin/ssh', pkg: 'openssh-client', why: 'ssh and ssh-keygen' },
  { bin: '/usr/bin/ssh-keygen', pkg: 'openssh-client', why: 'ssh-keygen -L' },
  { bin: '/usr/bin/openssl', pkg: 'openssl', why: 'openssl verify / x509 / s_client' },
  { bin: '/usr/bin/curl', pkg: 'curl', why: 'a TLS client for the listener tests' },
  {
    bin: '/usr/sbin/mariadbd',
    pkg: 'mariadb-server',
    why: 'MariaDB with REQUIRE SUBJECT users (MySQL adapter tests)',
  },
  { bin: '/usr/bin/mariadb', pkg: 'mariadb-client', why: 'the mariadb client (MySQL adapter tests)' },
  {
    bin: '/usr/lib/python3/dist-packages/MySQLdb/__init__.py',
    pkg: 'python3-mysqldb',
    why: 'mysqlclient (MySQLdb), a libmariadb driver (MySQL adapter tests: change_user)',
  },
  { bin: '/usr/bin/java', pkg: 'default-jre-headless', why: 'Java for the JDBC driver tests' },
  {
    bin: '/usr/share/java/mariadb-java-client.jar',
    pkg: 'libmariadb-java',
    why: 'MariaDB Connector/J (MySQL adapter tests: Statement.cancel())',
  },
  { bin: '/usr/bin/asciinema', pkg: 'asciinema', why: 'asciinema cat accepts exported recordings' },
  {
    bin: '/usr/lib/postgresql/15/bin/postgres',
    pkg: 'postgresql',
    why: 'PostgreSQL 15 with hostssl cert auth (PostgreSQL adapter tests)',
  },
  { bin: '/usr/bin/psql', pkg: 'postgresql-client', why: 'psql (PostgreSQL adapter and gatehouse db tests)' },
  {
    bin: '/usr/bin/pg_dump',
    pkg: 'postgresql-client',
    why: 'pg_dump / pg_restore with one gatehouse db login',
  },
  {
    bin: '/usr/bin/mariadb-admin',
    pkg: 'mariadb-client',
    why: 'mariadb-admin reads the group gatehouse db login writes',
  },
  { bin: '/usr/bin/mariadb-dump', pkg: 'mariadb-client', why: 'mariadb-dump through the gateway' },
  {
    bin: '/usr/bin/javac',
    pkg: 'default-jdk-headless',
    why: 'java Jdbc.java (source-file mode needs the JDK): JDBC drivers with gatehouse db login files',
  },
  {
    bin: '/usr/share/java/postgresql.jar',
    pkg: 'libpostgresql-jdbc-java',
    why: 'pgjdbc (gatehouse db tests)',
  },
  {
    bin: '/usr/share/java/mariadb-java-client.jar',
    pkg: 'libmariadb-java',
    why: 'MariaDB Connector/J (gatehouse db tests)',
  },
  {
    bin: '/usr/lib/python3/dist-packages/psycopg2/__init__.py',
    pkg: 'python3-psycopg2',
    why: 'psycopg2 with the connection URI gatehouse db login prints',
  },
  { bin: '/usr/bin/etcd', pkg: 'etcd-server', why: 'etcd v3, a shared backend (etcd backend tests)' },
  { bin: '/usr/bin/kubectl', pkg: 'kubectl', why: 'the real kubectl (Kubernetes adapter tests)' },
  { bin: '/usr/bin/chromium', pkg: 'chromium', why: 'Chromium for the web UI tests (playwright-core)' },
  { bin: '/usr/bin/prometheus', pkg: 'prometheus', why: 'a real Prometheus scrapes /metrics (metrics test)' },
  // @gatehouse/bpf builds its eBPF helper from source in `npm run build` (packages/bpf/scripts/build.mjs).
  { bin: '/usr/bin/cc', pkg: 'gcc', why: 'cc builds the eBPF helper (@gatehouse/bpf)' },
  {
    bin: '/usr/include/stdio.h',
    pkg: 'libc6-dev',
    why: 'libc headers and libc.a for the static eBPF helper',
  },
  {
    bin: '/usr/bin/clang',
    pkg: 'clang',
    why: 'clang -target bpf compiles the eBPF programs (@gatehouse/bpf)',
  },
  { bin: '/usr/sbin/bpftool', pkg: 'bpftool', why: 'bpftool: vmlinux.h and the skeleton (@gatehouse/bpf)' },
  { bin: '/usr/include/bpf/libbpf.h', pkg: 'libbpf-dev', why: 'libbpf for the eBPF helper (@gatehouse/bpf)' },
  {
    bin: '/usr/include/libelf.h',
    pkg: 'libelf-dev',
    why: 'libelf, linked into the eBPF helper (@gatehouse/bpf)',
  },
  {
    bin: '/usr/include/zlib.h',
    pkg: 'zlib1g-dev',
    why: 'zlib, linked into the eBPF helper (@gatehouse/bpf)',
  },
  { bin: '/usr/bin/python3', pkg: 'python3', why: 'UDP sendto probes in the eBPF tests' },
  {
    bin: '/usr/sbin/rsyslogd',
    pkg: 'rsyslog',
    why: 'rsyslogd, a real syslog receiver (audit syslog sink tests: TCP, UDP)',
  },
  {
    bin: '/usr/lib/x86_64-linux-gnu/rsyslog/lmnsd_ossl.so',
    pkg: 'rsyslog-openssl',
    why: "rsyslog's ossl netstream driver (audit syslog sink tests: TLS, RFC 5425)",
  },
  {
    bin: '/usr/lib/python3/dist-packages/snappy/__init__.py',
    pkg: 'python3-snappy',
    why: 'the reference libsnappy, which decodes what the Loki audit sink sends',
  },
  { bin: '/usr/bin/rsync', pkg: 'rsync', why: 'rsync over ssh through the gateway (SSH interop tests)' },
  { bin: '/usr/bin/git', pkg: 'git', why: 'git over ssh through the gateway (SSH interop tests)' },
  { bin: '/usr/bin/plink', pkg: 'putty-tools', why: "PuTTY's plink and puttygen (SSH interop tests)" },
  {
    bin: '/usr/bin/Xvfb',
    pkg: 'xvfb',
    why: 'a headless X display for RDP clients and servers (RDP adapter tests)',
  },
  {
    bin: '/usr/bin/weston',
    pkg: 'weston',
    why: "weston's RDP backend, a real RDP server (RDP adapter tests)",
  },
  { bin: '/usr/bin/xfreerdp', pkg: 'freerdp2-x11', why: 'xfreerdp, a real RDP client (RDP adapter tests)' },
  {
    bin: '/usr/bin/freerdp-shadow-cli',
    pkg: 'freerdp2-shadow-x11',
    why: 'FreeRDP shadow server with NLA (RDP adapter tests)',
  },
  { bin: '/usr/bin/winpr-hash', pkg: 'winpr-utils', why: 'winpr-hash makes the SAM file of the NLA server' },
  { bin: '/usr/bin/import', pkg: 'imagemagick', why: 'import takes screenshots of an X display (RDP tests)' },
  {
    bin: '/usr/sbin/xrdp',
    pkg: 'xrdp',
    why: 'xrdp, an RDP server with TLS security only (RDP adapter tests)',
  },
  {
    bin: '/usr/lib/xorg/modules/drivers/xrdpdev_drv.so',
    pkg: 'xorgxrdp',
    why: "xorgxrdp, xrdp's X server modules (RDP adapter tests)",
  },
  {
    bin: '/usr/bin/xsetroot',
    pkg: 'x11-xserver-utils',
    why: "xsetroot paints the xrdp test session's screen",
  },
];

/**
 * Peers that cannot be installed beside one already installed, unpacked from
 * their Debian package into a directory of their own instead. Tests name the
 * same path (packages/adapter-k8s/test/peers.ts, KUBECTL_1_20).
 */
const UNPACKED = [
  {
    root: '/opt/gatehouse-peers/kubernetes-client',
    bin: '/opt/gatehouse-peers/kubernetes-client/usr/bin/kubectl',
    pkg: 'kubernetes-client',
    why: 'kubectl 1.20 (Debian 12), an older kubectl next to /usr/bin/kubectl, which it conflicts with',
  },
];

/**
 * The Unix account SSH tests log in as. Not root: root's shell startup on
 * these machines runs `pyenv rehash`, whose lock file is left behind when a
 * test kills a session mid-startup, and every later root login then waits a
 * minute for it. A plain account with /bin/sh reads no rc file at all.
 */
export const TEST_LOGIN = 'gh-test';

function ensureTestLogin() {
  if (process.getuid?.() !== 0) return;
  if (spawnSync('id', ['-u', TEST_LOGIN], { stdio: 'ignore' }).status === 0) return;
  execFileSync(
    'useradd',
    ['--create-home', '--shell', '/bin/sh', '--comment', 'Gatehouse test login', TEST_LOGIN],
    {
      stdio: 'inherit',
    },
  );
  // sshd with UsePAM no refuses a locked ('!') account: no password, but not locked.
  execFileSync('usermod', ['-p', '*', TEST_LOGIN], { stdio: 'inherit' });
}

const missing = PEERS.filter((p) => !existsSync(p.bin));
const missingUnpacked = UNPACKED.filter((p) => !existsSync(p.bin));
if (missing.length === 0 && missingUnpacked.length === 0) {
  ensureTestLogin();
  process.exit(0);
}
const pkgs = [...new Set(missing.map((p) => p.pkg))];
const isRoot = process.getuid?.() === 0;
const hasApt = spawnSync('sh', ['-c', 'command -v apt-get'], { stdio: 'ignore' }).status === 0;
if (!isRoot || !hasApt) {
  const all = [...missing, ...missingUnpacked];
  console.error(`missing test peers: ${all.map((p) => `${p.bin} (${p.why})`).join(', ')}`);
  if (pkgs.length > 0) console.error(`install them with: sudo apt-get install -y ${pkgs.join(' ')}`);
  for (const u of missingUnpacked) {
    console.error(
      `unpack ${u.pkg} with: apt-get download ${u.pkg} && sudo dpkg-deb -x ${u.pkg}_*.deb ${u.root}`,
    );
  }
  process.exit(1);
}
const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
const apt = (args, cwd) =>
  execFileSync('apt-get', ['-q', '-o', 'DPkg::Lock::Timeout=120', ...args], { stdio: 'inherit', env, cwd });
apt(['update']);
if (pkgs.length > 0) {
  console.error(`installing test peers: ${pkgs.join(' ')}`);
  apt(['install', '-y', '--no-install-recommends', ...pkgs]);
}
for (const u of missingUnpacked) {
  console.error(`unpacking test peer ${u.pkg} into ${u.root}`);
  const dl = mkdtempSync(path.join(tmpdir(), 'gh-peer-'));
  try {
    // As root, apt's download sandbox user cannot write a private temp dir: download as root.
    apt(['-o', 'APT::Sandbox::User=root', 'download', u.pkg], dl);
    const deb = readdirSync(dl).find((f) => f.endsWith('.deb'));
    if (!deb) throw new Error(`apt-get download ${u.pkg} left no .deb in ${dl}`);
    rmSync(u.root, { recursive: true, force: true });
    mkdirSync(u.root, { recursive: true });
    execFileSync('dpkg-deb', ['-x', path.join(dl, deb), u.root], { stdio: 'inherit' });
  } finally {
    rmSync(dl, { recursive: true, force: true });
  }
}
ensureTestLogin();
const still = [...PEERS, ...UNPACKED].filter((p) => !existsSync(p.bin));
if (still.length > 0) {
  console.error(`still missing after install: ${still.map((p) => p.bin).join(', ')}`);
  process.exit(1);
}
