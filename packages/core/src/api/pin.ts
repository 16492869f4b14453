import { createHash, X509Certificate } from 'node:crypto';
import { isIP } from 'node:net';
import * as tls from 'node:tls';
import { GatehouseError } from '../errors.js';

/** `sha256:<hex>` of the DER SubjectPublicKeyInfo: survives re-issuing the CA cert with the same key. */
export function caPinOf(cert: X509Certificate): string {
  const der = cert.publicKey.export({ type: 'spki', format: 'der' });
  return `sha256:${createHash('sha256').update(der).digest('hex')}`;
}

/** Accepts `sha256:<hex>` with any case and optional `:` separators between bytes; returns the canonical form. */
export function normalizePin(pin: string): string {
  const m = /^sha256:([0-9a-f:]+)$/i.exec(pin.trim());
  const hex = m?.[1]?.replaceAll(':', '').toLowerCase();
  if (hex?.length !== 64) {
    throw new GatehouseError('GH_ERR_VALIDATION', `invalid CA pin "${pin}"`, {
      hint: 'a pin looks like sha256:<64 hex digits>; copy it from the output of `gatehouse start`',
    });
  }
  return `sha256:${hex}`;
}

export interface FetchPinnedCaOptions {
  host: string;
  port: number;
  /** Expected `sha256:<hex>` SPKI pin of the proxy's host CA. */
  pin?: string | undefined;
  /** Trust whatever CA the proxy presents (trust on first use). The caller must warn the user. */
  insecure?: boolean | undefined;
  timeoutMs?: number | undefined;
  /** For validity checks; defaults to the system time. */
  now?: (() => Date) | undefined;
}

export interface PinnedCa {
  /** PEM of the CA certificate that matched the pin (or was accepted with `insecure`). */
  caPem: string[];
  /** The pin of that CA, so a trust-on-first-use caller can show and store it. */
  pin: string;
}

/** How long an orderly close of the probe connection may take before it is cut. */
const CLOSE_GRACE_MS = 2_000;

const noPinHint =
  'pass --ca-pin sha256:... (printed by `gatehouse start` on the proxy), ' +
  'or --insecure to trust the presented CA on first use';

/**
 * Learn the proxy's host CA before trusting anything.
 *
 * This is the one place in Gatehouse where certificate verification is done by
 * hand: we have no CA to give Node yet, so the handshake runs with
 * `rejectUnauthorized: false`, and then we check what a verifying client
 * would: the presented chain must contain a CA certificate whose public key
 * hashes to the pin the admin gave out, and the leaf must be signed by it,
 * be currently valid and match the host name. The handshake itself proves the
 * server holds the leaf's private key. No application data is written on this
 * connection: it is closed right after the checks, and every later connection
 * uses the returned CA with normal verification.
 *
 * The close is an orderly one (close_notify, then FIN) and the promise
 * settles once it is done: 'secureConnect' fires when OUR side of the
 * handshake is complete, with our last handshake message possibly still on
 * its way, so destroying the socket there could drop it and leave the
 * gateway's side of the handshake waiting until its deadline (audited as a
 * rejected connection after every login).
 */
export function fetchPinnedCa(opts: FetchPinnedCaOptions): Promise<PinnedCa> {
  const { host, port } = opts;
  const want = opts.pin === undefined ? undefined : normalizePin(opts.pin);
  if (want === undefined && !opts.insecure) {
    return Promise.reject(
      new GatehouseError('GH_ERR_CERT_INVALID', `no CA pin given for ${host}:${port}`, { hint: noPinHint }),
    );
  }
  const now = opts.now ?? (() => new Date());
  return new Promise<PinnedCa>((resolve, reject) => {
    let settled = false;
    /** The connection failed: nothing to close politely. */
    const fail = (err: Error) => {
      if (settled) return;
      settled = true;
      socket.destroy();
      reject(err);
    };
    /**
     * The handshake completed (whether we trust the result or not): close
     * it as a TLS client should, and settle once it is closed.
     */
    const close = (outcome: () => void) => {
      if (settled) return;
      settled = true;
      socket.once('close', outcome);
      // Reading on (and dropping) what the server still sends, such as TLS 1.3
      // session tickets, keeps unread bytes from turning our close into a reset.
      socket.resume();
      socket.end();
      // A server that never closes its side does not hold us up for long.
      socket.setTimeout(CLOSE_GRACE_MS, () => socket.destroy());
    };
    const socket = tls.connect({
      host,
      port,
      ...(isIP(host) ? {} : { servername: host }),
      ALPNProtocols: ['http/1.1'],
      rejectUnauthorized: false,
    });
    socket.setTimeout(opts.timeoutMs ?? 10_000, () =>
      fail(unreachable(host, port, new Error(`timed out after ${opts.timeoutMs ?? 10_000} ms`))),
    );
    // Kept for the whole life of the socket: an error while closing must not go unhandled.
    socket.on('error', (e) => fail(unreachable(host, port, e)));
    socket.once('secureConnect', () => {
      let pinned: PinnedCa;
      try {
        pinned = checkChain(socket, host, port, want, now());
      } catch (e) {
        close(() => reject(e));
        return;
      }
      close(() => resolve(pinned));
    });
  });
}

