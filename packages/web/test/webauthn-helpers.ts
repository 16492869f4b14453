import type { CDPSession, Page } from 'playwright-core';

/**
 * Chromium's virtual authenticators (CDP WebAuthn domain) and the account
 * page's key form, shared by the WebAuthn tests.
 */

/** A USB security key (second factor) or a platform authenticator (passkeys, user verification). */
export async function addVirtualAuthenticator(
  cdp: CDPSession,
  kind: 'usb' | 'platform',
  opts: { present: boolean } = { present: true },
): Promise<string> {
  await cdp.send('WebAuthn.enable');
  const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
    options:
      kind === 'usb'
        ? {
            protocol: 'ctap2',
            transport: 'usb',
            hasResidentKey: false,
            automaticPresenceSimulation: opts.present,
          }
        : {
            protocol: 'ctap2',
            transport: 'internal',
            hasResidentKey: true,
            hasUserVerification: true,
            isUserVerified: true,
            automaticPresenceSimulation: opts.present,
          },
  });
  return authenticatorId;
}

/** Adds a key named `name` on the account page (open already) with the authenticator that senses a touch. */
export async function addKey(page: Page, name: string, passkey: boolean): Promise<void> {
  await page.getByLabel('Key name').fill(name);
  await page.getByLabel(/^Passkey/).setChecked(passkey);
  await page.getByRole('button', { name: 'Add key' }).click();
  await settled(page, page.getByText(`Added "${name}".`));
}

/** Waits for `done`, or fails with the message of the error the page shows instead. */
export async function settled(page: Page, done: ReturnType<Page['getByText']>): Promise<void> {
  const failed = page.getByRole('alert');
  await done.or(failed).first().waitFor();
  if (!(await done.isVisible())) throw new Error(`the page shows: ${await failed.first().innerText()}`);
}

/**
 * POSTs `body` from the page (same origin, the browser's own TLS trust); the
 * status and problem JSON. `signedIn`: with the session's CSRF token, as the
 * web client sends it.
 */
export async function postFrom(
  page: Page,
  path: string,
  body: unknown,
  opts: { signedIn?: boolean } = {},
): Promise<{ status: number; json: Record<string, unknown> }> {
  return page.evaluate(
    async ([p, b, signedIn]) => {
      const csrf = signedIn ? sessionStorage.getItem('gatehouse.csrf') : null;
      const r = await fetch(p as string, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(csrf ? { 'x-csrf-token': csrf } : {}) },
        body: typeof b === 'string' ? b : JSON.stringify(b),
      });
      return { status: r.status, json: (await r.json()) as Record<string, unknown> };
    },
    [path, body, opts.signedIn === true] as const,
  );
}

/**
 * Runs navigator.credentials.get on `page` (whatever its origin) for a
 * gateway's assertion options, and returns the credential as the browser
 * library's JSON: what a page of another origin would make of a challenge.
 */
export async function assertOnPage(
  page: Page,
  options: { challenge: string; rpId: string; allowCredentials?: { id: string }[] },
  userVerification: 'required' | 'preferred' = 'required',
): Promise<Record<string, unknown>> {
  return page.evaluate(
    async ([o, uv]) => {
      const b64 = (s: string) =>
        Uint8Array.from(atob(s.replace(/-/g, '+').replace(/_/g, '/')), (c) => c.charCodeAt(0));
      const enc = (b: ArrayBuffer | null) =>
        b
          ? btoa(String.fromCharCode(...new Uint8Array(b)))
              .replace(/\+/g, '-')
              .replace(/\//g, '_')
              .replace(/=+$/, '')
          : undefined;
      const cred = (await navigator.credentials.get({
        publicKey: {
          challenge: b64(o.challenge),
          rpId: o.rpId,
          userVerification: uv,
          ...(o.allowCredentials
            ? {
                allowCredentials: o.allowCredentials.map((c) => ({
                  type: 'public-key' as const,
                  id: b64(c.id),
                })),
              }
            : {}),
        },
      })) as PublicKeyCredential;
      const r = cred.response as AuthenticatorAssertionResponse;
      return {
        id: cred.id,
        rawId: enc(cred.rawId),
        type: 'public-key',
        response: {
          clientDataJSON: enc(r.clientDataJSON),
          authenticatorData: enc(r.authenticatorData),
          signature: enc(r.signature),
          userHandle: enc(r.userHandle),
        },
        clientExtensionResults: {},
      };
    },
    [options, userVerification] as const,
  );
}
