import diagnostics_channel from 'node:diagnostics_channel';
import { ConsecutiveBreaker, circuitBreaker, handleWhen } from 'cockatiel';
import {
  Etcd3,
  EtcdAuthenticationFailedError,
  EtcdInvalidAuthTokenError,
  EtcdPermissionDeniedError,
  type IKeyValue,
  type IOptions,
  type IResponseHeader,
  isRecoverableError,
  type Watcher,
} from 'etcd3';
import { type Clock, systemClock } from '../clock.js';
import { GatehouseError } from '../errors.js';
import type { LogFn } from '../log.js';
import {
  alreadyExists,
  checkKey,
  checkRange,
  checkValue,
  closedError,
  conflict,
  expiryFrom,
  makeItem,
  Waiters,
} from './keys.js';
import type { Backend, Item, PutOptions, RangeOptions, WatchEvent, WatchOptions } from './types.js';

export interface EtcdBackendOptions {
  /** Client URLs of the etcd members: http://host:port, or https://host:port with `tls`. */
  endpoints: string[];
  /** Every key lives under this prefix, so several clusters (or other programs) can share one etcd. Default `gatehouse/`. */
  prefix?: string;
  /** Expiry of TTL items is decided by this clock (etcd's leases only clean up afterwards). */
  clock?: Clock;
  /** etcd user and password (`etcdctl auth enable`). */
  auth?: { username: string; password: string };
  /** PEM: the CA that signed etcd's server certificate, and optionally a client certificate + key. */
  tls?: { caPem: string | Buffer; certPem?: string | Buffer; keyPem?: string | Buffer };
  /** A request that gets no answer in this long fails as GH_ERR_BACKEND_UNAVAILABLE. Default 5000. */
  requestTimeoutMs?: number;
  /**
   * How long etcd keeps a TTL item after it expired by `clock` before its
   * lease deletes it (and watchers see the delete). Reads hide it from the
   * moment it expires either way. Default 1000.
   */
  leaseGraceMs?: number;
  /**
   * At open, how long to keep retrying an etcd that does not answer (each
   * failed attempt is logged). Undefined: forever, as a daemon should.
   * Wrong credentials and a wrong endpoint syntax fail at once.
   */
  startupTimeoutMs?: number;
  /** Where open() reports each failed attempt and a watch that lost and regained etcd. */
  log?: LogFn;
  /** Stops open() from retrying (the gateway is shutting down). */
  signal?: AbortSignal;
}

/**
 * Each etcd watch publishes its state here ({ backend, prefix, state:
 * 'connected' | 'disconnected', resumeAt }): how long a watch was away is
 * what decides how late a lock reaches this gateway.
 */
export const ETCD_WATCH_CHANNEL = 'gatehouse:backend:etcd:watch';
const watchChannel = diagnostics_channel.channel(ETCD_WATCH_CHANNEL);

export interface EtcdWatchState {
  backend: EtcdBackend;
  prefix: string;
  state: 'connected' | 'disconnected';
  /** The first revision the watch has not delivered yet. */
  resumeAt: number;
}

/** Where the settings live in the config file, for error messages. */
const SETTING = {
  endpoints: 'backend.endpoints',
  auth: 'backend.auth.username / backend.auth.password_file',
  tls: 'backend.tls',
  prefix: 'backend.prefix',
};

/**
 * Values carry their expiry by the gateway's clock, because reads must hide
 * an expired item at once (etcd's leases are a cleanup that lags by up to a
 * second, and do not follow an injected clock). Layout:
 * `g1:<expires epoch ms or empty>\n<value>`.
 */
const ENVELOPE = 'g1:';

function encode(value: string, expires: number | null): Buffer {
  return Buffer.from(`${ENVELOPE}${expires ?? ''}\n${value}`, 'utf8');
}

