import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { GatehouseError } from '@gatehouse/core/lite';

/** What the CLI remembers about one proxy. */
export interface ProfileEntry {
  /** `host:port` */
  proxy: string;
  user: string;
  cluster: string;
  /** Pin of the host CA trusted at login (as given with --ca-pin or accepted with --insecure). */
  caPin?: string | undefined;
}

export interface ProfileFile {
  /** The proxy of the current profile. */
  current?: string | undefined;
  profiles: Record<string, ProfileEntry>;
}

export interface KeyPaths {
  dir: string;
  sshKey: string;
  sshPub: string;
  sshCert: string;
  tlsKey: string;
  tlsCert: string;
  cas: string;
}

export interface KeyFiles {
  sshKey: string;
  sshPub: string;
  sshCert: string;
  tlsKey: string;
  tlsCert: string;
  cas: string;
}

const DIR_MODE = 0o700;
const FILE_MODE = 0o600;

/** Lines login adds to known_hosts end with this comment, so they can be found and replaced per cluster. */
export function knownHostsMarker(cluster: string): string {
  return `gatehouse-cluster=${cluster}`;
}

/** `host:port` -> a directory name that is safe on every filesystem. */
export function proxyDirName(proxy: string): string {
  return proxy.replace(/[[\]]/g, '').replace(/[^A-Za-z0-9._-]/g, '_');
}

/**
 * Returns `existing` with every line marked for `cluster` removed and one
 * `@cert-authority` line per host CA key appended. Pure, so the replacement
 * rule is tested without files.
 */
export function replaceKnownHosts(existing: string, cluster: string, hostCaKeys: string[]): string {
  const marker = knownHostsMarker(cluster);
  const kept = existing
    .split('\n')
    .filter((l) => l !== '' && !isGatehouseLine(l, cluster))
    .map((l) => `${l}\n`);
  const added = hostCaKeys.map((k) => {
    const [type, b64] = k.trim().split(/\s+/);
    if (!type || !b64) {
      throw new GatehouseError(
        'GH_ERR_CERT_INVALID',
        `the proxy sent a host CA key that is not an OpenSSH key: "${k}"`,
        {
          hint: 'the proxy may be misconfigured; ask the cluster admin',
        },
      );
    }
    return `@cert-authority * ${type} ${b64} ${marker}\n`;
  });
  return kept.join('') + added.join('');
}

/** A line login wrote: for `cluster`, or for any cluster when none is given. */
function isGatehouseLine(line: string, cluster?: string): boolean {
  const fields = line.trim().split(/\s+/);
  const last = fields[fields.length - 1] ?? '';
  if (fields[0] !== '@cert-authority') return false;
  return cluster === undefined ? last.startsWith(knownHostsMarker('')) : last === knownHostsMarker(cluster);
}

/**
 * The client state directory (`$GATEHOUSE_HOME` or `~/.gatehouse`). It holds
 * private keys, so directories are 0700 and files 0600, re-applied on every
 * write in case they were loosened.
 */
export class ClientHome {
  readonly dir: string;

  constructor(dir: string) {
    this.dir = dir;
  }

  static fromEnv(env: NodeJS.ProcessEnv): ClientHome {
    return new ClientHome(env.GATEHOUSE_HOME || join(homedir(), '.gatehouse'));
  }

  get profilePath(): string {
    return join(this.dir, 'profile.json');
  }

  get knownHostsPath(): string {
    return join(this.dir, 'known_hosts');
  }

