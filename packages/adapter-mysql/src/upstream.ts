import tls, { type TLSSocket } from 'node:tls';
import type { DbSession } from '@gatehouse/core';
import { PacketChannel } from './packet-io.js';
import {
  encodeHandshakeResponse,
  encodePacket,
  encodeSslRequest,
  type HandshakeV10,
  isErr,
  isOk,
  parseAuthSwitch,
  parseErr,
  parseHandshakeV10,
} from './wire/codec.js';
import { CLIENT, FORMAT_CAPABILITIES, GATEWAY_CAPABILITIES } from './wire/constants.js';

/** The upstream said no (its ERR packet), or spoke something we cannot follow. */
export class UpstreamRefused extends Error {
  readonly code: number | undefined;
  constructor(message: string, code?: number) {
    super(message);
    this.name = 'UpstreamRefused';
    this.code = code;
  }
}

export interface UpstreamLogin {
  /** Capabilities the client negotiated with the gateway. */
  capabilities: number;
  charset: number;
  user: string;
  database: string;
  attrs?: Buffer | undefined;
}

export interface Upstream {
  socket: TLSSocket;
  greeting: HandshakeV10;
  /** The upstream's OK payload, relayed to the client as the end of its handshake. */
  ok: Buffer;
  /** Bytes after the OK (none with a well-behaved server). */
  leftover: Buffer;
}

export const HANDSHAKE_MAX_BYTES = 64 * 1024;

/**
 * Logs in to the database as `login.user` with the db-CA client certificate
 * core minted (the server's REQUIRE SUBJECT checks it; no password exists):
 * greeting, SSLRequest, TLS, HandshakeResponse41 with an empty auth response.
 */
export async function connectUpstream(
  session: DbSession,
  login: UpstreamLogin,
  signal: AbortSignal,
  /** TLS options for this login (a client certificate for another user after COM_CHANGE_USER); default the session's. */
  tlsOptions: tls.ConnectionOptions = session.upstream.tls,
): Promise<Upstream> {
  const raw = await session.dial(signal);
  const onAbort = () => raw.destroy(new UpstreamRefused('the upstream handshake took too long'));
  signal.addEventListener('abort', onAbort, { once: true });
  try {
    const ch = new PacketChannel(raw, HANDSHAKE_MAX_BYTES);
    const first = await ch.next();
    if (isErr(first.payload)) {
      const e = parseErr(first.payload);
      throw new UpstreamRefused(`the database refused the connection: ${e.message}`, e.code);
    }
    const greeting = parseHandshakeV10(first.payload);
    const up = greeting.capabilities;
    if (!(up & CLIENT.SSL))
      throw new UpstreamRefused('the database does not offer TLS (configure ssl-cert/ssl-key on it)');
    const missing = login.capabilities & FORMAT_CAPABILITIES & ~up;
    if (missing) {
      throw new UpstreamRefused(
        `the database lacks protocol capabilities the client chose (0x${missing.toString(16)})`,
      );
    }
    let caps = (login.capabilities & GATEWAY_CAPABILITIES & up) | CLIENT.SSL | CLIENT.PROTOCOL_41;
    if (!login.database) caps &= ~CLIENT.CONNECT_WITH_DB;
    else caps |= CLIENT.CONNECT_WITH_DB & up;
    if (!login.attrs) caps &= ~CLIENT.CONNECT_ATTRS;
    raw.write(encodePacket(1, encodeSslRequest(caps, login.charset)));
    const leftover = ch.detach();
    if (leftover.length > 0) throw new UpstreamRefused('the database sent data before the TLS handshake');
    const socket = await new Promise<TLSSocket>((resolve, reject) => {
      const s = tls.connect({ ...tlsOptions, socket: raw }, () => {
        s.off('error', reject);
        resolve(s);
      });
      s.once('error', reject);
    });
    const sch = new PacketChannel(socket, HANDSHAKE_MAX_BYTES);
    const plugin = greeting.authPlugin || 'mysql_native_password';
    socket.write(
      encodePacket(
        2,
        encodeHandshakeResponse({
          capabilities: caps,
          maxPacket: 0xffffff,
          charset: login.charset,
          user: login.user,
          authResponse: Buffer.alloc(0),
          database: login.database,
          authPlugin: plugin,
          attrs: login.attrs,
        }),
      ),
    );
    const ok = await finishLogin(sch, login.user);
    return { socket, greeting, ok, leftover: sch.detach() };
  } catch (e) {
    raw.destroy();
    throw e;
  } finally {
    signal.removeEventListener('abort', onAbort);
  }
}

/**
 * The rest of a login once the HandshakeResponse41 (or a COM_CHANGE_USER)
 * went out: the server's OK ends it (its payload is returned), an ERR refuses
 * it, and an AuthSwitchRequest or caching_sha2 full authentication is
 * answered with the empty password (the certificate is the credential; the
 * users have no password). `ch` reads the upstream, `ch.socket` writes to it.
 */
export async function finishLogin(ch: PacketChannel, user: string): Promise<Buffer> {
  for (let round = 0; round < 4; round++) {
    const p = await ch.next();
    if (isOk(p.payload)) return Buffer.from(p.payload);
    if (isErr(p.payload)) {
      const e = parseErr(p.payload);
      throw new UpstreamRefused(`the database refused user "${user}": ${e.message}`, e.code);
    }
    if (p.payload[0] === 0xfe) {
      // Auth switch: there is no password, so answer with an empty one in the plugin's format.
      const sw = parseAuthSwitch(p.payload);
      const reply = sw.plugin === 'mysql_clear_password' ? Buffer.from([0]) : Buffer.alloc(0);
      ch.socket.write(encodePacket(p.seq + 1, reply));
      continue;
    }
    if (p.payload[0] === 0x01 && p.payload[1] === 0x04) {
      // caching_sha2_password full authentication over TLS: the (empty) password in clear.
      ch.socket.write(encodePacket(p.seq + 1, Buffer.from([0])));
      continue;
    }
    if (p.payload[0] === 0x01) continue; // fast-auth success; OK follows
    throw new UpstreamRefused(
      `unexpected packet 0x${(p.payload[0] ?? 0).toString(16)} during the database login`,
    );
  }
  throw new UpstreamRefused('the database login did not finish');
}
