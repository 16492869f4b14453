import type { ClientTicket, Clock, Grant, SessionCredentials } from '@gatehouse/core';
import { type ParsedKey, utils, withCertificate } from './ssh2.js';

const HOST_CERT_TTL_MS = 24 * 3600_000;
const HOST_CERT_RENEW_MS = 3600_000;

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
  // A session keeps its certificate as long as it lives: in memory of its own,
  // since a small Buffer.from() is a slice of Node's shared 8 KiB pool and would
  // keep all of it alive (about 8 KiB per idle session).
  const pooled = Buffer.from(b64, 'base64');
  const own = Buffer.allocUnsafeSlow(pooled.length);
  pooled.copy(own);
  return own;
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
  readonly #hostCerts = new Map<string, Promise<{ cert: Buffer; expires: number; signer: string }>>();

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
    // A host CA rotation that moved signing to another key (update_servers, rollback) re-issues
    // at once: the old key's certificates stop being trusted at standby.
    const signer = this.#credentials.hostCaSigningKeyId();
    if (!current || current.expires - now < HOST_CERT_RENEW_MS || current.signer !== signer) {
      entry = this.#credentials
        .sshHostCert(this.#host.publicLine, { keyId, principals, ttlMs: HOST_CERT_TTL_MS })
        .then((c) => ({ cert: certBlob(c.cert), expires: c.expires.getTime(), signer }));
      this.#hostCerts.set(cacheKey, entry);
      entry.catch(() => this.#hostCerts.delete(cacheKey));
    }
    const { cert } = await entry!;
    return { key: this.#host.parsed, certificate: cert };
  }

  /**
   * The key (with a short-lived user certificate for the grant's login) the
   * proxy authenticates to the node with. Core issues it only for a Grant,
   * one per session: it names the session, so the node's audit events of it
   * carry the proxy's session id (decision 0023; minting costs ~0.3 ms).
   */
  async upstreamKey(grant: Grant): Promise<ParsedKey> {
    const c = await this.#credentials.sshUserCertForGrant(grant, this.#upstream.publicLine);
    return withCertificate(this.#upstream.parsed, certBlob(c.cert));
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
}
