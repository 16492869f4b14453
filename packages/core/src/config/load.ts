import { readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import type { PostgresBackendConfig } from '../backend/postgres-config.js';
import { GatehouseError } from '../errors.js';
import type { SsoConnectorDoc } from '../sso/connectors.js';
import { parseDuration } from '../util/duration.js';
import { formatLintMessages, validateYaml } from '../util/yaml-validate.js';
import { type ConfigFile, configSchema, type ParsedConfig } from './schema.js';

/** One `audit.sinks` entry as the config file spells it (snake_case; `*_file` paths not read yet). */
export type AuditSinkConfigEntry = ParsedConfig['audit']['sinks'][number];

/** The resolved configuration every part of core reads (camelCase, durations in ms). */
export interface GatehouseConfig {
  clusterName: string;
  /** False when cluster_name came from the default: an existing data dir's name then wins. */
  clusterNameSet: boolean;
  dataDir: string;
  listen: { host: string; port: number };
  publicAddr: string;
  /** MySQL's own listener; undefined: off. */
  mysqlListen?: { host: string; port: number } | undefined;
  /** This gateway among those sharing the backend (config `gateway`). */
  gateway: {
    name?: string | undefined;
    peerListen: { host: string; port: number };
    peerAddr?: string | undefined;
  };
  /** Serve this machine as an SSH node too (config `builtin_node`). */
  builtinNode: boolean;
  /** Prometheus metrics, when configured; `listen` serves GET /metrics there. */
  metrics?: { listen?: { host: string; port: number } } | undefined;
  /** Version string of the MySQL greeting (config `mysql_server_version`); adapters have a default. */
  mysqlServerVersion?: string | undefined;
  databases: {
    name: string;
    protocol: 'postgres' | 'mysql';
    uri: string;
    labels: Record<string, string>;
    caFile?: string | undefined;
    serverName?: string | undefined;
    description?: string | undefined;
  }[];
  nodes: {
    name: string;
    addr: string;
    labels: Record<string, string>;
    hostCaKeys?: string[] | undefined;
    description?: string | undefined;
  }[];
  kubeClusters: {
    name: string;
    labels: Record<string, string>;
    kubeconfig?: string | undefined;
    context?: string | undefined;
    inCluster?: boolean | undefined;
    description?: string | undefined;
  }[];
  /** SSO connector documents as written (validated); secrets files are read by createGateway. */
  ssoConnectors: SsoConnectorDoc[];
  desktops: {
    name: string;
    addr: string;
    labels: Record<string, string>;
    caFile?: string | undefined;
    tlsFingerprint?: string | undefined;
    serverName?: string | undefined;
    insecureSkipVerify?: boolean | undefined;
    credentials?: { login: string; passwordFile: string; domain?: string | undefined }[] | undefined;
    description?: string | undefined;
  }[];
  auth: {
    secondFactor: 'otp' | 'off';
    maxLoginAttempts: number;
    lockoutMs: number;
    maxLockoutMs: number;
    webSessionTtlMs: number;
    inviteTtlMs: number;
    resetTtlMs: number;
    minPasswordLength: number;
    loginRatePerMinute: number;
  };
  tls: { serverNames: string[] };
  listener: {
    firstByteTimeoutMs: number;
    /** Silence after which the listener hands a connection to SSH (0: never). */
    sshBannerAfterMs: number;
    handshakeTimeoutMs: number;
    requestTimeoutMs: number;
    maxConcurrentHandshakes: number;
    perSourceMaxHandshakes: number;
    perSourceNetblock: { ipv4: number; ipv6: number };
    /** reservedHandshakes: slots of maxConcurrentHandshakes only known sources may take. */
    knownSources: { reservedHandshakes: number; ttlMs: number; max: number };
    rejectAudit: { windowMs: number; maxSources: number };
    proxyProtocolTrusted: string[];
    maxBodyBytes: number;
  };
  audit: {
    stdout: boolean;
    maxFileBytes: number;
    maxQueryBytes: number;
    maxParameterBytes: number;
    /** Export sinks as the config file describes them (files not read yet: createGateway reads them). */
    sinks: AuditSinkConfigEntry[];
    /** audit.retention: JSON-lines files of days older than this are deleted (absent: kept). */
    retentionMs?: number;
  };
  /** recordings.retention: recordings that ended longer ago are deleted (absent: kept). */
  recordings?: { retentionMs?: number };
  /** Where the state lives (config `backend`: SQLite in the data dir by default, or a shared PostgreSQL or etcd); files not read yet: createGateway reads them. */
  backend: BackendConfig;
  /** Access request plugins run in the gateway, as the config spells them (`gatehouse start` reads the sections). */
  plugins: PluginConfigEntry[];
  /** Where the config came from, for messages. */
  source: string;
}

/** One `plugins:` entry: the bot user, the state file and one plugin section (snake_case, files not read). */
export type PluginConfigEntry = ParsedConfig['plugins'][number];

export type BackendConfig =
  | { type: 'sqlite' }
  | PostgresBackendConfig
  | {
      type: 'etcd';
      endpoints: string[];
      prefix: string;
      tls?: { caFile: string; certFile?: string | undefined; keyFile?: string | undefined } | undefined;
      auth?: { username: string; passwordFile: string } | undefined;
      requestTimeoutMs: number;
      startupTimeoutMs?: number | undefined;
    };

export interface LoadConfigOptions {
  file?: string | undefined;
  /** The YAML text itself (tests, embedding); wins over `file`. */
  text?: string | undefined;
  /** Fields as the config file spells them, applied over the file (CLI flags). */
  values?: ConfigFile | undefined;
  /** Fields as the config file spells them, applied under the file (a mode's own defaults). */
  defaults?: ConfigFile | undefined;
  overrides?:
    | { dataDir?: string | undefined; listen?: string | undefined; mysqlListen?: string | undefined }
    | undefined;
  env?: NodeJS.ProcessEnv | undefined;
}

/** The data dir when neither config nor flags name one. */
export function defaultDataDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.GATEHOUSE_DATA_DIR) return path.resolve(env.GATEHOUSE_DATA_DIR);
  if (process.getuid?.() === 0) return '/var/lib/gatehouse';
  const xdg = env.XDG_DATA_HOME || path.join(os.homedir(), '.local', 'share');
  return path.join(xdg, 'gatehouse');
}

