import type { AuditEmitter } from '@gatehouse/audit';
import type { Authorizer, Revocation } from '../authz/authorizer.js';
import type { Grant } from '../authz/grant.js';
import type { Clock } from '../clock.js';
import { GatehouseError } from '../errors.js';
import type { LogFn } from '../log.js';
import { type GuardHit, type GuardScanner, GuardSet, type GuardSpec, type GuardStream } from './guards.js';
import type { Joiner, TerminalHandle, TerminalViewer } from './terminal.js';

export type { Revocation } from '../authz/authorizer.js';

/** A live session as `gatehouse sessions ls` shows it. */
export interface LiveSessionInfo {
  id: string;
  kind: 'ssh' | 'kube' | 'db' | 'desktop';
  /** ssh, postgres, mysql, kube-exec, kube-attach, kube-portforward, rdp… */
  protocol: string;
  /** Gatehouse user who owns the session. */
  user: string;
  login?: string | undefined;
  /** Node, database, cluster or desktop name. */
  server: string;
  /** ISO time the session started. */
  started: string;
  /** ISO time access ends by itself (certificate expiry or max_session_ttl). */
  expires: string;
  /** The gateway instance that runs it. */
  gateway?: string | undefined;
  remoteAddr?: string | undefined;
  /** A pty shell (recorded) rather than a command, file transfer or forward. */
  interactive?: boolean | undefined;
  command?: string | undefined;
}

/** What the adapter that owns a session does when core ends it. */
export interface SessionHooks {
  /**
   * Ends the session now and tells the client why, in its protocol's own
   * words (a PostgreSQL ErrorResponse, a MySQL ERR packet, a Kubernetes
   * Status, the SSH disconnect reason); the adapter audits the end with
   * `r.message` as the reason. Called at most once.
   */
  terminate(r: Revocation): void;
  /**
   * Attaches a second viewer to the session's terminal (core has authorized
   * and audits the join). Absent, or throwing GatehouseError, when the
   * session has no terminal to share.
   */
  join?(joiner: Joiner, viewer: TerminalViewer): TerminalHandle;
}

/** What `bind` adds to the grant for listings. */
export interface BindInfo {
  /**
   * The session's id; default the grant's. Several sessions may share one
   * grant (the Kubernetes exec streams of one kubectl connection).
   */
  id?: string | undefined;
  kind: LiveSessionInfo['kind'];
  protocol: string;
  server: string;
  login?: string | undefined;
  remoteAddr?: string | undefined;
  command?: string | undefined;
  interactive?: boolean | undefined;
  /**
   * Not listed by `sessions ls` (e.g. a Kubernetes API connection, whose
   * exec and port-forward streams are the sessions people look for); still
   * ended by locks, deletion, expiry and role changes like any other.
   */
  hidden?: boolean;
}

/** One bound session, as its adapter holds it. */
export interface LiveSession {
  readonly id: string;
  readonly grant: Grant;
  /** True once core ended it or the adapter said it ended. */
  readonly ended: boolean;
  /**
   * Core's check when the session was bound: access may have changed since
   * authorize (a lock or deletion while the upstream was dialed), and such a
   * change reached no session then. Resolves undefined when the session may
   * start, or with the revocation it was ended with (through `terminate`).
   * Never rejects: a check that fails ends the session (fail closed). An
   * adapter that can hold the client until then (before its greeting or
   * upgrade answer) awaits it, so a session revoked mid-handshake never starts.
   */
  readonly ready: Promise<Revocation | undefined>;
  /**
   * The session moved to another target of the same grant holder (MySQL
   * COM_CHANGE_USER to another database user): later re-checks judge
   * `grant`'s target, and listings show `login`. Core calls it with a grant
   * the Authorizer just minted for the same identity; the session keeps the
   * earlier of the two ends (a switch never extends access).
   */
  retarget(grant: Grant, login?: string): void;
  /** Adds what the adapter learned after binding (a pty shell started: `interactive`). */
  update(patch: Pick<Partial<LiveSessionInfo>, 'interactive' | 'command'>): void;
  /**
   * Before something new starts inside the session (an SSH channel, a
   * Kubernetes request): whether access still holds right now. A refusal
   * ends the session (through `terminate`) and is returned.
   */
  check(): Promise<Revocation | undefined>;
  /**
   * Content guards: `data` is the next piece of one stream of the session
   * (terminal output or input, a statement, result bytes). A guard that
   * matches is audited (session.guard); a terminating one also ends the
   * session through `terminate` before this returns, and the caller must
   * not pass the piece on. Streams no guard watches cost nothing.
   */
  inspect(on: GuardStream, data: Uint8Array): GuardHit | undefined;
  /** Whether any of the session's guards watches `on` (to skip work that only feeds a scan). */
  watches(on: GuardStream): boolean;
  /** The session ended by itself (client left, upstream closed): stop watching it. Idempotent. */
  end(): void;
}

