export { NodeAuditForwarder, type NodeAuditForwarderOptions } from './audit-forward.js';
export {
  type BuiltinNodeAdapter,
  type BuiltinNodeOptions,
  builtinNode,
  localNodeName,
  type NodeRegistrar,
} from './builtin.js';
export {
  cgroupWrapper,
  type NodeEnforcement,
  type NodeEnforcementOptions,
  nodeEnforcement,
  type SessionEnforcement,
} from './enforce.js';
export { generateHostKey, hostCertificateBlob, parseHostKey, publicKeyLine } from './hostkey.js';
export {
  type JoinedNode,
  type JoinedNodeOptions,
  type JoinOptions,
  type JoinResult,
  joinCluster,
  startJoinedNode,
} from './join.js';
export { lookupUnixUser, parseGroupList, parsePasswdLine, type UnixUser } from './passwd.js';
export {
  DEFAULT_NODE_PORT,
  type NodeService,
  type NodeServiceOptions,
  type NodeSessionEvent,
  startNodeService,
} from './server.js';
