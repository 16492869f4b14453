import { createHash, timingSafeEqual } from 'node:crypto';
import { isIP } from 'node:net';
import type { AuditEmitter } from '@gatehouse/audit';
import type { Backend } from '../backend/types.js';
import type { Clock } from '../clock.js';
import { commandLineToken } from '../crypto/token.js';
import { GatehouseError } from '../errors.js';
import type { CertificateAuthorities } from '../pki/authority.js';
import { parseSshPublicKey } from '../pki/sshcert.js';

/**
 * One-time tokens that let a node service join the cluster
 * (`gatehouse tokens add --type node`). Only the SHA-256 of a token is
 * stored (`join_tokens/<sha256 hex>`), so a backend dump cannot be replayed.
 * A token is consumed by deleting its key: of two concurrent redemptions
 * exactly one sees `delete` return true.
 */

export const JOIN_TOKEN_PREFIX = 'join_tokens/';
export const DEFAULT_JOIN_TOKEN_TTL_MS = 30 * 60_000;
export const MAX_JOIN_TOKEN_TTL_MS = 7 * 24 * 3600_000;
/** How long a joined node's host certificate lasts; the node joins again with a new token to renew it. */
export const JOINED_HOST_CERT_TTL_MS = 90 * 24 * 3600_000;
/** Expired records linger this long so a late redemption hears "expired", not "unknown". */
const EXPIRED_GRACE_MS = 24 * 3600_000;

export interface JoinTokenRecord {
  kind: 'node';
  createdBy: string;
  createdAt: string;
  expires: string;
}

/** What `createJoinToken` returns once: the token itself is never stored or shown again. */
export interface JoinTokenView {
  token: string;
  kind: 'node';
  expires: string;
  /** The command to run on the node. */
  command: string;
}

/** POST /v1/nodes/join (unauthenticated: the token is the credential). */
export interface NodeJoinRequest {
  token: string;
  /** Node name (a DNS label): how users address it (`ssh login@name`). */
  name: string;
  /** host:port the gateway dials; a wildcard host (0.0.0.0, ::) means "the address I joined from". */
  addr: string;
  labels?: Record<string, string>;
  /** The node's SSH host public key (OpenSSH line) to certify. */
  host_public_key: string;
}

export interface NodeJoinResponse {
  cluster_name: string;
  /** Host certificate for the node's names, from the cluster host CA. */
  host_cert: string;
  /** User CA public keys (OpenSSH lines) the node must trust (sshd TrustedUserCAKeys). */
  user_ca_keys: string[];
  /** Host CA public keys, for the node's own records. */
  host_ca_keys: string[];
  /** The node as registered. */
  node: { name: string; addr: string; labels: Record<string, string> };
}

/** The registration the gateway makes for a joined node (connected to the node registry by the gateway). */
export interface JoinedNodeSpec {
  name: string;
  addr: string;
  labels: Record<string, string>;
  /** "ssh-ed25519 AAAA..." the node proved nothing about yet: the host cert binds it to the name. */
  hostPublicKey: string;
}

const NAME_RE = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
const LABEL_KEY_RE = /^[A-Za-z0-9._/-]{1,63}$/;

