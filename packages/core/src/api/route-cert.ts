import type { X509Certificate } from 'node:crypto';
import type { Authorizer, Principal } from '../authz/authorizer.js';
import type { Clock } from '../clock.js';
import type { DatabaseRegistry } from '../databases/registry.js';
import { GatehouseError } from '../errors.js';
import type { Route } from '../identity/types.js';
import type { CertificateAuthorities } from '../pki/authority.js';
import type { RouteCertRequest, RouteCertResponse } from './public.js';

export interface RouteCertDeps {
  clock: Clock;
  authorizer: Authorizer;
  databases: Pick<DatabaseRegistry, 'get'>;
  authorities: Pick<CertificateAuthorities, 'issueX509UserCert' | 'get'>;
}

/** Clock skew allowance, as at login. */
const BACKDATE_MS = 60_000;

/**
 * POST /v1/certs/route: re-issues the caller's own certificate (same public
 * key, same identity, expiring no later) scoped to one database, so
 * `gatehouse db login NAME` needs no password. The caller must present its
 * login certificate (a route-scoped one cannot be widened or moved), and its
 * roles must at least let it see the database; whether a given db user and
 * name are allowed is decided at connect time, as for every session.
 */
export async function issueRouteCert(
  d: RouteCertDeps,
  caller: Principal,
  peer: X509Certificate,
  req: RouteCertRequest,
  remoteAddr: string,
): Promise<RouteCertResponse> {
  const identity = caller.identity;
  const ctx = { remoteAddr, protocol: 'http' };
  const target = { kind: 'db', name: req.route.name };
  if (identity.route) {
    return d.authorizer.deny(
      identity,
      target,
      'a route-scoped certificate cannot be re-issued for another route',
      ctx,
      {
        field: 'route',
        hint: 'use the certificate from gatehouse login (the current profile) to ask for route certificates',
      },
    );
  }
  const db = await d.databases.get(req.route.name);
  if (!db) {
    throw new GatehouseError('GH_ERR_NOT_FOUND', `database "${req.route.name}" is not registered`, {
      hint: 'list the databases you can reach with gatehouse db ls',
    });
  }
  const scoped = (caller.scoped ?? []).some((g) => g.resources.includes(`db/${db.name}`));
  if (!scoped && !caller.checker.databaseVisibility(db).visible) {
    return d.authorizer.deny(identity, target, `no role allows access to database "${db.name}"`, ctx, {
      field: 'db_labels',
      hint: 'list the databases you can reach with gatehouse db ls',
    });
  }
  const route: Route = {
    kind: 'db',
    name: db.name,
    protocol: db.protocol,
    ...(req.route.user ? { user: req.route.user } : {}),
    ...(req.route.database ? { database: req.route.database } : {}),
  };
  const now = d.clock.now().getTime();
  const issued = await d.authorities.issueX509UserCert({
    publicKeyPem: peer.publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    identity: { ...identity, route },
    notBefore: new Date(now - BACKDATE_MS),
    // Never outlives the certificate it was derived from.
    notAfter: identity.expires,
  });
  return {
    tls_cert: issued.cert,
    expires: identity.expires.toISOString(),
    route,
    cas: { host_x509: d.authorities.get('host').map((k) => k.x509CertPem) },
  };
}
