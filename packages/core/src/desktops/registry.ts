import { X509Certificate } from 'node:crypto';
import type { AuditEmitter } from '@gatehouse/audit';
import { Grant } from '../authz/grant.js';
import type { Backend } from '../backend/types.js';
import type { Sealer } from '../crypto/seal.js';
import { GatehouseError, isGatehouseError } from '../errors.js';
import { readSecretFile } from '../util/secret-file.js';
import { putStatic } from '../util/static-entries.js';

/** A Windows account the gateway logs in with (the user never sees it). */
export interface DesktopCredential {
  login: string;
  password: string;
  domain?: string | undefined;
}

/**
 * An RDP desktop Gatehouse fronts. Its TLS certificate must be trusted one
 * way: a CA (`caPem`), a pinned SHA-256 fingerprint, or explicitly not at all
 * (`insecureSkipVerify`, audited on every session). Credentials are stored
 * sealed and handed out only for a Grant.
 */
export interface DesktopSpec {
  name: string;
  /** host:port of its RDP server (port 3389 when omitted). */
  addr: string;
  labels: Record<string, string>;
  description?: string | undefined;
  /** PEM of the CA(s) that sign the desktop's TLS certificate. */
  caPem?: string | undefined;
  /** SHA-256 fingerprint of the desktop's TLS certificate, hex (colons allowed). */
  tlsFingerprint?: string | undefined;
  /** Name to check in the certificate when verifying against a CA; default: the host of `addr`. */
  serverName?: string | undefined;
  /** Accept any certificate (test desktops with self-signed certificates). Audited per session. */
  insecureSkipVerify?: boolean | undefined;
  /** Windows accounts by login; never listed. */
  credentials?: DesktopCredential[] | undefined;
  source?: 'config' | 'dynamic' | undefined;
}

interface StoredDesktop extends Omit<DesktopSpec, 'credentials' | 'source'> {
  /** JSON of DesktopCredential[], sealed with the record's key as AAD. */
  sealedCredentials?: string | undefined;
}

const PREFIX = 'desktops/';
const NAME_RE = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
const FINGERPRINT_RE = /^([0-9a-f]{2}:?){31}[0-9a-f]{2}$/i;
const RDP_PORT = 3389;

/** host and port of a desktop's `addr`: "host:port", "[v6]:port", or a bare host (port 3389). */
export function desktopHostPort(spec: Pick<DesktopSpec, 'addr'>): { host: string; port: number } {
  const addr = spec.addr.trim();
  const v6 = /^\[([^\]]+)\](?::(\d{1,5}))?$/.exec(addr);
  if (v6) return { host: v6[1]!, port: v6[2] === undefined ? RDP_PORT : Number(v6[2]) };
  const parts = addr.split(':');
  if (parts.length === 1) return { host: addr, port: RDP_PORT };
  if (parts.length === 2 && /^\d{1,5}$/.test(parts[1]!)) return { host: parts[0]!, port: Number(parts[1]) };
  return { host: '', port: Number.NaN };
}

/** The fingerprint in one spelling: lowercase hex without colons. */
export function normalizeFingerprint(f: string): string {
  return f.replace(/:/g, '').toLowerCase();
}

function invalid(msg: string, hint: string): GatehouseError {
  return new GatehouseError('GH_ERR_VALIDATION', msg, { hint });
}

