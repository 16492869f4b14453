export {
  connectorFromDoc,
  githubConnectorSchema,
  lintConnector,
  oidcConnectorSchema,
  type SsoConnector,
  type SsoConnectorButton,
  type SsoConnectorDoc,
  SsoConnectorRegistry,
  type SsoConnectorView,
  ssoConnectorSchema,
} from './connectors.js';
export type { Claims } from './oidc.js';
export {
  SSO_ATTEMPT_TTL_MS,
  SSO_CODE_TTL_MS,
  type SsoRedeemRequest,
  type SsoRedeemResponse,
  SsoService,
  type SsoStartRequest,
  type SsoStartResponse,
  type SsoTestReport,
} from './service.js';
