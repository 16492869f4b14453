import { X509Certificate } from 'node:crypto';
import { isIP } from 'node:net';
import { userInfo } from 'node:os';
import {
  type AdminApi,
  caPinOf,
  createGateway,
  fetchPinnedCa,
  GatehouseClient,
  GatehouseError,
  type Gateway,
  loadConfig,
  parseHostPort,
} from '@gatehouse/core';
import type { Command } from 'commander';
import { ClientHome, type ProfileEntry, splitPems } from './profile.js';
import { writeText, writeWithBackpressure } from './stdio.js';

/** Options every verb understands (declared on the program, read with optsWithGlobals). */
export interface GlobalOpts {
  debug?: boolean;
  dataDir?: string;
  config?: string;
}

export interface Ctx {
  env: NodeJS.ProcessEnv;
  home: ClientHome;
  /** Text for stdout; dropped once its reader has gone away (the exit code then says so). */
  out(text: string): void;
  err(text: string): void;
  /** Output made piece by piece: waits while stdout's reader is slow, rejects once it has gone away. */
  write(data: string | Uint8Array): Promise<void>;
  now(): Date;
  /** Set by commands that run another program and must exit with its status (ssh, psql). */
  exitCode?: number;
}

export function makeCtx(env: NodeJS.ProcessEnv): Ctx {
  return {
    env,
    home: ClientHome.fromEnv(env),
    out: (t) => writeText(process.stdout, t),
    err: (t) => writeText(process.stderr, t),
    write: (d) => writeWithBackpressure(d),
    now: () => new Date(),
  };
}

/** Where admin verbs act: the data dir itself (like tctl on the auth server) or a proxy as the logged-in user. */
export type AdminTarget =
  | { kind: 'local'; api: AdminApi; gateway: Gateway; proxy: string; pin: string; close(): Promise<void> }
  | {
      kind: 'remote';
      api: GatehouseClient;
      proxy: string;
      pin: string;
      profile: ProfileEntry;
      close(): Promise<void>;
    };

export function wantsLocal(g: GlobalOpts, env: NodeJS.ProcessEnv): boolean {
  return Boolean(g.dataDir || g.config || env.GATEHOUSE_DATA_DIR);
}

export function localActor(): string {
  return `local:${userInfo().username}`;
}

export async function openLocalGateway(g: GlobalOpts, env: NodeJS.ProcessEnv): Promise<Gateway> {
  const config = await loadConfig({ file: g.config, overrides: { dataDir: g.dataDir }, env });
  // One command's few events: no index thread to start for them. A shared database that is down
  // fails the command at once (saying so) instead of waiting as the daemon does.
  return createGateway({ config, env, auditIndexThread: false, backendWaitMs: 0 });
}

/** Gateway.listen reports `address` as host:port already; a bare IP is accepted too. */
export function boundAddr(b: { address: string; port: number }): string {
  if (isIP(b.address) === 6) return `[${b.address}]:${b.port}`;
  if (isIP(b.address) === 4) return `${b.address}:${b.port}`;
  return b.address;
}

/** Runs `fn` on the admin target the command's global options pick (data dir or proxy), then closes it. */
export async function withAdmin<T>(cmd: Command, ctx: Ctx, fn: (t: AdminTarget) => Promise<T>): Promise<T> {
  const target = await openAdmin(cmd.optsWithGlobals<GlobalOpts>(), ctx);
  try {
    return await fn(target);
  } finally {
    await target.close();
  }
}

export async function openAdmin(g: GlobalOpts, ctx: Ctx): Promise<AdminTarget> {
  if (wantsLocal(g, ctx.env)) {
    const gateway = await openLocalGateway(g, ctx.env);
    // The address the gateway on this data dir really listens on (it recorded
    // it), not the defaults of a config this command may not even have.
    const proxy = (await gateway.lastListening())?.publicAddr ?? gateway.config.publicAddr;
    return {
      kind: 'local',
      api: gateway.admin,
      gateway,
      proxy,
      pin: gateway.caPin(),
      close: () => gateway.close(),
    };
  }
  const profile = ctx.home.current();
  if (!profile) {
    throw new GatehouseError('GH_ERR_UNAUTHENTICATED', 'no data dir given and not logged in', {
      hint:
        'on the gateway host pass --data-dir DIR (or --config FILE, or set GATEHOUSE_DATA_DIR); ' +
        'elsewhere log in first: gatehouse login --proxy HOST:PORT --user NAME',
    });
  }
  const api = profileClient(ctx, profile);
  return {
    kind: 'remote',
    api,
    proxy: profile.proxy,
    pin: profile.caPin ?? pinOfStored(ctx, profile),
    profile,
    close: async () => api.close(),
  };
}

/** A client authenticated with the profile's certificate (mutual TLS). */
export function profileClient(ctx: Ctx, profile: ProfileEntry): GatehouseClient {
  const keys = ctx.home.readKeys(profile);
  return new GatehouseClient({
    proxy: profile.proxy,
    caPem: splitPems(keys.cas),
    certPem: keys.tlsCert,
    keyPem: keys.tlsKey,
  });
}

function pinOfStored(ctx: Ctx, profile: ProfileEntry): string {
  const first = ctx.home.storedCas(profile.proxy)?.[0];
  return first ? caPinOf(new X509Certificate(first)) : 'sha256:<pin>';
}

export interface TrustOpts {
  caPin?: string;
  insecure?: boolean;
}

/**
 * CA certificates to verify `proxy` with: the pinned one fetched now, or the
 * one stored at an earlier login to the same proxy. `insecure` prints a warning.
 */
export async function trustProxy(
  ctx: Ctx,
  proxy: string,
  o: TrustOpts,
): Promise<{ caPem: string[]; pin: string | undefined }> {
  const { host, port } = parseHostPort(proxy);
  if (!o.caPin && !o.insecure) {
    const stored = ctx.home.storedCas(proxy);
    if (stored) return { caPem: stored, pin: ctx.home.readProfiles().profiles[proxy]?.caPin };
  }
  const got = await fetchPinnedCa({ host, port, pin: o.caPin, insecure: !o.caPin && o.insecure });
  if (!o.caPin) {
    ctx.err(
      `warning: --insecure: trusting the CA that ${proxy} presented without checking it.\n` +
        `warning: its pin is ${got.pin}; compare it with the pin printed by \`gatehouse start\` on the proxy.\n`,
    );
  }
  return { caPem: got.caPem, pin: got.pin };
}

export function acceptInviteCommand(proxy: string, pin: string, token: string): string {
  // A config with port 0 has no address clients could use until the daemon runs.
  const p = proxy.endsWith(':0') ? 'HOST:PORT' : proxy;
  return `gatehouse accept-invite --proxy ${p} --ca-pin ${pin} ${token}`;
}
