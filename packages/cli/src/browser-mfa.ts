import { randomBytes } from 'node:crypto';
import type { BrowserMfaStartResponse } from '@gatehouse/core/client';
import { GatehouseError } from '@gatehouse/core/lite';
import { listenForCallback, openBrowser } from './sso-callback.js';

// A security key or passkey from the CLI (decision 0037, "CLI"), as `tsh`
// does: the key signs for the gateway's web origin only, so the CLI opens (or
// prints, with --browser none) the gateway's /web/mfa page for one pending
// check, and the page sends the assertion back to a loopback callback here.
// The CLI then answers with it through the usual route (the login with the
// password, or the session check with its certificate), where core verifies
// it. Shared by `gatehouse login` and the per-session MFA check.

/** How the second factor is answered: `--mfa-mode` (or $GATEHOUSE_MFA_MODE). */
export type MfaMode = 'totp' | 'webauthn' | 'auto';

/** The page's link and the WebAuthn challenge behind it last 5 minutes; the wait a little longer. */
const WAIT_MS = 5 * 60_000 + 15_000;

export function parseMfaMode(v: string | undefined): MfaMode {
  if (v === undefined || v === '') return 'auto';
  if (v === 'totp' || v === 'webauthn' || v === 'auto') return v;
  throw new GatehouseError('GH_ERR_VALIDATION', `unknown MFA mode "${v}"`, {
    hint: 'use --mfa-mode totp, webauthn or auto',
  });
}

/**
 * Which method answers, from what the user has: `totp` or `webauthn` as
 * asked (an error when the user has no such device), or with `auto` the one
 * they have, asking on the terminal when they have both.
 */
export async function chooseMfaMethod(
  mode: MfaMode,
  has: { totp: boolean; webauthn: boolean },
  describe: string,
): Promise<'totp' | 'webauthn'> {
  if (!has.totp && !has.webauthn) {
    throw new GatehouseError(
      'GH_ERR_SECOND_FACTOR_NOT_ENROLLED',
      `a second-factor check is required for ${describe}, and you have no second-factor device`,
      {
        hint: 'add an authenticator app with gatehouse mfa add --name NAME, or ask an admin for a reset link (gatehouse users reset)',
      },
    );
  }
  if (mode === 'webauthn' && !has.webauthn) {
    throw new GatehouseError(
      'GH_ERR_SECOND_FACTOR_NOT_ENROLLED',
      `you have no security key or passkey for ${describe} (or the gateway's public_addr is no DNS name)`,
      { hint: 'use an authenticator code (--mfa-mode totp), or add a key at https://PROXY/web/account' },
    );
  }
  if (mode === 'totp' && !has.totp) {
    throw new GatehouseError(
      'GH_ERR_SECOND_FACTOR_NOT_ENROLLED',
      `you have no authenticator app for ${describe}`,
      {
        hint: 'use your security key (--mfa-mode webauthn), or add an app with gatehouse mfa add --name NAME',
      },
    );
  }
  if (mode !== 'auto') return mode;
  if (!has.totp) return 'webauthn';
  if (!has.webauthn) return 'totp';
  const { ask } = await import('./prompt.js');
  for (;;) {
    const a = (
      await ask('Use your security key (k) or an authenticator code (c)? [k] ', {
        hidden: false,
        what: 'choice of second factor',
        flag: '--mfa-mode webauthn|totp',
      })
    )
      .trim()
      .toLowerCase();
    if (a === '' || a === 'k' || a === 'key') return 'webauthn';
    if (a === 'c' || a === 'code') return 'totp';
    process.stderr.write('Type k for the security key or c for a code.\n');
  }
}

/**
 * The browser round trip: a loopback callback, the gateway page `start`
 * registers for it, and the assertion the page brings back with our state.
 * When `start` returns no page (the user chose a code after all), neither.
 */
export async function keyInBrowser(
  start: (cb: { redirect_url: string; state: string }) => Promise<BrowserMfaStartResponse | undefined>,
  o: { browser?: string | undefined; err: (s: string) => void; describe: string },
): Promise<Record<string, unknown> | undefined> {
  const state = randomBytes(24).toString('base64url');
  const retry = 'run the command again and use the new link it prints (each link works once, for 5 minutes)';
  const cb = await listenForCallback({
    accept: (q) => {
      // Only the page of the check this process started knows the state: anything else is refused.
      if (q.get('state') !== state) {
        throw new GatehouseError(
          'GH_ERR_WEBAUTHN_CHALLENGE_INVALID',
          'the browser came back with the answer to another check',
          { hint: retry },
        );
      }
      let credential: unknown;
      try {
        credential = JSON.parse(q.get('credential') ?? '');
      } catch {
        credential = undefined;
      }
      if (typeof credential !== 'object' || credential === null || Array.isArray(credential)) {
        throw new GatehouseError('GH_ERR_WEBAUTHN_INVALID', 'the browser sent no security key answer', {
          hint: retry,
        });
      }
      return credential as Record<string, unknown>;
    },
    waitMs: WAIT_MS,
    timeout: () =>
      new GatehouseError(
        'GH_ERR_WEBAUTHN_CHALLENGE_INVALID',
        'the browser did not come back within 5 minutes',
        {
          hint: retry,
        },
      ),
    failure: { code: 'GH_ERR_WEBAUTHN_INVALID', hint: retry },
    titles: { ok: 'Security key answer sent', failed: 'Security key check failed' },
  });
  try {
    const page = await start({ redirect_url: cb.redirectUrl, state });
    if (!page) return undefined;
    o.err(`Your security key is asked to confirm ${o.describe}.\n`);
    openBrowser(page.url, o.browser, o.err, 'use your security key');
    return await cb.result;
  } finally {
    cb.close();
  }
}
