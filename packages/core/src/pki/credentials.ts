import { Grant } from '../authz/grant.js';
import type { Clock } from '../clock.js';
import { GatehouseError } from '../errors.js';
import type { Identity } from '../identity/types.js';
import { PROXY_PRINCIPAL_PREFIX } from '../nodes/host-certs.js';
import type { CertificateAuthorities } from './authority.js';
import type { CaName, IssuedCertificate } from './types.js';

const TICKET = Symbol('gatehouse.client-ticket');

/**
 * Core's word that a caller it authenticated (a web session, a client
 * certificate) may log in to the gateway's own SSH proxy as `login`: the
 * web terminal and file transfers go through the proxy like OpenSSH does,
 * and need a client certificate for that. Only core makes tickets (a
 * module-private symbol), so an adapter cannot mint one for an identity of
 * its choosing.
 */
export class ClientTicket {
  readonly #brand = true;
  readonly identity: Identity;
  readonly login: string;

  /** @internal */
  constructor(token: symbol, identity: Identity, login: string) {
    if (token !== TICKET) throw new TypeError('a ClientTicket can only be created by core');
    this.identity = identity;
    this.login = login;
    Object.freeze(this);
  }

  static isTicket(x: unknown): x is ClientTicket {
    return typeof x === 'object' && x !== null && #brand in x;
  }
}

/** @internal Only core's web terminal and file endpoints call this. */
export function mintClientTicket(identity: Identity, login: string): ClientTicket {
  return new ClientTicket(TICKET, identity, login);
}

/** Upstream user certificates are only checked at authentication, so a few minutes is plenty. */
const UPSTREAM_CERT_TTL_MS = 5 * 60_000;

/**
 * What adapters may get from the certificate authorities, and on what
 * terms (DESIGN.md: "upstream credentials only in exchange for a Grant,
 * never a CA"): a user certificate for the login a Grant names, a client
 * certificate for a core-made ClientTicket, host certificates for the
 * names the gateway answers for, and the CAs' public keys. Database client
 * certificates come from DbAccess with its grant; Kubernetes impersonation
 * comes with the grant itself.
 */
export class SessionCredentials {
  readonly #authorities: CertificateAuthorities;
  readonly #clock: Clock;

  constructor(deps: { authorities: CertificateAuthorities; clock: Clock }) {
    this.#authorities = deps.authorities;
    this.#clock = deps.clock;
  }

  /**
   * The short-lived certificate the SSH proxy logs in to a node with, for
   * exactly the grant's node login, with the grant's permissions, ending no
   * later than the grant.
   */
  sshUserCertForGrant(grant: Grant, publicKey: string): Promise<IssuedCertificate> {
    if (!Grant.isGrant(grant)) {
      throw new GatehouseError('GH_ERR_ACCESS_DENIED', 'upstream credentials need a grant from core', {
        hint: 'authorize the session with the Authorizer first',
      });
    }
    const t = grant.target;
    if (t.kind !== 'node') {
      throw new GatehouseError('GH_ERR_ACCESS_DENIED', `a grant for a ${t.kind} carries no SSH login`);
    }
    const now = this.#clock.now().getTime();
    return this.#authorities.issueSshUserCert({
      publicKey,
      keyId: grant.identity.user,
      // The bare login for nodes that map principals the default way (the
      // node service, hand-configured sshd); the prefixed one is all an
      // agentless node configured by `gatehouse nodes configure` accepts.
      principals: [t.login, `${PROXY_PRINCIPAL_PREFIX}${t.login}`],
      validAfter: new Date(now),
      validBefore: new Date(
        Math.min(now + UPSTREAM_CERT_TTL_MS, Math.max(grant.expires.getTime(), now + 1000)),
      ),
      permitPty: grant.options.permitPty,
      permitPortForwarding: grant.options.portForwarding,
      // The node's sshd honours `ssh -A` only with this extension; the proxy relays it only when the grant allows.
      permitAgentForwarding: grant.options.agentForwarding,
      // The node gets the identity without an MFA binding: the proxy made that check, and the
      // binding's critical option would make the node refuse the certificate.
      identity: { ...grant.identity, sessionMfa: undefined },
      // The node enforces these with eBPF; it refuses the session when it cannot.
      sessionPolicy: {
        enhancedRecording: grant.options.enhancedRecording,
        restrictNetwork: grant.options.restrictNetwork,
        recordingPaths: grant.options.recordingPaths,
      },
      // The node's events of this session carry the proxy's id (one certificate per session).
      sessionId: grant.sessionId,
    });
  }

  /**
   * The certificate the gateway's own SSH client (web terminal, file
   * transfers) logs in to its proxy with: for the ticket's identity and
   * login, no forwarding, ending when the identity does. The proxy then
   * authorizes the session like any OpenSSH client's.
   */
  sshClientCert(ticket: ClientTicket, publicKey: string): Promise<IssuedCertificate> {
    if (!ClientTicket.isTicket(ticket)) {
      throw new GatehouseError('GH_ERR_ACCESS_DENIED', 'a client certificate needs a ticket from core');
    }
    return this.#authorities.issueSshUserCert({
      publicKey,
      keyId: ticket.identity.user,
      principals: [ticket.login],
      validAfter: this.#clock.now(),
      validBefore: ticket.identity.expires,
      permitPty: true,
      permitPortForwarding: false,
      identity: ticket.identity,
    });
  }

  /** A host certificate for names the gateway answers for (its proxy, a node it terminates, its built-in node). */
  sshHostCert(
    publicKey: string,
    o: { keyId: string; principals: string[]; ttlMs: number },
  ): Promise<IssuedCertificate> {
    const now = this.#clock.now().getTime();
    return this.#authorities.issueSshHostCert({
      publicKey,
      keyId: o.keyId,
      principals: o.principals,
      validAfter: new Date(now),
      validBefore: new Date(now + o.ttlMs),
    });
  }

  /** The user CA's SSH public keys (all that are trusted): what verifies user certificates. */
  userCaSshKeys(): string[] {
    return this.#authorities.get('user').map((k) => k.sshPublicKey);
  }

  /** The host CA's SSH public keys: what verifies host certificates. */
  hostCaSshKeys(): string[] {
    return this.#authorities.get('host').map((k) => k.sshPublicKey);
  }

  /** Id of the host CA key that signs host certificates now: it changes during a host CA rotation. */
  hostCaSigningKeyId(): string {
    return this.#authorities.signingKey('host', 'server').id;
  }

  /**
   * Calls `listener` with a CA's name when its keys or rotation phase change
   * (a holder of a host certificate re-issues it when hostCaSigningKeyId changed).
   * Returns the unsubscribe function.
   */
  onCaChange(listener: (name: CaName) => void): () => void {
    return this.#authorities.onChange(listener);
  }
}
