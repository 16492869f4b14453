import { randomUUID } from 'node:crypto';
import type { Backend, WatchEvent } from '../backend/types.js';
import { watchPrefix } from '../backend/watch.js';
import type { Clock } from '../clock.js';
import type { LogFn } from '../log.js';

/** What each gateway publishes about itself in the shared backend (decision 0039-gateway-peers). */
export interface GatewayRecord {
  /** Unique in the cluster (config `gateway.name`). */
  name: string;
  /** host:port of its internal mTLS channel (config `gateway.peer_addr`). */
  peer_addr: string;
  /** host:port its clients use. */
  public_addr: string;
  version: string;
  /** ISO time it started. */
  started: string;
  /** Random per process: tells a restarted gateway of the same name from the one before. */
  instance: string;
}

/** Backend prefix of the registry: one key per live gateway, with a TTL the heartbeat renews. */
export const GATEWAYS_PREFIX = 'gateways/';
/** A gateway that stops renewing (kill -9, partition) drops out after this long. */
export const GATEWAY_TTL_MS = 15_000;
/** How often a gateway renews its record (and refreshes its view of the others): three tries per TTL. */
export const GATEWAY_HEARTBEAT_MS = 5_000;

export interface GatewayRegistryDeps {
  backend: Backend;
  clock: Clock;
  log: LogFn;
  ttlMs?: number;
  heartbeatMs?: number;
}

/**
 * This gateway's entry among the gateways sharing a backend: written with a
 * TTL at listen, renewed by a heartbeat, deleted on a clean stop. A gateway
 * that dies stops renewing and drops out within the TTL, so the list of
 * peers is the gateways alive within the last TTL. A cached copy of the
 * others, which `/v1/ping` (unauthenticated) answers from without touching
 * the backend, follows a watch on the registry (a gateway that starts, stops
 * or expires shows at once), and each heartbeat re-reads it in case the
 * watch missed something.
 */
export class GatewayRegistry {
  readonly #d: GatewayRegistryDeps;
  readonly #ttl: number;
  readonly #instance = randomUUID();
  #self: GatewayRecord | undefined;
  #peers: GatewayRecord[] = [];
  #timer: NodeJS.Timeout | undefined;
  /** The heartbeat running now, if any: a stop waits for it, or its write would bring the record back. */
  #beating: Promise<void> | undefined;
  /** The cache's re-read running now, and whether another must follow it (a change came in meanwhile). */
  #refreshing: Promise<void> | undefined;
  #again = false;
  readonly #watch = new AbortController();
  #stopped = false;

  constructor(deps: GatewayRegistryDeps) {
    this.#d = deps;
    this.#ttl = deps.ttlMs ?? GATEWAY_TTL_MS;
  }

  /** This gateway's record, once registered. */
  get self(): GatewayRecord | undefined {
    return this.#self;
  }

  /** The other live gateways as of the last heartbeat, by name. */
  get peers(): readonly GatewayRecord[] {
    return this.#peers;
  }

