import { type FormEvent, type ReactNode, useState } from 'react';
import type {
  SessionMfaCertsRequest,
  SessionMfaChallengeRequest,
  SessionMfaChallengeResponse,
} from '../api/routes';
import { useApp } from '../app';
import { assert, webAuthnSupported } from '../lib/webauthn';
import { Notice } from './ui';

/** A check waiting for the user: what may answer it, and the caller waiting for the token. */
interface Pending {
  challengeId: string;
  describe: string;
  totp: boolean;
  keyOptions?: unknown;
  resolve(token: string): void;
  reject(err: unknown): void;
}

/**
 * What may answer a challenge in this browser: a code when a TOTP app is
 * enrolled; the key's assertion options when a key is and the browser has
 * WebAuthn (otherwise only the code is offered). Shared with the terminal's
 * new-tab form.
 */
export function offeredMethods(ch: SessionMfaChallengeResponse): { totp: boolean; keyOptions?: unknown } {
  const key = ch.methods?.find((m) => m.method === 'webauthn');
  return {
    totp: ch.methods?.some((m) => m.method === 'totp') ?? false,
    ...(key?.data && webAuthnSupported() ? { keyOptions: key.data } : {}),
  };
}

/**
 * Per-session MFA (roles with require_session_mfa) for web sessions opened
 * by a button rather than the terminal's new-tab form: a file transfer, a
 * desktop. `ask(target, describe)` asks the proxy; it resolves undefined
 * when no check is needed, or shows `prompt` (the code field and "Use
 * security key", as the terminal form) and resolves with the single-use
 * token the answer buys. A refused answer or Cancel rejects: each check
 * answers once, the next session asks again. Core decides; this only asks.
 */
export function useSessionMfa(): {
  ask(target: SessionMfaChallengeRequest['target'], describe: string): Promise<string | undefined>;
  prompt: ReactNode;
} {
  const { api } = useApp();
  const [pending, setPending] = useState<Pending | undefined>();
  const ask = async (target: SessionMfaChallengeRequest['target'], describe: string) => {
    const ch = await api.sessionMfaChallenge({ target });
    if (!ch.required || !ch.challenge_id) return undefined;
    const challengeId = ch.challenge_id;
    return new Promise<string>((resolve, reject) =>
      setPending({ challengeId, describe, ...offeredMethods(ch), resolve, reject }),
    );
  };
  const prompt = pending ? (
    <MfaPrompt key={pending.challengeId} pending={pending} onDone={() => setPending(undefined)} />
  ) : null;
  return { ask, prompt };
}

function MfaPrompt({ pending, onDone }: { pending: Pending; onDone: () => void }) {
  const { api } = useApp();
  const [code, setCode] = useState('');
  const [busy, setBusy] = useState(false);

  const answer = async (response: () => Promise<SessionMfaCertsRequest['response']>) => {
    setBusy(true);
    try {
      const res = await api.sessionMfaCerts({
        challenge_id: pending.challengeId,
        response: await response(),
      });
      onDone();
      if (res.mfa_token) pending.resolve(res.mfa_token);
      else pending.reject(new Error('the gateway answered the check without a token'));
    } catch (err) {
      onDone();
      pending.reject(err);
    }
  };
  const submit = (e: FormEvent) => {
    e.preventDefault();
    if (!code.trim() || busy) return;
    void answer(async () => ({ method: 'totp', code: code.trim() }));
  };
  const withKey = () =>
    answer(async () => ({
      method: 'webauthn',
      credential: (await assert(pending.keyOptions)) as unknown as Record<string, unknown>,
    }));
  const cancel = () => {
    onDone();
    pending.reject(new Error('the second-factor check was cancelled'));
  };

  return (
    <form className="card" onSubmit={submit} data-testid="session-mfa">
      <p>Your roles require a fresh second-factor check for {pending.describe}.</p>
      {pending.totp ? (
        <label>
          Authenticator code
          <input
            name="mfa-code"
            value={code}
            onChange={(e) => setCode(e.target.value)}
            inputMode="numeric"
            autoComplete="one-time-code"
            // biome-ignore lint/a11y/noAutofocus: the code is the one thing to type now
            autoFocus
          />
        </label>
      ) : null}
      {!pending.totp && !pending.keyOptions ? (
        <Notice>
          Your security key needs a browser with WebAuthn, and you have no authenticator app: open this page
          in a browser that supports security keys.
        </Notice>
      ) : null}
      {pending.keyOptions ? (
        <button
          type="button"
          className={pending.totp ? undefined : 'primary'}
          disabled={busy}
          onClick={withKey}
        >
          Use security key
        </button>
      ) : null}
      {pending.totp ? (
        <button type="submit" className="primary" disabled={busy || code.trim() === ''}>
          Verify
        </button>
      ) : null}
      <button type="button" disabled={busy} onClick={cancel}>
        Cancel
      </button>
    </form>
  );
}
