import { generateKeyPairSync } from 'node:crypto';
import type net from 'node:net';
import type tls from 'node:tls';
import { type AuditEmitter, type AuditTextLimits, DbSessionAudit } from '@gatehouse/audit';
import type { Authorizer } from '../authz/authorizer.js';
import type { Grant } from '../authz/grant.js';
import type { Clock } from '../clock.js';
import { GatehouseError } from '../errors.js';
import type { Identity } from '../identity/types.js';
import type { Dialer } from '../net/dialer.js';
import type { CertificateAuthorities } from '../pki/authority.js';
import type { LiveSession, LiveSessions, SessionHooks } from '../sessions/live.js';
import { type DatabaseRegistry, type DatabaseSpec, type DbProtocol, dbHostPort } from './registry.js';

export interface DbConnectRequest {
  /** The verified client identity (from the TLS client certificate). */
  identity: Identity | undefined;
  protocol: DbProtocol;
  /** Database resource; defaults to the certificate's route. */
  service?: string | undefined;
  dbUser: string;
  dbName: string;
  remoteAddr: string;
}

/**
 * Why access was refused, for adapters to pick their wire error
 * (e.g. db_users → SQLSTATE 28000 / MySQL 1045, db_names → 3D000 / 1044).
 */
export type DbDenialField =
  | 'unauthenticated'
  | 'route'
  | 'unknown_database'
  | 'protocol'
  | 'db_labels'
  | 'db_users'
  | 'db_names'
  | 'locked'
  | 'expired'
  | 'session_mfa';

/** Everything an adapter needs after core said yes. */
export interface DbSession {
  grant: Grant;
  service: DatabaseSpec;
  audit: DbSessionAudit;
  upstream: {
    host: string;
    port: number;
    /** Client cert from the db CA (CN = db user), the database's CA, verify-full. */
    tls: tls.ConnectionOptions;
  };
  /** TCP to the database through the gateway's Dialer; the adapter does its protocol's TLS upgrade. */
  dial(signal?: AbortSignal): Promise<net.Socket>;
  /**
   * Re-runs the full check (locks, route, roles) for a database user/name the
   * client switches to mid-session (MySQL COM_INIT_DB, USE, COM_CHANGE_USER).
   * Resolves when allowed; throws the same audited denial as authorize().
   */
  reauthorize(req: { dbUser: string; dbName: string }): Promise<void>;
  /**
   * Moves the session to another database user (MySQL COM_CHANGE_USER to a
   * user other than the one it logged in as): the full check for that user
   * and database (a refusal throws the same audited denial as authorize()),
   * then TLS options with a db-CA client certificate for the new user, to log
   * in upstream with. From then on the bound session's re-checks (role
   * changes, locks) judge the new user, and it still ends when the first
   * grant would have. The adapter records the switch with
   * `audit.onChangeUser` once the database took the new login.
   */
  changeUser(req: { dbUser: string; dbName: string }): Promise<{ tls: tls.ConnectionOptions }>;
  /**
   * Hands the session's lifecycle to core once it runs (upstream logged in):
   * listed by `sessions ls`, ended through `terminate` on expiry, a lock, the
   * user's deletion, a role change or a kill. Call `end()` on the result when
   * the session ends by itself.
   */
  bind(hooks: SessionHooks): LiveSession;
}

export interface DbAccessDeps {
  registry: DatabaseRegistry;
  authorizer: Authorizer;
  liveSessions: LiveSessions;
  authorities: CertificateAuthorities;
  audit: AuditEmitter;
  clock: Clock;
  dialer: Dialer;
  /** How much of each statement the query records keep (config `audit.max_query_bytes`, ...). Default: the audit package's. */
  auditLimits?: AuditTextLimits | undefined;
}

const CLIENT_CERT_TTL_MS = 60 * 60 * 1000;
const CLIENT_CERT_REFRESH_MS = 15 * 60 * 1000;

export function dbDenialField(err: unknown): DbDenialField | undefined {
  if (!(err instanceof GatehouseError)) return undefined;
  const f = err.details?.field;
  if (typeof f === 'string') return f as DbDenialField;
  if (err.code === 'GH_ERR_USER_LOCKED') return 'locked';
  if (err.code === 'GH_ERR_CERT_EXPIRED') return 'expired';
  if (err.code === 'GH_ERR_UNAUTHENTICATED') return 'unauthenticated';
  return undefined;
}

/**
 * The one authorization path for every database protocol (so PostgreSQL and
 * MySQL cannot drift apart): resolve the database, ask the Authorizer, mint
 * the upstream client certificate, start the session's audit.
 */
export class DbAccess {
  readonly #d: DbAccessDeps;
  readonly #certs = new Map<string, { cert: string; key: string; expires: number; signer: string }>();

  constructor(deps: DbAccessDeps) {
    this.#d = deps;
  }

