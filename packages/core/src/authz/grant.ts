import { randomUUID } from 'node:crypto';
import type { Identity } from '../identity/types.js';
import type { EffectiveOptions } from '../rbac/checker.js';

/** What an adapter asks to reach. */
export type AccessTarget =
  | { kind: 'node'; name: string; labels: Record<string, string>; login: string }
  | {
      kind: 'db';
      name: string;
      labels: Record<string, string>;
      protocol: string;
      dbUser: string;
      dbName: string;
    }
  | { kind: 'kube'; name: string; labels: Record<string, string> }
  | { kind: 'desktop'; name: string; labels: Record<string, string>; login: string };

const MINT = Symbol('gatehouse.grant');

/**
 * Permission for one session, minted only by core's Authorizer. Adapters can
 * hold and read a Grant but cannot make one: the constructor demands a
 * module-private symbol, and `isGrant` checks a private brand, so a look-alike
 * object is never accepted.
 */
export class Grant {
  readonly #brand = true;
  readonly sessionId: string;
  readonly identity: Identity;
  readonly target: AccessTarget;
  /** Hard end of the session: the earliest of cert expiry and max_session_ttl. */
  readonly expires: Date;
  readonly options: EffectiveOptions;
  readonly roles: string[];
  /** Kubernetes only: whom to impersonate. */
  readonly kube?: { users: string[]; groups: string[] } | undefined;
  /** The client address the session was granted to (re-checks use it for pinned certificates). */
  readonly remoteAddr?: string | undefined;
  /** performance.now() when the Authorizer granted it (setup latency: until the session is bound). */
  readonly mintedAt: number;

  /** @internal */
  constructor(
    token: symbol,
    fields: {
      identity: Identity;
      target: AccessTarget;
      expires: Date;
      options: EffectiveOptions;
      roles: string[];
      kube?: { users: string[]; groups: string[] } | undefined;
      remoteAddr?: string | undefined;
    },
  ) {
    if (token !== MINT) throw new TypeError('a Grant can only be created by the Authorizer');
    this.sessionId = randomUUID();
    this.identity = fields.identity;
    this.target = fields.target;
    this.expires = fields.expires;
    this.options = fields.options;
    this.roles = fields.roles;
    this.kube = fields.kube;
    this.remoteAddr = fields.remoteAddr;
    this.mintedAt = performance.now();
    Object.freeze(this);
  }

  static isGrant(x: unknown): x is Grant {
    return typeof x === 'object' && x !== null && #brand in x;
  }
}

/** @internal Only the Authorizer imports this. */
export function mintGrant(fields: ConstructorParameters<typeof Grant>[1]): Grant {
  return new Grant(MINT, fields);
}
