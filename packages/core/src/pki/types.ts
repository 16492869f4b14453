import type { Identity } from '../identity/types.js';

export type CaName = 'user' | 'host' | 'db';

/**
 * One key of a certificate authority. A CA holds several active keys so a
 * rotation can add the new key, publish both, then drop the old one.
 * SSH keys are Ed25519; X.509 keys are ECDSA P-256 (docs/decisions/0001).
 */
export interface CaKeyPublic {
  id: string;
  createdAt: string;
  /** OpenSSH public key line, e.g. "ssh-ed25519 AAAA... gatehouse user CA". */
  sshPublicKey: string;
  /** Self-signed X.509 CA certificate, PEM. */
  x509CertPem: string;
}

/** Where a CA's rotation stands (pki/rotation.ts has the table of what each phase trusts and signs with). */
export type RotationPhase = 'init' | 'update_clients' | 'update_servers' | 'standby' | 'rollback';

/** A CA's rotation, stored with its record so a restarted gateway resumes it. */
export interface CaRotation {
  phase: RotationPhase;
  /** auto: the gateway moves to the next phase when this one has lasted grace_ms / 3. */
  mode: 'auto' | 'manual';
  grace_ms: number;
  /** ISO time the rotation started (init). */
  started: string;
  /** ISO time the current phase began. */
  phase_started: string;
  /** The key that signed before the rotation. */
  old_key_id: string;
  /** The key the rotation introduced. */
  new_key_id: string;
  /** At standby: whether the rotation completed or was rolled back. */
  result?: 'completed' | 'rolled_back';
}

/** What is stored in the backend at `cas/<name>` (JSON). */
export interface CaRecord {
  name: CaName;
  clusterName: string;
  /** Absent: never rotated. */
  rotation?: CaRotation;
  /**
   * Newest first, all trusted. Outside a rotation there is one key; during
   * one the new and the old key, and the phase says which signs what.
   */
  keys: (CaKeyPublic & {
    /** PKCS#8 PEM sealed with the at-rest key (see crypto/seal.ts). */
    sealedSshPrivateKey: string;
    sealedX509PrivateKey: string;
  })[];
}

export interface SshUserCertRequest {
  /** OpenSSH public key line of the client's key. */
  publicKey: string;
  keyId: string;
  principals: string[];
  validAfter: Date;
  validBefore: Date;
  /** Default true (an interactive shell needs a PTY). The other permit-* flags default to false. */
  permitPty?: boolean;
  permitPortForwarding?: boolean;
  permitAgentForwarding?: boolean;
  permitX11Forwarding?: boolean;
  permitUserRc?: boolean;
  /** Comma-separated CIDR list for the source-address critical option. */
  sourceAddress?: string;
  /** Gatehouse identity carried in the extension `gatehouse-identity@gatehouse.dev`. */
  identity?: Identity;
  /**
   * What a node must record and restrict for sessions with this certificate
   * (the grant's merged role options), carried in the extension
   * `gatehouse-session-policy@gatehouse.dev` when not empty.
   */
  sessionPolicy?: SshSessionPolicy;
  /** The session this certificate is minted for (upstream certificates): `gatehouse-session-id@gatehouse.dev`. */
  sessionId?: string;
  /**
   * A login certificate of a user whose roles set require_session_mfa: it
   * carries the critical option `gatehouse-session-mfa@gatehouse.dev=required`,
   * so no server but the gateway's proxy accepts it.
   */
  sessionMfaRequired?: boolean;
}

/** Enhanced recording and network restrictions a node applies with eBPF (roles' options, merged by core). */
export interface SshSessionPolicy {
  enhancedRecording: string[];
  restrictNetwork: { deny: string[]; allow: string[] };
  /** Which opens `disk` recording audits (path prefixes); absent: the node's defaults. */
  recordingPaths?: { include: string[]; exclude: string[] };
}

export interface SshHostCertRequest {
  publicKey: string;
  keyId: string;
  principals: string[];
  validAfter: Date;
  validBefore: Date;
  /** Who asked (audit); default `system` (the gateway's own certificates). */
  actor?: string | undefined;
}

export interface X509UserCertRequest {
  /** PEM SPKI public key of the client. */
  publicKeyPem: string;
  identity: Identity;
  notBefore: Date;
  notAfter: Date;
}

export interface X509ServerCertRequest {
  publicKeyPem: string;
  commonName: string;
  dnsNames: string[];
  ipAddresses: string[];
  notBefore: Date;
  notAfter: Date;
}

export interface X509GatewayCertRequest {
  publicKeyPem: string;
  /** The gateway's name (config `gateway.name`). */
  name: string;
  notBefore: Date;
  notAfter: Date;
}

export interface X509DbClientCertRequest {
  publicKeyPem: string;
  /** Database user: becomes the subject CN (pg `cert` auth, MariaDB REQUIRE SUBJECT). */
  dbUser: string;
  notBefore: Date;
  notAfter: Date;
}

/** What every `CertificateAuthorities.issue*` call returns. */
export interface IssuedCertificate {
  /** OpenSSH one-line certificate, or PEM for X.509. */
  cert: string;
  /** Decimal for SSH (uint64), lowercase hex for X.509. */
  serial: string;
  expires: Date;
  /** X.509 server certificates: the CA certificate that signed it (the chain to send with it). */
  caCertPem?: string;
}

/** `CertificateAuthorities.export` formats (what `gatehouse ca export --format` prints). */
export type CaExportFormat = 'sshd' | 'known_hosts' | 'x509' | 'postgres' | 'mariadb' | 'kube';