function decode(raw: Buffer, key: string): { value: string; expires: number | null } {
  const s = raw.toString('utf8');
  const nl = s.indexOf('\n');
  const head = nl < 0 ? '' : s.slice(0, nl);
  if (!head.startsWith(ENVELOPE)) {
    throw new GatehouseError(
      'GH_ERR_BACKEND_UNAVAILABLE',
      `etcd key "${key}" holds a value Gatehouse did not write`,
      {
        hint: `Another program writes under ${SETTING.prefix}; give Gatehouse a prefix of its own.`,
      },
    );
  }
  const exp = head.slice(ENVELOPE.length);
  return { value: s.slice(nl + 1), expires: exp === '' ? null : Number(exp) };
}

/** The smallest key after every key starting with `prefix` (etcd's range_end); `\0` means no end. */
function rangeEnd(prefix: Buffer): Buffer {
  const end = Buffer.from(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i]! < 0xff) {
      end[i]!++;
      return end.subarray(0, i + 1);
    }
  }
  return Buffer.from([0]);
}

/** Items per range request: bounded so one answer stays far below gRPC's message limit. */
const PAGE = 500;

const revisionOf = (h: IResponseHeader | undefined) => Number(h?.revision ?? 0);

/** Checks the endpoint list and says which setting is wrong. */
export function parseEtcdEndpoints(endpoints: readonly string[], tls: boolean): string[] {
  if (endpoints.length === 0) {
    throw new GatehouseError('GH_ERR_CONFIG_INVALID', `${SETTING.endpoints} is empty`, {
      hint: 'List the client URLs of your etcd members, e.g. endpoints: [http://10.0.0.5:2379].',
    });
  }
  return endpoints.map((e) => {
    let url: URL;
    try {
      url = new URL(e);
    } catch {
      url = new URL('invalid:');
    }
    const scheme = url.protocol.replace(/:$/, '');
    if ((scheme !== 'http' && scheme !== 'https') || !url.hostname || !url.port || url.pathname.length > 1) {
      throw new GatehouseError(
        'GH_ERR_CONFIG_INVALID',
        `${SETTING.endpoints}: ${JSON.stringify(e)} is not an etcd client URL`,
        {
          hint: 'Write each endpoint as http://HOST:PORT, or https://HOST:PORT with backend.tls.ca_file (etcd listens on 2379 by default).',
        },
      );
    }
    if ((scheme === 'https') !== tls) {
      throw new GatehouseError(
        'GH_ERR_CONFIG_INVALID',
        `${SETTING.endpoints}: ${e} is ${scheme}, but ${SETTING.tls} is ${tls ? 'set' : 'not set'}`,
        {
          hint: tls
            ? 'Use https:// endpoints with backend.tls (etcd started with --cert-file), or remove backend.tls.'
            : "Set backend.tls.ca_file to the CA that signed etcd's certificate, or use http:// endpoints.",
        },
      );
    }
    return `${url.hostname.replace(/^\[|\]$/g, '')}:${url.port}`;
  });
}

interface Subscription {
  queue: WatchEvent[];
  failure?: GatehouseError;
}

/**
 * Backend on an etcd v3 cluster (decision 0033-etcd-backend): several
 * gateways share one store. Revisions are etcd's store revisions (global,
 * increasing, a delete takes one too); compare-and-swap is a transaction on
 * the key's mod_revision; TTL items get a lease so etcd removes them and
 * every watcher sees the delete; watches are etcd watches that resume from
 * the last revision they delivered after etcd goes away and comes back.
 */
export class EtcdBackend implements Backend {
  readonly kind = 'etcd';
  readonly endpoints: readonly string[];
  readonly prefix: string;
  readonly #client: Etcd3;
  readonly #root: Buffer;
  readonly #clock: Clock;
  readonly #graceMs: number;
  readonly #log: LogFn | undefined;
  readonly #waiters = new Waiters();
  readonly #subscriptions = new Set<Subscription>();
  /** The newest store revision any answer showed: a new watch starts after it. */
  #seen = 0;
  #closed = false;

