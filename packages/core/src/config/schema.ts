import { z } from 'zod';
import { parsePostgresUri } from '../backend/postgres-config.js';
import { ssoConnectorSchema } from '../sso/connectors.js';
import { isDuration, parseDuration } from '../util/duration.js';

const duration = z.string().refine(isDuration, { message: 'not a duration (write 30s, 15m, 8h, 1h30m)' });
const hostPort = z
  .string()
  .regex(/^(\[[0-9a-fA-F:]+\]|[^\s:[\]]+):\d{1,5}$/, { message: 'write HOST:PORT, e.g. 127.0.0.1:3080' });

const httpUrl = z.string().regex(/^https?:\/\/[^\s/]+/, {
  message: 'write an http:// or https:// URL, e.g. https://loki.example:3100',
});

/** What every export sink shares: its name, its spool bound and what happens at the bound. */
const exportSinkCommon = {
  /** Names the sink in alarms, `gatehouse status` and its spool file; default: the type. */
  name: z
    .string()
    .regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, { message: 'letters, digits, dots, dashes and underscores' })
    .optional(),
  /** Bytes of undelivered events the sink's spool (under the data dir) may hold. Default 256 MiB. */
  max_spool_bytes: z.number().int().min(1024).optional(),
  /** At the bound: block (default: new sessions are refused, fail closed) or drop_oldest (with an alarm). */
  on_full: z.enum(['block', 'drop_oldest']).optional(),
  /** Most events per request. */
  batch_max: z.number().int().min(1).max(10_000).optional(),
  /** CA (PEM file) the receiver's TLS certificate must chain to; default: the system CAs (HTTP), required for syslog tls. */
  ca_file: z.string().optional(),
};

