// CaExportFormat is also exported by api/client.ts (same union); the package
// index takes that one, so it is left out here to avoid an ambiguous re-export.
export {
  BACKDATE_MS,
  CA_NAMES,
  type CaStatus,
  CertificateAuthorities,
  type CertificateAuthoritiesDeps,
  caBackendKey,
  DEFAULT_ROTATION_GRACE_MS,
  type RotateRequest,
} from './authority.js';
export { ClientTicket, SessionCredentials } from './credentials.js';
export { decodeIdentityJson, encodeIdentityJson, IDENTITY_VERSION } from './identity-codec.js';
export { type DecodedKrl, decodeKrl, encodeKrl, type Krl, KrlError } from './krl.js';
export {
  type CertRole,
  fingerprints,
  isRotationPhase,
  type KeyFingerprints,
  parseGrace,
  ROTATION_PHASES,
  sshBlobFingerprint,
  sshFingerprint,
} from './rotation.js';
export * from './ssh-userauth.js';
export * from './sshcert.js';
export type {
  CaKeyPublic,
  CaName,
  CaRecord,
  CaRotation,
  IssuedCertificate,
  RotationPhase,
  SshHostCertRequest,
  SshSessionPolicy,
  SshUserCertRequest,
  X509DbClientCertRequest,
  X509ServerCertRequest,
  X509UserCertRequest,
} from './types.js';
export {
  createX509Ca,
  decodeIdentity,
  encodeIdentityExtension,
  encodeName,
  IDENTITY_EXTENSION_OID,
  type IssuedX509,
  leafSpki,
  nameValues,
  parseX509,
  randomSerial,
  spkiPin,
  subjectCommonNames,
  type X509CaMaterial,
  type X509Extension,
  X509Issuer,
  type X509Parts,
} from './x509.js';
