import type { CertificateAuthorities, Clock, Grant, Identity } from '@gatehouse/core';
import { type ParsedKey, utils, withCertificate } from './ssh2.js';

const HOST_CERT_TTL_MS = 24 * 3600_000;
const HOST_CERT_RENEW_MS = 3600_000;
/** Upstream user certificates are only checked at authentication, so a few minutes is plenty. */
const USER_CERT_TTL_MS = 5 * 60_000;
/** Reuse a minted upstream certificate while it has at least this much left. */
const USER_CERT_REUSE_MS = 2 * 60_000;

interface KeyPair {
  parsed: ParsedKey;
  publicLine: string;
}

function newKeyPair(): KeyPair {
  const kp = utils.generateKeyPairSync('ed25519');
  const parsed = utils.parseKey(kp.private);
  if (parsed instanceof Error) throw parsed;
  return { parsed: Array.isArray(parsed) ? (parsed[0] as ParsedKey) : parsed, publicLine: kp.public };
}

function certBlob(line: string): Buffer {
  const b64 = line.trim().split(/\s+/)[1];
  if (!b64) throw new Error('issued certificate is not an OpenSSH line');
  return Buffer.from(b64, 'base64');
}

/**
 * Key material of one SSH adapter, all in memory: the proxy's host key with
 * host certificates from the host CA (one per name a client may dial: the
 * proxy itself, each node), and the key the proxy authenticates to nodes
 * with, certified per user and login by the user CA.
 */
export class ProxyKeys {
  readonly #authorities: CertificateAuthorities;
  readonly #clock: Clock;
  readonly #host = newKeyPair();
  readonly #upstream = newKeyPair();
  readonly #hostCerts = new Map<string, Promise<{ cert: Buffer; expires: number }>>();
  readonly #userCerts = new Map<string, Promise<{ key: ParsedKey; expires: number }>>();

  constructor(deps: { authorities: CertificateAuthorities; clock: Clock }) {
    this.#authorities = deps.authorities;
    this.#clock = deps.clock;
  }

  /** ssh2 Server hostKeys entry presenting a host certificate for `principals` (cached, renewed). */
  async hostKey(keyId: string, principals: string[]): Promise<{ key: ParsedKey; certificate: Buffer }> {
    const cacheKey = principals.join(',');
    const now = this.#clock.now().getTime();
    let entry = this.#hostCerts.get(cacheKey);
    const current = entry ? await entry.catch(() => undefined) : undefined;
    if (!current || current.expires - now < HOST_CERT_RENEW_MS) {
      entry = this.#authorities
        .issueSshHostCert({
          publicKey: this.#host.publicLine,
          keyId,
          principals,
          validAfter: new Date(now),
          validBefore: new Date(now + HOST_CERT_TTL_MS),
        })
        .then((c) => ({ cert: certBlob(c.cert), expires: c.expires.getTime() }));
      this.#hostCerts.set(cacheKey, entry);
      entry.catch(() => this.#hostCerts.delete(cacheKey));
    }
    const { cert } = await entry!;
    return { key: this.#host.parsed, certificate: cert };
  }

  /**
   * The key (with a short-lived user certificate for `login`) the proxy
   * authenticates to the node with. Certificates are reused across sessions
   * of the same identity, login and options while they have minutes left.
   */
  async upstreamKey(grant: Grant, login: string): Promise<ParsedKey> {
    const id = grant.identity;
    const o = grant.options;
    const cacheKey = [
      id.user,
      id.expires.getTime(),
      id.roles.join(','),
      login,
      o.permitPty,
      o.portForwarding,
    ].join('\0');
    const now = this.#clock.now().getTime();
    let entry = this.#userCerts.get(cacheKey);
    const current = entry ? await entry.catch(() => undefined) : undefined;
    if (!current || current.expires - now < USER_CERT_REUSE_MS) {
      if (this.#userCerts.size > 1000) this.#sweep(now);
      entry = this.#certify(this.#upstream, id, login, {
        validBefore: Math.min(now + USER_CERT_TTL_MS, Math.max(grant.expires.getTime(), now + 1000)),
        permitPty: o.permitPty,
        permitPortForwarding: o.portForwarding,
      });
      this.#userCerts.set(cacheKey, entry);
      entry.catch(() => this.#userCerts.delete(cacheKey));
    }
    return (await entry!).key;
  }

  /**
   * A fresh key, never stored, with a user certificate for `identity` and
   * `login`: the gateway's own SSH client (the web terminal) logs in to its
   * proxy with it, so the session takes the same path as an OpenSSH
   * client's. The certificate ends when the identity does (the session's
   * access ends with the certificate's identity) and allows no forwarding.
   */
  async clientKey(identity: Identity, login: string): Promise<ParsedKey> {
    const c = await this.#certify(newKeyPair(), identity, login, {
      validBefore: identity.expires.getTime(),
      permitPty: true,
      permitPortForwarding: false,
    });
    return c.key;
  }

  #certify(
    pair: KeyPair,
    identity: Identity,
    login: string,
    o: { validBefore: number; permitPty: boolean; permitPortForwarding: boolean },
  ): Promise<{ key: ParsedKey; expires: number }> {
    return this.#authorities
      .issueSshUserCert({
        publicKey: pair.publicLine,
        keyId: identity.user,
        principals: [login],
        validAfter: this.#clock.now(),
        validBefore: new Date(o.validBefore),
        permitPty: o.permitPty,
        permitPortForwarding: o.permitPortForwarding,
        identity,
      })
      .then((c) => ({
        key: withCertificate(pair.parsed, certBlob(c.cert)),
        expires: c.expires.getTime(),
      }));
  }

  #sweep(now: number): void {
    for (const [k, v] of this.#userCerts) {
      void v.then(
        (c) => {
          if (c.expires - now < USER_CERT_REUSE_MS) this.#userCerts.delete(k);
        },
        () => this.#userCerts.delete(k),
      );
    }
  }
}
