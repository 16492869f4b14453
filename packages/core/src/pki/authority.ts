import { createPrivateKey, generateKeyPairSync, type KeyObject, randomBytes } from 'node:crypto';
import type { AuditEmitter, AuditEventInput, HeadSigner } from '@gatehouse/audit';
import type { Backend } from '../backend/types.js';
import type { Clock } from '../clock.js';
import type { Sealer } from '../crypto/seal.js';
import { GatehouseError, isGatehouseError } from '../errors.js';
import type { Route } from '../identity/types.js';
import { formatDuration } from '../util/duration.js';
import { type LoadedAuditKey, loadOrCreateAuditKey } from './audit-key.js';
import { encodeIdentityJson, mfaTargetJson } from './identity-codec.js';
import {
  type CertRole,
  checkTransition,
  dueAt,
  fingerprints,
  type KeyFingerprints,
  nextAutoPhase,
  signingKeyId,
} from './rotation.js';
import {
  EMPTY_SESSION_POLICY,
  ed25519PublicKeyToSsh,
  isEmptySessionPolicy,
  parseSshPublicKey,
  SESSION_ID_PATTERN,
  SESSION_MFA_REQUIRED,
  SSH_IDENTITY_EXTENSION,
  SSH_SESSION_ID_EXTENSION,
  SSH_SESSION_MFA_OPTION,
  SSH_SESSION_POLICY_EXTENSION,
  SshCertSigner,
  type SshOptions,
  sourceAddressList,
} from './sshcert.js';
import type {
  CaExportFormat,
  CaKeyPublic,
  CaName,
  CaRecord,
  CaRotation,
  IssuedCertificate,
  RotationPhase,
  SshHostCertRequest,
  SshUserCertRequest,
  X509DbClientCertRequest,
  X509GatewayCertRequest,
  X509ServerCertRequest,
  X509UserCertRequest,
} from './types.js';
import { createX509Ca, spkiPin, X509Issuer } from './x509.js';

export type { CaExportFormat, IssuedCertificate } from './types.js';

export const CA_NAMES: readonly CaName[] = ['user', 'host', 'db'];

/** Clock skew allowance: certificates become valid this long before they were asked to. */
export const BACKDATE_MS = 60_000;

const CA_VALIDITY_MS = 10 * 365.25 * 24 * 3600 * 1000;

export interface CertificateAuthoritiesDeps {
  backend: Backend;
  sealer: Sealer;
  clock: Clock;
  clusterName: string;
  audit: AuditEmitter;
}

type StoredKey = CaRecord['keys'][number];

interface LoadedKey {
  pub: CaKeyPublic;
  ssh: SshCertSigner;
  x509: X509Issuer;
}

interface LoadedCa {
  keys: LoadedKey[];
  rotation: CaRotation | undefined;
  /** The backend revision it was read at (rotation steps compare-and-swap on it). */
  revision: number;
}

/** What a CA signs with by default when a caller asks for "its signing key". */
const DEFAULT_ROLE: Record<CaName, CertRole> = { user: 'client', host: 'server', db: 'client' };

/** One CA as `gatehouse ca status` shows it. */
export interface CaStatus {
  type: CaName;
  /** standby when not rotating. */
  phase: RotationPhase;
  mode?: 'auto' | 'manual';
  grace?: string;
  started?: string;
  phase_started?: string;
  /** When automatic mode moves on to the next phase. */
  next_phase_at?: string;
  next_phase?: RotationPhase;
  /** The last rotation's outcome, once at standby. */
  last_result?: 'completed' | 'rolled_back';
  /** Every trusted key, newest first; `signing`: the one that signs the CA's certificates now. */
  keys: (KeyFingerprints & { created: string; role: 'current' | 'new' | 'old'; signing: boolean })[];
}

