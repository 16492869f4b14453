export * from './locks.js';
export {
  auditLoginFailure,
  PasswordLogin,
  type PasswordLoginOptions,
  type PasswordLoginRequest,
} from './login.js';
export {
  type MfaActor,
  MfaDevices,
  type MfaDeviceView,
  mfaDevicesOf,
} from './mfa-devices.js';
export * from './passwords.js';
export { UserTokens, type UserTokensOptions } from './tokens.js';
export * from './totp.js';
export type * from './types.js';
export * from './users.js';
export {
  type AuthenticationResponseJSON,
  counterWentUp,
  type PublicKeyCredentialCreationOptionsJSON,
  type PublicKeyCredentialRequestOptionsJSON,
  type RegistrationResponseJSON,
  type RelyingParty,
  relyingPartyFor,
  WebAuthnRefusal,
  WebAuthnService,
} from './webauthn.js';
