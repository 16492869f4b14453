import { GatehouseError } from '../errors.js';
import type { LogFn } from '../log.js';
import type { LiveSessionInfo, LiveSessions } from '../sessions/live.js';
import type { Joiner, TerminalHandle, TerminalViewer } from '../sessions/terminal.js';
import type { PeerChannel } from './channel.js';
import type { GatewayRecord, GatewayRegistry } from './registry.js';

/** A gateway whose sessions could not be listed (a partial listing, not a failure). */
export interface UnreachableGateway {
  gateway: string;
  error: string;
}

/** `gatehouse sessions ls` across the cluster: every gateway's live sessions, and which gateways did not answer. */
export interface SessionList {
  sessions: LiveSessionInfo[];
  unreachable: UnreachableGateway[];
}

export interface ClusterSessionsDeps {
  local: LiveSessions;
  channel: PeerChannel;
  registry: GatewayRegistry;
  /** This gateway's name once registered; undefined in a process that does not listen (an admin command). */
  self: () => string | undefined;
  log: LogFn;
}

/** A live session and where it runs: `peer` undefined means here. */
export interface LocatedSession {
  info: LiveSessionInfo;
  peer?: GatewayRecord | undefined;
}

/**
 * One view of the live sessions of every gateway sharing the backend
 * (decision 0039-gateway-peers): this gateway's own, plus each live peer's
 * asked over the internal channel in parallel, each bounded by
 * PEER_REQUEST_TIMEOUT_MS. A peer that does not answer is reported in
 * `unreachable`; its sessions are missing from the listing, nothing fails.
 */
export class ClusterSessions {
  readonly #d: ClusterSessionsDeps;

  constructor(deps: ClusterSessionsDeps) {
    this.#d = deps;
  }

  async list(): Promise<SessionList> {
    const { sessions, unreachable } = await this.#gather();
    return {
      sessions: sessions.map((s) => s.info).sort((a, b) => a.started.localeCompare(b.started)),
      unreachable,
    };
  }

  /** The session with this id, here or on a peer; undefined when no reachable gateway runs it. */
  async find(id: string): Promise<LocatedSession | undefined> {
    const here = this.#d.local.get(id);
    if (here) return { info: { ...here, gateway: this.#d.self() ?? here.gateway } };
    const { sessions } = await this.#gather({ skipLocal: true });
    return sessions.find((s) => s.info.id === id);
  }

  /**
   * Ends a session wherever it runs: here, or forwarded to the gateway that
   * owns it. False when no gateway runs it; a GH_ERR_PEER_UNAVAILABLE when
   * some gateway could not be asked (it might be running there).
   */
  async kill(id: string, actor: string): Promise<boolean> {
    if (this.#d.local.kill(id, actor)) return true;
    const { sessions, unreachable } = await this.#gather({ skipLocal: true });
    const owner = sessions.find((s) => s.info.id === id)?.peer;
    if (owner) return this.#d.channel.kill(owner, id, actor);
    if (unreachable.length > 0) {
      throw new GatehouseError(
        'GH_ERR_PEER_UNAVAILABLE',
        `session "${id}" runs on no gateway that answered; ${unreachable.map((u) => `${u.gateway}: ${u.error}`).join('; ')}`,
        {
          hint: 'retry when every gateway answers (gatehouse status lists them); a gateway that died ended its sessions',
        },
      );
    }
    return false;
  }

  /** Attaches `viewer` to a located session: the local join hook, or a relay from its owner. */
  join(s: LocatedSession, joiner: Joiner, viewer: TerminalViewer): TerminalHandle {
    if (s.peer) return this.#d.channel.join(s.peer, s.info.id, joiner, viewer);
    const join = this.#d.local.joinable(s.info.id);
    if (!join) {
      throw new GatehouseError('GH_ERR_BAD_REQUEST', `session "${s.info.id}" has no terminal to join`, {
        hint: 'only interactive shells can be joined (not commands, file transfers or forwards)',
      });
    }
    return join(joiner, viewer);
  }

  async #gather(o: { skipLocal?: boolean } = {}): Promise<{
    sessions: LocatedSession[];
    unreachable: UnreachableGateway[];
  }> {
    const self = this.#d.self();
    const sessions: LocatedSession[] = o.skipLocal
      ? []
      : this.#d.local.list().map((info) => ({ info: { ...info, gateway: self ?? info.gateway } }));
    const unreachable: UnreachableGateway[] = [];
    let peers: GatewayRecord[];
    try {
      peers = (await this.#d.registry.list()).filter((g) => g.name !== self);
    } catch (err) {
      // Without the registry no peer can be found: this gateway's own sessions are still an answer.
      this.#d.log('error', 'reading the gateway registry failed', err);
      return {
        sessions,
        unreachable: [{ gateway: '*', error: `the gateway registry could not be read: ${errorText(err)}` }],
      };
    }
    const answers = await Promise.allSettled(peers.map((p) => this.#d.channel.sessions(p)));
    answers.forEach((a, i) => {
      const peer = peers[i]!;
      if (a.status === 'rejected') {
        unreachable.push({ gateway: peer.name, error: errorText(a.reason) });
        return;
      }
      for (const info of a.value) sessions.push({ info: { ...info, gateway: peer.name }, peer });
    });
    return { sessions, unreachable };
  }
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
