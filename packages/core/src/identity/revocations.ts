import type { Backend } from '../backend/types.js';
import type { Clock } from '../clock.js';
import { encodeKrl } from '../pki/krl.js';
import { parseSshPublicKey } from '../pki/sshcert.js';
import type { LockRecord, UserRecord } from './types.js';

/** Issued login certificates, by serial, until they expire. */
const ISSUED = 'ssh_certs/';

/** What is kept of an SSH certificate handed to a user. */
interface IssuedSshCert {
  user: string;
  user_id?: string | undefined;
  roles: string[];
  expires: string;
}

export interface SshRevocationDeps {
  backend: Backend;
  clock: Clock;
  getUser: (name: string) => Promise<UserRecord | undefined>;
  findLocks: (q: { user: string; roles: string[] }) => Promise<LockRecord[]>;
  /** The user CA's SSH public keys (`ssh-ed25519 AAAA…` lines), all that are trusted. */
  userCaKeys: () => string[];
}

/**
 * A certificate Gatehouse handed to a user stays valid for OpenSSH until it
 * expires, whatever happens to the user: sshd never asks Gatehouse. To make a
 * deletion or a lock reach `ssh -i` straight to a node, every login
 * certificate is remembered (serial, user, roles, expiry) until it expires,
 * and `krl()` lists the serials of those whose user is gone, re-created or
 * locked, as an OpenSSH KRL for sshd's `RevokedKeys`.
 */
export class SshRevocations {
  readonly #d: SshRevocationDeps;
  #cached: { at: number; set: Promise<ReadonlySet<bigint>> } | undefined;

  constructor(deps: SshRevocationDeps) {
    this.#d = deps;
  }

  /** Remembers a certificate handed to a user (gatehouse login). */
  async recordIssued(c: {
    serial: string;
    user: string;
    userId?: string | undefined;
    roles: string[];
    expires: Date;
  }): Promise<void> {
    const ttlMs = c.expires.getTime() - this.#d.clock.now().getTime();
    if (ttlMs <= 0) return;
    const rec: IssuedSshCert = {
      user: c.user,
      ...(c.userId ? { user_id: c.userId } : {}),
      roles: c.roles,
      expires: c.expires.toISOString(),
    };
    await this.#d.backend.put(ISSUED + c.serial, JSON.stringify(rec), { ttlMs });
  }

  /** Serials of unexpired login certificates whose user was deleted, re-created or is locked. */
  async revokedSerials(): Promise<bigint[]> {
    const now = this.#d.clock.now().getTime();
    const users = new Map<string, Promise<UserRecord | undefined>>();
    const revoked: bigint[] = [];
    for (const item of await this.#d.backend.range(ISSUED)) {
      const c = JSON.parse(item.value) as IssuedSshCert;
      if (Date.parse(c.expires) <= now) continue;
      let user = users.get(c.user);
      if (!user) {
        user = this.#d.getUser(c.user);
        users.set(c.user, user);
      }
      const u = await user;
      const gone = !u || (c.user_id !== undefined && c.user_id !== u.id);
      const locked = !gone && (await this.#d.findLocks({ user: c.user, roles: c.roles })).length > 0;
      if (gone || locked) revoked.push(BigInt(item.key.slice(ISSUED.length)));
    }
    return revoked;
  }

  /**
   * The revoked serials as a set, for node services checking each login;
   * computed at most once a second (a login burst reads the backend once).
   */
  revokedSerialSet(): Promise<ReadonlySet<bigint>> {
    const now = this.#d.clock.now().getTime();
    if (!this.#cached || now - this.#cached.at > 1000) {
      const set = this.revokedSerials().then((s) => new Set(s));
      this.#cached = { at: now, set };
      // A failure is not cached: the next login asks again (and fails closed meanwhile).
      set.catch(() => {
        if (this.#cached?.set === set) this.#cached = undefined;
      });
    }
    return this.#cached.set;
  }

  /** The KRL sshd reads (`RevokedKeys`): revoked serials under every trusted user CA key. */
  async krl(): Promise<Buffer> {
    const serials = await this.revokedSerials();
    const now = this.#d.clock.now();
    return encodeKrl({
      version: BigInt(now.getTime()),
      generatedAt: now,
      comment: 'Gatehouse: certificates of deleted, re-created or locked users',
      sections: this.#d.userCaKeys().map((line) => ({ caKey: parseSshPublicKey(line).blob, serials })),
    });
  }
}