/** A rotation step: a phase (manual), or nothing to start an automatic rotation. */
export interface RotateRequest {
  phase?: RotationPhase;
  /** Default: auto when no phase is given, manual otherwise. */
  mode?: 'auto' | 'manual';
  /** Grace period (automatic mode); default 24h. */
  graceMs?: number;
  /** Who asked (audit). */
  actor?: string;
}

export const DEFAULT_ROTATION_GRACE_MS = 24 * 3_600_000;

export function caBackendKey(name: CaName): string {
  return `cas/${name}`;
}

function sealAad(name: CaName, keyId: string, kind: 'ssh' | 'x509'): string {
  return `ca/${name}/${keyId}/${kind}`;
}

function routeFields(route: Route | undefined): Record<string, string> | undefined {
  if (!route) return undefined;
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(route)) if (typeof v === 'string') out[k] = v;
  return out;
}

function parseRecord(raw: string, name: CaName, clusterName: string): CaRecord {
  let rec: CaRecord;
  try {
    rec = JSON.parse(raw) as CaRecord;
  } catch (cause) {
    throw new GatehouseError('GH_ERR_INTERNAL', `CA record ${caBackendKey(name)} is not valid JSON`, {
      cause,
    });
  }
  const keysOk =
    Array.isArray(rec.keys) &&
    rec.keys.length > 0 &&
    rec.keys.every(
      (k) =>
        typeof k?.id === 'string' &&
        typeof k.createdAt === 'string' &&
        typeof k.sshPublicKey === 'string' &&
        typeof k.x509CertPem === 'string' &&
        typeof k.sealedSshPrivateKey === 'string' &&
        typeof k.sealedX509PrivateKey === 'string',
    );
  if (rec?.name !== name || !keysOk) {
    throw new GatehouseError('GH_ERR_INTERNAL', `CA record ${caBackendKey(name)} is malformed`, {
      hint: 'Restore the backend from a backup; Gatehouse will not replace a CA it cannot read.',
    });
  }
  if (rec.clusterName !== clusterName) {
    throw new GatehouseError(
      'GH_ERR_CONFIG_INVALID',
      `the backend holds CAs of cluster "${rec.clusterName}", not "${clusterName}"`,
      {
        hint: 'Set cluster_name to the name the data directory was created with, or use a new data directory.',
      },
    );
  }
  return rec;
}

/**
 * The cluster's certificate authorities (user, host, db). Keys live sealed in
 * the backend; `init()` unseals them once into memory, so issuing a
 * certificate never touches the backend or the sealer.
 */
export class CertificateAuthorities {
  readonly #deps: CertificateAuthoritiesDeps;
  readonly #cas = new Map<CaName, LoadedCa>();
  /** Unsealed keys by CA and id: a reload unseals only keys it has not seen. */
  readonly #unsealed = new Map<string, LoadedKey>();
  readonly #listeners = new Set<(name: CaName) => void>();
  #auditKey: LoadedAuditKey | undefined;

  constructor(deps: CertificateAuthoritiesDeps) {
    for (const k of ['backend', 'sealer', 'clock', 'clusterName', 'audit'] as const) {
      if (!deps[k])
        throw new GatehouseError('GH_ERR_INTERNAL', `CertificateAuthorities: missing dependency ${k}`);
    }
    this.#deps = deps;
  }

  /** Loads every CA, creating the missing ones. Safe to run in several processes at once. */
  async init(): Promise<void> {
    for (const name of CA_NAMES) this.#cas.set(name, await this.#loadOrCreate(name));
    this.#auditKey = await loadOrCreateAuditKey(this.#deps);
  }

  /** Signs the heads of the hash-chained audit files (decision 0029). */
  auditSigner(): HeadSigner {
    return this.#loadedAuditKey().signer;
  }