export interface LiveSessionsDeps {
  authorizer: Authorizer;
  audit: AuditEmitter;
  clock: Clock;
  log: LogFn;
  /** This gateway's name in listings (several gateways share a backend later). */
  gateway?: string | undefined;
  /** Told of each session bound and how long after its grant (metrics). */
  onBound?: ((protocol: string, setupSeconds: number) => void) | undefined;
}

/** Longest setTimeout Node accepts; longer grants re-arm. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** A session whose access could not be checked ends (fail closed). */
const COULD_NOT_CHECK: Revocation = {
  cause: 'access_revoked',
  message: 'your access could not be checked (see the gateway log)',
};

interface Entry {
  info: LiveSessionInfo;
  grant: Grant;
  /** When access ends by itself: the grant's end, or an earlier grant's after a retarget. */
  expires: Date;
  hooks: SessionHooks;
  hidden: boolean;
  timer: NodeJS.Timeout | undefined;
  ended: boolean;
  /** Why core ended it, for whatever asks afterwards (a channel opened as it ended). */
  revocation: Revocation | undefined;
  /** A re-check in flight, and whether another was asked for meanwhile. */
  checking: Promise<Revocation | undefined> | undefined;
  again: boolean;
  /** The session's guards (from its roles, refreshed on re-check) and a scanner per stream. */
  guards: GuardSet;
  /** The guards last applied by a re-check (JSON), to rebuild only on a change. */
  lastGuards?: string | undefined;
  scanners: Map<GuardStream, GuardScanner | undefined>;
}

/**
 * Every live session of this gateway, of every kind, and the one lifecycle
 * they share (DESIGN.md "One lifecycle, owned by core"): after authorize, an
 * adapter binds its session here with a `terminate` callback. Core then ends
 * it when its grant expires, when its user is locked, deleted or re-created,
 * when a role change takes its access away, or when an admin kills it;
 * adapters keep no timers or polls of their own.
 */
export class LiveSessions {
  readonly #d: LiveSessionsDeps;
  readonly #live = new Map<string, Entry>();

  constructor(deps: LiveSessionsDeps) {
    this.#d = deps;
  }

