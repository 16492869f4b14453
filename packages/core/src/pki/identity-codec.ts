import { z } from 'zod';
import { GatehouseError } from '../errors.js';
import type { Identity, MfaTarget, Route } from '../identity/types.js';

/**
 * The identity JSON carried by user certificates, shared by X.509 (extension
 * value) and SSH (`gatehouse-identity@gatehouse.dev`). Wire shape and
 * versioning: docs/decisions/0002-identity-encoding.md.
 */

/** Version written by this code; readers reject every other version. */
export const IDENTITY_VERSION = 1;

const isoDate = z.iso.datetime({ offset: false });

const routeSchema = z.discriminatedUnion('kind', [
  z.strictObject({
    kind: z.literal('db'),
    name: z.string().min(1),
    user: z.string().min(1).optional(),
    database: z.string().min(1).optional(),
    protocol: z.string().min(1).optional(),
  }),
  z.strictObject({ kind: z.literal('kube'), cluster: z.string().min(1) }),
]);

const mfaTargetSchema = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('node'), node: z.string().min(1), login: z.string().min(1) }),
  z.strictObject({ kind: z.literal('db'), name: z.string().min(1), user: z.string().min(1) }),
  z.strictObject({ kind: z.literal('kube'), cluster: z.string().min(1) }),
  z.strictObject({ kind: z.literal('desktop'), desktop: z.string().min(1), login: z.string().min(1) }),
]);

const identitySchema = z.strictObject({
  v: z.literal(IDENTITY_VERSION),
  user: z.string().min(1),
  user_id: z.string().min(1).max(64).optional(),
  roles: z.array(z.string().min(1)),
  traits: z.record(z.string(), z.array(z.string())),
  expires: isoDate,
  mfa_verified_at: isoDate.optional(),
  route: routeSchema.optional(),
  login_ip: z.string().min(1).optional(),
  access_requests: z
    .array(z.string().regex(/^[0-9a-f]{8,64}$/))
    .min(1)
    .max(16)
    .optional(),
  session_mfa: z.strictObject({ target: mfaTargetSchema, session_expires: isoDate }).optional(),
});

function iso(d: Date, field: string): string {
  if (!(d instanceof Date) || Number.isNaN(d.getTime())) {
    throw new GatehouseError('GH_ERR_VALIDATION', `identity.${field} is not a valid date`, {
      hint: 'Pass a Date object for certificate times.',
    });
  }
  return d.toISOString();
}

function routeJson(r: Route): Record<string, string> {
  if (r.kind === 'kube') return { kind: 'kube', cluster: r.cluster };
  const out: Record<string, string> = { kind: 'db', name: r.name };
  if (r.user !== undefined) out.user = r.user;
  if (r.database !== undefined) out.database = r.database;
  if (r.protocol !== undefined) out.protocol = r.protocol;
  return out;
}

/**
 * The target of a per-session MFA certificate as canonical JSON (fixed key
 * order): the value of the SSH critical option that binds it, compared byte
 * for byte.
 */
export function mfaTargetJson(t: MfaTarget): string {
  if (t.kind === 'node') return JSON.stringify({ kind: 'node', node: t.node, login: t.login });
  if (t.kind === 'db') return JSON.stringify({ kind: 'db', name: t.name, user: t.user });
  if (t.kind === 'desktop') return JSON.stringify({ kind: 'desktop', desktop: t.desktop, login: t.login });
  return JSON.stringify({ kind: 'kube', cluster: t.cluster });
}

/** Canonical JSON (fixed key order, no undefined members). */
export function encodeIdentityJson(identity: Identity): string {
  const o: Record<string, unknown> = {
    v: IDENTITY_VERSION,
    user: identity.user,
    roles: identity.roles,
    traits: identity.traits,
    expires: iso(identity.expires, 'expires'),
  };
  if (identity.userId !== undefined) o.user_id = identity.userId;
  if (identity.mfaVerifiedAt !== undefined) o.mfa_verified_at = iso(identity.mfaVerifiedAt, 'mfaVerifiedAt');
  if (identity.route !== undefined) o.route = routeJson(identity.route);
  if (identity.loginIp !== undefined) o.login_ip = identity.loginIp;
  if (identity.accessRequests?.length) o.access_requests = identity.accessRequests;
  if (identity.sessionMfa !== undefined) {
    o.session_mfa = {
      target: JSON.parse(mfaTargetJson(identity.sessionMfa.target)),
      session_expires: iso(identity.sessionMfa.sessionExpires, 'sessionMfa.sessionExpires'),
    };
  }
  // Validate what we write with the same schema readers use, so a bad
  // identity fails at issuance rather than at every later connection.
  const checked = identitySchema.safeParse(o);
  if (!checked.success) {
    throw new GatehouseError('GH_ERR_VALIDATION', `identity is invalid: ${z.prettifyError(checked.error)}`, {
      hint: 'Every identity needs a user name, roles, traits and an expiry.',
    });
  }
  return JSON.stringify(o);
}

/** Strict reader: unknown version, unknown or missing fields, or wrong types throw GH_ERR_CERT_INVALID. */
export function decodeIdentityJson(json: string): Identity {
  let raw: unknown;
  try {
    raw = JSON.parse(json);
  } catch (cause) {
    throw new GatehouseError('GH_ERR_CERT_INVALID', 'certificate identity is not valid JSON', {
      cause,
      hint: 'The certificate was not issued by Gatehouse or is corrupt: log in again to get a new one.',
    });
  }
  const r = identitySchema.safeParse(raw);
  if (!r.success) {
    throw new GatehouseError(
      'GH_ERR_CERT_INVALID',
      `certificate identity does not match version ${IDENTITY_VERSION}: ${z.prettifyError(r.error)}`,
      { hint: 'Log in again to get a certificate from this Gatehouse version.' },
    );
  }
  const d = r.data;
  const identity: Identity = {
    user: d.user,
    roles: d.roles,
    traits: d.traits,
    expires: new Date(d.expires),
  };
  if (d.mfa_verified_at !== undefined) identity.mfaVerifiedAt = new Date(d.mfa_verified_at);
  if (d.route !== undefined) identity.route = d.route;
  if (d.login_ip !== undefined) identity.loginIp = d.login_ip;
  if (d.user_id !== undefined) identity.userId = d.user_id;
  if (d.access_requests !== undefined) identity.accessRequests = d.access_requests;
  if (d.session_mfa !== undefined) {
    identity.sessionMfa = {
      target: d.session_mfa.target,
      sessionExpires: new Date(d.session_mfa.session_expires),
    };
  }
  return identity;
}
