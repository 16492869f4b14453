/** Traits are name -> values, e.g. { logins: ['alice', 'ubuntu'], db_users: ['reader'] }. */
export type Traits = Record<string, string[]>;

/** A user as stored in the backend at `users/<name>` (JSON). */
export interface UserRecord {
  name: string;
  /**
   * Random, set when the user is created: a user deleted and created again
   * under the same name is another user, and certificates issued to the
   * first (which carry this id) are not valid for the second. Absent on
   * records made before ids existed until their next login.
   */
  id?: string | undefined;
  roles: string[];
  traits: Traits;
  /** `$scrypt$...` string; absent until the invite is accepted or a password is set. */
  passwordHash?: string | undefined;
  /**
   * The TOTP device enrolled with an invite or reset link; the secret is
   * sealed with the at-rest key. Listed among the MFA devices as id `totp`
   * (mfa-devices.ts); devices added later live in `mfaDevices`.
   */
  totp?:
    | {
        sealedSecret: string;
        lastCounter: number;
        addedAt: string;
        name?: string | undefined;
        lastUsedAt?: string | undefined;
      }
    | undefined;
  /** Second-factor devices added from the account page or `gatehouse mfa add` (TOTP apps, security keys, passkeys). */
  mfaDevices?: MfaDeviceRecord[] | undefined;
  /** Failed-login state for lockout with backoff. */
  loginFailures?: { count: number; lockedUntil?: string | undefined } | undefined;
  createdAt: string;
  updatedAt: string;
  createdBy: string;
  /**
   * Set on users an SSO connector made (kind sso): no password, roles and
   * traits from the identity provider's claims, rewritten at every login.
   */
  sso?: SsoUserInfo | undefined;
}

export interface SsoUserInfo {
  /** The connector's name. */
  connector: string;
  kind: 'oidc' | 'github' | 'saml';
  /** The provider's subject (`sub`; SAML: the NameID): the same name from another subject is refused. */
  subject: string;
  /** When what the last login granted ends (the certificate's expiry): the user expires with it. */
  expires: string;
}

/** What a verified certificate (SSH or X.509) says about its holder. */
export interface Identity {
  user: string;
  /** The user record's id when the certificate was issued (see UserRecord.id). */
  userId?: string | undefined;
  roles: string[];
  traits: Traits;
  /** Certificate expiry: the hard end of anything granted from this identity. */
  expires: Date;
  /** When the second factor was last verified (login time), if it was. */
  mfaVerifiedAt?: Date | undefined;
  /** Optional route the certificate is scoped to. */
  route?: Route | undefined;
  /** Address the client logged in from, when the cert is pinned to it. */
  loginIp?: string | undefined;
  /**
   * Approved access requests whose roles the certificate carries
   * (`gatehouse login --request-id`). Every use checks that each is still
   * approved and unexpired: a denial, drop or expiry ends the certificate's
   * sessions the way a lock does.
   */
  accessRequests?: string[] | undefined;
  /**
   * Set on the short-lived certificate a per-session MFA check issues
   * (role option require_session_mfa): it is good for connecting to this one
   * target only, while `expires` (one minute) lasts. A session it started may
   * run on until `sessionExpires`, the end of the login it was derived from.
   */
  sessionMfa?: SessionMfaBinding | undefined;
}

/** What a per-session MFA certificate is bound to (docs/decisions/0037-session-mfa.md). */
export interface SessionMfaBinding {
  target: MfaTarget;
  /** The login certificate's (or web session's) expiry: a session started with this certificate ends by then. */
  sessionExpires: Date;
}

/**
 * The one target a per-session MFA certificate (or web token) opens: a node
 * login, a database user, a Kubernetes cluster, a desktop login (web only:
 * desktops take no certificate).
 */
export type MfaTarget =
  | { kind: 'node'; node: string; login: string }
  | { kind: 'db'; name: string; user: string }
  | { kind: 'kube'; cluster: string }
  | { kind: 'desktop'; desktop: string; login: string };

export type Route =
  | {
      kind: 'db';
      /** The database resource: the certificate is good for this one only. */
      name: string;
      /** The database user it was issued for (connecting as another one is refused). */
      user?: string | undefined;
      /**
       * The default database name for clients that name none (MySQL). Not a
       * limit: any name the roles' db_names allow may be used.
       */
      database?: string | undefined;
      protocol?: string | undefined;
    }
  | { kind: 'kube'; cluster: string };

interface MfaDeviceCommon {
  /** Random, stable: what `gatehouse mfa rm` and the account page name it by. */
  id: string;
  /** The owner's name for it ("yubikey blue", "laptop passkey"); unique per user. */
  name: string;
  addedAt: string;
  lastUsedAt?: string | undefined;
}

export interface TotpDeviceRecord extends MfaDeviceCommon {
  kind: 'totp';
  /** Sealed with the at-rest key (context `users/<name>/mfa/<id>`). */
  sealedSecret: string;
  /** The last time step accepted: a code is never accepted twice. */
  lastCounter: number;
}

export interface WebAuthnDeviceRecord extends MfaDeviceCommon {
  kind: 'webauthn';
  /** The credential id, base64url (what the authenticator names it by). */
  credentialId: string;
  /** The COSE public key the authenticator registered, base64url. */
  publicKey: string;
  /** The highest sign counter seen; an assertion must show a higher one (unless both are 0). */
  counter: number;
  transports: string[];
  /** Registered as a discoverable credential with user verification: usable for passwordless login. */
  passkey: boolean;
  /** Synced between devices by its provider (multi-device credential). */
  backedUp?: boolean | undefined;
}

export type MfaDeviceRecord = TotpDeviceRecord | WebAuthnDeviceRecord;

/** A lock blocks every new and live session of its target. */
export interface LockRecord {
  id: string;
  target: { user: string } | { role: string };
  message?: string | undefined;
  expires?: string | undefined;
  createdAt: string;
  createdBy: string;
}

/** One-time tokens: invite (new user) and reset (forgotten password / lost device). */
export interface UserTokenRecord {
  /** Random, URL-safe; only its SHA-256 is the storage key. */
  kind: 'invite' | 'reset';
  user: string;
  expires: string;
  /** TOTP secret offered for enrollment, sealed at rest. */
  sealedTotpSecret?: string | undefined;
  createdAt: string;
  /** Set by the compare-and-swap that consumes the token; a consumed token is never accepted again. */
  consumedAt?: string | undefined;
}
