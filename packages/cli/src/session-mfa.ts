import { createPublicKey } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { MfaTarget, SessionMfaCertsResponse } from '@gatehouse/core/client';
import { GatehouseError } from '@gatehouse/core/lite';
import type { ClientHome, ProfileEntry } from './profile.js';
import { splitPems } from './profile.js';

// Per-session MFA on the client side (role option require_session_mfa): ask
// the proxy whether a session to this target needs a fresh check, get the
// code, and trade it for a one-minute certificate bound to the target. Used by
// `gatehouse ssh` (fast path: only light modules load here, the API client and
// the prompt on demand), `db connect` and `kube credentials`.

/**
 * How the check is answered: the code from `--mfa-code CODE`, `--mfa-code -`
 * (first line of stdin) or a prompt on the terminal; or a security key
 * through the browser (`mfaMode`, `browser`: see browser-mfa.ts).
 */
export interface MfaCodeSource {
  mfaCode?: string | undefined;
  /** --mfa-mode totp|webauthn|auto (default auto; a code given means totp). */
  mfaMode?: string | undefined;
  /** --browser COMMAND|none, for the security key page. */
  browser?: string | undefined;
  /** Where each code comes from when one command makes several checks (`proxy db`: the next line of stdin). */
  readCode?: (() => Promise<string>) | undefined;
}

/** The MFA flags of a verb, with their environment defaults. */
export function mfaSource(
  o: { mfaCode?: string | undefined; mfaMode?: string | undefined; browser?: string | undefined },
  env: NodeJS.ProcessEnv,
): MfaCodeSource {
  return {
    mfaCode: o.mfaCode ?? env.GATEHOUSE_MFA_CODE,
    mfaMode: o.mfaMode ?? env.GATEHOUSE_MFA_MODE,
    browser: o.browser ?? env.GATEHOUSE_BROWSER,
  };
}

/** Help texts of the --mfa-mode and --browser options (security keys through the browser: browser-mfa.ts). */
export const MFA_MODE_HELP =
  'second factor: totp (authenticator code), webauthn (security key or passkey, in the browser), or auto (the one you have; asks when you have both) (default: $GATEHOUSE_MFA_MODE, else auto)';

export const BROWSER_HELP =
  'with a security key: the command that opens the gateway page, or "none" to only print its URL (default: $GATEHOUSE_BROWSER, else xdg-open/open)';

/** Help text of the --mfa-code option, shared by the verbs that take it. */
export const MFA_CODE_HELP =
  'authenticator code (implies --mfa-mode totp) for a per-session MFA check (roles with require_session_mfa); "-" reads it from the first line of stdin (default: $GATEHOUSE_MFA_CODE, else a prompt)';

/**
 * The target-bound certificate for `target` when the caller's roles require
 * a check (undefined when they do not). `keys` says what to certify: the
 * profile's SSH public key for nodes, its TLS key for databases and clusters,
 * none for desktops (the answer is then a single-use token, `mfa_token`).
 */
export async function sessionMfaCerts(
  home: ClientHome,
  profile: ProfileEntry,
  target: MfaTarget,
  keys: { ssh_public_key: string } | { tls_public_key: string } | Record<string, never>,
  source: MfaCodeSource,
  describe: string,
): Promise<SessionMfaCertsResponse | undefined> {
  const files = home.readKeys(profile);
  const { GatehouseClient } = await import('@gatehouse/core/client');
  const api = new GatehouseClient({
    proxy: profile.proxy,
    caPem: splitPems(files.cas),
    certPem: files.tlsCert,
    keyPem: files.tlsKey,
  });
  try {
    let ch: Awaited<ReturnType<typeof api.sessionMfaChallenge>>;
    try {
      ch = await api.sessionMfaChallenge({ target });
    } catch (e) {
      // A gateway from before per-session MFA has no such route, and no role can require it there.
      if (e instanceof GatehouseError && e.code === 'GH_ERR_NOT_FOUND' && /no API route/.test(e.message))
        return undefined;
      throw e;
    }
    if (!ch.required) return undefined;
    const has = {
      totp: ch.methods?.some((m) => m.method === 'totp') ?? false,
      webauthn: ch.methods?.some((m) => m.method === 'webauthn') ?? false,
    };
    const challengeId = ch.challenge_id;
    if (!challengeId || (!has.totp && !has.webauthn)) throw noCliMethod(describe);
    // The browser module (a loopback listener, a page to open) loads only when a check is needed.
    const { chooseMfaMethod, keyInBrowser, parseMfaMode } = await import('./browser-mfa.js');
    // A code given on the command line or in the environment means the authenticator app.
    const mode =
      (source.mfaCode !== undefined || source.readCode) && source.mfaMode === undefined
        ? 'totp'
        : parseMfaMode(source.mfaMode);
    if ((await chooseMfaMethod(mode, has, describe)) === 'webauthn') {
      const credential = await keyInBrowser(
        (cb) => api.sessionMfaBrowser({ challenge_id: challengeId, ...cb }),
        { browser: source.browser, err: (t) => process.stderr.write(t), describe },
      );
      if (!credential) throw noCliMethod(describe);
      return await api.sessionMfaCerts({
        challenge_id: challengeId,
        response: { method: 'webauthn', credential },
        ...keys,
      });
    }
    const code = await readMfaCode(source, describe);
    return await api.sessionMfaCerts({
      challenge_id: challengeId,
      response: { method: 'totp', code },
      ...keys,
    });
  } finally {
    api.close();
  }
}

/** The proxy offers no method at all (the user has no device it can check). */
export function noCliMethod(describe: string): GatehouseError {
  return new GatehouseError(
    'GH_ERR_SECOND_FACTOR_NOT_ENROLLED',
    `your roles require a second-factor check for ${describe}, and the proxy offers no method you can answer`,
    {
      hint: 'add an authenticator app with gatehouse mfa add --name NAME, or ask an admin for a reset link (gatehouse users reset)',
    },
  );
}

async function readMfaCode(source: MfaCodeSource, describe: string): Promise<string> {
  if (source.readCode) return (await source.readCode()).trim();
  if (source.mfaCode !== undefined && source.mfaCode !== '-') return source.mfaCode.trim();
  // The prompt module loads the CLI's error types: only when a check is really needed.
  const { ask, readSecretFromStdin } = await import('./prompt.js');
  if (source.mfaCode === '-') return (await readSecretFromStdin('authenticator code')).trim();
  process.stderr.write(`Your roles require a fresh second-factor check for ${describe}.\n`);
  return (
    await ask('Authenticator code: ', { hidden: false, what: 'authenticator code', flag: '--mfa-code CODE' })
  ).trim();
}

/** The profile's TLS public key (SPKI PEM): what database and cluster certificates are issued for. */
export function tlsPublicKeyPem(home: ClientHome, profile: ProfileEntry): string {
  return createPublicKey(home.readKeys(profile).tlsKey).export({ type: 'spki', format: 'pem' }).toString();
}

/**
 * Runs `use` with a per-session MFA certificate in a private temporary file
 * (removed afterwards: it is good for one minute and one target anyway).
 */
export async function withCertFile<T>(
  cert: string,
  name: string,
  use: (file: string) => Promise<T>,
): Promise<T> {
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-mfa-'));
  try {
    const file = join(dir, name);
    writeFileSync(file, cert.endsWith('\n') ? cert : `${cert}\n`, { mode: 0o600 });
    return await use(file);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