export function splitHostPort(addr: string): { host: string; port: number } {
  const m = /^\[?([^\]]*?)\]?:(\d+)$/.exec(addr);
  const port = m ? Number(m[2]) : Number.NaN;
  if (!m || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw new GatehouseError('GH_ERR_CONFIG_INVALID', `"${addr}" is not HOST:PORT`, {
      hint: 'write the address as HOST:PORT, e.g. 127.0.0.1:3080',
    });
  }
  return { host: m[1]!, port };
}

export async function loadConfig(opts: LoadConfigOptions = {}): Promise<GatehouseConfig> {
  const env = opts.env ?? process.env;
  let text = opts.text;
  let source = opts.text !== undefined ? '<inline config>' : '<defaults>';
  if (text === undefined && opts.file) {
    source = opts.file;
    try {
      text = await readFile(opts.file, 'utf8');
    } catch (cause) {
      throw new GatehouseError('GH_ERR_CONFIG_INVALID', `cannot read config file ${opts.file}`, {
        cause,
        hint: 'check the --config path, or start without --config to use the embedded defaults',
      });
    }
  }
  const raw: Record<string, unknown> = stripUndefined((opts.defaults ?? {}) as Record<string, unknown>);
  if (text !== undefined && text.trim() !== '') {
    const res = validateYaml(text, configSchema.partial());
    if (!res.value) {
      throw new GatehouseError(
        'GH_ERR_CONFIG_INVALID',
        `invalid config:\n${formatLintMessages(source, res.messages)}`,
        {
          hint: 'fix the lines above; docs: packages/core/README.md#configuration',
          details: { messages: res.messages },
        },
      );
    }
    // Only the keys the file wrote: the partial schema fills defaults (cluster_name
    // among them), and a default must not count as set (nor win over a mode's defaults).
    const written = new Set(Object.keys((parseYaml(text) ?? {}) as Record<string, unknown>));
    const value = stripUndefined(res.value as Record<string, unknown>);
    for (const k of Object.keys(value)) if (written.has(k)) raw[k] = value[k];
  }
  // Where each key's value came from, so an error names the thing to change.
  const from: Record<string, string> = {};
  const envMysql = env.GATEHOUSE_MYSQL_LISTEN?.trim();
  if (envMysql) {
    raw.mysql_listen = envMysql;
    from.mysql_listen = 'GATEHOUSE_MYSQL_LISTEN';
  }
  Object.assign(raw, stripUndefined((opts.values ?? {}) as Record<string, unknown>));
  if (opts.overrides?.dataDir) raw.data_dir = opts.overrides.dataDir;
  if (opts.overrides?.listen) {
    raw.listen = opts.overrides.listen;
    from.listen = '--listen';
  }
  if (opts.overrides?.mysqlListen) {
    raw.mysql_listen = opts.overrides.mysqlListen;
    from.mysql_listen = '--mysql-listen';
  }
  const parsed = configSchema.safeParse(raw);
  if (!parsed.success) {
    const first = parsed.error.issues[0];
    const key = first?.path.join('.') ?? '';
    const origin = from[key];
    throw new GatehouseError(
      'GH_ERR_CONFIG_INVALID',
      origin
        ? `invalid ${origin} value "${String(raw[key])}": ${first?.message ?? 'invalid'}`
        : `invalid config value ${key}: ${first?.message ?? 'invalid'}`,
      {
        hint: origin
          ? `fix ${origin} (it overrides the config key ${key})`
          : 'check the flag or config key named above',
      },
    );
  }
  return resolve(parsed.data, source, env, raw.cluster_name !== undefined);
}

