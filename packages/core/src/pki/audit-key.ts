import {
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  type KeyObject,
  randomBytes,
  sign,
} from 'node:crypto';
import type { AuditEmitter, HeadSigner } from '@gatehouse/audit';
import type { Backend } from '../backend/types.js';
import type { Clock } from '../clock.js';
import type { Sealer } from '../crypto/seal.js';
import { GatehouseError, isGatehouseError } from '../errors.js';

/**
 * The audit key: an Ed25519 key of the CA store that signs the heads of the
 * hash-chained audit files and the retention anchor (decision 0029). It is
 * stored like the CA keys: in the backend at `cas/audit`, the private half
 * sealed with the at-rest key, created once by whichever process comes first.
 */
export const AUDIT_KEY_BACKEND_KEY = 'cas/audit';

export interface AuditKeyPublic {
  id: string;
  createdAt: string;
  /** SPKI PEM. */
  publicKeyPem: string;
}

interface AuditKeyRecord {
  name: 'audit';
  clusterName: string;
  /** Newest first: the first signs, all verify. */
  keys: (AuditKeyPublic & { sealedPrivateKey: string })[];
}

function sealAad(id: string): string {
  return `ca/audit/${id}/ed25519`;
}

function parse(raw: string, clusterName: string): AuditKeyRecord {
  let rec: AuditKeyRecord;
  try {
    rec = JSON.parse(raw) as AuditKeyRecord;
  } catch (cause) {
    throw new GatehouseError('GH_ERR_INTERNAL', `${AUDIT_KEY_BACKEND_KEY} is not valid JSON`, { cause });
  }
  const ok =
    rec?.name === 'audit' &&
    Array.isArray(rec.keys) &&
    rec.keys.length > 0 &&
    rec.keys.every(
      (k) =>
        typeof k?.id === 'string' &&
        typeof k.createdAt === 'string' &&
        typeof k.publicKeyPem === 'string' &&
        typeof k.sealedPrivateKey === 'string',
    );
  if (!ok) {
    throw new GatehouseError('GH_ERR_INTERNAL', `${AUDIT_KEY_BACKEND_KEY} is malformed`, {
      hint: 'Restore the backend from a backup; Gatehouse will not replace a key it cannot read.',
    });
  }
  if (rec.clusterName !== clusterName) {
    throw new GatehouseError(
      'GH_ERR_CONFIG_INVALID',
      `the backend holds the audit key of cluster "${rec.clusterName}", not "${clusterName}"`,
      { hint: 'Set cluster_name to the name the data directory was created with.' },
    );
  }
  return rec;
}

export interface AuditKeyDeps {
  backend: Backend;
  sealer: Sealer;
  clock: Clock;
  clusterName: string;
  audit: AuditEmitter;
}

export interface LoadedAuditKey {
  signer: HeadSigner;
  /** Every key's public half by id (for `audit verify`). */
  publicKeys: Record<string, string>;
}

/** Loads the audit key, creating it on first use (safe in several processes at once). */
export async function loadOrCreateAuditKey(deps: AuditKeyDeps): Promise<LoadedAuditKey> {
  const { backend, sealer, clock, clusterName } = deps;
  const existing = await backend.get(AUDIT_KEY_BACKEND_KEY);
  if (existing) return unseal(parse(existing.value, clusterName), sealer);
  const id = randomBytes(8).toString('hex');
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  const record: AuditKeyRecord = {
    name: 'audit',
    clusterName,
    keys: [
      {
        id,
        createdAt: clock.now().toISOString(),
        publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }) as string,
        sealedPrivateKey: sealer.seal(
          privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
          sealAad(id),
        ),
      },
    ],
  };
  try {
    await backend.create(AUDIT_KEY_BACKEND_KEY, JSON.stringify(record));
  } catch (e) {
    if (!isGatehouseError(e, 'GH_ERR_ALREADY_EXISTS')) throw e;
    // Another process created it first: theirs wins.
    const theirs = await backend.get(AUDIT_KEY_BACKEND_KEY);
    if (!theirs)
      throw new GatehouseError('GH_ERR_INTERNAL', `${AUDIT_KEY_BACKEND_KEY} vanished`, { cause: e });
    return unseal(parse(theirs.value, clusterName), sealer);
  }
  await deps.audit.emit({ type: 'ca.create', user: 'system', ca: 'audit', key_id: id });
  return unseal(record, sealer);
}

function unseal(rec: AuditKeyRecord, sealer: Sealer): LoadedAuditKey {
  const newest = rec.keys[0] as AuditKeyRecord['keys'][number];
  const key: KeyObject = createPrivateKey(sealer.open(newest.sealedPrivateKey, sealAad(newest.id)));
  // A record whose halves do not match would sign heads nobody can verify: refuse it at load time.
  const derived = createPublicKey(key).export({ type: 'spki', format: 'pem' }) as string;
  if (derived !== newest.publicKeyPem) {
    throw new GatehouseError('GH_ERR_INTERNAL', `audit key ${newest.id}: public key does not match`);
  }
  const publicKeys: Record<string, string> = {};
  for (const k of rec.keys) publicKeys[k.id] = k.publicKeyPem;
  return { signer: { keyId: newest.id, sign: (data) => sign(null, data, key) }, publicKeys };
}
