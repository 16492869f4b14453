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

/** Where the code comes from: `--mfa-code CODE`, `--mfa-code -` (first line of stdin), or a prompt on the terminal. */
export interface MfaCodeSource {
  mfaCode?: string | undefined;
}

/** Help text of the --mfa-code option, shared by the verbs that take it. */
export const MFA_CODE_HELP =
  'authenticator code for a per-session MFA check (roles with require_session_mfa); "-" reads it from the first line of stdin (default: $GATEHOUSE_MFA_CODE, else a prompt)';

/**
 * The target-bound certificate for `target` when the caller's roles require
 * a check (undefined when they do not). `keys` says what to certify: the
 * profile's SSH public key for nodes, its TLS key for databases and clusters.
 */
export async function sessionMfaCerts(
  home: ClientHome,
  profile: ProfileEntry,
  target: MfaTarget,
  keys: { ssh_public_key: string } | { tls_public_key: string },
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
    if (!ch.challenge_id || !ch.methods?.some((m) => m.method === 'totp')) {
      throw noCliMethod(
        profile.proxy,
        target,
        describe,
        ch.methods?.some((m) => m.method === 'webauthn') ?? false,
      );
    }
    const code = await readMfaCode(source, describe);
    return await api.sessionMfaCerts({
      challenge_id: ch.challenge_id,
      response: { method: 'totp', code },
      ...keys,
    });
  } finally {
    api.close();
  }
}

/**
 * The CLI answers with authenticator codes only: a security key needs a
 * browser to talk to it (decision 0037). A user with keys alone is told where
 * the key works (the web terminal, for nodes) and how to get a code.
 */
export function noCliMethod(
  proxy: string,
  target: MfaTarget,
  describe: string,
  hasKeys: boolean,
): GatehouseError {
  const app = `add an authenticator app for the CLI with gatehouse mfa add --name NAME (or at https://${proxy}/web/account)`;
  if (!hasKeys) {
    return new GatehouseError(
      'GH_ERR_SECOND_FACTOR_NOT_ENROLLED',
      `your roles require a second-factor check for ${describe}, and the proxy offers no method this CLI can answer`,
      { hint: `${app}, or ask an admin for a reset link (gatehouse users reset)` },
    );
  }
  const where =
    target.kind === 'node'
      ? `open the web terminal at https://${proxy}/web/terminal and choose "Use security key", or ${app}`
      : app;
  return new GatehouseError(
    'GH_ERR_SECOND_FACTOR_NOT_ENROLLED',
    `your roles require a second-factor check for ${describe}, and your only second factor is a security key, which the CLI cannot use (it needs a browser)`,
    { hint: where },
  );
}

async function readMfaCode(source: MfaCodeSource, describe: string): Promise<string> {
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