function sha256(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

function invalidToken(message: string): GatehouseError {
  return new GatehouseError('GH_ERR_TOKEN_INVALID', message, {
    hint: 'Ask an admin for a new one: gatehouse tokens add --type node',
  });
}

function validation(message: string, hint: string): GatehouseError {
  return new GatehouseError('GH_ERR_VALIDATION', message, { hint });
}

export interface JoinTokenDeps {
  backend: Backend;
  clock: Clock;
  audit: AuditEmitter;
}

export class JoinTokenStore {
  readonly #d: JoinTokenDeps;

  constructor(deps: JoinTokenDeps) {
    this.#d = deps;
  }

  async create(opts: { ttlMs?: number; actor: string }): Promise<{ token: string; expires: Date }> {
    const ttlMs = opts.ttlMs ?? DEFAULT_JOIN_TOKEN_TTL_MS;
    if (!Number.isFinite(ttlMs) || ttlMs <= 0 || ttlMs > MAX_JOIN_TOKEN_TTL_MS) {
      throw validation('join token TTL must be between 1s and 7 days', 'Use e.g. --ttl 30m or --ttl 24h.');
    }
    const token = commandLineToken(24);
    const now = this.#d.clock.now();
    const expires = new Date(now.getTime() + ttlMs);
    const rec: JoinTokenRecord = {
      kind: 'node',
      createdBy: opts.actor,
      createdAt: now.toISOString(),
      expires: expires.toISOString(),
    };
    await this.#d.backend.create(JOIN_TOKEN_PREFIX + sha256(token), JSON.stringify(rec), {
      ttlMs: ttlMs + EXPIRED_GRACE_MS,
    });
    await this.#d.audit.emit({
      type: 'node.join_token.create',
      user: opts.actor,
      expires: rec.expires,
      token_id: sha256(token).slice(0, 12),
    });
    return { token, expires };
  }

  /** Uses a token up. Unknown, used and expired tokens all throw GH_ERR_TOKEN_INVALID (with the reason). */
  async consume(token: string): Promise<JoinTokenRecord & { id: string }> {
    if (typeof token !== 'string' || !/^[A-Za-z0-9_-]{16,128}$/.test(token)) {
      throw invalidToken('join token is malformed');
    }
    const hash = sha256(token);
    const key = JOIN_TOKEN_PREFIX + hash;
    const item = await this.#d.backend.get(key);
    // The key is derived from the token; compare anyway so a backend that matched loosely cannot admit a node.
    if (!item || !timingSafeEqual(Buffer.from(item.key), Buffer.from(key))) {
      throw invalidToken('join token is unknown or was already used');
    }
    const rec = JSON.parse(item.value) as JoinTokenRecord;
    // Delete first: whoever deletes it owns it, even when it turns out expired.
    if (!(await this.#d.backend.delete(key))) throw invalidToken('join token is unknown or was already used');
    if (rec.kind !== 'node' || Number.isNaN(Date.parse(rec.expires)))
      throw invalidToken('join token record is malformed');
    if (this.#d.clock.now().getTime() >= Date.parse(rec.expires)) {
      throw invalidToken(`join token expired at ${rec.expires}`);
    }
    return { ...rec, id: hash.slice(0, 12) };
  }
}

/** Checks a join request's fields; a wildcard listen host becomes the address the node joined from. */
export function validateJoinRequest(req: NodeJoinRequest, remoteAddr: string): JoinedNodeSpec {
  if (typeof req.name !== 'string' || !NAME_RE.test(req.name)) {
    throw validation(
      `node name "${String(req.name)}" is invalid`,
      'Use lowercase letters, digits and dashes (a DNS label).',
    );
  }
  const m =
    typeof req.addr === 'string' ? /^(?:\[([^\]]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(req.addr.trim()) : null;
  const port = Number(m?.[3]);
  let host = m?.[1] ?? m?.[2] ?? '';
  if (!m || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw validation(
      `node address "${String(req.addr)}" is invalid`,
      'Pass --listen HOST:PORT, e.g. 0.0.0.0:3022.',
    );
  }
  if (host === '' || host === '0.0.0.0' || host === '::') host = remoteAddr;
  if (!host) throw validation('cannot tell the node address', 'Pass --advertise HOST:PORT on the node.');
  const labels: Record<string, string> = {};
  for (const [k, v] of Object.entries(req.labels ?? {})) {
    if (!LABEL_KEY_RE.test(k) || typeof v !== 'string' || v.length > 253) {
      throw validation(
        `label "${k}" is invalid`,
        'Labels are key=value with short keys (letters, digits, ._/-).',
      );
    }
    labels[k] = v;
  }
  if (typeof req.host_public_key !== 'string')
    throw validation('host_public_key is missing', "Send the node's SSH host public key.");
  const pub = parseSshPublicKey(req.host_public_key);
  return {
    name: req.name,
    addr: isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`,
    labels,
    hostPublicKey: `${pub.type} ${pub.blob.toString('base64')}`,
  };
}

export interface NodeJoinDeps {
  tokens: JoinTokenStore;
  authorities: CertificateAuthorities;
  clock: Clock;
  audit: AuditEmitter;
  clusterName: string;
  /** Adds (or replaces) the node in the gateway's node registry. */
  registerNode: (spec: JoinedNodeSpec) => Promise<void>;
}

/**
 * Redeems a join token: validates the request, consumes the token, registers
 * the node and certifies its host key. Every outcome is audited (node.join).
 */
export async function redeemJoinToken(
  d: NodeJoinDeps,
  req: NodeJoinRequest,
  remoteAddr: string,
): Promise<NodeJoinResponse> {
  const name = typeof req?.name === 'string' ? req.name.slice(0, 64) : 'unknown';
  try {
    const spec = validateJoinRequest(req, remoteAddr);
    const token = await d.tokens.consume(req.token);
    const host = spec.addr.replace(/^\[|\]?:\d+$/g, '');
    const principals = [...new Set([spec.name, `${spec.name}.${d.clusterName}`, host])];
    const now = d.clock.now();
    const cert = await d.authorities.issueSshHostCert({
      publicKey: spec.hostPublicKey,
      keyId: spec.name,
      principals,
      validAfter: now,
      validBefore: new Date(now.getTime() + JOINED_HOST_CERT_TTL_MS),
    });
    await d.registerNode(spec);
    await d.audit.emit({
      type: 'node.join',
      success: true,
      user: `token:${token.id}`,
      server: spec.name,
      name: spec.name,
      node_addr: spec.addr,
      labels: spec.labels,
      addr: { remote: remoteAddr },
    });
    return {
      cluster_name: d.clusterName,
      host_cert: cert.cert,
      user_ca_keys: d.authorities.get('user').map((k) => k.sshPublicKey),
      host_ca_keys: d.authorities.get('host').map((k) => k.sshPublicKey),
      node: { name: spec.name, addr: spec.addr, labels: spec.labels },
    };
  } catch (e) {
    await d.audit.emit({
      type: 'node.join',
      success: false,
      user: 'unknown',
      server: name,
      name,
      error: e instanceof Error ? e.message : String(e),
      addr: { remote: remoteAddr },
    });
    throw e;
  }
}
