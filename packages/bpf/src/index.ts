export {
  cgroupLevel,
  createSessionCgroup,
  findCgroup2Mount,
  type SessionCgroup,
  type SessionCgroups,
  sessionCgroup,
  sessionCgroups,
} from './cgroup.js';
export { type CheckItem, type CheckReport, check } from './check.js';
export {
  type BpfSession,
  createEnforcer,
  DEFAULT_HELPER,
  type Enforcer,
  type EnforcerOptions,
} from './enforcer.js';
export { BpfHelperError, BpfUnavailableError } from './errors.js';
export { type BpfEvent, NOT_IN_ALLOW_LIST } from './events.js';
export {
  type Cidr,
  CidrError,
  encodePolicy,
  formatAddress,
  parseCidr,
  policyNeedsBpf,
  type SessionPolicy,
} from './policy.js';
