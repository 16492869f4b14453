import { execFile } from 'node:child_process';
import { GatehouseError } from '@gatehouse/core';

/** A Unix account as the node runs sessions for it. */
export interface UnixUser {
  name: string;
  uid: number;
  gid: number;
  /** Supplementary groups, including the primary group (as `id -G` prints them). */
  groups: number[];
  home: string;
  shell: string;
}

/** POSIX portable user names plus the `$` suffix of Samba machine accounts; never a leading '-'. */
const LOGIN_RE = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}\$?$/;

export function isValidLogin(login: string): boolean {
  return LOGIN_RE.test(login);
}

function unknownUser(login: string): GatehouseError {
  return new GatehouseError('GH_ERR_ACCESS_DENIED', `there is no Unix user "${login}" on this node`, {
    hint: 'Log in as an existing account (ssh LOGIN@node), or ask the node admin to create it.',
  });
}

/** Parses one `getent passwd` line (name:pw:uid:gid:gecos:home:shell). No I/O. */
export function parsePasswdLine(line: string): Omit<UnixUser, 'groups'> {
  const f = line.replace(/\r?\n$/, '').split(':');
  if (f.length !== 7) {
    throw new GatehouseError('GH_ERR_INTERNAL', 'malformed passwd entry', {
      hint: "Check the node's /etc/passwd (or NSS source) for a broken line.",
    });
  }
  const [name, , uidText, gidText, , home, shell] = f as [
    string,
    string,
    string,
    string,
    string,
    string,
    string,
  ];
  const uid = Number(uidText);
  const gid = Number(gidText);
  if (
    !/^\d+$/.test(uidText) ||
    !/^\d+$/.test(gidText) ||
    !Number.isSafeInteger(uid) ||
    !Number.isSafeInteger(gid)
  ) {
    throw new GatehouseError('GH_ERR_INTERNAL', `passwd entry of "${name}" has a bad uid or gid`);
  }
  return { name, uid, gid, home: home || '/', shell: shell || '/bin/sh' };
}

/** Parses `id -G` output ("0 27 100"). No I/O. */
export function parseGroupList(text: string): number[] {
  const parts = text.trim().split(/\s+/).filter(Boolean);
  const out = parts.map(Number);
  if (
    parts.length === 0 ||
    out.some((g, i) => !/^\d+$/.test(parts[i] as string) || !Number.isSafeInteger(g))
  ) {
    throw new GatehouseError('GH_ERR_INTERNAL', `unexpected group list "${text.trim()}"`);
  }
  return out;
}

function run(file: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile(
      file,
      args,
      { timeout: 10_000, env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' } },
      (err, stdout, stderr) => {
        if (err && typeof err.code !== 'number') {
          reject(
            new GatehouseError('GH_ERR_INTERNAL', `could not run ${file}: ${err.message}`, {
              hint: `The node needs ${file} (Debian: libc-bin / coreutils).`,
              cause: err,
            }),
          );
          return;
        }
        resolve({ code: err ? Number(err.code) : 0, stdout, stderr });
      },
    );
  });
}

/**
 * Looks a login up in the passwd database (through NSS, so LDAP/SSSD users
 * work too). `os.userInfo()` only knows the current process's user.
 * Unknown users and lookup failures both refuse: fail closed.
 */
export async function lookupUnixUser(login: string): Promise<UnixUser> {
  if (!isValidLogin(login)) throw unknownUser(login);
  const pw = await run('getent', ['passwd', login]);
  // getent exits 2 for "no such key".
  if (pw.code === 2 || (pw.code === 0 && pw.stdout.trim() === '')) throw unknownUser(login);
  if (pw.code !== 0) {
    throw new GatehouseError(
      'GH_ERR_INTERNAL',
      `getent passwd failed (exit ${pw.code}): ${pw.stderr.trim()}`,
    );
  }
  const first = pw.stdout.split('\n')[0] ?? '';
  const entry = parsePasswdLine(first);
  if (entry.name !== login) throw unknownUser(login);
  const ids = await run('id', ['-G', '--', login]);
  if (ids.code !== 0) {
    throw new GatehouseError('GH_ERR_INTERNAL', `id -G ${login} failed: ${ids.stderr.trim()}`);
  }
  return { ...entry, groups: parseGroupList(ids.stdout) };
}