  async authorize(req: DbConnectRequest): Promise<DbSession> {
    const target = { kind: 'db', name: req.service ?? '(none)' };
    const ctx = { remoteAddr: req.remoteAddr, protocol: req.protocol };
    if (!req.identity) {
      return this.#d.authorizer.deny(
        undefined,
        target,
        'no Gatehouse client certificate was presented',
        ctx,
        {
          code: 'GH_ERR_UNAUTHENTICATED',
          field: 'unauthenticated',
          hint: 'run gatehouse db login NAME, then connect with the files it writes',
        },
      );
    }
    const route = req.identity.route;
    const name = req.service ?? (route?.kind === 'db' ? route.name : undefined);
    if (!name) {
      return this.#d.authorizer.deny(req.identity, target, 'the certificate names no database', ctx, {
        field: 'route',
        hint: 'run gatehouse db login NAME to get a certificate for that database',
      });
    }
    const service = await this.#d.registry.get(name);
    if (!service) {
      return this.#d.authorizer.deny(
        req.identity,
        { kind: 'db', name },
        `database "${name}" is not registered`,
        ctx,
        {
          field: 'unknown_database',
          hint: 'list databases with gatehouse db ls',
        },
      );
    }
    if (service.protocol !== req.protocol) {
      return this.#d.authorizer.deny(
        req.identity,
        { kind: 'db', name },
        `database "${name}" speaks ${service.protocol}, not ${req.protocol}`,
        ctx,
        {
          field: 'protocol',
          hint: `connect with a ${service.protocol} client`,
        },
      );
    }
    const grant = await this.#d.authorizer.authorize(
      req.identity,
      {
        kind: 'db',
        name,
        labels: service.labels,
        protocol: service.protocol,
        dbUser: req.dbUser,
        dbName: req.dbName,
      },
      ctx,
    );
    const { host, port } = dbHostPort(service);
    const client = await this.#clientCert(req.dbUser);
    const audit = new DbSessionAudit(
      this.#d.audit,
      {
        session_id: grant.sessionId,
        user: req.identity.user,
        db_service: name,
        db_protocol: service.protocol,
        db_user: req.dbUser,
        db_name: req.dbName,
        server: `${host}:${port}`,
        addr: { remote: req.remoteAddr },
      },
      {
        redactParameters: grant.options.redactDbParams,
        // Core decides; the adapters follow `audit.auditsStatements`.
        statements: grant.options.dbAudit === 'statements',
        now: () => this.#d.clock.now().getTime(),
        ...(this.#d.auditLimits ? { limits: this.#d.auditLimits } : {}),
      },
    );
    const dialer = this.#d.dialer;
    const upstreamTls = (c: { cert: string; key: string }): tls.ConnectionOptions => ({
      cert: c.cert,
      key: c.key,
      ...(service.caPem ? { ca: service.caPem } : {}),
      servername: service.serverName ?? host,
      rejectUnauthorized: true,
      minVersion: 'TLSv1.2',
    });
    const targetFor = (next: { dbUser: string; dbName: string }) =>
      ({ kind: 'db', name, labels: service.labels, protocol: service.protocol, ...next }) as const;
    let live: LiveSession | undefined;
    return {
      grant,
      service,
      audit,
      upstream: {
        host,
        port,
        tls: upstreamTls(client),
      },
      dial: (signal) => dialer.dial({ host, port }, signal ? { signal } : {}),
      bind: (hooks) => {
        live = this.#d.liveSessions.bind(
          grant,
          {
            kind: 'db',
            protocol: service.protocol,
            server: name,
            login: req.dbUser,
            remoteAddr: req.remoteAddr,
          },
          hooks,
        );
        return live;
      },
      reauthorize: async (next) => {
        await this.#d.authorizer.authorize(req.identity, targetFor(next), ctx);
      },
      changeUser: async (next) => {
        const moved = await this.#d.authorizer.authorize(req.identity, targetFor(next), ctx);
        const cert = await this.#clientCert(next.dbUser);
        live?.retarget(moved, next.dbUser);
        return { tls: upstreamTls(cert) };
      },
    };
  }

  /** One short-lived db client cert per database user, reused until it nears expiry. */
  async #clientCert(dbUser: string): Promise<{ cert: string; key: string }> {
    const now = this.#d.clock.now().getTime();
    const cached = this.#certs.get(dbUser);
    // A db CA rotation that moved signing to the other key (update_clients, rollback) re-issues at once:
    // databases stop trusting the key that signed the cached one at standby.
    const signer = this.#d.authorities.signingKey('db').id;
    if (cached && cached.expires - now > CLIENT_CERT_REFRESH_MS && cached.signer === signer) return cached;
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const issued = await this.#d.authorities.issueDbClientCert({
      publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
      dbUser,
      notBefore: new Date(now - 60_000),
      notAfter: new Date(now + CLIENT_CERT_TTL_MS),
    });
    const entry = {
      cert: issued.cert,
      key: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
      expires: now + CLIENT_CERT_TTL_MS,
      signer,
    };
    this.#certs.set(dbUser, entry);
    return entry;
  }
}
