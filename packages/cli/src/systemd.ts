/**
 * The systemd unit `gatehouse install systemd` prints or writes. Two shapes, because the
 * built-in SSH node service's sessions run inside the service's sandbox (they are its children):
 *
 * - gateway only (`--user U`, a config without the built-in node): a dedicated user and the
 *   full sandbox (ProtectSystem=strict with only the data dir writable, ProtectHome, PrivateTmp,
 *   NoNewPrivileges), and one capability, CAP_NET_BIND_SERVICE, so `listen: 0.0.0.0:443` works.
 * - with the built-in node service (the embedded defaults, `builtin_node: true`): root, like
 *   sshd. Sessions start as other users (CAP_SETUID, CAP_SETGID), in those users' homes, and
 *   users run sudo in them; eBPF enforcement needs CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN (cgroup
 *   network rules) and CAP_SYS_ADMIN (cgroups, older kernels). ProtectSystem, ProtectHome,
 *   PrivateTmp, NoNewPrivileges or a smaller bounding set would confine every user's shell (a
 *   read-only /etc, no /home, no sudo), so that unit has no sandbox
 *   beyond root's, as sshd's unit has none.
 */
export interface SystemdUnitOptions {
  /** The node binary and the gatehouse script (absolute). */
  node: string;
  script: string;
  dataDir: string;
  /** --config FILE for ExecStart (absolute); without it ExecStart passes --data-dir (embedded defaults). */
  config?: string;
  /** Run as this user (gateway only); undefined: root with the built-in node service. */
  user?: string;
}

/** systemd's ExecStart= quoting: each word in double quotes, with \ and " escaped. */
function word(s: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(s) ? s : `"${s.replace(/[\\"]/g, (c) => `\\${c}`)}"`;
}

export function systemdUnit(o: SystemdUnitOptions): string {
  const args = o.config ? ['start', '--config', o.config] : ['start', '--data-dir', o.dataDir];
  const lines = [
    '# Written by `gatehouse install systemd`. Reload with `systemctl reload gatehouse` (SIGHUP:',
    '# the config is read again, live sessions stay).',
    '[Unit]',
    'Description=Gatehouse access gateway',
    'After=network-online.target',
    'Wants=network-online.target',
    '',
    '[Service]',
    'Type=simple',
    `ExecStart=${[o.node, o.script, ...args].map(word).join(' ')}`,
    'ExecReload=/bin/kill -HUP $MAINPID',
    'Restart=on-failure',
    'RestartSec=5s',
    // The audit log and recordings are files: a stop waits for them to be flushed.
    'TimeoutStopSec=30s',
    'LimitNOFILE=65536',
  ];
  if (o.user) {
    lines.push(
      `User=${o.user}`,
      `Group=${o.user}`,
      // Sessions would inherit it, so only the gateway-only unit narrows the umask.
      'UMask=0077',
      // systemd creates /var/lib/NAME owned by the user; elsewhere the operator chowns the dir.
      ...(/^\/var\/lib\/[^/]+$/.test(o.dataDir)
        ? [`StateDirectory=${o.dataDir.slice('/var/lib/'.length)}`]
        : []),
      'ProtectSystem=strict',
      `ReadWritePaths=${word(o.dataDir)}`,
      'ProtectHome=yes',
      'PrivateTmp=yes',
      'PrivateDevices=yes',
      'NoNewPrivileges=yes',
      'CapabilityBoundingSet=CAP_NET_BIND_SERVICE',
      'AmbientCapabilities=CAP_NET_BIND_SERVICE',
      'ProtectKernelTunables=yes',
      'ProtectKernelModules=yes',
      'ProtectKernelLogs=yes',
      'ProtectControlGroups=yes',
      'ProtectClock=yes',
      'ProtectHostname=yes',
      'RestrictSUIDSGID=yes',
      'RestrictRealtime=yes',
      'RestrictNamespaces=yes',
      'LockPersonality=yes',
      'RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX',
      'SystemCallArchitectures=native',
    );
  } else {
    lines.push(
      '# Root: the built-in node service starts sessions as other users (CAP_SETUID, CAP_SETGID)',
      '# and enforces eBPF rules (CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN, CAP_SYS_ADMIN). Sessions',
      '# would inherit a sandbox, so there is none, as for sshd (no ProtectSystem,',
      '# ProtectHome, PrivateTmp, NoNewPrivileges): `gatehouse install systemd --user gatehouse`',
      '# with a config that sets builtin_node: false gets the full sandbox.',
      'User=root',
    );
  }
  lines.push('', '[Install]', 'WantedBy=multi-user.target', '');
  return lines.join('\n');
}