  static async open(opts: EtcdBackendOptions): Promise<EtcdBackend> {
    const backend = new EtcdBackend(opts);
    try {
      await backend.#waitReachable(opts);
    } catch (e) {
      await backend.close();
      throw e;
    }
    return backend;
  }

  private constructor(opts: EtcdBackendOptions) {
    const hosts = parseEtcdEndpoints(opts.endpoints, opts.tls !== undefined);
    this.endpoints = [...opts.endpoints];
    this.prefix = opts.prefix ?? 'gatehouse/';
    this.#root = Buffer.from(this.prefix, 'utf8');
    this.#clock = opts.clock ?? systemClock;
    this.#graceMs = opts.leaseGraceMs ?? 1000;
    this.#log = opts.log;
    const timeout = opts.requestTimeoutMs ?? 5000;
    const options: IOptions = {
      hosts,
      dialTimeout: timeout,
      // A deadline on every call, so an etcd that stops answering fails the
      // request (fail closed) instead of parking it; watch streams stay open.
      defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + timeout }),
      // Gatehouse values go up to a few MiB (a 1 MiB value plus a page of others).
      grpcOptions: { 'grpc.max_receive_message_length': 64 * 1024 * 1024 },
      faultHandling: {
        // etcd3's default skips a host for 5 s after three failures; a
        // gateway should serve again within about a second of etcd's return.
        host: () =>
          circuitBreaker(handleWhen(isRecoverableError), {
            halfOpenAfter: 1000,
            breaker: new ConsecutiveBreaker(3),
          }),
      },
    };
    if (opts.auth) options.auth = { username: opts.auth.username, password: opts.auth.password };
    if (opts.tls) {
      options.credentials = {
        rootCertificate: Buffer.from(opts.tls.caPem),
        ...(opts.tls.certPem ? { certChain: Buffer.from(opts.tls.certPem) } : {}),
        ...(opts.tls.keyPem ? { privateKey: Buffer.from(opts.tls.keyPem) } : {}),
      };
    }
    this.#client = new Etcd3(options);
  }

  async #waitReachable(opts: EtcdBackendOptions): Promise<void> {
    const started = Date.now();
    for (let attempt = 1; ; attempt++) {
      try {
        // A read under the prefix checks the connection, the credentials and the user's permission at once.
        await this.#call('connect', () =>
          this.#client.kv.range({ key: this.#root, limit: 1, keys_only: true }),
        );
        return;
      } catch (e) {
        const err = e as GatehouseError;
        if (err.code !== 'GH_ERR_BACKEND_UNAVAILABLE' || this.#closed) throw err;
        const left =
          opts.startupTimeoutMs === undefined ? Infinity : opts.startupTimeoutMs - (Date.now() - started);
        if (left <= 0 || opts.signal?.aborted) throw err;
        const delay = Math.min(left, 250 * 2 ** Math.min(attempt - 1, 4));
        this.#log?.('error', `etcd is not reachable (attempt ${attempt}); retrying in ${delay} ms`, err);
        await this.#waiters.wait(delay, opts.signal);
      }
    }
  }

  #full(key: string): Buffer {
    return Buffer.concat([this.#root, Buffer.from(key, 'utf8')]);
  }

  #short(full: Buffer): string {
    return full.subarray(this.#root.length).toString('utf8');
  }

  #note(h: IResponseHeader | undefined): number {
    const rev = revisionOf(h);
    if (rev > this.#seen) this.#seen = rev;
    return rev;
  }

  /** Runs one etcd call and turns its failure into a GatehouseError that names the setting to check. */
  async #call<T>(op: string, fn: () => Promise<T>): Promise<T> {
    if (this.#closed) throw closedError(this.kind);
    try {
      return await fn();
    } catch (e) {
      throw this.#wrap(e, op);
    }
  }

  #wrap(e: unknown, op: string): GatehouseError {
    if (e instanceof GatehouseError) return e;
    if (this.#closed) return closedError(this.kind);
    const msg = e instanceof Error ? e.message : String(e);
    if (e instanceof EtcdAuthenticationFailedError || e instanceof EtcdInvalidAuthTokenError) {
      return new GatehouseError(
        'GH_ERR_CONFIG_INVALID',
        `etcd refused the credentials in ${SETTING.auth} (${msg})`,
        {
          hint: 'Check the user name and the password file; `etcdctl user get NAME` shows the user exists.',
          cause: e,
        },
      );
    }
    if (e instanceof EtcdPermissionDeniedError) {
      return new GatehouseError(
        'GH_ERR_CONFIG_INVALID',
        `the etcd user in ${SETTING.auth} may not ${op} under ${JSON.stringify(this.prefix)} (${msg})`,
        {
          hint: `Grant the user a role with readwrite on the prefix: etcdctl role grant-permission ROLE --prefix=true readwrite ${this.prefix}`,
          cause: e,
        },
      );
    }
    return new GatehouseError(
      'GH_ERR_BACKEND_UNAVAILABLE',
      `etcd at ${this.endpoints.join(', ')} did not complete ${op}: ${msg}`,
      {
        hint: `Check that etcd is running and reachable at ${SETTING.endpoints} (and ${SETTING.tls} if it uses TLS). Gatehouse reconnects by itself; until then logins and new sessions fail.`,
        cause: e,
      },
    );
  }

  #now(): number {
    return this.#clock.now().getTime();
  }

  /** The stored item as etcd has it (expired or not), or undefined. */
  async #read(key: string): Promise<{ kv: IKeyValue; item: Item; live: boolean } | undefined> {
    const res = await this.#call('a read', () => this.#client.kv.range({ key: this.#full(key) }));
    this.#note(res.header);
    const kv = res.kvs[0];
    if (!kv) return undefined;
    const item = this.#item(key, kv);
    return { kv, item, live: this.#live(item) };
  }

  #item(key: string, kv: IKeyValue): Item {
    const { value, expires } = decode(kv.value, key);
    return makeItem(key, value, Number(kv.mod_revision), expires);
  }

  #live(item: Item): boolean {
    return item.expires === undefined || item.expires.getTime() > this.#now();
  }

  /** A lease that outlives `expires` by the grace period, or '0' (none). */
  async #lease(expires: number | null): Promise<string> {
    if (expires === null) return '0';
    const ttl = Math.max(1, Math.ceil((expires - this.#now() + this.#graceMs) / 1000));
    const res = await this.#call('a lease grant', () => this.#client.leaseClient.leaseGrant({ TTL: ttl }));
    return res.ID;
  }

  async get(key: string): Promise<Item | undefined> {
    checkKey(key);
    const cur = await this.#read(key);
    return cur?.live ? cur.item : undefined;
  }

  async put(key: string, value: string, opts?: PutOptions): Promise<Item> {
    checkKey(key);
    checkValue(value);
    const expires = expiryFrom(this.#now(), opts);
    const lease = await this.#lease(expires);
    const res = await this.#call('a write', () =>
      this.#client.kv.put({ key: this.#full(key), value: encode(value, expires), lease }),
    );
    return makeItem(key, value, this.#note(res.header), expires);
  }

  async create(key: string, value: string, opts?: PutOptions): Promise<Item> {
    return this.#writeIf(key, value, opts, (cur) => {
      if (cur) throw alreadyExists(key);
    });
  }

  async compareAndSwap(
    key: string,
    expectedRevision: number | null,
    value: string,
    opts?: PutOptions,
  ): Promise<Item> {
    return this.#writeIf(key, value, opts, (cur) => {
      const actual = cur?.revision ?? null;
      if (actual !== expectedRevision) throw conflict(key, expectedRevision, actual);
    });
  }

  /**
   * Reads the key, lets `check` refuse, then writes in a transaction that
   * holds only if the key is still at the revision read (an expired item
   * counts as missing but is replaced the same way). A lost race reads again,
   * so `check` always judges the current state.
   */
  async #writeIf(
    key: string,
    value: string,
    opts: PutOptions | undefined,
    check: (live: Item | undefined) => void,
  ): Promise<Item> {
    checkKey(key);
    checkValue(value);
    const expires = expiryFrom(this.#now(), opts);
    const full = this.#full(key);
    let lease: string | undefined;
    for (;;) {
      const cur = await this.#read(key);
      check(cur?.live ? cur.item : undefined);
      lease ??= await this.#lease(expires);
      const leaseId = lease;
      const res = await this.#call('a compare-and-swap', () =>
        this.#client.kv.txn({
          compare: [{ key: full, target: 'Mod', result: 'Equal', mod_revision: cur?.kv.mod_revision ?? 0 }],
          success: [{ request_put: { key: full, value: encode(value, expires), lease: leaseId } }],
        }),
      );
      const rev = this.#note(res.header);
      if (res.succeeded) return makeItem(key, value, rev, expires);
    }
  }

  async delete(key: string): Promise<boolean> {
    checkKey(key);
    for (;;) {
      const cur = await this.#read(key);
      if (!cur) return false;
      // An expired item is removed too (watchers see it go), but was already missing to the caller.
      if (await this.#deleteAt(cur.kv)) return cur.live;
    }
  }

  async #deleteAt(kv: IKeyValue): Promise<boolean> {
    const res = await this.#call('a delete', () =>
      this.#client.kv.txn({
        compare: [{ key: kv.key, target: 'Mod', result: 'Equal', mod_revision: kv.mod_revision }],
        success: [{ request_delete_range: { key: kv.key } }],
      }),
    );
    this.#note(res.header);
    return res.succeeded;
  }

  async range(prefix: string, opts?: RangeOptions): Promise<Item[]> {
    checkRange(opts);
    const limit = opts?.limit;
    const out: Item[] = [];
    if (limit === 0) return out;
    // A small limit reads small pages (a caller asking for one item must not pull 500 values).
    for await (const item of this.#scan(
      prefix,
      opts?.startAfter,
      Math.min(PAGE, Math.max(limit ?? PAGE, 16)),
    )) {
      if (this.#live(item)) out.push(item);
      if (limit !== undefined && out.length >= limit) break;
    }
    return out;
  }

  /** Every stored item under `prefix` (expired ones too), in key order, paged, all at one store revision. */
  async *#scan(prefix: string, startAfter?: string, page = PAGE): AsyncGenerator<Item> {
    const base = this.#full(prefix);
    const end = rangeEnd(base);
    let from = base;
    if (startAfter !== undefined) {
      const after = Buffer.concat([this.#full(startAfter), Buffer.from([0])]);
      if (Buffer.compare(after, from) > 0) from = after;
    }
    let revision: string | undefined;
    for (;;) {
      if (end.length !== 1 || end[0] !== 0) {
        if (Buffer.compare(from, end) >= 0) return;
      }
      const res = await this.#call('a range read', () =>
        this.#client.kv.range({ key: from, range_end: end, limit: page, ...(revision ? { revision } : {}) }),
      );
      revision ??= res.header.revision;
      this.#note(res.header);
      for (const kv of res.kvs) yield this.#item(this.#short(kv.key), kv);
      const last = res.kvs[res.kvs.length - 1];
      if (!res.more || !last) return;
      from = Buffer.concat([last.key, Buffer.from([0])]);
    }
  }

  watch(prefix: string, opts: WatchOptions = {}): AsyncIterable<WatchEvent> {
    // Fixed now: the watch covers every change after the newest revision this instance has seen,
    // so a write this process makes after the call is never missed.
    const start = this.#seen + 1;
    return this.#events(prefix, start, opts.signal);
  }

  async *#events(prefix: string, start: number, signal: AbortSignal | undefined): AsyncGenerator<WatchEvent> {
    if (this.#closed) throw closedError(this.kind);
    if (signal?.aborted) return;
    const sub: Subscription = { queue: [] };
    this.#subscriptions.add(sub);
    const base = this.#full(prefix);
    /** The first revision not delivered yet: where a reconnect resumes. */
    let next = start;
    let watcher: Watcher | undefined;
    let lost = false;
    const publish = (state: EtcdWatchState['state']) => {
      if (watchChannel.hasSubscribers) {
        watchChannel.publish({ backend: this, prefix, state, resumeAt: next } satisfies EtcdWatchState);
      }
    };
    try {
      watcher = this.#client
        .watch()
        .inRange({ start: base, end: rangeEnd(base) })
        .startRevision(String(next))
        .watcher();
      watcher.on('data', (res) => {
        let last = next - 1;
        for (const ev of res.events) {
          const rev = Number(ev.kv.mod_revision);
          // After a resume etcd may send again what was already delivered.
          if (rev < next) continue;
          const key = this.#short(ev.kv.key);
          try {
            sub.queue.push(
              ev.type === 'Delete'
                ? { type: 'delete', key, revision: rev }
                : { type: 'put', item: this.#item(key, ev.kv) },
            );
          } catch (e) {
            sub.failure ??= this.#wrap(e, 'a watch');
          }
          last = Math.max(last, rev);
        }
        next = last + 1;
        this.#note(res.header);
        this.#waiters.wakeAll();
      });
      watcher.on('disconnected', (err) => {
        // etcd3 would resume from the revision in the last header it got; the
        // header of etcd's "created" answer is already the current revision
        // while the older events it replays come in a later message, so a cut
        // in between would skip them. Resume from what was delivered instead.
        (watcher!.request as { start_revision?: string }).start_revision = String(next);
        if (!lost)
          this.#log?.('error', `the etcd watch on "${prefix}" lost etcd; resuming at revision ${next}`, err);
        lost = true;
        publish('disconnected');
      });
      watcher.on('connected', () => {
        if (lost) this.#log?.('debug', `the etcd watch on "${prefix}" resumed at revision ${next}`);
        lost = false;
        publish('connected');
      });
      watcher.on('error', (err) => {
        // Cancelled by etcd: most often the resume revision was compacted away.
        // End with an error, so the consumer re-reads what it guards and watches again.
        sub.failure ??= this.#wrap(err, `a watch on "${prefix}" from revision ${next}`);
        this.#waiters.wakeAll();
      });
      for (;;) {
        if (signal?.aborted || this.#closed) return;
        const ev = sub.queue.shift();
        if (ev) {
          yield ev;
          continue;
        }
        if (sub.failure) {
          // The next watch() starts from now rather than from the lost revision.
          await this.#client.kv.range({ key: this.#root, limit: 1, keys_only: true }).then(
            (r) => this.#note(r.header),
            () => undefined,
          );
          throw sub.failure;
        }
        await this.#waiters.wait(undefined, signal);
      }
    } finally {
      this.#subscriptions.delete(sub);
      // Not awaited: cancelling waits for etcd's answer, which never comes for a
      // watch etcd itself cancelled, and ending the iteration must not hang on the network.
      if (watcher && !this.#closed && !sub.failure) {
        void watcher
          .cancel()
          .catch((e: unknown) => this.#log?.('debug', 'cancelling an etcd watch failed', e));
      }
    }
  }

  async sweepExpired(): Promise<number> {
    let n = 0;
    for await (const item of this.#scan('')) {
      if (this.#live(item)) continue;
      const kv = { key: this.#full(item.key), mod_revision: String(item.revision) } as IKeyValue;
      if (await this.#deleteAt(kv)) n++;
    }
    return n;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#waiters.wakeAll();
    this.#client.close();
  }
}
