import dgram from 'node:dgram';
import net from 'node:net';
import os from 'node:os';
import tls from 'node:tls';
import {
  type ExportItem,
  type ExportOptions,
  ExportSink,
  type SendResult,
  type Transport,
} from './export.js';

export interface SyslogSinkOptions extends Omit<ExportOptions, 'name'> {
  name?: string;
  /** tcp (RFC 6587 octet counting), tls (RFC 5425) or udp (RFC 5426). */
  protocol: 'tcp' | 'tls' | 'udp';
  host: string;
  port: number;
  /** tls: PEM of the CA the receiver's certificate must chain to (required: the receiver is verified). */
  ca?: string | undefined;
  /** tls: the name to verify in the receiver's certificate; default: host. */
  serverName?: string | undefined;
  /** tls: client certificate and key (PEM), for receivers that authenticate senders. */
  cert?: string | undefined;
  key?: string | undefined;
  /** Syslog facility (0-23). Default 10 (authpriv: security/authorization messages). */
  facility?: number;
  /** HOSTNAME field. Default: os.hostname(). */
  hostname?: string;
  /** APP-NAME field. Default `gatehouse`. */
  appName?: string;
  /**
   * SD-ID of the structured data element carrying `id`, `type` and
   * `cluster`. Default `gatehouse@32473` (32473 is the private enterprise
   * number RFC 5612 reserves for documentation: set your own for production).
   */
  sdId?: string;
  /** udp: largest datagram; a longer message is rejected with an alarm. Default 8192 (rsyslog's default). */
  maxUdpBytes?: number;
  /**
   * tcp/tls: bytes of recently written messages kept to write again after a
   * connection drops (see the class comment). Default 4 MiB.
   */
  resendWindowBytes?: number;
  /** Connect and write timeout. Default 10 s. */
  timeoutMs?: number;
}

const SD_NAME = /^[!-~]{1,32}$/;