/** Checks names, labels, the address, exactly one trust mode and the credentials (no network). */
export function validateDesktop(spec: DesktopSpec): DesktopSpec {
  if (!NAME_RE.test(spec.name)) {
    throw invalid(
      `desktop name "${spec.name}" is invalid`,
      'use lowercase letters, digits and dashes (a DNS label)',
    );
  }
  if (typeof spec.addr !== 'string' || spec.addr === '') {
    throw invalid(`desktop "${spec.name}" has no address`, 'pass --addr HOST:PORT');
  }
  const { host, port } = desktopHostPort(spec);
  if (!host || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw invalid(`desktop address "${spec.addr}" is invalid`, 'use HOST:PORT, e.g. 10.0.0.5:3389');
  }
  for (const [k, v] of Object.entries(spec.labels ?? {})) {
    if (typeof v !== 'string' || !/^[A-Za-z0-9._/-]{1,63}$/.test(k)) {
      throw invalid(`label "${k}" is invalid`, 'labels are key=value');
    }
  }
  const modes = [
    spec.caPem !== undefined,
    spec.tlsFingerprint !== undefined,
    spec.insecureSkipVerify === true,
  ];
  const count = modes.filter(Boolean).length;
  if (count === 0) {
    throw invalid(
      `desktop "${spec.name}" has no way to trust its TLS certificate`,
      'give --ca-file FILE (the CA that signs it), --fingerprint SHA256 (pin it), or --insecure-skip-verify (test desktops only)',
    );
  }
  if (count > 1) {
    throw invalid(
      `desktop "${spec.name}": ca, fingerprint and insecure_skip_verify exclude each other`,
      'pick one way to trust the desktop certificate',
    );
  }
  if (spec.caPem !== undefined) {
    try {
      new X509Certificate(spec.caPem);
    } catch (cause) {
      throw new GatehouseError(
        'GH_ERR_VALIDATION',
        `the CA of desktop "${spec.name}" is not a PEM certificate`,
        {
          hint: 'pass the CA certificate file in PEM form',
          cause,
        },
      );
    }
  }
  if (spec.tlsFingerprint !== undefined && !FINGERPRINT_RE.test(spec.tlsFingerprint)) {
    throw invalid(
      `the fingerprint of desktop "${spec.name}" is not a SHA-256 fingerprint`,
      'give 64 hex digits (colons allowed): openssl x509 -noout -fingerprint -sha256 -in cert.pem',
    );
  }
  const logins = new Set<string>();
  for (const c of spec.credentials ?? []) {
    if (
      typeof c.login !== 'string' ||
      c.login.length < 1 ||
      c.login.length > 256 ||
      /[\0\r\n]/.test(c.login)
    ) {
      throw invalid(
        `desktop "${spec.name}" has a credential with an invalid login`,
        'give a Windows user name',
      );
    }
    if (typeof c.password !== 'string' || c.password.length > 256) {
      throw invalid(
        `the password of ${c.login} on desktop "${spec.name}" is invalid`,
        'at most 256 characters',
      );
    }
    if (logins.has(c.login)) {
      throw invalid(`desktop "${spec.name}" has two credentials for ${c.login}`, 'give each login once');
    }
    logins.add(c.login);
  }
  return {
    ...spec,
    labels: spec.labels ?? {},
    ...(spec.tlsFingerprint !== undefined
      ? { tlsFingerprint: normalizeFingerprint(spec.tlsFingerprint) }
      : {}),
  };
}

/** A desktop for listings: never its credentials, only which logins have one. */
export type DesktopListing = Omit<DesktopSpec, 'credentials'> & { logins: string[] };

/**
 * Registered desktops: static ones (config `desktops:`, adapter options) and
 * dynamic ones in the backend at `desktops/<name>` (`gatehouse desktops add`,
 * the API). Credentials of dynamic desktops are sealed with the gateway's
 * at-rest key bound to the record key, like kubeconfigs.
 */
export class DesktopRegistry {
  readonly #backend: Backend;
  readonly #audit: AuditEmitter;
  readonly #sealer: Sealer;
  readonly #static = new Map<string, DesktopSpec>();

  constructor(deps: { backend: Backend; audit: AuditEmitter; sealer: Sealer }) {
    this.#backend = deps.backend;
    this.#audit = deps.audit;
    this.#sealer = deps.sealer;
  }

  addStatic(spec: DesktopSpec): void {
    this.replaceStatic([], [spec]);
  }