  /** The audit keys' public halves (SPKI PEM) by key id, for `audit verify`. */
  auditPublicKeys(): Record<string, string> {
    return { ...this.#loadedAuditKey().publicKeys };
  }

  #loadedAuditKey(): LoadedAuditKey {
    if (!this.#auditKey) {
      throw new GatehouseError('GH_ERR_INTERNAL', 'the audit key is not loaded', {
        hint: 'Call CertificateAuthorities.init() first.',
      });
    }
    return this.#auditKey;
  }

  async #loadOrCreate(name: CaName): Promise<LoadedCa> {
    const { backend, clusterName } = this.#deps;
    const key = caBackendKey(name);
    const existing = await backend.get(key);
    if (existing) return this.#load(parseRecord(existing.value, name, clusterName), existing.revision);
    const record: CaRecord = { name, clusterName, keys: [await this.#generateKey(name)] };
    let item: { revision: number };
    try {
      item = await backend.create(key, JSON.stringify(record));
    } catch (e) {
      if (!isGatehouseError(e, 'GH_ERR_ALREADY_EXISTS')) throw e;
      // Another process created it first: theirs wins, ours is discarded unused.
      const theirs = await backend.get(key);
      if (!theirs)
        throw new GatehouseError('GH_ERR_INTERNAL', `${key} vanished while being created`, { cause: e });
      return this.#load(parseRecord(theirs.value, name, clusterName), theirs.revision);
    }
    for (const k of record.keys) {
      await this.#deps.audit.emit({ type: 'ca.create', user: 'system', ca: name, key_id: k.id });
    }
    return this.#load(record, item.revision);
  }

  #load(rec: CaRecord, revision: number): LoadedCa {
    return { keys: this.#unseal(rec), rotation: rec.rotation, revision };
  }

  /**
   * Re-reads every CA from the backend: another process (or `gatehouse ca
   * rotate` against the data dir) may have moved a rotation on. Calls the
   * change listeners for each CA whose keys or phase changed.
   */
  async reload(): Promise<CaName[]> {
    const changed: CaName[] = [];
    for (const name of CA_NAMES) {
      const item = await this.#deps.backend.get(caBackendKey(name));
      if (!item) continue;
      const before = this.#cas.get(name);
      if (before && before.revision === item.revision) continue;
      this.#cas.set(name, this.#load(parseRecord(item.value, name, this.#deps.clusterName), item.revision));
      changed.push(name);
    }
    for (const name of changed) this.#notify(name);
    return changed;
  }

  /** Called with a CA's name after its keys or rotation phase changed (here or by a reload). */
  onChange(listener: (name: CaName) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #notify(name: CaName): void {
    for (const l of this.#listeners) l(name);
  }

  async #generateKey(name: CaName): Promise<StoredKey> {
    const { sealer, clock, clusterName } = this.#deps;
    const id = randomBytes(8).toString('hex');
    const now = clock.now();
    const ssh = generateKeyPairSync('ed25519');
    const x509 = await createX509Ca({
      commonName: `Gatehouse ${name} CA`,
      organization: clusterName,
      notBefore: new Date(now.getTime() - BACKDATE_MS),
      notAfter: new Date(now.getTime() + CA_VALIDITY_MS),
    });
    const sshPem = ssh.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
    return {
      id,
      createdAt: now.toISOString(),
      sshPublicKey: ed25519PublicKeyToSsh(ssh.publicKey, `gatehouse ${clusterName} ${name} CA`),
      x509CertPem: x509.certPem,
      sealedSshPrivateKey: sealer.seal(sshPem, sealAad(name, id, 'ssh')),
      sealedX509PrivateKey: sealer.seal(x509.privateKeyPem, sealAad(name, id, 'x509')),
    };
  }

  #unseal(rec: CaRecord): LoadedKey[] {
    return rec.keys.map((k: StoredKey) => {
      const cacheKey = `${rec.name}/${k.id}`;
      let loaded = this.#unsealed.get(cacheKey);
      if (!loaded) {
        loaded = this.#unsealKey(rec.name, k);
        this.#unsealed.set(cacheKey, loaded);
      }
      return loaded;
    });
  }

