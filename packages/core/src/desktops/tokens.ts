import { createHash, randomBytes } from 'node:crypto';
import { type AuditEmitter, auditDesktopReject } from '@gatehouse/audit';
import type { Authorizer, ConnectionContext } from '../authz/authorizer.js';
import type { Grant } from '../authz/grant.js';
import type { Clock } from '../clock.js';
import { GatehouseError } from '../errors.js';
import type { Identity } from '../identity/types.js';
import { DESKTOP_WS_PATH, type DesktopTokenView } from './protocol.js';
import type { DesktopRegistry } from './registry.js';

/** How long a desktop token may wait for its WebSocket (the browser opens it at once). */
export const DESKTOP_TOKEN_TTL_MS = 60_000;
/** Outstanding tokens per gateway; minting past this drops expired ones first, then refuses. */
const MAX_TOKENS = 10_000;

interface Pending {
  grant: Grant;
  user: string;
  desktop: string;
  expiresAt: number;
}

export { DESKTOP_WS_PATH, type DesktopTokenView } from './protocol.js';

/**
 * Short-lived, single-use desktop tokens: core authorizes (user, desktop,
 * login) when minting, so a refusal reaches the page as an API error before
 * any WebSocket; redeeming checks the token belongs to the caller and the
 * desktop they name, then re-checks access (a lock in between still wins).
 * Tokens live in this process only: the WebSocket must reach the gateway
 * that minted it.
 */
export class DesktopTokens {
  readonly #d: { authorizer: Authorizer; clock: Clock; audit: AuditEmitter; desktops: DesktopRegistry };
  readonly #pending = new Map<string, Pending>();

  constructor(deps: {
    authorizer: Authorizer;
    clock: Clock;
    audit: AuditEmitter;
    desktops: DesktopRegistry;
  }) {
    this.#d = deps;
  }

  async mint(
    identity: Identity,
    desktop: string,
    login: string,
    ctx: ConnectionContext,
  ): Promise<DesktopTokenView> {
    const d = await this.#d.desktops.get(desktop);
    if (!d) {
      // Unknown and forbidden look the same to the caller; both are audited.
      await this.#d.authorizer.deny(
        identity,
        { kind: 'desktop', name: desktop },
        `no desktop "${desktop}"`,
        ctx,
        {
          hint: 'list the desktops you may use with gatehouse desktops ls',
        },
      );
    }
    const grant = await this.#d.authorizer.authorize(
      identity,
      { kind: 'desktop', name: desktop, labels: d!.labels, login },
      { ...ctx, protocol: 'rdp' },
    );
    const now = this.#d.clock.now().getTime();
    this.#prune(now);
    if (this.#pending.size >= MAX_TOKENS) {
      throw new GatehouseError('GH_ERR_RATE_LIMITED', 'too many desktop connections are being opened', {
        hint: 'wait a minute and try again',
      });
    }
    const token = randomBytes(32).toString('base64url');
    const expiresAt = now + DESKTOP_TOKEN_TTL_MS;
    this.#pending.set(digest(token), { grant, user: identity.user, desktop, expiresAt });
    return { token, destination: desktop, expires: new Date(expiresAt).toISOString(), path: DESKTOP_WS_PATH };
  }

  /**
   * The Grant for a token presented on `user`'s WebSocket naming
   * `destination`. The token is spent whatever the outcome. Throws
   * GH_ERR_ACCESS_DENIED (audited) for an unknown, spent, expired or foreign
   * token, a destination other than the token's, or access revoked since.
   */
  async redeem(token: string, q: { user: string; destination: string; remoteAddr: string }): Promise<Grant> {
    const key = digest(token);
    const p = this.#pending.get(key);
    this.#pending.delete(key);
    const now = this.#d.clock.now().getTime();
    const refuse = async (reason: 'token_invalid' | 'destination_mismatch', error: string, hint: string) => {
      await auditDesktopReject(this.#d.audit, {
        user: q.user,
        remoteAddr: q.remoteAddr,
        server: q.destination.slice(0, 253),
        reason,
        error,
      });
      return new GatehouseError('GH_ERR_ACCESS_DENIED', `access denied: ${error}`, {
        hint,
        details: { reason },
      });
    };
    if (!p || p.expiresAt <= now || p.user !== q.user) {
      throw await refuse(
        'token_invalid',
        'the desktop token is unknown, expired, already used or not yours',
        'open the desktop again from the Resources page',
      );
    }
    if (p.desktop !== q.destination) {
      throw await refuse(
        'destination_mismatch',
        `the desktop token is for "${p.desktop}", not "${q.destination}"`,
        'open the desktop again from the Resources page',
      );
    }
    const again = await this.#d.authorizer.recheck(p.grant);
    if ('cause' in again) {
      throw new GatehouseError('GH_ERR_ACCESS_DENIED', again.message, {
        hint: 'ask an admin for a role that allows this desktop',
        details: { reason: again.cause },
      });
    }
    return p.grant;
  }

  #prune(now: number): void {
    for (const [k, p] of this.#pending) if (p.expiresAt <= now) this.#pending.delete(k);
  }
}

function digest(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('base64url');
}