  readProfiles(): ProfileFile {
    let text: string;
    try {
      text = readFileSync(this.profilePath, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { profiles: {} };
      throw e;
    }
    try {
      const parsed = JSON.parse(text) as ProfileFile;
      if (!parsed || typeof parsed !== 'object' || typeof parsed.profiles !== 'object')
        throw new Error('no profiles');
      return parsed;
    } catch (cause) {
      throw new GatehouseError('GH_ERR_VALIDATION', `${this.profilePath} is not a Gatehouse profile`, {
        hint: `remove it and log in again (gatehouse logout --all; gatehouse login --proxy HOST:PORT ...)`,
        cause,
      });
    }
  }

  writeProfiles(p: ProfileFile): void {
    this.#writeFile(this.profilePath, `${JSON.stringify(p, null, 2)}\n`);
  }

  /** The profile in use, or undefined when nobody is logged in. */
  current(): ProfileEntry | undefined {
    const p = this.readProfiles();
    return p.current ? p.profiles[p.current] : undefined;
  }

  setCurrent(entry: ProfileEntry): void {
    const p = this.readProfiles();
    p.profiles[entry.proxy] = entry;
    p.current = entry.proxy;
    this.writeProfiles(p);
  }

  keyPaths(proxy: string, user: string): KeyPaths {
    if (!/^[A-Za-z0-9._@-]+$/.test(user) || user === '.' || user === '..') {
      throw new GatehouseError('GH_ERR_VALIDATION', `"${user}" cannot be used as a user name here`, {
        hint: 'user names are letters, digits, dots, dashes, underscores and @',
      });
    }
    const dir = join(this.dir, 'keys', proxyDirName(proxy), user);
    return {
      dir,
      sshKey: join(dir, 'id_ed25519'),
      sshPub: join(dir, 'id_ed25519.pub'),
      sshCert: join(dir, 'id_ed25519-cert.pub'),
      tlsKey: join(dir, 'tls.key'),
      tlsCert: join(dir, 'tls.crt'),
      cas: join(dir, 'cas.pem'),
    };
  }

  saveKeys(proxy: string, user: string, files: KeyFiles): KeyPaths {
    const paths = this.keyPaths(proxy, user);
    for (const k of Object.keys(files) as (keyof KeyFiles)[]) {
      this.#writeFile(paths[k], files[k].endsWith('\n') ? files[k] : `${files[k]}\n`);
    }
    return paths;
  }

  readKeys(entry: ProfileEntry): KeyFiles {
    const paths = this.keyPaths(entry.proxy, entry.user);
    const out = {} as KeyFiles;
    for (const k of ['sshKey', 'sshPub', 'sshCert', 'tlsKey', 'tlsCert', 'cas'] as const) {
      try {
        out[k] = readFileSync(paths[k], 'utf8');
      } catch (cause) {
        throw new GatehouseError(
          'GH_ERR_UNAUTHENTICATED',
          `the login files for ${entry.user}@${entry.proxy} are incomplete (${paths[k]})`,
          {
            hint: `log in again: gatehouse login --proxy ${entry.proxy} --user ${entry.user}`,
            cause,
          },
        );
      }
    }
    return out;
  }

  /** Stored CA certificates for a proxy, from any user's login there; undefined when none. */
  storedCas(proxy: string): string[] | undefined {
    const entry = this.readProfiles().profiles[proxy];
    if (!entry) return undefined;
    const path = this.keyPaths(entry.proxy, entry.user).cas;
    if (!existsSync(path)) return undefined;
    const pems = splitPems(readFileSync(path, 'utf8'));
    return pems.length ? pems : undefined;
  }

  updateKnownHosts(cluster: string, hostCaKeys: string[]): void {
    const existing = existsSync(this.knownHostsPath) ? readFileSync(this.knownHostsPath, 'utf8') : '';
    this.#writeFile(this.knownHostsPath, replaceKnownHosts(existing, cluster, hostCaKeys));
  }

  /** Removes one profile's keys; its known_hosts lines go unless another profile is for the same cluster. */
  removeProfile(proxy: string): ProfileEntry | undefined {
    const p = this.readProfiles();
    const entry = p.profiles[proxy];
    if (!entry) return undefined;
    rmSync(this.keyPaths(entry.proxy, entry.user).dir, { recursive: true, force: true });
    delete p.profiles[proxy];
    if (p.current === proxy) p.current = undefined;
    if (!Object.values(p.profiles).some((o) => o.cluster === entry.cluster)) {
      this.updateKnownHosts(entry.cluster, []);
    }
    this.writeProfiles(p);
    return entry;
  }

  /** Removes every key, every Gatehouse known_hosts line and the profile file. */
  removeAll(): ProfileEntry[] {
    const p = this.readProfiles();
    const entries = Object.values(p.profiles);
    rmSync(join(this.dir, 'keys'), { recursive: true, force: true });
    if (existsSync(this.knownHostsPath)) {
      const kept = readFileSync(this.knownHostsPath, 'utf8')
        .split('\n')
        .filter((l) => l !== '' && !isGatehouseLine(l));
      this.#writeFile(this.knownHostsPath, kept.map((l) => `${l}\n`).join(''));
    }
    rmSync(this.profilePath, { force: true });
    return entries;
  }

  #mkdir(dir: string): void {
    mkdirSync(dir, { recursive: true, mode: DIR_MODE });
    // mkdir's mode is filtered by the umask and does not touch existing dirs.
    for (let d = dir; d.startsWith(this.dir); d = dirname(d)) {
      chmodSync(d, DIR_MODE);
      if (d === this.dir) break;
    }
  }

  /** Write-then-rename, so a crash never leaves half a key or profile behind. */
  #writeFile(path: string, content: string): void {
    this.#mkdir(dirname(path));
    const tmp = `${path}.tmp-${process.pid}`;
    writeFileSync(tmp, content, { mode: FILE_MODE });
    chmodSync(tmp, FILE_MODE);
    renameSync(tmp, path);
  }
}

/** The profile in use; GH_ERR_UNAUTHENTICATED with what to do when nobody is logged in. */
export function requireProfile(home: ClientHome): ProfileEntry {
  const p = home.current();
  if (!p) {
    throw new GatehouseError('GH_ERR_UNAUTHENTICATED', 'not logged in', {
      hint: 'log in first: gatehouse login --proxy HOST:PORT --user NAME',
    });
  }
  return p;
}

export function splitPems(text: string): string[] {
  return (
    text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)?.map((p) => `${p}\n`) ?? []
  );
}