/** `audit.sinks`: where events are exported besides the local record (docs/decisions/0026-audit-sinks.md). */
const auditSinkSchema = z.discriminatedUnion('type', [
  z
    .object({
      type: z.literal('syslog'),
      ...exportSinkCommon,
      /** tcp (RFC 6587 octet counting), tls (RFC 5425) or udp (RFC 5426). */
      protocol: z.enum(['tcp', 'tls', 'udp']),
      /** HOST:PORT of the receiver. */
      addr: hostPort,
      /** tls: the name its certificate must carry; default: the host of addr. */
      server_name: z.string().optional(),
      /** tls: a client certificate and key (PEM files) for receivers that authenticate senders. */
      cert_file: z.string().optional(),
      key_file: z.string().optional(),
      /** Syslog facility number, 0-23. Default 10 (authpriv). */
      facility: z.number().int().min(0).max(23).optional(),
      app_name: z.string().optional(),
      hostname: z.string().optional(),
      /** SD-ID of the element carrying id/type/cluster (NAME@PEN). Default gatehouse@32473. */
      sd_id: z
        .string()
        .regex(/^[!-~]{1,32}$/)
        .refine((v) => !/[= \]"]/.test(v), { message: 'no =, ], " or space' })
        .optional(),
      /** udp: largest datagram; longer events are rejected with an alarm. Default 8192. */
      max_udp_bytes: z.number().int().min(480).max(65_507).optional(),
    })
    .strict(),
  z
    .object({
      type: z.literal('loki'),
      ...exportSinkCommon,
      /** Loki's base URL; events go to <url>/loki/api/v1/push. */
      url: httpUrl,
      /** protobuf (snappy-compressed, default) or json. */
      encoding: z.enum(['protobuf', 'json']).optional(),
      /** Static labels added to every stream; keep them few and fixed (never per user or session). */
      labels: z
        .record(
          z.string().regex(/^[a-zA-Z_][a-zA-Z0-9_]*$/, { message: 'a Prometheus label name' }),
          z.string(),
        )
        .optional(),
      /** X-Scope-OrgID for a multi-tenant Loki. */
      tenant: z.string().optional(),
    })
    .strict(),
  z
    .object({
      type: z.literal('elasticsearch'),
      ...exportSinkCommon,
      /** Elasticsearch or OpenSearch base URL. */
      url: httpUrl,
      /** Index prefix: events go to <index>-YYYY.MM.DD; the template covers <index>-*. */
      index: z
        .string()
        .regex(/^[a-z0-9][a-z0-9._-]*$/, { message: 'lowercase letters, digits, dots, dashes, underscores' })
        .optional(),
      username: z.string().optional(),
      /** File holding the password (never the password itself in the config). */
      password_file: z.string().optional(),
      /** File holding an API key (base64 id:key). */
      api_key_file: z.string().optional(),
    })
    .strict(),
  z
    .object({
      type: z.literal('webhook'),
      ...exportSinkCommon,
      /** Where batches are POSTed. */
      url: httpUrl,
      /** File holding the HMAC-SHA256 key that signs each batch. */
      secret_file: z.string(),
    })
    .strict(),
]);

/**
 * The daemon's YAML config. Every field has a default so `gatehouse start`
 * with no file is a working gateway; defaults live here and nowhere else.
 */
export const configSchema = z
  .object({
    /** Name of this cluster; appears in certificates, audit events and known_hosts. */
    cluster_name: z
      .string()
      .regex(/^[a-z0-9][a-z0-9.-]{0,62}$/, { message: 'lowercase letters, digits, dots and dashes' })
      .default('gatehouse'),
    /** Where the SQLite backend, secrets key, audit log and recordings live. */
    data_dir: z.string().optional(),
    /**
     * Where users, roles, locks, CAs (sealed), tokens, resources and web
     * sessions live: sqlite (default, a file in the data dir, for one gateway),
     * or postgres or etcd, which several gateways can share (decisions
     * 0034-postgres-backend and 0033-etcd-backend). Every gateway on one
     * shared backend needs the same secrets key (GATEHOUSE_SECRETS_KEY), which
     * seals the CAs.
     */
    backend: z
      .discriminatedUnion('type', [
        z.object({ type: z.literal('sqlite') }).strict(),
        z
          .object({
            type: z.literal('postgres'),
            /** postgres://USER@HOST:5432/DATABASE; ?sslmode=disable|verify-ca|verify-full (default verify-full over TCP; require, unverified TLS, is refused), ?host=/socket/dir. */
            uri: z.string().superRefine((v, ctx) => {
              const r = parsePostgresUri(v);
              if (typeof r === 'string') ctx.addIssue({ code: 'custom', message: r });
            }),
            /** File whose first line is the password (else the URI's, else GATEHOUSE_BACKEND_PASSWORD). */
            password_file: z.string().optional(),
            tls: z
              .object({
                /** CA (PEM file) the server's certificate must chain to; default: the system CAs. */
                ca_file: z.string().optional(),
                /** Client certificate and key (PEM files), for `hostssl ... cert` authentication. */
                cert_file: z.string().optional(),
                key_file: z.string().optional(),
                /** Name the server's certificate must carry; default: the host of uri. */
                server_name: z.string().optional(),
              })
              .strict()
              .optional(),
            /** Connections each gateway keeps open for reads and writes (plus one for LISTEN). Default 10. */
            pool_size: z.number().int().min(1).max(200).optional(),
          })
          .strict(),
        z
          .object({
            type: z.literal('etcd'),
            /** Client URLs of the etcd members: http://HOST:PORT, or https://HOST:PORT with `tls`. */
            endpoints: z.array(z.string()).min(1),
            /** Every key lives under this prefix; give each Gatehouse cluster sharing an etcd its own. */
            prefix: z.string().min(1).default('gatehouse/'),
            /** TLS to etcd: the CA of etcd's server certificate, and a client certificate if etcd requires one. */
            tls: z
              .object({
                ca_file: z.string(),
                cert_file: z.string().optional(),
                key_file: z.string().optional(),
              })
              .strict()
              .optional(),
            /** etcd user (etcdctl auth enable) and a file whose first line is its password. */
            auth: z
              .object({ username: z.string().min(1), password_file: z.string() })
              .strict()
              .optional(),
            /** A request etcd does not answer within this fails (the gateway fails closed). */
            request_timeout: duration.default('5s'),
            /** At start, give up after this long if etcd is unreachable. Default: keep retrying (and say so). */
            startup_timeout: duration.optional(),
          })
          .strict(),
      ])
      .default({ type: 'sqlite' }),
    /** The one listener (SSH, PostgreSQL, TLS: HTTP API, web UI, tunnels). */
    listen: hostPort.default('127.0.0.1:3080'),
    /**
     * This gateway among the others sharing the backend (decision
     * 0039-gateway-peers): `name` (default `<hostname>:<listen port>`) names it
     * in `sessions ls`, `/v1/ping` and the registry; `peer_listen` is the
     * internal mTLS channel other gateways reach it on (default
     * 127.0.0.1:0: set a routable address when gateways run on several
     * machines); `peer_addr` is the host:port they are told (default
     * `peer_listen` with the bound port).
     */
    gateway: z
      .object({
        name: z
          .string()
          .regex(/^[A-Za-z0-9][A-Za-z0-9._:-]{0,62}$/, {
            message: 'letters, digits, dots, dashes, colons and underscores (up to 63)',
          })
          .optional(),
        peer_listen: hostPort.default('127.0.0.1:0'),
        peer_addr: hostPort.optional(),
      })
      .strict()
      .default({ peer_listen: '127.0.0.1:0' }),
    /** host:port clients use to reach the listener; defaults to `listen`. */
    public_addr: hostPort.optional(),
    /**
     * MySQL's own listener (MySQL is server-speaks-first and cannot share the
     * main port), or `off`. Off unless set, except in the embedded quick start
     * (no config file), where it is 127.0.0.1:3036. Port 0 picks a free port;
     * clients are told the bound one. `--mysql-listen` and
     * `GATEHOUSE_MYSQL_LISTEN` win over this key.
     */
    mysql_listen: z.union([z.literal('off'), hostPort]).optional(),
    /**
     * Also serve this machine as an SSH node (the built-in node service, on a
     * free loopback port, registered as <hostname> with label builtin=true).
     * Default: on in the embedded quick start (no config file), off with one.
     */
    builtin_node: z.boolean().optional(),
    /**
     * Prometheus metrics (opt-in): `listen` is a host:port of its own where
     * GET /metrics answers in plain HTTP without authentication; keep it on
     * loopback or a monitoring network. An empty object keeps the registry
     * (gw.metrics) for an embedder to serve.
     */
    metrics: z
      .object({
        listen: hostPort.optional(),
      })
      .strict()
      .optional(),
    /**
     * Version string MySQL clients see in the greeting, before anyone logged
     * in. Default `8.0.0-Gatehouse-<version>`. Never a database's own (that
     * tells anyone who connects what to attack); a fleet of MariaDB servers may
     * set a MariaDB-style string (e.g. `5.5.5-10.11.0-MariaDB-Gatehouse`) for
     * drivers that change behaviour by server family, such as mysql2's JSON
     * parameters.
     */
    mysql_server_version: z
      .string()
      .regex(/^\d+\.\d+\.\d+[\x21-\x7e]*$/, {
        message: 'write MAJOR.MINOR.PATCH, optionally followed by a suffix such as -Gatehouse',
      })
      .optional(),
    /** Databases Gatehouse fronts (more can be added at run time with `gatehouse db add`). */
    databases: z
      .array(
        z
          .object({
            name: z.string(),
            protocol: z.enum(['postgres', 'mysql']),
            /** host:port of the database server. */
            uri: z.string(),
            labels: z.record(z.string(), z.string()).default({}),
            /** CA file that signed the database's server certificate (verify-full). */
            ca_file: z.string().optional(),
            /** Name to verify in the database's certificate; default: the host of uri. */
            server_name: z.string().optional(),
            description: z.string().optional(),
          })
          .strict(),
      )
      .default([]),
    /** SSH nodes Gatehouse fronts (more can be added at run time with `gatehouse nodes add`). */
    nodes: z
      .array(
        z
          .object({
            name: z.string(),
            /** host:port of the node's SSH server (an sshd trusting the user CA, or the node service). */
            addr: z.string(),
            labels: z.record(z.string(), z.string()).default({}),
            /** Extra host CA public keys (OpenSSH lines) trusted for this node's host certificate. */
            host_ca_keys: z.array(z.string()).optional(),
            description: z.string().optional(),
          })
          .strict(),
      )
      .default([]),
    /** Kubernetes clusters Gatehouse fronts (more can be added at run time with `gatehouse kube add`). */
    kube_clusters: z
      .array(
        z
          .object({
            name: z.string(),
            labels: z.record(z.string(), z.string()).default({}),
            /** Kubeconfig file with Gatehouse's own upstream credentials. */
            kubeconfig: z.string().optional(),
            /** Context in that kubeconfig; default: its current-context. */
            context: z.string().optional(),
            /** Use the pod's service account (Gatehouse running inside the cluster). */
            in_cluster: z.boolean().optional(),
            description: z.string().optional(),
          })
          .strict(),
      )
      .default([]),
    /**
     * SSO connectors (kind oidc, github or saml), the same documents
     * `gatehouse sso add -f` takes; more can be added at run time.
     * client_secret_file and a SAML idp_metadata_file are read at start
     * (relative paths from the working directory).
     */
    sso_connectors: z.array(ssoConnectorSchema).default([]),
    /** RDP desktops Gatehouse fronts (more can be added at run time with `gatehouse desktops add`). */
    desktops: z
      .array(
        z
          .object({
            name: z.string(),
            /** host:port of the desktop's RDP server (port 3389 when omitted). */
            addr: z.string(),
            labels: z.record(z.string(), z.string()).default({}),
            /** PEM file of the CA that signs the desktop's TLS certificate. */
            ca_file: z.string().optional(),
            /** SHA-256 fingerprint of the desktop's TLS certificate (pinning instead of a CA). */
            tls_fingerprint: z.string().optional(),
            /** Name checked in the certificate; default: the host of addr. */
            server_name: z.string().optional(),
            /** Accept any certificate (test desktops only; every session is audited with tls_verify: skipped). */
            insecure_skip_verify: z.boolean().optional(),
            /** Windows accounts the gateway logs in with; passwords come from files, never the config. */
            credentials: z
              .array(
                z
                  .object({
                    login: z.string(),
                    /** File holding the password (its first line). */
                    password_file: z.string(),
                    domain: z.string().optional(),
                  })
                  .strict(),
              )
              .optional(),
            description: z.string().optional(),
          })
          .strict(),
      )
      .default([]),
    auth: z
      .object({
        /** `otp` requires a TOTP code at login; `off` is for test setups only. */
        second_factor: z.enum(['otp', 'off']).default('otp'),
        /** Failed logins before the account is locked out for `lockout`. */
        max_login_attempts: z.number().int().min(1).max(100).default(5),
        /** First lockout; doubles with each further failure up to `max_lockout`. */
        lockout: duration.default('1m'),
        max_lockout: duration.default('30m'),
        /** Lifetime of web sessions (cookie). */
        web_session_ttl: duration.default('12h'),
        invite_ttl: duration.default('24h'),
        reset_ttl: duration.default('1h'),
        min_password_length: z.number().int().min(8).max(256).default(12),
        /** Login attempts per client IP per minute before 429. */
        login_rate_per_minute: z.number().int().min(1).default(30),
      })
      .strict()
      .prefault({}),
    tls: z
      .object({
        /** Extra DNS names and IPs for the listener's certificate. */
        server_names: z.array(z.string()).default([]),
      })
      .strict()
      .prefault({}),
    listener: z
      .object({
        /**
         * From accept until the client's protocol is recognised (a PROXY
         * header included). Measured from accept: bytes that trickle in do
         * not extend it.
         */
        first_byte_timeout: duration.default('10s'),
        /**
         * A client that has sent nothing this long after connecting is taken
         * for an SSH client waiting for the server's banner (ssh-keyscan,
         * some libraries) and handed to SSH, which speaks first. Clients of
         * every other protocol on this port speak first at once (TLS, psql,
         * PROXY headers); MySQL clients, which wait too, have their own port.
         * The connection keeps its handshake slot and first_byte_timeout
         * until it answers. 0s: never (a silent client waits for
         * first_byte_timeout and is dropped).
         */
        ssh_banner_after: duration.default('2s'),
        /**
         * From accept until the TLS handshake is finished and the connection
         * is routed (MySQL's port: until its handshake response). Measured
         * from accept: bytes that trickle in do not extend it. After routing,
         * each protocol's own handshake up to authentication gets the same
         * time again: the SSH key exchange and login, the PostgreSQL startup
         * packet, an HTTP request's headers.
         */
        handshake_timeout: duration.default('10s'),
        /** An HTTP request's body (file uploads excepted: they get an idle limit) must arrive within this time. */
        request_timeout: duration.default('30s'),
        /**
         * Connections between accept and routing, on each port (the main one
         * and each dedicated one); more are refused at once.
         */
        max_concurrent_handshakes: z.number().int().min(1).default(512),
        /**
         * Of those, how many one source (see per_source_netblock) may hold;
         * more from it are refused at once, before any TLS work (OpenSSH's
         * PerSourceMaxStartups). Raise it for many users behind one NAT.
         */
        per_source_max_handshakes: z.number().int().min(1).default(32),
        /**
         * What counts as one source: addresses that share this many leading
         * bits (OpenSSH's PerSourceNetBlockSize). A trusted proxy is never a
         * source: its connections count for the client its PROXY header names.
         */
        per_source_netblock: z
          .object({
            ipv4: z.number().int().min(0).max(32).default(32),
            ipv6: z.number().int().min(0).max(128).default(64),
          })
          .strict()
          .prefault({}),
        /**
         * Sources (blocks) that recently presented a valid Gatehouse client
         * certificate or logged in: a flood from other addresses cannot take
         * the slots kept for them.
         */
        known_sources: z
          .object({
            /** Percent of max_concurrent_handshakes that only known sources may take. */
            reserved_percent: z.number().int().min(0).max(90).default(25),
            /** How long a source stays known after it last authenticated. */
            ttl: duration.default('12h'),
            /** Most sources remembered; past it the least recently seen is forgotten. */
            max: z.number().int().min(0).default(10_000),
          })
          .strict()
          .prefault({}),
        /**
         * listener.reject audit events: the first refusal per source block,
         * reason and port is written at once, the ones after it are counted
         * into one listener.reject.summary per window.
         */
        reject_audit: z
          .object({
            window: duration
              .refine((d) => isDuration(d) && parseDuration(d) >= 1000, { message: 'at least 1s' })
              .default('1m'),
            /** Sources tracked at once (memory bound); refusals from more are merged into source "*". */
            max_sources: z.number().int().min(1).default(1024),
          })
          .strict()
          .prefault({}),
        /** PROXY protocol (v1/v2) headers are honoured only from these CIDRs. */
        proxy_protocol_trusted: z.array(z.string()).default([]),
        /** Largest HTTP request body accepted by the API. */
        max_body_bytes: z
          .number()
          .int()
          .min(1024)
          .default(1024 * 1024),
      })
      .strict()
      .prefault({}),
    audit: z
      .object({
        /** Also write every event as a JSON line to stdout. */
        stdout: z.boolean().default(false),
        /** Rotate a JSON-lines file when it reaches this many bytes. */
        max_file_bytes: z
          .number()
          .int()
          .min(1024)
          .default(64 * 1024 * 1024),
        /**
         * Bytes of a database statement's text kept in its db.session.query
         * record; a longer statement keeps this much plus its full length and
         * SHA-256. Also the budget for all bound parameters of one statement.
         */
        max_query_bytes: z
          .number()
          .int()
          .min(256)
          .default(32 * 1024),
        /** Bytes kept of each bound parameter of a statement (same rule as max_query_bytes). */
        max_parameter_bytes: z
          .number()
          .int()
          .min(16)
          .default(4 * 1024),
        /** Export sinks: syslog, Loki, Elasticsearch/OpenSearch, webhook (each with its own spool). */
        sinks: z.array(auditSinkSchema).default([]),
        /**
         * Delete JSON-lines files whose day is older than this (e.g. 400d), at
         * start and daily; each deletion is audited (audit.retention.delete)
         * and the hash chain keeps verifying from the oldest file kept.
         * Default: keep everything.
         */
        retention: duration.optional(),
      })
      .strict()
      .prefault({}),
    recordings: z
      .object({
        /**
         * Delete session recordings that ended longer ago than this (e.g.
         * 400d), at start and daily; each deletion is audited (recording.delete).
         * Default: keep everything.
         */
        retention: duration.optional(),
      })
      .strict()
      .prefault({}),
    /**
     * Access request plugins run inside the gateway (docs/decisions/0036):
     * each entry acts as the gateway user `user` (its roles need
     * review_requests, as a `plugin run` bot's do), keeps its `state_file`,
     * and has one plugin section (webhook, slack, mattermost, jira or
     * pagerduty) with the keys of `gatehouse plugin run --config`; `gatehouse
     * start` checks those. Paths are relative to the config file.
     */
    plugins: z
      .array(
        z
          .object({
            user: z.string().min(1).max(128),
            state_file: z.string().min(1),
            retry_interval: z.string().optional(),
          })
          .catchall(z.unknown()),
      )
      .default([]),
  })
  .strict();

export type ConfigFile = z.input<typeof configSchema>;
export type ParsedConfig = z.output<typeof configSchema>;
