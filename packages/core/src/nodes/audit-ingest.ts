import { verify } from 'node:crypto';
import { type AuditEmitter, type AuditEventInput, AuditValidationError } from '@gatehouse/audit';
import { z } from 'zod';
import type { Backend } from '../backend/types.js';
import type { Clock } from '../clock.js';
import { GatehouseError, toGatehouseError } from '../errors.js';
import {
  parseSshCertificate,
  type SshCertificate,
  sshEd25519PublicKeyToKeyObject,
  verifySshCertificate,
} from '../pki/sshcert.js';

/**
 * Audit events of joined nodes (POST /v1/nodes/audit). A node started with
 * `gatehouse node start` has no audit log: it spools its events and sends
 * them here in order, in batches signed with its host key, with its host
 * certificate from the cluster host CA. The node's name is the certificate's
 * key id, never anything in the body; the gateway writes it as `server`.
 * Batches are at-least-once: every event carries (boot, seq), and the
 * gateway keeps the last one it wrote per node in the backend, so a batch
 * sent again (no answer reached the node) is not written twice. See
 * docs/decisions/0023-bpf-helper.md.
 */

/** Signed bytes: this prefix, then the payload string as sent. */
export const NODE_AUDIT_SIGNING_PREFIX = 'gatehouse-node-audit-v1\n';
/** Most events in one batch. */
export const MAX_NODE_AUDIT_BATCH = 500;
/** Largest event (as JSON) the gateway accepts from a node. */
export const MAX_NODE_AUDIT_EVENT_BYTES = 16 * 1024;
/** Largest request body (a full batch of the largest events fits in it with room). */
export const MAX_NODE_AUDIT_BODY_BYTES = 2 * 1024 * 1024;
/** How far a batch's timestamp may be from the gateway's clock (bounds replays of a captured batch). */
export const NODE_AUDIT_MAX_SKEW_MS = 5 * 60_000;
const STATE_PREFIX = 'node_audit/';

/** Event types a node service emits; anything else from a node is refused (it could forge logins, roles...). */
export const NODE_AUDIT_TYPES: ReadonlySet<string> = new Set([
  'access.denied',
  'session.command',
  'session.command.exit',
  'session.open',
  'session.network',
  'session.events_lost',
  'session.enforcement_failed',
]);

/** What a node POSTs. */
export interface NodeAuditRequest {
  /** The node's host certificate (OpenSSH line) from the cluster host CA. */
  cert: string;
  /** Base64 Ed25519 signature by the certified host key over NODE_AUDIT_SIGNING_PREFIX + payload. */
  sig: string;
  /** JSON text of a NodeAuditPayload (signed as sent, so both sides hash the same bytes). */
  payload: string;
}

export interface NodeAuditEventLine {
  /** Per boot, from 1, increasing by one. */
  seq: number;
  /** When the node saw it (ISO). */
  time: string;
  event: Record<string, unknown>;
}

export interface NodeAuditPayload {
  /** Milliseconds since the epoch when the node signed the batch. */
  ts: number;
  /** Random id of the node process that emitted the events (seq restarts with it). */
  boot: string;
  events: NodeAuditEventLine[];
}

export interface NodeAuditResponse {
  accepted: number;
  /** Events already written by an earlier attempt. */
  duplicates: number;
  /** Events refused one by one (and audited as node.audit_refused); the rest of the batch was written. */
  refused: { seq: number; reason: string }[];
}

export interface NodeAuditIngestDeps {
  backend: Backend;
  clock: Clock;
  audit: AuditEmitter;
  /** The host CA public keys (OpenSSH lines), read per batch so rotation applies at once. */
  hostCaKeys: () => readonly string[];
  /** Whether `name` is a registered node: a removed node's certificate stops working at once. */
  nodeRegistered: (name: string) => Promise<boolean>;
  /** Sustained events per second per node. Default 5,000. */
  eventsPerSecond?: number;
  /** Burst per node (at least MAX_NODE_AUDIT_BATCH). Default 50,000. */
  eventsBurst?: number;
}

const payloadSchema = z
  .object({
    ts: z.number().int().nonnegative(),
    boot: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/),
    events: z
      .array(
        z
          .object({
            seq: z.number().int().positive(),
            time: z.string().max(64),
            event: z.record(z.string(), z.unknown()),
          })
          .strict(),
      )
      .min(1)
      .max(MAX_NODE_AUDIT_BATCH),
  })
  .strict();

interface Watermark {
  boot: string;
  seq: number;
}

function refusal(message: string, hint: string): GatehouseError {
  return new GatehouseError('GH_ERR_UNAUTHENTICATED', message, { hint });
}

