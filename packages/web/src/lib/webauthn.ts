import {
  browserSupportsWebAuthn,
  type PublicKeyCredentialCreationOptionsJSON,
  type PublicKeyCredentialRequestOptionsJSON,
  startAuthentication,
  startRegistration,
} from '@simplewebauthn/browser';
import type { WebAuthnResponseJson } from '../api/routes';

/**
 * The browser side of security keys and passkeys, through
 * @simplewebauthn/browser: the gateway's options in, the credential's JSON
 * out (core verifies it). Nothing here decides anything.
 */

export function webAuthnSupported(): boolean {
  return browserSupportsWebAuthn();
}

/** Asks the authenticator to sign the gateway's challenge (a key after the password, or a passkey). */
export async function assert(options: unknown): Promise<WebAuthnResponseJson> {
  const r = await startAuthentication({ optionsJSON: options as PublicKeyCredentialRequestOptionsJSON });
  return r as unknown as WebAuthnResponseJson;
}

/** Asks the authenticator to make a credential for the gateway's options. */
export async function register(options: unknown): Promise<WebAuthnResponseJson> {
  const r = await startRegistration({ optionsJSON: options as PublicKeyCredentialCreationOptionsJSON });
  return r as unknown as WebAuthnResponseJson;
}