  #unsealKey(name: CaName, k: StoredKey): LoadedKey {
    const { sealer } = this.#deps;
    const sshKey: KeyObject = createPrivateKey(
      sealer.open(k.sealedSshPrivateKey, sealAad(name, k.id, 'ssh')),
    );
    const x509Key: KeyObject = createPrivateKey(
      sealer.open(k.sealedX509PrivateKey, sealAad(name, k.id, 'x509')),
    );
    const signer = new SshCertSigner(sshKey);
    // A record whose public half does not match its private half would
    // hand out certificates nobody trusts; refuse it at load time.
    if (!signer.publicKeyBlob.equals(parseSshPublicKey(k.sshPublicKey).blob)) {
      throw new GatehouseError('GH_ERR_INTERNAL', `CA ${name} key ${k.id}: SSH public key does not match`);
    }
    const pub: CaKeyPublic = {
      id: k.id,
      createdAt: k.createdAt,
      sshPublicKey: k.sshPublicKey,
      x509CertPem: k.x509CertPem,
    };
    return { pub, ssh: signer, x509: new X509Issuer(k.x509CertPem, x509Key) };
  }

  #ca(name: CaName): LoadedCa {
    const ca = this.#cas.get(name);
    if (!ca || ca.keys.length === 0) {
      throw new GatehouseError('GH_ERR_INTERNAL', `CA "${name}" is not loaded`, {
        hint: 'Call CertificateAuthorities.init() before issuing certificates.',
      });
    }
    return ca;
  }

  #signer(name: CaName, role: CertRole = DEFAULT_ROLE[name]): LoadedKey {
    const ca = this.#ca(name);
    const id = signingKeyId(ca.rotation, role, (ca.keys[0] as LoadedKey).pub.id);
    const key = ca.keys.find((k) => k.pub.id === id);
    // Fail closed: a rotation naming a key the record does not hold signs nothing.
    if (!key) throw new GatehouseError('GH_ERR_INTERNAL', `CA ${name}: the signing key ${id} is missing`);
    return key;
  }

  /** Every trusted key of a CA, newest first: during a rotation the new and the old one. */
  get(name: CaName): CaKeyPublic[] {
    return this.#ca(name).keys.map((k) => k.pub);
  }

  /** The key that signs new certificates of `role` (default: what the CA issues: host server, user and db client). */
  signingKey(name: CaName, role?: CertRole): CaKeyPublic {
    return this.#signer(name, role).pub;
  }

  /** The CA's rotation, or undefined when it was never rotated. */
  rotation(name: CaName): CaRotation | undefined {
    const r = this.#ca(name).rotation;
    return r ? { ...r } : undefined;
  }

  /** Phase and key fingerprints of each CA (`gatehouse ca status`). */
  status(): CaStatus[] {
    return CA_NAMES.map((name) => {
      const ca = this.#ca(name);
      const r = ca.rotation;
      const rotating = r !== undefined && r.phase !== 'standby';
      const due = dueAt(r);
      const next = r ? nextAutoPhase(r.phase) : undefined;
      return {
        type: name,
        phase: r?.phase ?? 'standby',
        ...(r
          ? {
              mode: r.mode,
              grace: formatDuration(r.grace_ms),
              started: r.started,
              phase_started: r.phase_started,
            }
          : {}),
        ...(due !== undefined && next
          ? { next_phase_at: new Date(due).toISOString(), next_phase: next }
          : {}),
        ...(r?.result ? { last_result: r.result } : {}),
        keys: ca.keys.map((k) => ({
          ...fingerprints(k.pub),
          created: k.pub.createdAt,
          role: !rotating ? 'current' : k.pub.id === r.new_key_id ? 'new' : 'old',
          signing: this.#signer(name) === k,
        })),
      };
    });
  }

  /**
   * Moves a CA's rotation to `req.phase` (or starts an automatic one). The
   * step is a compare-and-swap on the stored record, so two gateways (or a
   * rotation started twice) cannot both take it; the loser gets
   * GH_ERR_CA_ROTATION. Every step is audited (`ca.rotate`) before it is
   * reported done, and the change listeners run.
   */
  async rotate(name: CaName, req: RotateRequest = {}): Promise<CaStatus> {
    const { backend, clock, clusterName } = this.#deps;
    const key = caBackendKey(name);
    const item = await backend.get(key);
    if (!item) throw new GatehouseError('GH_ERR_INTERNAL', `CA record ${key} is missing`);
    const rec = parseRecord(item.value, name, clusterName);
    const from: RotationPhase = rec.rotation?.phase ?? 'standby';
    const to: RotationPhase = req.phase ?? 'init';
    checkTransition(name, from, to);
    const now = clock.now().toISOString();
    let next: CaRecord;
    if (to === 'init') {
      const fresh = await this.#generateKey(name);
      const old = rec.keys[0] as StoredKey;
      next = {
        ...rec,
        keys: [fresh, old],
        rotation: {
          phase: 'init',
          mode: req.mode ?? (req.phase ? 'manual' : 'auto'),
          grace_ms: req.graceMs ?? DEFAULT_ROTATION_GRACE_MS,
          started: now,
          phase_started: now,
          old_key_id: old.id,
          new_key_id: fresh.id,
        },
      };
    } else {
      const r = rec.rotation as CaRotation;
      const keep = to !== 'standby' ? undefined : from === 'rollback' ? r.old_key_id : r.new_key_id;
      const { result: _last, ...rest } = r;
      next = {
        ...rec,
        keys: keep === undefined ? rec.keys : rec.keys.filter((k) => k.id === keep),
        rotation: {
          ...rest,
          phase: to,
          phase_started: now,
          ...(req.mode ? { mode: req.mode } : {}),
          ...(to === 'standby' ? { result: from === 'rollback' ? 'rolled_back' : 'completed' } : {}),
        },
      };
      if (next.keys.length === 0) {
        throw new GatehouseError('GH_ERR_INTERNAL', `CA ${name}: the rotation's key ${keep} is missing`);
      }
    }
    let stored: { revision: number };
    try {
      stored = await backend.compareAndSwap(key, item.revision, JSON.stringify(next));
    } catch (e) {
      if (!isGatehouseError(e, 'GH_ERR_CONFLICT')) throw e;
      throw new GatehouseError('GH_ERR_CA_ROTATION', `the ${name} CA changed while this step ran`, {
        hint: 'Another gateway or admin moved the rotation on; check "gatehouse ca status" and try again.',
        cause: e,
      });
    }
    const r = next.rotation as CaRotation;
    const fp = (id: string) => {
      const k = [...rec.keys, ...next.keys].find((x) => x.id === id);
      return k ? fingerprints(k) : undefined;
    };
    const oldKey = fp(r.old_key_id);
    const newKey = fp(r.new_key_id);
    await this.#deps.audit.emit({
      type: 'ca.rotate',
      user: req.actor ?? 'system',
      ca: name,
      phase: to,
      previous_phase: from,
      mode: r.mode,
      ...(oldKey ? { old_key: oldKey } : {}),
      ...(newKey ? { new_key: newKey } : {}),
    });
    this.#cas.set(name, this.#load(next, stored.revision));
    this.#notify(name);
    return this.status().find((s) => s.type === name) as CaStatus;
  }

  /**
   * Automatic mode: moves every CA whose phase has lasted its share of the
   * grace period on by one phase. The gateway calls it on a timer and at
   * start (a restarted gateway resumes where the backend says it was).
   */
  async advanceDue(): Promise<CaName[]> {
    await this.reload();
    const moved: CaName[] = [];
    const now = this.#deps.clock.now().getTime();
    for (const name of CA_NAMES) {
      const r = this.#ca(name).rotation;
      const due = dueAt(r);
      const next = r ? nextAutoPhase(r.phase) : undefined;
      if (due === undefined || !next || due > now) continue;
      try {
        await this.rotate(name, { phase: next, actor: 'system' });
        moved.push(name);
      } catch (e) {
        // Another gateway took the step first: the next reload shows it.
        if (!isGatehouseError(e, 'GH_ERR_CA_ROTATION')) throw e;
      }
    }
    return moved;
  }

  /** When automatic mode next has a step to take (ms since epoch), if any CA is rotating automatically. */
  nextDue(): number | undefined {
    const dues = CA_NAMES.map((n) => dueAt(this.#cas.get(n)?.rotation)).filter(
      (d): d is number => d !== undefined,
    );
    return dues.length > 0 ? Math.min(...dues) : undefined;
  }

  #window(after: Date, before: Date): { from: Date; to: Date } {
    if (!(before.getTime() > after.getTime())) {
      throw new GatehouseError('GH_ERR_VALIDATION', 'certificate must expire after it becomes valid');
    }
    return { from: new Date(after.getTime() - BACKDATE_MS), to: before };
  }

  async #audited(cert: IssuedCertificate, event: AuditEventInput): Promise<IssuedCertificate> {
    // Fail closed: a certificate whose issuance cannot be audited is not handed out.
    await this.#deps.audit.emit(event);
    return cert;
  }

  async issueSshUserCert(req: SshUserCertRequest): Promise<IssuedCertificate> {
    if (!req.keyId)
      throw new GatehouseError('GH_ERR_VALIDATION', 'SSH user certificates need a key id (the user name)');
    if (req.principals.length === 0 || req.principals.some((p) => p === '')) {
      throw new GatehouseError('GH_ERR_VALIDATION', 'SSH user certificates need at least one login', {
        hint: 'An empty principal list would be valid for every login; grant logins through roles.',
      });
    }
    if (req.identity && req.identity.user !== req.keyId) {
      throw new GatehouseError('GH_ERR_VALIDATION', 'SSH certificate key id must equal the identity user');
    }
    const { from, to } = this.#window(req.validAfter, req.validBefore);
    const extensions: SshOptions = {};
    if (req.permitPty ?? true) extensions['permit-pty'] = '';
    if (req.permitPortForwarding) extensions['permit-port-forwarding'] = '';
    if (req.permitAgentForwarding) extensions['permit-agent-forwarding'] = '';
    if (req.permitX11Forwarding) extensions['permit-X11-forwarding'] = '';
    if (req.permitUserRc) extensions['permit-user-rc'] = '';
    if (req.identity) extensions[SSH_IDENTITY_EXTENSION] = encodeIdentityJson(req.identity);
    // Always written, empty when there is nothing to enforce: a node refuses a
    // certificate without it (one minted before nodes enforced policies would
    // otherwise run its session unrestricted). See decision 0023.
    const policy = req.sessionPolicy ?? EMPTY_SESSION_POLICY;
    const paths = policy.recordingPaths;
    const policyJson = JSON.stringify({
      enhanced_recording: policy.enhancedRecording,
      restrict_network: policy.restrictNetwork,
      // Only when a role sets it: certificates of roles without it stay as they were.
      ...(paths && paths.include.length + paths.exclude.length > 0 ? { recording_paths: paths } : {}),
    });
    extensions[SSH_SESSION_POLICY_EXTENSION] = policyJson;
    if (req.sessionId !== undefined) {
      if (!SESSION_ID_PATTERN.test(req.sessionId)) {
        throw new GatehouseError(
          'GH_ERR_VALIDATION',
          'a session id is letters, digits, dots, dashes and underscores',
        );
      }
      extensions[SSH_SESSION_ID_EXTENSION] = req.sessionId;
    }
    const criticalOptions: SshOptions = {};
    // Something to enforce: critical too, so a server that does not know it (OpenSSH refuses an
    // unknown critical option) refuses the certificate instead of running the session unrestricted.
    if (!isEmptySessionPolicy(policy)) criticalOptions[SSH_SESSION_POLICY_EXTENSION] = policyJson;
    // Per-session MFA: the bound target on a check's certificate, `required` on a login certificate
    // whose roles ask for the check; only the gateway's proxy accepts either (OpenSSH refuses them).
    if (req.identity?.sessionMfa)
      criticalOptions[SSH_SESSION_MFA_OPTION] = mfaTargetJson(req.identity.sessionMfa.target);
    else if (req.sessionMfaRequired) criticalOptions[SSH_SESSION_MFA_OPTION] = SESSION_MFA_REQUIRED;
    if (req.sourceAddress !== undefined) {
      sourceAddressList(req.sourceAddress);
      criticalOptions['source-address'] = req.sourceAddress;
    }
    const serial = randomBytes(8).readBigUInt64BE();
    const { line } = this.#signer('user', 'client').ssh.sign(
      {
        type: 'user',
        publicKey: req.publicKey,
        serial,
        keyId: req.keyId,
        principals: req.principals,
        validAfter: from,
        validBefore: to,
        criticalOptions,
        extensions,
      },
      req.keyId,
    );
    const issued = { cert: line, serial: serial.toString(), expires: to };
    return this.#audited(issued, {
      type: 'cert.create',
      cert_type: 'ssh-user',
      user: req.keyId,
      identity: req.keyId,
      serial: issued.serial,
      principals: req.principals,
      ...(req.identity ? { roles: req.identity.roles } : {}),
      ...(req.identity?.route ? { route: routeFields(req.identity.route) } : {}),
      ...(req.sessionId !== undefined ? { session_id: req.sessionId } : {}),
      expires: to.toISOString(),
    });
  }

  async issueSshHostCert(req: SshHostCertRequest): Promise<IssuedCertificate> {
    if (!req.keyId || req.principals.length === 0 || req.principals.some((p) => p === '')) {
      throw new GatehouseError('GH_ERR_VALIDATION', 'SSH host certificates need a key id and host names', {
        hint: 'Principals are the names clients use to reach the host (e.g. node1, node1.example.com, 10.0.0.5).',
      });
    }
    const { from, to } = this.#window(req.validAfter, req.validBefore);
    const serial = randomBytes(8).readBigUInt64BE();
    const { line } = this.#signer('host', 'server').ssh.sign(
      {
        type: 'host',
        publicKey: req.publicKey,
        serial,
        keyId: req.keyId,
        principals: req.principals,
        validAfter: from,
        validBefore: to,
      },
      req.keyId,
    );
    const issued = { cert: line, serial: serial.toString(), expires: to };
    return this.#audited(issued, {
      type: 'cert.create',
      cert_type: 'ssh-host',
      user: req.actor ?? 'system',
      identity: req.keyId,
      serial: issued.serial,
      principals: req.principals,
      expires: to.toISOString(),
    });
  }

  async issueX509UserCert(req: X509UserCertRequest): Promise<IssuedCertificate> {
    const { from, to } = this.#window(req.notBefore, req.notAfter);
    const x = this.#signer('user', 'client').x509.issueUser({ ...req, notBefore: from, notAfter: to });
    const issued = { cert: x.pem, serial: x.serial, expires: to };
    return this.#audited(issued, {
      type: 'cert.create',
      cert_type: 'x509-user',
      user: req.identity.user,
      identity: req.identity.user,
      serial: x.serial,
      roles: req.identity.roles,
      ...(req.identity.route ? { route: routeFields(req.identity.route) } : {}),
      expires: to.toISOString(),
    });
  }

  async issueX509ServerCert(req: X509ServerCertRequest): Promise<IssuedCertificate> {
    const { from, to } = this.#window(req.notBefore, req.notAfter);
    const signer = this.#signer('host', 'server');
    const x = signer.x509.issueServer({ ...req, notBefore: from, notAfter: to }, this.#deps.clusterName);
    const issued = { cert: x.pem, serial: x.serial, expires: to, caCertPem: signer.pub.x509CertPem };
    return this.#audited(issued, {
      type: 'cert.create',
      cert_type: 'x509-server',
      user: 'system',
      identity: req.commonName,
      serial: x.serial,
      principals: [...req.dnsNames, ...req.ipAddresses],
      expires: to.toISOString(),
    });
  }

  /** A gateway's certificate for the internal channel (host CA, decision 0039-gateway-peers). */
  async issueGatewayCert(req: X509GatewayCertRequest): Promise<IssuedCertificate> {
    const { from, to } = this.#window(req.notBefore, req.notAfter);
    const signer = this.#signer('host', 'server');
    const x = signer.x509.issueGateway({ ...req, notBefore: from, notAfter: to }, this.#deps.clusterName);
    const issued = { cert: x.pem, serial: x.serial, expires: to, caCertPem: signer.pub.x509CertPem };
    return this.#audited(issued, {
      type: 'cert.create',
      cert_type: 'x509-gateway',
      user: 'system',
      identity: req.name,
      serial: x.serial,
      expires: to.toISOString(),
    });
  }

  async issueDbClientCert(req: X509DbClientCertRequest): Promise<IssuedCertificate> {
    const { from, to } = this.#window(req.notBefore, req.notAfter);
    const x = this.#signer('db', 'client').x509.issueDbClient(
      { ...req, notBefore: from, notAfter: to },
      this.#deps.clusterName,
    );
    const issued = { cert: x.pem, serial: x.serial, expires: to };
    return this.#audited(issued, {
      type: 'cert.create',
      cert_type: 'x509-db',
      user: 'system',
      identity: req.dbUser,
      serial: x.serial,
      expires: to.toISOString(),
    });
  }

  /** PEMs of every active X.509 key of a CA, newest first. */
  trustedX509Pems(name: CaName): string[] {
    return this.get(name).map((k) => k.x509CertPem);
  }

  /** `sha256:<hex>` SPKI pin of the host CA's newest X.509 certificate (what clients pass as --ca-pin). */
  caPin(): string {
    return spkiPin(this.signingKey('host').x509CertPem);
  }

  /** Public trust material in the form each target expects. Never contains private keys. */
  export(format: CaExportFormat, opts: { type?: CaName; hosts?: string } = {}): string {
    // Each PEM on its own lines: a bundle of two (a rotation) glued "-----END ...----------BEGIN" is unreadable.
    const pems = (name: CaName) =>
      this.trustedX509Pems(name)
        .map((p) => p.trimEnd())
        .join('\n');
    const sshLines = (name: CaName) => this.get(name).map((k) => k.sshPublicKey);
    switch (format) {
      case 'sshd':
        return `${sshLines(opts.type ?? 'user').join('\n')}\n`;
      case 'known_hosts': {
        const hosts = opts.hosts ?? '*';
        if (/\s/.test(hosts) || hosts === '') {
          throw new GatehouseError('GH_ERR_VALIDATION', 'known_hosts host patterns must not contain spaces', {
            hint: 'Separate patterns with commas, e.g. "*.example.com,10.0.0.*".',
          });
        }
        return `${sshLines('host')
          .map((l) => `@cert-authority ${hosts} ${l}`)
          .join('\n')}\n`;
      }
      case 'x509':
        return pems(opts.type ?? 'user');
      case 'postgres':
      case 'mariadb':
        return pems('db');
      case 'kube':
        return pems('host');
      default: {
        const never: never = format;
        throw new GatehouseError('GH_ERR_VALIDATION', `unknown export format "${String(never)}"`, {
          hint: 'Use one of: sshd, known_hosts, x509, postgres, mariadb, kube.',
        });
      }
    }
  }
}