  /**
   * Swaps the configured entries named `previous` for `next` (a SIGHUP
   * reload); nothing changes when one of `next` is invalid or its name is taken.
   */
  replaceStatic(previous: readonly string[], next: readonly DesktopSpec[]): void {
    putStatic(this.#static, next, {
      validate: (s) => validateDesktop({ ...s, source: 'config' }),
      what: 'desktop',
      hint: 'give each desktop a unique name',
      remove: previous,
    });
  }

  /** The desktop without credentials (what authorization and the relay need). */
  async get(name: string): Promise<DesktopListing | undefined> {
    const s = await this.#full(name);
    return s ? listing(s) : undefined;
  }

  async list(): Promise<DesktopListing[]> {
    const dynamic = await Promise.all(
      (await this.#backend.range(PREFIX)).map((i) => this.#open(JSON.parse(i.value) as StoredDesktop)),
    );
    const all = [...this.#static.values(), ...dynamic.filter((d) => !this.#static.has(d.name))];
    return all.map(listing).sort((a, b) => a.name.localeCompare(b.name));
  }

  /**
   * The stored Windows account for a granted desktop session: only core's
   * Authorizer makes Grants, so only an authorized session gets a password.
   * Undefined when no credential is stored for the login (the target then
   * asks the user itself, e.g. xrdp's login dialog).
   */
  async credentialFor(grant: Grant): Promise<DesktopCredential | undefined> {
    if (!Grant.isGrant(grant) || grant.target.kind !== 'desktop') {
      throw new GatehouseError('GH_ERR_ACCESS_DENIED', 'desktop credentials need a desktop grant', {
        hint: 'authorize the session with core first',
      });
    }
    const login = grant.target.login;
    return (await this.#full(grant.target.name))?.credentials?.find((c) => c.login === login);
  }

  async add(spec: DesktopSpec, actor: string): Promise<DesktopListing> {
    const v = validateDesktop({ ...spec, source: undefined });
    if (this.#static.has(v.name)) {
      throw new GatehouseError('GH_ERR_ALREADY_EXISTS', `desktop "${v.name}" is defined in the config`, {
        hint: 'change it in the config file, or pick another name',
      });
    }
    const key = PREFIX + v.name;
    const { credentials, source: _s, ...rest } = v;
    const stored: StoredDesktop = {
      ...rest,
      ...(credentials?.length
        ? { sealedCredentials: this.#sealer.seal(JSON.stringify(credentials), key) }
        : {}),
    };
    try {
      await this.#backend.create(key, JSON.stringify(stored));
    } catch (err) {
      if (isGatehouseError(err, 'GH_ERR_ALREADY_EXISTS')) {
        throw new GatehouseError('GH_ERR_ALREADY_EXISTS', `desktop "${v.name}" already exists`, {
          hint: `remove it first with gatehouse desktops rm ${v.name}`,
        });
      }
      throw err;
    }
    await this.#audit.emit({
      type: 'desktop.create',
      user: actor,
      name: v.name,
      desktop_addr: v.addr,
      labels: v.labels,
    });
    return listing({ ...v, source: 'dynamic' });
  }

  async remove(name: string, actor: string): Promise<void> {
    if (this.#static.has(name)) {
      throw new GatehouseError('GH_ERR_VALIDATION', `desktop "${name}" is defined in the config`, {
        hint: 'remove it from the config file',
      });
    }
    if (!(await this.#backend.delete(PREFIX + name))) {
      throw new GatehouseError('GH_ERR_NOT_FOUND', `desktop "${name}" not found`, {
        hint: 'list desktops with gatehouse desktops ls',
      });
    }
    await this.#audit.emit({ type: 'desktop.delete', user: actor, name });
  }

  async #full(name: string): Promise<DesktopSpec | undefined> {
    const s = this.#static.get(name);
    if (s) return s;
    const item = await this.#backend.get(PREFIX + name);
    return item ? this.#open(JSON.parse(item.value) as StoredDesktop) : undefined;
  }

  #open(s: StoredDesktop): DesktopSpec {
    const { sealedCredentials, ...rest } = s;
    return {
      ...rest,
      labels: s.labels ?? {},
      ...(sealedCredentials
        ? {
            credentials: JSON.parse(
              this.#sealer.open(sealedCredentials, PREFIX + s.name),
            ) as DesktopCredential[],
          }
        : {}),
      source: 'dynamic',
    };
  }
}

function listing(s: DesktopSpec): DesktopListing {
  const { credentials, ...rest } = s;
  return { ...rest, logins: (credentials ?? []).map((c) => c.login) };
}

/** Reads a desktop password named in the config (its first line; the file is the secret, not the config). */
export function readPasswordFile(file: string): Promise<string> {
  return readSecretFile(file, 'desktops[].credentials[].password_file');
}
