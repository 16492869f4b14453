import type net from 'node:net';
import tls from 'node:tls';
import type { DbSession } from '@gatehouse/core';
import { serialize } from 'pg-protocol';
import { SQLSTATE, UpstreamError } from './errors.js';
import { readUntil } from './io.js';
import { B, BackendDecoder } from './wire/backend.js';
import { PgWireError } from './wire/errors.js';
import { MessageReader } from './wire/reader.js';

/** A database connection that finished its startup: authenticated and ready for queries. */
export interface UpstreamConnection {
  socket: tls.TLSSocket;
  /** The server's own cancel key (the client gets a different one from the gateway). */
  backendKey: { pid: number; secret: number } | undefined;
  /** ParameterStatus/NoticeResponse messages and the final ReadyForQuery, raw, to relay in order. */
  startupReply: Buffer[];
}

interface ErrorLike {
  message?: string | undefined;
  code?: string | undefined;
  detail?: string | undefined;
  hint?: string | undefined;
}

/**
 * Opens the database connection for an authorized session: TCP through the
 * gateway's dialer, SSLRequest, TLS with the db-CA client certificate
 * (verify-full against the database's CA), StartupMessage with the client's
 * parameters. With `hostssl ... cert` the server answers AuthenticationOk.
 */
export async function connectUpstream(
  session: DbSession,
  params: Map<string, string>,
  signal: AbortSignal,
): Promise<UpstreamConnection> {
  const where = `${session.upstream.host}:${session.upstream.port}`;
  let raw: net.Socket;
  try {
    raw = await session.dial(signal);
  } catch (err) {
    throw new UpstreamError(
      {
        severity: 'FATAL',
        code: SQLSTATE.connectionFailure,
        message: `Gatehouse cannot reach database "${session.service.name}" at ${where}: ${(err as Error).message}`,
        hint: 'the database may be down; try again later or ask the Gatehouse admin',
      },
      { cause: err },
    );
  }
  try {
    return await startup(raw, session, params, signal, where);
  } catch (err) {
    raw.destroy();
    throw err;
  }
}

async function startup(
  raw: net.Socket,
  session: DbSession,
  params: Map<string, string>,
  signal: AbortSignal,
  where: string,
): Promise<UpstreamConnection> {
  const fail = (code: string, message: string, cause?: unknown, hint?: string) =>
    new UpstreamError(
      {
        severity: 'FATAL',
        code,
        message: `database "${session.service.name}" at ${where}: ${message}`,
        hint: hint ?? 'ask the Gatehouse admin to check the database registration and its TLS setup',
      },
      cause !== undefined ? { cause } : {},
    );
  raw.write(serialize.requestSsl());
  let answer: Buffer | undefined;
  try {
    await readUntil(
      raw,
      (chunk) => {
        answer = chunk;
        return true;
      },
      { signal, what: 'waiting for the database to answer SSLRequest' },
    );
  } catch (err) {
    throw fail(SQLSTATE.connectionFailure, `no answer to SSLRequest (${(err as Error).message})`, err);
  }
  // Bytes after 'S' would be read as plaintext inside the TLS session (CVE-2021-23222): refuse them.
  if (answer?.length !== 1 || answer[0] !== 0x53) {
    const what =
      answer?.[0] === 0x4e ? 'the server does not accept TLS (ssl=off)' : 'unexpected answer to SSLRequest';
    throw fail(SQLSTATE.connectionFailure, what);
  }
  const sock = await new Promise<tls.TLSSocket>((resolve, reject) => {
    const s = tls.connect({ ...session.upstream.tls, socket: raw });
    const onErr = (err: Error) => reject(err);
    s.once('error', onErr);
    s.once('secureConnect', () => {
      s.off('error', onErr);
      resolve(s);
    });
    signal.addEventListener('abort', () => s.destroy(signal.reason as Error), { once: true });
  }).catch((err: unknown) => {
    throw fail(
      SQLSTATE.connectionFailure,
      `TLS with the database failed: ${(err as Error).message}`,
      err,
      "check the database's CA (--ca-file) and server name (--server-name) in its registration",
    );
  });
  try {
    const body: Record<string, string> = {};
    for (const [k, v] of params) body[k] = v;
    sock.write(serialize.startup(body));
    const reader = new MessageReader({
      inspect: () => true,
      peer: 'the database',
      maxMessageBytes: 1024 * 1024,
    });
    const decoder = new BackendDecoder();
    const reply: Buffer[] = [];
    let backendKey: { pid: number; secret: number } | undefined;
    let ready = false;
    await readUntil(
      sock,
      (chunk) => {
        for (const seg of reader.push(chunk)) {
          if (seg.kind !== 'message' || ready)
            throw new PgWireError('the database sent data after ReadyForQuery');
          if (seg.type === B.NegotiateProtocolVersion) {
            throw new PgWireError(
              'the database asked to negotiate the protocol version, which the gateway did not request',
            );
          }
          const m = decoder.decode(seg.raw);
          switch (m.name) {
            case 'authenticationOk':
              break;
            case 'authenticationCleartextPassword':
            case 'authenticationMD5Password':
            case 'authenticationSASL':
            case 'authenticationSASLContinue':
            case 'authenticationSASLFinal':
              throw fail(
                SQLSTATE.invalidAuthorization,
                'the database asked for a password; Gatehouse signs in with a client certificate',
                undefined,
                'the database must trust the Gatehouse db CA: pg_hba.conf `hostssl ... cert` and ssl_ca_file = `gatehouse ca export --type db --format postgres`',
              );
            case 'error': {
              const e = m as unknown as ErrorLike;
              throw new UpstreamError({
                severity: 'FATAL',
                code: e.code ?? SQLSTATE.invalidAuthorization,
                message: `database "${session.service.name}" refused the connection: ${e.message ?? 'no message'}`,
                ...(e.detail ? { detail: e.detail } : {}),
                hint:
                  e.hint ??
                  'the database must trust the Gatehouse db CA and have a role named like the database user (pg_hba.conf `hostssl ... cert`)',
              });
            }
            case 'backendKeyData': {
              const k = m as unknown as { processID: number; secretKey: number };
              backendKey = { pid: k.processID, secret: k.secretKey };
              break;
            }
            case 'parameterStatus':
            case 'notice':
              reply.push(seg.raw);
              break;
            case 'readyForQuery':
              reply.push(seg.raw);
              ready = true;
              break;
            default:
              throw new PgWireError(`the database sent ${m.name} during startup`);
          }
        }
        return ready;
      },
      { signal, what: 'database startup' },
    );
    return { socket: sock, backendKey, startupReply: reply };
  } catch (err) {
    sock.destroy();
    if (err instanceof UpstreamError) throw err;
    throw fail(SQLSTATE.connectionFailure, `startup failed: ${(err as Error).message}`, err);
  }
}