  bind(grant: Grant, info: BindInfo, hooks: SessionHooks): LiveSession {
    const id = info.id ?? grant.sessionId;
    if (this.#live.has(id)) {
      throw new GatehouseError('GH_ERR_ALREADY_EXISTS', `session ${id} is already bound`, {
        hint: 'bind each grant once',
      });
    }
    const e: Entry = {
      info: {
        id,
        kind: info.kind,
        protocol: info.protocol,
        user: grant.identity.user,
        ...(info.login !== undefined ? { login: info.login } : {}),
        server: info.server,
        started: this.#d.clock.now().toISOString(),
        expires: grant.expires.toISOString(),
        ...(this.#d.gateway ? { gateway: this.#d.gateway } : {}),
        ...(info.remoteAddr !== undefined ? { remoteAddr: info.remoteAddr } : {}),
        ...(info.command !== undefined ? { command: info.command } : {}),
        ...(info.interactive !== undefined ? { interactive: info.interactive } : {}),
      },
      grant,
      expires: grant.expires,
      hooks,
      hidden: info.hidden === true,
      timer: undefined,
      ended: false,
      revocation: undefined,
      checking: undefined,
      again: false,
      guards: new GuardSet([]),
      scanners: new Map(),
    };
    this.#live.set(id, e);
    this.#d.onBound?.(info.protocol, (performance.now() - grant.mintedAt) / 1000);
    this.#compileGuards(e, grant.options.guards);
    if (!e.ended) this.#armExpiry(e);
    // The watches re-check bound sessions only: a lock, deletion or role
    // change stored between authorize and this bind reached nothing, so the
    // session checks once now (it would otherwise run until it expired).
    const ready = this.#recheck(e).catch((err: unknown) => {
      this.#d.log('error', `checking session ${id} as it started failed; ending it`, err);
      this.#terminate(e, COULD_NOT_CHECK);
      return this.#ended(e);
    });
    const self = this;
    return {
      id,
      get grant() {
        return e.grant;
      },
      ready,
      get ended() {
        return e.ended;
      },
      retarget(next, login) {
        if (e.ended) return;
        if (next.identity !== e.grant.identity) {
          throw new GatehouseError('GH_ERR_INTERNAL', `session ${id} cannot take another identity's grant`);
        }
        e.grant = next;
        if (next.expires < e.expires) {
          e.expires = next.expires;
          e.info.expires = next.expires.toISOString();
          self.#armExpiry(e);
        }
        if (login !== undefined) e.info.login = login;
      },
      update(patch) {
        if (!e.ended) Object.assign(e.info, patch);
      },
      check: () => (e.ended ? Promise.resolve(this.#ended(e)) : this.#recheck(e)),
      inspect: (on, data) => this.#inspect(e, on, data),
      watches: (on) => e.guards.watches(on),
      end() {
        self.#forget(e);
      },
    };
  }

  /** Visible live sessions, oldest first. */
  list(): LiveSessionInfo[] {
    return [...this.#live.values()]
      .filter((e) => !e.hidden)
      .map((e) => ({ ...e.info }))
      .sort((a, b) => a.started.localeCompare(b.started));
  }

  get(id: string): LiveSessionInfo | undefined {
    const e = this.#live.get(id);
    return e && !e.hidden ? { ...e.info } : undefined;
  }

  /** The join hook of a live session (core's join endpoint), or undefined. */
  joinable(id: string): SessionHooks['join'] | undefined {
    const e = this.#live.get(id);
    return e && !e.hidden ? e.hooks.join : undefined;
  }

  /** Ends one session for an admin; false when no such session runs here (or it already ended). */
  kill(id: string, actor: string): boolean {
    const e = this.#live.get(id);
    if (!e || e.hidden) return false;
    this.#terminate(e, { cause: 'killed', message: `ended by ${actor}`, by: actor });
    return true;
  }

  /**
   * Access may have changed: re-checks every session (a lock, a role change)
   * or only `user`'s (that user record changed). Those that lost access end
   * within the time the checks take.
   */
  recheck(filter: { user?: string } = {}): void {
    for (const e of this.#live.values()) {
      if (filter.user !== undefined && e.grant.identity.user !== filter.user) continue;
      this.#recheck(e).catch((err: unknown) =>
        this.#d.log('error', `re-checking session ${e.info.id} failed`, err),
      );
    }
  }

  /** Ends every session (the gateway is shutting down). */
  shutdown(message = 'the gateway is shutting down'): void {
    for (const e of [...this.#live.values()]) this.#terminate(e, { cause: 'gateway_shutdown', message });
  }

  get size(): number {
    return this.#live.size;
  }

  #armExpiry(e: Entry): void {
    clearTimeout(e.timer);
    const left = e.expires.getTime() - this.#d.clock.now().getTime();
    if (left <= 0) {
      this.#terminate(e, {
        cause: 'expired',
        message: `your access expired at ${e.expires.toISOString()}; run gatehouse login again`,
      });
      return;
    }
    e.timer = setTimeout(() => this.#armExpiry(e), Math.min(left, MAX_TIMER_MS));
    e.timer.unref();
  }

  /** One re-check at a time per session; one asked for meanwhile runs right after (it may see newer state). */
  #recheck(e: Entry): Promise<Revocation | undefined> {
    if (e.ended) return Promise.resolve(this.#ended(e));
    if (e.checking) {
      e.again = true;
      return e.checking;
    }
    const run = async (): Promise<Revocation | undefined> => {
      for (;;) {
        e.again = false;
        const r = await this.#d.authorizer.recheck(e.grant);
        if ('cause' in r) {
          this.#terminate(e, r);
          return r;
        }
        this.#refreshGuards(e, r.options.guards);
        if (!e.again || e.ended) return e.ended ? this.#ended(e) : undefined;
      }
    };
    e.checking = run().finally(() => {
      e.checking = undefined;
    });
    return e.checking;
  }

  /**
   * Compiles a session's guards. Roles are linted when saved, so this fails
   * only for a stored role a newer matcher reads differently; the session
   * then ends (fail closed: running it unguarded would let through what an
   * admin meant to stop).
   */
  #compileGuards(e: Entry, specs: readonly GuardSpec[]): void {
    try {
      e.guards = new GuardSet(specs);
    } catch (err) {
      this.#d.log('error', `session ${e.info.id}: a content guard does not compile`, err);
      e.guards = new GuardSet([]);
      this.#terminate(e, {
        cause: 'guard',
        message: `a content guard of your roles does not compile (${err instanceof Error ? err.message : String(err)}); ask an admin to fix it (gatehouse roles lint)`,
      });
    }
  }

  /** Guards changed in the roles (added at run time): new scanners, from the next piece on. */
  #refreshGuards(e: Entry, specs: readonly GuardSpec[]): void {
    const before = JSON.stringify(e.grant.options.guards);
    const now = JSON.stringify(specs);
    if (e.lastGuards === now || (e.lastGuards === undefined && before === now)) return;
    e.lastGuards = now;
    this.#compileGuards(e, specs);
    e.scanners.clear();
  }

  #inspect(e: Entry, on: GuardStream, data: Uint8Array): GuardHit | undefined {
    if (e.ended) return undefined;
    let scanner = e.scanners.get(on);
    if (scanner === undefined && !e.scanners.has(on)) {
      scanner = e.guards.scanner(on);
      e.scanners.set(on, scanner);
    }
    if (!scanner) return undefined;
    const hits = scanner.scan(data);
    if (hits.length === 0) return undefined;
    for (const hit of hits) {
      void this.#d.audit.record({
        type: 'session.guard',
        user: e.info.user,
        session_id: e.info.id,
        protocol: e.info.protocol,
        server: e.info.server,
        ...(e.info.login !== undefined ? { login: e.info.login } : {}),
        rule: hit.rule,
        on: hit.on,
        action: hit.action,
        match_length: hit.length,
        ...(e.info.remoteAddr ? { addr: { remote: e.info.remoteAddr } } : {}),
      });
    }
    // Terminating hits come first.
    const first = hits[0]!;
    if (first.action === 'terminate') {
      this.#terminate(e, {
        cause: 'guard',
        message: `ended by the content guard "${first.rule}" (a match in the ${first.on === 'result' ? 'results' : first.on})`,
      });
    }
    return first;
  }

  #ended(e: Entry): Revocation {
    return e.revocation ?? { cause: 'access_revoked', message: 'this session has ended' };
  }

  #terminate(e: Entry, r: Revocation): void {
    if (e.ended) return;
    e.revocation = r;
    this.#forget(e);
    try {
      e.hooks.terminate(r);
    } catch (err) {
      this.#d.log('error', `ending session ${e.info.id} (${r.cause}) failed`, err);
    }
  }

  #forget(e: Entry): void {
    if (e.ended) return;
    e.ended = true;
    clearTimeout(e.timer);
    if (this.#live.get(e.info.id) === e) this.#live.delete(e.info.id);
  }
}