function stripUndefined(o: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined));
}

function resolve(
  c: ParsedConfig,
  source: string,
  env: NodeJS.ProcessEnv,
  explicitCluster: boolean,
): GatehouseConfig {
  const listen = splitHostPort(c.listen);
  return {
    clusterName: c.cluster_name,
    clusterNameSet: explicitCluster,
    dataDir: path.resolve(c.data_dir ?? defaultDataDir(env)),
    listen,
    publicAddr: c.public_addr ?? c.listen,
    mysqlListen: c.mysql_listen && c.mysql_listen !== 'off' ? splitHostPort(c.mysql_listen) : undefined,
    builtinNode: c.builtin_node ?? false,
    gateway: {
      name: c.gateway.name,
      peerListen: splitHostPort(c.gateway.peer_listen),
      peerAddr: c.gateway.peer_addr,
    },
    metrics: c.metrics ? (c.metrics.listen ? { listen: splitHostPort(c.metrics.listen) } : {}) : undefined,
    mysqlServerVersion: c.mysql_server_version,
    databases: c.databases.map((d) => ({
      name: d.name,
      protocol: d.protocol,
      uri: d.uri,
      labels: d.labels,
      caFile: d.ca_file,
      serverName: d.server_name,
      description: d.description,
    })),
    nodes: c.nodes.map((n) => ({
      name: n.name,
      addr: n.addr,
      labels: n.labels,
      hostCaKeys: n.host_ca_keys,
      description: n.description,
    })),
    kubeClusters: c.kube_clusters.map((k) => ({
      name: k.name,
      labels: k.labels,
      kubeconfig: k.kubeconfig,
      context: k.context,
      inCluster: k.in_cluster,
      description: k.description,
    })),
    ssoConnectors: c.sso_connectors,
    desktops: c.desktops.map((d) => ({
      name: d.name,
      addr: d.addr,
      labels: d.labels,
      caFile: d.ca_file,
      tlsFingerprint: d.tls_fingerprint,
      serverName: d.server_name,
      insecureSkipVerify: d.insecure_skip_verify,
      credentials: d.credentials?.map((c) => ({
        login: c.login,
        passwordFile: c.password_file,
        domain: c.domain,
      })),
      description: d.description,
    })),
    auth: {
      secondFactor: c.auth.second_factor,
      maxLoginAttempts: c.auth.max_login_attempts,
      lockoutMs: parseDuration(c.auth.lockout),
      maxLockoutMs: parseDuration(c.auth.max_lockout),
      webSessionTtlMs: parseDuration(c.auth.web_session_ttl),
      inviteTtlMs: parseDuration(c.auth.invite_ttl),
      resetTtlMs: parseDuration(c.auth.reset_ttl),
      minPasswordLength: c.auth.min_password_length,
      loginRatePerMinute: c.auth.login_rate_per_minute,
    },
    tls: { serverNames: c.tls.server_names },
    listener: {
      firstByteTimeoutMs: parseDuration(c.listener.first_byte_timeout),
      sshBannerAfterMs: parseDuration(c.listener.ssh_banner_after),
      handshakeTimeoutMs: parseDuration(c.listener.handshake_timeout),
      requestTimeoutMs: parseDuration(c.listener.request_timeout),
      maxConcurrentHandshakes: c.listener.max_concurrent_handshakes,
      perSourceMaxHandshakes: c.listener.per_source_max_handshakes,
      perSourceNetblock: c.listener.per_source_netblock,
      knownSources: {
        reservedHandshakes: Math.floor(
          (c.listener.max_concurrent_handshakes * c.listener.known_sources.reserved_percent) / 100,
        ),
        ttlMs: parseDuration(c.listener.known_sources.ttl),
        max: c.listener.known_sources.max,
      },
      rejectAudit: {
        windowMs: parseDuration(c.listener.reject_audit.window),
        maxSources: c.listener.reject_audit.max_sources,
      },
      proxyProtocolTrusted: c.listener.proxy_protocol_trusted,
      maxBodyBytes: c.listener.max_body_bytes,
    },
    audit: {
      stdout: c.audit.stdout,
      maxFileBytes: c.audit.max_file_bytes,
      maxQueryBytes: c.audit.max_query_bytes,
      maxParameterBytes: c.audit.max_parameter_bytes,
      sinks: c.audit.sinks,
      ...(c.audit.retention ? { retentionMs: parseDuration(c.audit.retention) } : {}),
    },
    recordings: c.recordings.retention ? { retentionMs: parseDuration(c.recordings.retention) } : {},
    backend: resolveBackend(c.backend),
    plugins: c.plugins,
    source,
  };
}

function resolveBackend(b: ParsedConfig['backend']): BackendConfig {
  switch (b.type) {
    case 'sqlite':
      return { type: 'sqlite' };
    case 'postgres':
      return {
        type: 'postgres',
        uri: b.uri,
        passwordFile: b.password_file,
        tls: b.tls && {
          caFile: b.tls.ca_file,
          certFile: b.tls.cert_file,
          keyFile: b.tls.key_file,
          serverName: b.tls.server_name,
        },
        poolSize: b.pool_size,
      };
    case 'etcd':
      return {
        type: 'etcd',
        endpoints: b.endpoints,
        prefix: b.prefix,
        tls: b.tls && { caFile: b.tls.ca_file, certFile: b.tls.cert_file, keyFile: b.tls.key_file },
        auth: b.auth && { username: b.auth.username, passwordFile: b.auth.password_file },
        requestTimeoutMs: parseDuration(b.request_timeout),
        ...(b.startup_timeout ? { startupTimeoutMs: parseDuration(b.startup_timeout) } : {}),
      };
    default: {
      const _: never = b;
      throw new Error(`unknown backend ${JSON.stringify(_)}`);
    }
  }
}