  /**
   * Publishes this gateway and starts the heartbeat. A live record of
   * another process under the same name is overwritten (logged): two
   * gateways with one name would hide each other's sessions, so the log
   * says to give each its own `gateway.name`.
   */
  async register(r: Omit<GatewayRecord, 'instance'>): Promise<GatewayRecord> {
    const rec: GatewayRecord = { ...r, instance: this.#instance };
    const before = parseRecord((await this.#d.backend.get(GATEWAYS_PREFIX + rec.name))?.value);
    if (before && before.instance !== rec.instance && before.peer_addr !== rec.peer_addr) {
      this.#d.log(
        'error',
        `another gateway named "${rec.name}" (internal address ${before.peer_addr}) was registered less than ${this.#ttl / 1000} s ago; if it still runs, give each gateway its own gateway.name`,
      );
    }
    this.#self = rec;
    await this.#beat();
    this.#schedule();
    watchPrefix(
      this.#d.backend,
      GATEWAYS_PREFIX,
      this.#watch.signal,
      (ev) => this.#changed(ev),
      () => this.#changed(),
      this.#d.log,
    );
    return rec;
  }

  /** Reads the live gateways now (this one included), by name. */
  async list(): Promise<GatewayRecord[]> {
    const now = this.#d.clock.now().getTime();
    const items = await this.#d.backend.range(GATEWAYS_PREFIX);
    const out: GatewayRecord[] = [];
    for (const it of items) {
      if (it.expires && it.expires.getTime() <= now) continue;
      const rec = parseRecord(it.value);
      if (rec && GATEWAYS_PREFIX + rec.name === it.key) out.push(rec);
    }
    return out.sort((a, b) => a.name.localeCompare(b.name));
  }

  /** One peer by name, from the backend (not the cache: a kill or join must not go to a stale address). */
  async peer(name: string): Promise<GatewayRecord | undefined> {
    if (name === this.#self?.name) return undefined;
    const it = await this.#d.backend.get(GATEWAYS_PREFIX + name);
    const rec = parseRecord(it?.value);
    return rec?.name === name ? rec : undefined;
  }

  /** Stops the heartbeat and removes this gateway's record (only if it is still ours). */
  async deregister(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#watch.abort();
    // A heartbeat already writing (on etcd: a lease grant, then the put) would re-create the record after
    // the delete below, and the others would list this stopped gateway as unreachable until it expired.
    await this.#beating?.catch(() => undefined);
    const self = this.#self;
    if (!self) return;
    const key = GATEWAYS_PREFIX + self.name;
    const it = await this.#d.backend.get(key);
    if (it && parseRecord(it.value)?.instance === self.instance) {
      await this.#d.backend.delete(key);
    }
  }

  async #beat(): Promise<void> {
    const self = this.#self;
    if (!self) return;
    await this.#d.backend.put(GATEWAYS_PREFIX + self.name, JSON.stringify(self), { ttlMs: this.#ttl });
    await this.#refresh();
  }

  /** A change seen by the watch (none: the watch restarted, so anything may have changed). */
  #changed(ev?: WatchEvent): void {
    if (this.#stopped) return;
    if (ev?.type === 'put') {
      // Every heartbeat rewrites the same record: only a new or changed one is worth a read.
      if (ev.item.key === GATEWAYS_PREFIX + this.#self?.name) return;
      const known = this.#peers.find((p) => GATEWAYS_PREFIX + p.name === ev.item.key);
      if (known && JSON.stringify(known) === ev.item.value) return;
    }
    this.#refresh().catch((err: unknown) =>
      // The next heartbeat reads the registry again.
      this.#d.log('error', 'reading the gateway registry after a change failed', err),
    );
  }

  /**
   * Re-reads the peers into the cache. Reads never overlap: one asked for
   * while another runs follows it, so the cache ends with a read that began
   * after the latest change (an older read finishing last would bring back
   * a gateway that just left).
   */
  #refresh(): Promise<void> {
    this.#again = true;
    this.#refreshing ??= (async () => {
      try {
        while (this.#again) {
          this.#again = false;
          const self = this.#self?.name;
          this.#peers = (await this.list()).filter((g) => g.name !== self);
        }
      } finally {
        this.#refreshing = undefined;
      }
    })();
    return this.#refreshing;
  }

  #schedule(): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(() => {
      this.#beating = this.#beat()
        .catch((err: unknown) =>
          // The record expires if this goes on for a TTL: the others then stop listing (and forwarding to) this gateway.
          this.#d.log('error', 'renewing this gateway in the registry failed; retrying', err),
        )
        .finally(() => {
          this.#beating = undefined;
          this.#schedule();
        });
    }, this.#d.heartbeatMs ?? GATEWAY_HEARTBEAT_MS);
    this.#timer.unref();
  }
}

function parseRecord(value: string | undefined): GatewayRecord | undefined {
  if (value === undefined) return undefined;
  try {
    const v = JSON.parse(value) as Partial<GatewayRecord>;
    if (
      typeof v.name === 'string' &&
      typeof v.peer_addr === 'string' &&
      typeof v.public_addr === 'string' &&
      typeof v.version === 'string' &&
      typeof v.started === 'string' &&
      typeof v.instance === 'string'
    ) {
      return v as GatewayRecord;
    }
  } catch {
    // A record this version cannot read is not a peer it can talk to.
  }
  return undefined;
}
