import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { type IntervalHistogram, monitorEventLoopDelay } from 'node:perf_hooks';
import type { AuditEvent, AuditSink } from '@gatehouse/audit';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

/** What the metrics read when Prometheus scrapes (decision 0030). */
export interface GatewayMetricsDeps {
  /** Live sessions of this gateway (kind and protocol of each). */
  liveSessions: () => readonly { kind: string; protocol: string }[];
  /** Events waiting per audit sink (spool and memory). */
  auditBacklog: () => Record<string, number>;
  /** False while the audit log cannot make events durable (new work is refused). */
  auditAvailable: () => boolean;
}

/** Setup latency buckets (seconds): from authorize to the session bound (upstream dialed and authenticated). */
const SETUP_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/**
 * One gateway's Prometheus metrics, in a registry of its own: several
 * gateways in one process never share a series, and nothing is registered
 * in prom-client's global registry. Most counters come from the audit
 * events (a background audit sink: every security-relevant action already is
 * one, so no adapter counts anything itself); gauges are read at scrape time.
 */
export class GatewayMetrics {
  readonly registry = new Registry();
  readonly #sessions: Counter<'protocol'>;
  readonly #setup: Histogram<'protocol'>;
  readonly #logins: Counter<'result' | 'method'>;
  readonly #certs: Counter<'type'>;
  readonly #denials: Counter<'kind' | 'reason'>;
  readonly #bytes: Counter<'protocol' | 'direction'>;
  readonly #loop: IntervalHistogram;
  #server: http.Server | undefined;