/** RFC 5424 PARAM-VALUE escaping: `"`, `\` and `]` get a backslash. */
function sdValue(v: string): string {
  return v.replace(/["\\\]]/g, (c) => `\\${c}`);
}

/** Severity from the event code's last letter: E error (3), W warning (4), I informational (6). */
function severity(code: string): number {
  const s = code.slice(-1);
  return s === 'E' ? 3 : s === 'W' ? 4 : 6;
}

function header(value: string, max: number): string {
  // HOSTNAME/APP-NAME are PRINTUSASCII without spaces; '-' is the nil value.
  const clean = value.replace(/[^!-~]/g, '').slice(0, max);
  return clean === '' ? '-' : clean;
}

/**
 * One RFC 5424 message: `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID
 * [SD-ID id="…" type="…" cluster="…"] MSG`, MSGID being the event code and
 * MSG the event as JSON (UTF-8, without a BOM: receivers then treat it as
 * MSG-ANY and keep it byte for byte).
 */
export function formatSyslog(
  item: ExportItem,
  o: { facility: number; hostname: string; appName: string; sdId: string },
): string {
  const e = item.event;
  const pri = o.facility * 8 + severity(e.code);
  const sd = `[${o.sdId} id="${sdValue(item.id)}" type="${sdValue(e.type)}" cluster="${sdValue(e.cluster)}"]`;
  return `<${pri}>1 ${e.time} ${o.hostname} ${o.appName} ${process.pid} ${header(e.code, 32)} ${sd} ${item.json}`;
}

/**
 * Syslog over TCP, TLS or UDP.
 *
 * TCP has no application-level acknowledgement: a write the kernel accepted
 * can still be lost if the receiver goes away before reading it (its socket
 * buffer is discarded on close). So the transport keeps the last
 * `resendWindowBytes` of what it wrote, and after a connection drops it
 * writes that window again on the new connection before anything new.
 * Receivers see those events twice and deduplicate by `id` (in the
 * structured data); nothing in the window is lost. UDP is fire and forget by
 * nature: a datagram sent counts as delivered.
 */
class SyslogTransport implements Transport {
  readonly #o: Required<Pick<SyslogSinkOptions, 'facility' | 'hostname' | 'appName' | 'sdId'>>;
  readonly #opts: SyslogSinkOptions;
  readonly #timeoutMs: number;
  readonly #window: Buffer[] = [];
  #windowBytes = 0;
  readonly #windowMax: number;
  #socket: net.Socket | undefined;
  /** The connection dropped: the window goes out again first on the next one. */
  #resend = false;
  #udp: dgram.Socket | undefined;

  constructor(opts: SyslogSinkOptions) {
    this.#opts = opts;
    this.#o = {
      facility: opts.facility ?? 10,
      hostname: header(opts.hostname ?? os.hostname(), 255),
      appName: header(opts.appName ?? 'gatehouse', 48),
      sdId: opts.sdId ?? 'gatehouse@32473',
    };
    if (!Number.isInteger(this.#o.facility) || this.#o.facility < 0 || this.#o.facility > 23) {
      throw new TypeError('syslog audit sink: facility must be an integer 0-23');
    }
    if (!SD_NAME.test(this.#o.sdId) || /[= \]"]/.test(this.#o.sdId)) {
      throw new TypeError('syslog audit sink: sdId must be 1-32 printable characters without = ] " or space');
    }
    if (opts.protocol === 'tls' && !opts.ca) {
      throw new TypeError('syslog audit sink: protocol tls needs ca (the receiver certificate is verified)');
    }
    this.#timeoutMs = opts.timeoutMs ?? 10_000;
    this.#windowMax = opts.resendWindowBytes ?? 4 * 1024 * 1024;
  }

  async send(items: ExportItem[], signal: AbortSignal): Promise<SendResult | undefined> {
    signal.throwIfAborted();
    if (this.#opts.protocol === 'udp') return this.#sendUdp(items);
    const frames = items.map((i) => {
      const msg = Buffer.from(formatSyslog(i, this.#o));
      // RFC 6587 octet counting: "MSG-LEN SP SYSLOG-MSG", so a message may contain newlines.
      return Buffer.concat([Buffer.from(`${msg.length} `), msg]);
    });
    const socket = await this.#connect();
    const out = this.#resend ? [...this.#window, ...frames] : frames;
    this.#resend = false;
    // Closing the sink ends a write the receiver does not read (it stays in the spool).
    const abort = () => socket.destroy();
    signal.addEventListener('abort', abort, { once: true });
    try {
      await this.#write(socket, Buffer.concat(out));
    } finally {
      signal.removeEventListener('abort', abort);
    }
    for (const f of frames) {
      this.#window.push(f);
      this.#windowBytes += f.length;
    }
    while (this.#windowBytes > this.#windowMax && this.#window.length > 1) {
      this.#windowBytes -= this.#window.shift()!.length;
    }
    return undefined;
  }

  async #sendUdp(items: ExportItem[]): Promise<SendResult | undefined> {
    this.#udp ??= dgram.createSocket(net.isIPv6(this.#opts.host) ? 'udp6' : 'udp4');
    const udp = this.#udp;
    const max = this.#opts.maxUdpBytes ?? 8192;
    const rejected: NonNullable<SendResult['rejected']> = [];
    for (let index = 0; index < items.length; index++) {
      const msg = Buffer.from(formatSyslog(items[index]!, this.#o));
      if (msg.length > max) {
        rejected.push({
          index,
          status: 'too_large',
          reason: `${msg.length} bytes is over max_udp_bytes (${max})`,
        });
        continue;
      }
      await new Promise<void>((resolve, reject) =>
        udp.send(msg, this.#opts.port, this.#opts.host, (err) => (err ? reject(err) : resolve())),
      );
    }
    return rejected.length > 0 ? { rejected } : undefined;
  }

  #connect(): Promise<net.Socket> {
    const s = this.#socket;
    if (s && !s.destroyed && s.writable) return Promise.resolve(s);
    return new Promise((resolve, reject) => {
      const { host, port } = this.#opts;
      const socket =
        this.#opts.protocol === 'tls'
          ? tls.connect({
              host,
              port,
              ca: this.#opts.ca,
              servername: this.#opts.serverName ?? (net.isIP(host) ? undefined : host),
              ...(this.#opts.serverName && net.isIP(host)
                ? {
                    checkServerIdentity: (_h: string, cert: tls.PeerCertificate) =>
                      tls.checkServerIdentity(this.#opts.serverName!, cert),
                  }
                : {}),
              ...(this.#opts.cert ? { cert: this.#opts.cert, key: this.#opts.key } : {}),
            })
          : net.connect({ host, port });
      const timer = setTimeout(
        () => socket.destroy(new Error(`connecting to ${host}:${port} timed out`)),
        this.#timeoutMs,
      );
      const onError = (err: Error) => {
        clearTimeout(timer);
        reject(err);
      };
      socket.once('error', onError);
      socket.once(this.#opts.protocol === 'tls' ? 'secureConnect' : 'connect', () => {
        clearTimeout(timer);
        socket.off('error', onError);
        socket.setNoDelay(true);
        socket.setKeepAlive(true, 30_000);
        // The receiver closing (or resetting) marks the connection dead: the
        // next batch reconnects and first writes the window again.
        const dead = () => {
          if (this.#socket === socket) {
            this.#socket = undefined;
            this.#resend = true;
          }
          socket.destroy();
        };
        socket.on('error', dead);
        socket.on('end', dead);
        socket.on('close', dead);
        // A syslog receiver sends nothing; reading keeps 'end' observable.
        socket.resume();
        this.#socket = socket;
        resolve(socket);
      });
    });
  }

  #write(socket: net.Socket, buf: Buffer): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new Error(`writing to the syslog receiver timed out after ${this.#timeoutMs} ms`));
      }, this.#timeoutMs);
      socket.write(buf, (err) => {
        clearTimeout(timer);
        if (err) {
          this.#resend = true;
          reject(err);
        } else if (socket.destroyed) {
          // Closed while writing: what was written may be lost; send it again.
          this.#resend = true;
          reject(new Error('the syslog receiver closed the connection'));
        } else resolve();
      });
    });
  }

  async close(): Promise<void> {
    this.#socket?.end();
    this.#socket = undefined;
    this.#udp?.close();
    this.#udp = undefined;
  }
}

/** Syslog (RFC 5424) over TCP, TLS or UDP. */
export function syslogSink(opts: SyslogSinkOptions): ExportSink {
  return new ExportSink(`syslog/${opts.protocol}`, new SyslogTransport(opts), {
    ...opts,
    name: opts.name ?? 'syslog',
  });
}
