import http from 'node:http';
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import {
  type Adapter,
  type AdapterContext,
  answerClientError,
  clientErrorStatus,
  clientLeft,
  HttpConnections,
  type KubeClusterSpec,
  socketRemoteAddress,
  type TlsConnectionInfo,
  unparsedRequestError,
} from '@gatehouse/core';
import { type AdapterState, KubeConnection, sendStatus, writeRawStatus } from './session.js';
import { type KubeUpstream, resolveUpstream } from './upstream.js';
import { kubeStatus } from './wire/status.js';

export interface KubeAdapterOptions {
  /** Clusters registered with the gateway (like `kube_clusters:` in the config). */
  clusters?: KubeClusterSpec[];
  /** How long the API server may take to send response headers. Default 30 s. */
  upstreamTimeoutMs?: number;
  /** How long a resolved upstream (credentials from exec plugins, token files) is reused. Default 60 s. */
  upstreamCacheMs?: number;
}

/** The SNI name of a cluster: <cluster>.kube.<gatehouse cluster name> (the listener cert has *.kube.<name>). */
export function kubeServerName(cluster: string, clusterName: string): string {
  return `${cluster}.kube.${clusterName}`;
}

/** The cluster an SNI name routes to; undefined when it is not <cluster>.kube.<clusterName>. */
export function clusterFromServerName(sni: string | undefined, clusterName: string): string | undefined {
  if (!sni) return undefined;
  const lower = sni.toLowerCase();
  const suffix = `.kube.${clusterName.toLowerCase()}`;
  if (!lower.endsWith(suffix)) return undefined;
  const name = lower.slice(0, lower.length - suffix.length);
  return /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/.test(name) ? name : undefined;
}

export class KubeAdapter implements Adapter {
  readonly name = 'kube';
  readonly #opts: KubeAdapterOptions;
  readonly #conns = new Map<Socket, KubeConnection>();
  readonly #upstreams = new Map<string, { at: number; up: Promise<KubeUpstream> }>();
  #server: http.Server | undefined;

  constructor(opts: KubeAdapterOptions = {}) {
    this.#opts = opts;
  }

  register(ctx: AdapterContext): void {
    for (const c of this.#opts.clusters ?? []) ctx.kubeClusters.addStatic(c);
    const cacheMs = this.#opts.upstreamCacheMs ?? 60_000;
    const state: AdapterState = {
      ctx,
      upstreamTimeoutMs: this.#opts.upstreamTimeoutMs ?? 30_000,
      upstream: (spec) => {
        const now = ctx.clock.now().getTime();
        const hit = this.#upstreams.get(spec.name);
        if (hit && now - hit.at < cacheMs) return hit.up;
        const up = resolveUpstream(spec);
        this.#upstreams.set(spec.name, { at: now, up });
        up.catch(() => this.#upstreams.delete(spec.name));
        return up;
      },
    };
    const server = http.createServer({ requestTimeout: 0, keepAliveTimeout: 30_000 });
    // Request headers are due within listener.handshake_timeout (node checks
    // headersTimeout only on servers that listen themselves, and this one never does).
    const connections = new HttpConnections(server, {
      headersTimeoutMs: ctx.config.listener.handshakeTimeoutMs,
    });
    server.on('request', (req, res) => {
      const conn = this.#conns.get(req.socket);
      if (!conn) {
        sendStatus(res, kubeStatus(500, 'gatehouse: connection state lost'));
        return;
      }
      conn.handleRequest(req, res).catch((err: unknown) => {
        ctx.log('error', 'kube request failed', err);
        sendStatus(res, kubeStatus(500, 'gatehouse: internal error (see the gateway log)'));
      });
    });
    server.on('upgrade', (req, socket, head) => {
      const conn = this.#conns.get(req.socket);
      if (!conn) {
        writeRawStatus(socket, kubeStatus(500, 'gatehouse: connection state lost'));
        return;
      }
      conn.handleUpgrade(req, socket, head).catch((err: unknown) => {
        ctx.log('error', 'kube upgrade failed', err);
        writeRawStatus(socket, kubeStatus(500, 'gatehouse: internal error (see the gateway log)'));
      });
    });
    // Requests node:http cannot parse (or whose headers come too slowly):
    // a Status kubectl can print (400, 408, 431), audited like the API's.
    server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
      if (clientLeft(err)) {
        socket.destroy();
        return;
      }
      const status = clientErrorStatus(err);
      const error = unparsedRequestError(status, err);
      const body = JSON.stringify(kubeStatus(status, `gatehouse: ${error}`));
      if (!answerClientError(socket, status, { contentType: 'application/json', body })) return;
      ctx.log('debug', 'malformed kube HTTP request', err);
      ctx.audit
        .emit({
          type: 'http.reject',
          method: '',
          path: '',
          status,
          error,
          addr: { remote: socketRemoteAddress(socket) },
        })
        .catch((e: unknown) => ctx.log('error', 'audit of a refused kube request failed', e));
    });
    this.#server = server;
    ctx.routes.sniSuffix(
      `kube.${ctx.clusterName.toLowerCase()}`,
      (socket: TLSSocket, info: TlsConnectionInfo) => {
        const cluster = clusterFromServerName(info.sni, ctx.clusterName);
        if (!cluster) {
          ctx.log('debug', `kube connection with unusable SNI ${info.sni}`);
          socket.destroy();
          return;
        }
        const conn = new KubeConnection(state, socket, info, cluster);
        this.#conns.set(socket, conn);
        socket.once('close', () => this.#conns.delete(socket));
        socket.setNoDelay(true);
        connections.serve(socket);
      },
    );
  }

  async close(): Promise<void> {
    for (const s of this.#conns.keys()) s.destroy();
    this.#conns.clear();
    this.#server?.close();
    for (const { up } of this.#upstreams.values()) {
      await up.then(
        (u) => {
          u.agent.destroy();
          u.upgradeAgent.destroy();
        },
        () => undefined,
      );
    }
    this.#upstreams.clear();
  }
}