  constructor(deps: GatewayMetricsDeps) {
    const registers = [this.registry];
    this.#sessions = new Counter({
      name: 'gatehouse_sessions_total',
      help: 'Sessions bound (authorized and connected), by protocol.',
      labelNames: ['protocol'],
      registers,
    });
    new Gauge({
      name: 'gatehouse_sessions_active',
      help: 'Live sessions on this gateway, by protocol.',
      labelNames: ['protocol'],
      registers,
      collect() {
        this.reset();
        for (const s of deps.liveSessions()) this.inc({ protocol: s.protocol });
      },
    });
    this.#setup = new Histogram({
      name: 'gatehouse_session_setup_seconds',
      help: 'From authorization to the session bound (upstream dialed and authenticated), by protocol.',
      labelNames: ['protocol'],
      buckets: SETUP_BUCKETS,
      registers,
    });
    this.#logins = new Counter({
      name: 'gatehouse_logins_total',
      help: 'Logins by result (success, failure) and method.',
      labelNames: ['result', 'method'],
      registers,
    });
    this.#certs = new Counter({
      name: 'gatehouse_certificates_issued_total',
      help: 'Certificates issued, by type.',
      labelNames: ['type'],
      registers,
    });
    this.#denials = new Counter({
      name: 'gatehouse_denials_total',
      help: 'Refused access: access.denied by resource kind, and protocol rejections (ssh, db, desktop), by reason.',
      labelNames: ['kind', 'reason'],
      registers,
    });
    this.#bytes = new Counter({
      name: 'gatehouse_relay_bytes_total',
      help: 'Bytes relayed by ended sessions, by protocol and direction (in: from the client).',
      labelNames: ['protocol', 'direction'],
      registers,
    });
    new Gauge({
      name: 'gatehouse_audit_queue_depth',
      help: 'Audit events waiting per sink (spooled to disk or held in memory); 0 when the sink keeps up.',
      labelNames: ['sink'],
      registers,
      collect() {
        this.reset();
        for (const [sink, n] of Object.entries(deps.auditBacklog())) this.set({ sink }, n);
      },
    });
    new Gauge({
      name: 'gatehouse_audit_available',
      help: '1 while audit events can be made durable; 0 while the gateway refuses new work for it.',
      registers,
      collect() {
        this.set(deps.auditAvailable() ? 1 : 0);
      },
    });
    // Event-loop lag of this process, sampled between scrapes (each scrape starts a new window).
    this.#loop = monitorEventLoopDelay({ resolution: 10 });
    this.#loop.enable();
    const loop = this.#loop;
    new Gauge({
      name: 'gatehouse_event_loop_lag_seconds',
      help: 'Node event-loop delay since the previous scrape (quantile 0.5, 0.99, and 1 for the maximum).',
      labelNames: ['quantile'],
      registers,
      collect() {
        const s = (ns: number) => (Number.isFinite(ns) ? ns / 1e9 : 0);
        this.set({ quantile: '0.5' }, s(loop.percentile(50)));
        this.set({ quantile: '0.99' }, s(loop.percentile(99)));
        this.set({ quantile: '1' }, s(loop.max));
        loop.reset();
      },
    });
  }

  /** A session was bound `setupSeconds` after it was authorized. */
  sessionBound(protocol: string, setupSeconds: number): void {
    this.#sessions.inc({ protocol });
    if (setupSeconds >= 0) this.#setup.observe({ protocol }, setupSeconds);
  }

  /** The audit sink that feeds the counters (written in the background, never fails). */
  sink(): AuditSink {
    return {
      name: 'metrics',
      write: (e) => this.observe(e),
    };
  }

  observe(e: AuditEvent): void {
    switch (e.type) {
      case 'user.login':
        this.#logins.inc({ result: e.success ? 'success' : 'failure', method: e.method });
        return;
      case 'cert.create':
        this.#certs.inc({ type: e.cert_type });
        return;
      case 'access.denied':
        this.#denials.inc({ kind: e.resource_kind, reason: denialReason(e.reason) });
        return;
      case 'ssh.reject':
      case 'db.reject':
      case 'desktop.reject':
        this.#denials.inc({ kind: e.type.slice(0, e.type.indexOf('.')), reason: e.reason });
        return;
      default: {
        const b = e as { bytes_in?: unknown; bytes_out?: unknown };
        if (e.type.endsWith('.end') && typeof b.bytes_in === 'number' && typeof b.bytes_out === 'number') {
          const protocol = e.type.startsWith('desktop.')
            ? 'rdp'
            : e.type.startsWith('kube.')
              ? 'kube'
              : 'ssh';
          this.#bytes.inc({ protocol, direction: 'in' }, b.bytes_in);
          this.#bytes.inc({ protocol, direction: 'out' }, b.bytes_out);
        }
      }
    }
  }

  /** Serves GET /metrics (Prometheus text format) on its own plain-HTTP listener. */
  async listen(host: string, port: number): Promise<AddressInfo> {
    const server = http.createServer((req, res) => {
      if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/metrics') {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('only GET /metrics here\n');
        return;
      }
      this.registry.metrics().then(
        (text) => res.writeHead(200, { 'content-type': this.registry.contentType }).end(text),
        (err: unknown) =>
          res.writeHead(500, { 'content-type': 'text/plain' }).end(`metrics failed: ${String(err)}\n`),
      );
    });
    server.on('clientError', (_err, socket) => socket.destroy());
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.#server = server;
    return server.address() as AddressInfo;
  }

  async close(): Promise<void> {
    this.#loop.disable();
    const s = this.#server;
    this.#server = undefined;
    if (!s) return;
    s.closeAllConnections();
    await new Promise<void>((resolve) => s.close(() => resolve()));
  }
}

/**
 * access.denied reasons are sentences (they name roles and resources); the
 * label is a small fixed set, so a reason cannot blow up the series count.
 */
export function denialReason(reason: string): string {
  const r = reason.toLowerCase();
  if (r.includes('audit log')) return 'audit_unavailable';
  if (r.includes('locked') || r.includes('lock ')) return 'locked';
  if (r.includes('expired')) return 'expired';
  if (r.includes('pinned')) return 'ip_pinned';
  if (r.includes('second factor') || r.includes('mfa')) return 'mfa';
  if (r.includes('deleted') || r.includes('re-created')) return 'user_changed';
  return 'rbac';
}