export class NodeAuditIngest {
  readonly #d: NodeAuditIngestDeps;
  readonly #rate: number;
  readonly #burst: number;
  readonly #buckets = new Map<string, { tokens: number; at: number }>();
  /** Batches of one node are written one after another (the watermark is read-modify-write). */
  readonly #chains = new Map<string, Promise<unknown>>();

  constructor(d: NodeAuditIngestDeps) {
    this.#d = d;
    this.#rate = d.eventsPerSecond ?? 5_000;
    this.#burst = Math.max(MAX_NODE_AUDIT_BATCH, d.eventsBurst ?? 50_000);
  }

  /** Verifies and writes one batch; refusals of the whole batch throw (and are audited). */
  async ingest(req: NodeAuditRequest, remoteAddr: string): Promise<NodeAuditResponse> {
    let name: string | undefined;
    let count = 0;
    try {
      const cert = this.#verifyCert(req.cert);
      name = cert.keyId;
      this.#verifySignature(cert, req);
      const payload = this.#parse(req.payload);
      count = payload.events.length;
      if (!(await this.#d.nodeRegistered(name))) {
        throw refusal(
          `node "${name}" is not registered`,
          'join the node again: gatehouse tokens add --type node',
        );
      }
      const skew = Math.abs(this.#d.clock.now().getTime() - payload.ts);
      if (skew > NODE_AUDIT_MAX_SKEW_MS) {
        throw refusal(
          `the batch was signed ${Math.round(skew / 1000)} s away from the gateway's time`,
          "check the node's clock (NTP)",
        );
      }
      this.#take(name, count);
      const node = name;
      const prev = this.#chains.get(node) ?? Promise.resolve();
      const run = prev.catch(() => undefined).then(() => this.#write(node, payload));
      this.#chains.set(node, run);
      try {
        return await run;
      } finally {
        if (this.#chains.get(node) === run) this.#chains.delete(node);
      }
    } catch (e) {
      const ge = toGatehouseError(e);
      // Rate limiting is the node's back-pressure, not an attack: it retries later, nothing to audit.
      if (ge?.code !== 'GH_ERR_RATE_LIMITED' && ge?.code !== 'GH_ERR_AUDIT_UNAVAILABLE') {
        await this.#d.audit.record({
          type: 'node.audit_refused',
          user: name ? `node:${name}` : 'unknown',
          ...(name ? { server: name } : { claimed_node: claimedName(req.cert) }),
          reason: e instanceof Error ? e.message : String(e),
          events: count,
          addr: { remote: remoteAddr },
        });
      }
      throw e;
    }
  }

  #verifyCert(line: unknown): SshCertificate {
    if (typeof line !== 'string')
      throw refusal('no node certificate', 'send the host certificate from the join');
    let cert: SshCertificate;
    try {
      cert = verifySshCertificate(line, this.#d.hostCaKeys(), this.#d.clock.now(), { type: 'host' });
    } catch (e) {
      const why = e instanceof Error ? e.message : String(e);
      throw refusal(
        `node certificate refused: ${why}`,
        'join the node again to get a certificate from this cluster',
      );
    }
    // Joined nodes' certificates name the node in the key id and the principals (redeemJoinToken).
    if (!/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/.test(cert.keyId) || !cert.principals.includes(cert.keyId)) {
      throw refusal(
        `host certificate "${cert.keyId}" does not name a node`,
        'join the node with gatehouse node start',
      );
    }
    return cert;
  }

  #verifySignature(cert: SshCertificate, req: NodeAuditRequest): void {
    if (typeof req.payload !== 'string' || typeof req.sig !== 'string') {
      throw new GatehouseError('GH_ERR_VALIDATION', 'invalid request: payload and sig must be strings');
    }
    let ok = false;
    try {
      ok =
        cert.keyType === 'ssh-ed25519' &&
        verify(
          null,
          Buffer.from(NODE_AUDIT_SIGNING_PREFIX + req.payload, 'utf8'),
          sshEd25519PublicKeyToKeyObject(cert.publicKey),
          Buffer.from(req.sig, 'base64'),
        );
    } catch {
      ok = false;
    }
    if (!ok) {
      throw refusal(
        `the batch is not signed by the key of node "${cert.keyId}"'s certificate`,
        'the node must sign with its own host key',
      );
    }
  }

  #parse(text: string): NodeAuditPayload {
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      throw new GatehouseError('GH_ERR_VALIDATION', 'invalid request: payload is not JSON');
    }
    const r = payloadSchema.safeParse(json);
    if (!r.success) {
      const i = r.error.issues[0];
      throw new GatehouseError(
        'GH_ERR_VALIDATION',
        `invalid request: payload.${i?.path.join('.') || ''}: ${i?.message}`,
      );
    }
    const p = r.data as NodeAuditPayload;
    for (let i = 1; i < p.events.length; i++) {
      if (p.events[i]!.seq !== p.events[i - 1]!.seq + 1) {
        throw new GatehouseError('GH_ERR_VALIDATION', 'invalid request: payload.events are not consecutive');
      }
    }
    return p;
  }

  /** Token bucket per node, in events: a node over its rate is told to come back later (429). */
  #take(node: string, n: number): void {
    const now = this.#d.clock.now().getTime();
    const b = this.#buckets.get(node) ?? { tokens: this.#burst, at: now };
    b.tokens = Math.min(this.#burst, b.tokens + ((now - b.at) / 1000) * this.#rate);
    b.at = now;
    this.#buckets.set(node, b);
    if (b.tokens < n) {
      const wait = Math.max(1, Math.ceil((n - b.tokens) / this.#rate));
      throw new GatehouseError(
        'GH_ERR_RATE_LIMITED',
        `node "${node}" sends audit events faster than allowed`,
        {
          hint: `the node keeps them spooled and retries in ${wait} s`,
        },
      );
    }
    b.tokens -= n;
  }

  async #write(node: string, p: NodeAuditPayload): Promise<NodeAuditResponse> {
    const key = STATE_PREFIX + node;
    const item = await this.#d.backend.get(key);
    const mark = item ? (JSON.parse(item.value) as Watermark) : undefined;
    const out: NodeAuditResponse = { accepted: 0, duplicates: 0, refused: [] };
    let last: Watermark | undefined;
    try {
      for (const line of p.events) {
        if (mark && mark.boot === p.boot && line.seq <= mark.seq) {
          out.duplicates++;
          continue;
        }
        const id = `${p.boot}:${line.seq}`;
        let why = this.#check(line);
        if (!why) {
          // The node does not get to choose these: server is the certificate's name.
          const { server: _s, node_time: _t, node_event_id: _i, ...rest } = line.event;
          try {
            await this.#d.audit.emit({
              ...(rest as unknown as AuditEventInput),
              server: node,
              node_time: line.time,
              node_event_id: id,
            });
            out.accepted++;
          } catch (e) {
            // An event the log cannot take as it is would block the node's queue for ever: refuse it alone.
            if (!(e instanceof AuditValidationError)) throw e;
            why = e.message;
          }
        }
        if (why) {
          await this.#d.audit.emit({
            type: 'node.audit_refused',
            user: `node:${node}`,
            server: node,
            reason: why,
            events: 1,
            node_event_id: id,
          });
          out.refused.push({ seq: line.seq, reason: why });
        }
        last = { boot: p.boot, seq: line.seq };
      }
    } finally {
      // Also when an emit failed half way: the node sends the batch again, and what was written is skipped.
      if (last) await this.#d.backend.put(key, JSON.stringify(last));
    }
    return out;
  }

  /** Why one event is refused, or undefined. */
  #check(line: NodeAuditEventLine): string | undefined {
    const type = line.event.type;
    if (typeof type !== 'string' || !NODE_AUDIT_TYPES.has(type)) {
      return `a node may not send events of type ${JSON.stringify(type)}`;
    }
    const bytes = Buffer.byteLength(JSON.stringify(line.event));
    if (bytes > MAX_NODE_AUDIT_EVENT_BYTES) {
      return `event of ${bytes} bytes is over the ${MAX_NODE_AUDIT_EVENT_BYTES} byte limit`;
    }
    if (Number.isNaN(Date.parse(line.time))) return 'event time is not a date';
    return undefined;
  }
}

/** Signs a batch as a node does (`sign`: the host key's Ed25519 signature of the bytes). */
export function signNodeAudit(
  cert: string,
  payload: NodeAuditPayload,
  sign: (data: Buffer) => Buffer,
): NodeAuditRequest {
  const text = JSON.stringify(payload);
  const sig = sign(Buffer.from(NODE_AUDIT_SIGNING_PREFIX + text, 'utf8')).toString('base64');
  return { cert, sig, payload: text };
}

/** The key id a certificate that failed verification claims (for the refusal's audit event only). */
function claimedName(cert: unknown): string {
  try {
    return typeof cert === 'string' ? parseSshCertificate(cert).keyId.slice(0, 64) : 'unknown';
  } catch {
    return 'unknown';
  }
}
