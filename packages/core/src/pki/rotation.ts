import { createHash } from 'node:crypto';
import { GatehouseError } from '../errors.js';
import { parseDuration } from '../util/duration.js';
import { parseSshPublicKey } from './sshcert.js';
import type { CaKeyPublic, CaName, CaRotation, RotationPhase } from './types.js';
import { spkiPin } from './x509.js';

/**
 * CA rotation in phases, like Teleport's (docs/decisions/0035-ca-rotation.md):
 *
 * | phase          | trusted  | signs client certs | signs server certs |
 * |----------------|----------|--------------------|--------------------|
 * | standby        | one key  | it                 | it                 |
 * | init           | old, new | old                | old                |
 * | update_clients | old, new | new                | old                |
 * | update_servers | old, new | new                | new                |
 * | rollback       | old, new | old                | old                |
 *
 * Standby after update_servers drops the old key; standby after rollback drops the new one.
 */
export const ROTATION_PHASES = ['init', 'update_clients', 'update_servers', 'standby', 'rollback'] as const;

/** Which CA's certificates are "client" certificates (switch at update_clients) and which "server" ones. */
export type CertRole = 'client' | 'server';

/** The phase a rotation moves to next, in order; rollback and standby are reached from it as the table says. */
const NEXT: Record<RotationPhase, RotationPhase | undefined> = {
  standby: 'init',
  init: 'update_clients',
  update_clients: 'update_servers',
  update_servers: 'standby',
  rollback: 'standby',
};

export function isRotationPhase(p: string): p is RotationPhase {
  return (ROTATION_PHASES as readonly string[]).includes(p);
}

/** Whether `from` may go to `to`; throws GH_ERR_CA_ROTATION saying what may come next otherwise. */
export function checkTransition(ca: CaName, from: RotationPhase, to: RotationPhase): void {
  if (to === 'rollback') {
    if (from === 'standby') {
      throw new GatehouseError(
        'GH_ERR_CA_ROTATION',
        `the ${ca} CA is not rotating: there is nothing to roll back`,
        {
          hint:
            'A rotation that reached standby is complete; start a new one (gatehouse ca rotate --type ' +
            `${ca}) to replace the key again.`,
          details: { ca, phase: from },
        },
      );
    }
    if (from === 'rollback') {
      throw new GatehouseError('GH_ERR_CA_ROTATION', `the ${ca} CA is already rolling back`, {
        hint: `Finish it with: gatehouse ca rotate --type ${ca} --phase standby`,
        details: { ca, phase: from },
      });
    }
    return;
  }
  if (to === 'init' && from !== 'standby') {
    throw new GatehouseError(
      'GH_ERR_CA_ROTATION',
      `a rotation of the ${ca} CA is already in progress (phase ${from})`,
      {
        hint: `See it with "gatehouse ca status"; move it on with --phase ${NEXT[from]}, or undo it with --phase rollback.`,
        details: { ca, phase: from },
      },
    );
  }
  if (NEXT[from] !== to) {
    throw new GatehouseError('GH_ERR_CA_ROTATION', `the ${ca} CA cannot go from phase ${from} to ${to}`, {
      hint:
        from === 'standby'
          ? `Start a rotation first: gatehouse ca rotate --type ${ca} --phase init`
          : `From ${from} the next phase is ${NEXT[from]} (or rollback).`,
      details: { ca, phase: from, requested: to },
    });
  }
}

/** The phase automatic mode moves to once the current one has lasted its share of the grace period. */
export function nextAutoPhase(phase: RotationPhase): RotationPhase | undefined {
  return phase === 'standby' ? undefined : NEXT[phase];
}

/**
 * How long automatic mode stays in each phase: the grace period is how long
 * the old key stays trusted after the new one is, split over init,
 * update_clients and update_servers (rollback also waits one share).
 */
export function phaseDurationMs(rotation: CaRotation): number {
  return Math.ceil(rotation.grace_ms / 3);
}

/** When automatic mode moves the rotation on, or undefined (manual, or not rotating). */
export function dueAt(rotation: CaRotation | undefined): number | undefined {
  if (rotation?.mode !== 'auto' || rotation.phase === 'standby') return undefined;
  return Date.parse(rotation.phase_started) + phaseDurationMs(rotation);
}

/** The key id that signs a certificate of `role` in the rotation's phase. */
export function signingKeyId(rotation: CaRotation | undefined, role: CertRole, onlyKey: string): string {
  if (!rotation || rotation.phase === 'standby') return onlyKey;
  switch (rotation.phase) {
    case 'init':
    case 'rollback':
      return rotation.old_key_id;
    case 'update_clients':
      return role === 'client' ? rotation.new_key_id : rotation.old_key_id;
    case 'update_servers':
      return rotation.new_key_id;
    default: {
      const never: never = rotation.phase;
      throw new GatehouseError('GH_ERR_INTERNAL', `unknown rotation phase ${String(never)}`);
    }
  }
}

/** OpenSSH's fingerprint of an SSH public key line: `SHA256:` + unpadded base64. */
export function sshFingerprint(line: string): string {
  return sshBlobFingerprint(parseSshPublicKey(line).blob);
}

/** The same fingerprint of a key blob (e.g. a certificate's signature key: which CA key signed it). */
export function sshBlobFingerprint(blob: Uint8Array): string {
  const digest = createHash('sha256').update(blob).digest('base64');
  return `SHA256:${digest.replace(/=+$/, '')}`;
}

export interface KeyFingerprints {
  id: string;
  ssh_fingerprint: string;
  x509_fingerprint: string;
}

export function fingerprints(k: CaKeyPublic): KeyFingerprints {
  return {
    id: k.id,
    ssh_fingerprint: sshFingerprint(k.sshPublicKey),
    x509_fingerprint: spkiPin(k.x509CertPem),
  };
}

/** Parses a grace period (Go-style duration, like 24h); at least a minute, at most 366 days. */
export function parseGrace(text: string): number {
  const ms = parseDuration(text);
  if (!(ms >= 60_000 && ms <= 366 * 86_400_000)) {
    throw new GatehouseError('GH_ERR_VALIDATION', `grace period "${text}" is out of range`, {
      hint: 'Give a duration between 1m and 366d, like 24h, 90m or 7d.',
    });
  }
  return ms;
}
