export { type CertPermissions, certPermissions, verifyClientSignature, verifyUserAuth } from './auth.js';
export { generateHostKey, hostCertificateBlob, parseHostKey, publicKeyLine } from './hostkey.js';
export { lookupUnixUser, parseGroupList, parsePasswdLine, type UnixUser } from './passwd.js';
export {
  DEFAULT_NODE_PORT,
  type NodeService,
  type NodeServiceOptions,
  type NodeSessionEvent,
  startNodeService,
} from './server.js';