function unreachable(host: string, port: number, cause: Error): GatehouseError {
  return new GatehouseError(
    'GH_ERR_UPSTREAM_UNAVAILABLE',
    `cannot reach the proxy at ${host}:${port}: ${cause.message}`,
    {
      hint: 'check that `gatehouse start` is running there and that --proxy names its host:port',
      cause,
    },
  );
}

function invalid(message: string, hint: string): GatehouseError {
  return new GatehouseError('GH_ERR_CERT_INVALID', message, { hint });
}

function presentedChain(socket: tls.TLSSocket): X509Certificate[] {
  const out: X509Certificate[] = [];
  const seen = new Set<string>();
  let c: tls.DetailedPeerCertificate | undefined = socket.getPeerCertificate(true);
  // Node links the presented certs through issuerCertificate; a self-signed
  // root points at itself, hence the fingerprint set.
  while (c?.raw && !seen.has(c.fingerprint256)) {
    seen.add(c.fingerprint256);
    out.push(new X509Certificate(c.raw));
    c = c.issuerCertificate;
  }
  return out;
}

function checkChain(
  socket: tls.TLSSocket,
  host: string,
  port: number,
  want: string | undefined,
  now: Date,
): PinnedCa {
  const chain = presentedChain(socket);
  const leaf = chain[0];
  if (!leaf)
    throw invalid(`the proxy at ${host}:${port} presented no certificate`, 'is this a Gatehouse proxy?');
  const cas = chain.slice(1).filter((c) => c.ca);
  let ca: X509Certificate | undefined;
  if (want !== undefined) {
    ca = cas.find((c) => caPinOf(c) === want);
    if (!ca) {
      throw invalid(
        `the proxy at ${host}:${port} presented no CA matching pin ${want}`,
        'the pin does not match this cluster: check --ca-pin against the output of `gatehouse start` ' +
          '(someone may be intercepting the connection, or the CA was rotated)',
      );
    }
  } else {
    ca = cas.find((c) => leaf.checkIssued(c));
    if (!ca) {
      throw invalid(
        `the proxy at ${host}:${port} presented no CA certificate with its server certificate`,
        'a Gatehouse proxy sends its host CA with its certificate; is this the right --proxy?',
      );
    }
  }
  if (!leaf.checkIssued(ca) || !leaf.verify(ca.publicKey)) {
    throw invalid(
      `the server certificate of ${host}:${port} is not signed by the pinned CA`,
      'someone may be intercepting the connection; do not continue, ask the cluster admin',
    );
  }
  for (const c of [leaf, ca]) {
    if (now < new Date(c.validFrom) || now > new Date(c.validTo)) {
      throw invalid(
        `the certificate "${c.subject}" of ${host}:${port} is not valid now (${c.validFrom} - ${c.validTo})`,
        'check the clock on this machine and on the proxy',
      );
    }
  }
  const nameErr = tls.checkServerIdentity(host, socket.getPeerCertificate());
  if (nameErr) {
    throw invalid(
      `the server certificate of the proxy is not valid for "${host}": ${nameErr.message}`,
      "use the proxy's public address (as printed by `gatehouse start`) in --proxy",
    );
  }
  return { caPem: [ca.toString()], pin: caPinOf(ca) };
}
