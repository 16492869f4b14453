import type { ClientTicket, Clock, Grant, SessionCredentials } from '@gatehouse/core';
import { type ParsedKey, utils, withCertificate } from './ssh2.js';

const HOST_CERT_TTL_MS = 24 * 3600_000;
const HOST_CERT_RENEW_MS = 3600_000;
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
  readonly #credentials: SessionCredentials;
  readonly #clock: Clock;
  readonly #host = newKeyPair();
  readonly #upstream = newKeyPair();
  readonly #hostCerts = new Map<string, Promise<{ cert: Buffer; expires: number }>>();
  readonly #userCerts = new Map<string, Promise<{ key: ParsedKey; expires: number }>>();

  constructor(deps: { credentials: SessionCredentials; clock: Clock }) {
    this.#credentials = deps.credentials;
    this.#clock = deps.clock;
  }

  /** ssh2 Server hostKeys entry presenting a host certificate for `principals` (cached, renewed). */
  async hostKey(keyId: string, principals: string[]): Promise<{ key: ParsedKey; certificate: Buffer }> {
    const cacheKey = principals.join(',');
    const now = this.#clock.now().getTime();
    let entry = this.#hostCerts.get(cacheKey);
    const current = entry ? await entry.catch(() => undefined) : undefined;
    if (!current || current.expires - now < HOST_CERT_RENEW_MS) {
      entry = this.#credentials
        .sshHostCert(this.#host.publicLine, { keyId, principals, ttlMs: HOST_CERT_TTL_MS })
        .then((c) => ({ cert: certBlob(c.cert), expires: c.expires.getTime() }));
      this.#hostCerts.set(cacheKey, entry);
      entry.catch(() => this.#hostCerts.delete(cacheKey));
    }
    const { cert } = await entry!;
    return { key: this.#host.parsed, certificate: cert };
  }

  /**
   * The key (with a short-lived user certificate for the grant's login) the
   * proxy authenticates to the node with. Core issues it only for a Grant.
   * Certificates are reused across sessions of the same identity, login and
   * options while they have minutes left.
   */
  async upstreamKey(grant: Grant): Promise<ParsedKey> {
    const id = grant.identity;
    const o = grant.options;
    const login = grant.target.kind === 'node' ? grant.target.login : '';
    const cacheKey = [
      id.user,
      id.userId ?? '',
      id.expires.getTime(),
      id.roles.join(','),
      login,
      o.permitPty,
      o.portForwarding,
      // The certificate carries the session policy the node enforces: a role edit must not reuse the old one.
      JSON.stringify([o.enhancedRecording, o.restrictNetwork]),
      o.agentForwarding,
    ].join('\0');
    const now = this.#clock.now().getTime();
    let entry = this.#userCerts.get(cacheKey);
    const current = entry ? await entry.catch(() => undefined) : undefined;
    if (!current || current.expires - now < USER_CERT_REUSE_MS) {
      if (this.#userCerts.size > 1000) this.#sweep(now);
      entry = this.#credentials.sshUserCertForGrant(grant, this.#upstream.publicLine).then((c) => ({
        key: withCertificate(this.#upstream.parsed, certBlob(c.cert)),
        expires: c.expires.getTime(),
      }));
      this.#userCerts.set(cacheKey, entry);
      entry.catch(() => this.#userCerts.delete(cacheKey));
    }
    return (await entry!).key;
  }

  /**
   * A fresh key, never stored, with a user certificate for the ticket's
   * identity and login: the gateway's own SSH client (the web terminal)
   * logs in to its proxy with it, so the session takes the same path as an
   * OpenSSH client's. Core issues it only for a ticket it made.
   */
  async clientKey(ticket: ClientTicket): Promise<ParsedKey> {
    const pair = newKeyPair();
    const c = await this.#credentials.sshClientCert(ticket, pair.publicLine);
    return withCertificate(pair.parsed, certBlob(c.cert));
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
