import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import type { AuditEmitter } from '@gatehouse/audit';
import {
  type CertPermissions,
  type Clock,
  certPermissions,
  GatehouseError,
  type LogFn,
  parseSshCertificate,
  type SshCertificate,
  toGatehouseError,
  verifyUserAuth,
} from '@gatehouse/core';
import type { AuthContext, Connection } from 'ssh2';
import ssh2 from 'ssh2';

import { AgentSocket, type OpenAgentChannel } from './agent.js';
import { type NodeEnforcement, nodeEnforcement, type SessionEnforcement } from './enforce.js';
import { hostCertificateBlob, parseHostKey, publicKeyLine } from './hostkey.js';
import { lookupUnixUser, type UnixUser } from './passwd.js';
import { handleSession, type NodeSessionEvent } from './session.js';
import { checkCanServe, type ProcessIdentity } from './spawn.js';

export type { NodeSessionEvent } from './session.js';

export const DEFAULT_NODE_PORT = 3022;
const DEFAULT_SFTP_SERVER = '/usr/lib/openssh/sftp-server';

export interface NodeServiceOptions {
  /** Default 127.0.0.1: the embedded node only needs the local proxy to reach it. */
  host?: string;
  /** Default 3022; 0 picks a free port. */
  port?: number;
  /** OpenSSH-format private host key (see generateHostKey). */
  hostKey: string;
  /** Host certificate for `hostKey` from the cluster host CA, presented so clients trust the node by CA. */
  hostCert?: string;
  /** The cluster user CA public keys (OpenSSH lines), read on every login so CA rotation applies at once. */
  trustedUserCaKeys: () => string[] | Promise<string[]>;
  /**
   * Serials of user certificates that are revoked (their user was deleted or
   * locked), read on every login, like sshd's RevokedKeys. Default: none.
   */
  revokedSerials?: () => ReadonlySet<bigint> | Promise<ReadonlySet<bigint>>;
  clock: Clock;
  audit: AuditEmitter;
  nodeName: string;
  labels?: Record<string, string>;
  onSession?: (e: NodeSessionEvent) => void;
  log?: LogFn;
  /** Failed auth attempts before disconnecting (sshd MaxAuthTries). Default 6. */
  maxAuthTries?: number;
  /** Time to authenticate before disconnecting (sshd LoginGraceTime). Default 30 s. */
  loginGraceMs?: number;
  /** sftp-server binary for the sftp subsystem; default the OpenSSH one when installed, `null` disables. */
  sftpServer?: string | null;
  /**
   * eBPF enforcement of the session policy certificates carry (enhanced
   * recording, restrict_network). Default: a helper started on first need
   * (`@gatehouse/bpf`); `false`: none, so sessions with a policy are refused.
   */
  enforcement?: NodeEnforcement | false;
  /** A certificate asking only for enhanced_recording on a node that cannot record: refuse (default) or warn. */
  recordingUnavailable?: 'refuse' | 'warn';
}

export interface NodeService {
  readonly nodeName: string;
  readonly labels: Record<string, string>;
  readonly host: string;
  readonly port: number;
  /** "host:port" to dial. */
  readonly address: string;
  /** "ssh-ed25519 AAAA..." of the host key. */
  readonly hostPublicKey: string;
  /**
   * Ends what certificates revoked since (revokedSerials) still run here:
   * their connections, and every process their sessions started, including
   * background jobs that outlived a logout. Returns how many sessions it
   * killed. A joined node calls it after each revocation list fetch.
   */
  endRevoked(): Promise<number>;
  /**
   * Presents another host certificate (same host key) from the next
   * connection on; open connections keep theirs. For renewal and a host CA
   * rotation (the new CA's certificate) without ending sessions.
   */
  setHostCert(line: string): void;
  close(): Promise<void>;
}

interface Authed {
  cert: SshCertificate;
  user: UnixUser;
  perms: CertPermissions;
}

function selfIdentity(): ProcessIdentity {
  const uid = process.getuid?.() ?? -1;
  let name = String(uid);
  try {
    name = os.userInfo().username;
  } catch {
    // A uid without a passwd entry (containers): the number names it.
    name = String(uid);
  }
  return { uid, name };
}

function loopback(addr: string): boolean {
  return addr === '' || addr === 'localhost' || addr === '127.0.0.1' || addr === '::1';
}

/**
 * Gatehouse's own SSH server for one machine: trusts the cluster user CA
 * (like sshd with TrustedUserCAKeys), presents a host certificate, and runs
 * shells and commands as the requested Unix login in a real PTY.
 */
export async function startNodeService(opts: NodeServiceOptions): Promise<NodeService> {
  const log: LogFn = opts.log ?? (() => {});
  const self = selfIdentity();
  const key = parseHostKey(opts.hostKey);
  // `certificate` is the adapter's ssh2 patch (patches/ssh2+1.17.0.patch): offer the host cert first;
  // as a function, each key exchange offers the current one (setHostCert).
  let hostCertBlob = opts.hostCert ? hostCertificateBlob(key, opts.hostCert) : undefined;
  const hostKey = hostCertBlob ? { key: opts.hostKey, certificate: () => hostCertBlob } : opts.hostKey;
  const sftpServer =
    opts.sftpServer === null
      ? undefined
      : (opts.sftpServer ?? (existsSync(DEFAULT_SFTP_SERVER) ? DEFAULT_SFTP_SERVER : undefined));
  const maxTries = opts.maxAuthTries ?? 6;
  const graceMs = opts.loginGraceMs ?? 30_000;
  const clients = new Set<Connection>();
  /** Who is connected, by certificate serial. */
  const serials = new Map<Connection, { serial: bigint; user: string; login: string; remote: string }>();
  /** Sessions in a cgroup of their own, by certificate serial, until their last process is gone. */
  const contained = new Map<bigint, Set<SessionEnforcement>>();
  const enforcement =
    opts.enforcement === false
      ? undefined
      : (opts.enforcement ?? nodeEnforcement({ audit: opts.audit, server: opts.nodeName, log }));

  const deny = (login: string, user: string, remote: string, reason: string) => {
    opts.audit
      .emit({
        type: 'access.denied',
        resource_kind: 'node',
        resource: opts.nodeName,
        reason,
        user,
        login,
        server: opts.nodeName,
        addr: { remote },
      })
      .catch((e: unknown) => log('error', 'node: audit of a refused login failed', e));
  };

  const server = new ssh2.Server(
    { hostKeys: [hostKey as string], ident: 'GatehouseNode' },
    (client, info) => {
      clients.add(client);
      const remote = info.ip.startsWith('::ffff:') ? info.ip.slice(7) : info.ip;
      let authed: Authed | undefined;
      let failures = 0;
      let channels = 0;
      const told = new Set<string>();
      const forwards = new Map<string, net.Server>();
      // openssh_authAgent: the adapter's ssh2 patch (server-side agent channels).
      const agent = new AgentSocket(
        (cb) => (client as unknown as { openssh_authAgent: OpenAgentChannel }).openssh_authAgent(cb),
        log,
      );
      const grace = setTimeout(() => {
        if (!authed) client.end();
      }, graceMs);
      grace.unref();

      // Auth failures carry no reason in SSH; a banner is the one place a
      // client (OpenSSH prints it) can read why it was refused.
      const tell = (msg: string) => {
        if (told.has(msg)) return;
        told.add(msg);
        (client as unknown as { _protocol?: { authBanner(m: string): void } })._protocol?.authBanner(
          `gatehouse node ${opts.nodeName}: ${msg}\r\n`,
        );
      };

      const onAuth = async (ctx: AuthContext): Promise<void> => {
        if (ctx.method !== 'publickey') {
          ctx.reject(['publickey']);
          return;
        }
        // For the audit record only: who the (still unverified) certificate claims to be.
        let certUser = 'unknown';
        try {
          certUser = `unverified:${parseSshCertificate(ctx.key.data).keyId}`;
        } catch {
          certUser = 'unknown';
        }
        let cert: SshCertificate | undefined;
        try {
          cert = verifyUserAuth(
            {
              login: ctx.username,
              algo: ctx.key.algo,
              keyBlob: ctx.key.data,
              clientAddress: remote,
              signature: ctx.signature && ctx.blob ? { data: ctx.blob, blob: ctx.signature } : undefined,
            },
            await opts.trustedUserCaKeys(),
            opts.clock.now(),
          );
          if ((await opts.revokedSerials?.())?.has(cert.serial)) {
            throw new GatehouseError(
              'GH_ERR_CERT_INVALID',
              `certificate ${cert.serial} of "${cert.keyId}" is revoked (its user was deleted or locked)`,
              { hint: 'ask an admin; once access is restored, log in again with gatehouse login' },
            );
          }
          if (!ctx.signature) {
            // The "would you accept this key?" probe: yes, it is worth signing with.
            ctx.accept();
            return;
          }
          const user = await lookupUnixUser(ctx.username);
          checkCanServe(self, user);
          authed = { cert, user, perms: certPermissions(cert) };
          serials.set(client, { serial: cert.serial, user: cert.keyId, login: user.name, remote });
          clearTimeout(grace);
          ctx.accept();
        } catch (e) {
          const ge =
            toGatehouseError(e) ?? new GatehouseError('GH_ERR_INTERNAL', 'login check failed', { cause: e });
          if (!toGatehouseError(e)) log('error', 'node: login check failed', e);
          const message = ge.hint ? `${ge.message} (${ge.hint})` : ge.message;
          // Plain keys are probed by every ssh client before its certificate: not worth a banner or an audit event.
          const plainKeyProbe = !ctx.key.algo.endsWith('-cert-v01@openssh.com');
          if (!plainKeyProbe) {
            tell(message);
            // Expiry and principal/source checks come after the CA signature check: the key id is genuine then.
            const signed = ge.code === 'GH_ERR_CERT_EXPIRED' || ge.code === 'GH_ERR_ACCESS_DENIED';
            deny(
              ctx.username,
              cert?.keyId ?? (signed ? certUser.replace(/^unverified:/, '') : certUser),
              remote,
              ge.message,
            );
          }
          failures++;
          if (failures >= maxTries) {
            ctx.reject();
            client.end();
            return;
          }
          ctx.reject(['publickey']);
        }
      };

      client.on('authentication', (ctx) => {
        onAuth(ctx).catch((e: unknown) => {
          log('error', 'node: authentication handler failed', e);
          ctx.reject();
        });
      });

      client.on('session', (accept, reject) => {
        if (!authed) return reject();
        const a = authed;
        const local = (client as unknown as { _sock?: net.Socket })._sock;
        // Through the proxy the certificate names its session (core minted it for that
        // session): the node's events join the proxy's. A direct login has no such id.
        const proxied = a.perms.sessionId;
        const n = ++channels;
        const sessionId = proxied ?? randomUUID();
        handleSession(accept(), {
          sessionId,
          // Later channels of one connection (ControlMaster) are numbered like the proxy's recordings.
          channelId: proxied && n > 1 ? `${proxied}.${n}` : sessionId,
          user: a.user,
          certUser: a.cert.keyId,
          perms: a.perms,
          self,
          remoteAddr: remote,
          connection: `${remote} ${info.port} ${local?.localAddress ?? '0.0.0.0'} ${local?.localPort ?? 0}`,
          sftpServer,
          agent,
          log,
          server: opts.nodeName,
          enforcement,
          recordingUnavailable: opts.recordingUnavailable,
          onContained: (e) => {
            const set = contained.get(a.cert.serial) ?? new Set();
            set.add(e);
            contained.set(a.cert.serial, set);
            void e.released.then(() => {
              set.delete(e);
              if (set.size === 0 && contained.get(a.cert.serial) === set) contained.delete(a.cert.serial);
            });
          },
          onEvent: (e) => {
            if (e.type === 'refused') deny(e.login, e.user, remote, `${e.request}: ${e.reason}`);
            opts.onSession?.(e);
          },
        });
      });

      // ssh -L / -D: the node dials on the user's behalf (as sshd does).
      client.on('tcpip', (accept, reject, req) => {
        if (!authed?.perms.portForwarding) {
          deny(
            authed?.user.name ?? '',
            authed?.cert.keyId ?? '',
            remote,
            'direct-tcpip: certificate has no permit-port-forwarding',
          );
          return reject();
        }
        const sock = net.connect({ host: req.destIP, port: req.destPort });
        sock.once('connect', () => {
          const ch = accept();
          sock.pipe(ch).pipe(sock);
          ch.on('error', () => sock.destroy());
          sock.on('error', () => ch.destroy());
        });
        sock.once('error', (e) => {
          log('debug', `node: forward to ${req.destIP}:${req.destPort} failed`, e);
          reject();
        });
      });

      // ssh -R: listen on the node's loopback only (sshd's GatewayPorts=no).
      client.on('request', (accept, reject, name, req) => {
        if (name !== 'tcpip-forward' && name !== 'cancel-tcpip-forward') return reject?.();
        const bind = req as { bindAddr: string; bindPort: number };
        if (!authed?.perms.portForwarding) {
          deny(
            authed?.user.name ?? '',
            authed?.cert.keyId ?? '',
            remote,
            `${name}: certificate has no permit-port-forwarding`,
          );
          return reject?.();
        }
        if (name === 'cancel-tcpip-forward') {
          const k = `${bind.bindAddr}:${bind.bindPort}`;
          const srv = forwards.get(k);
          if (!srv) return reject?.();
          forwards.delete(k);
          srv.close();
          return accept?.();
        }
        if (
          !loopback(bind.bindAddr) ||
          (bind.bindPort > 0 && bind.bindPort < 1024 && authed.user.uid !== 0)
        ) {
          return reject?.();
        }
        const host = bind.bindAddr === '::1' ? '::1' : '127.0.0.1';
        const srv = net.createServer((sock) => {
          client.forwardOut(
            bind.bindAddr,
            port,
            sock.remoteAddress ?? '',
            sock.remotePort ?? 0,
            (err, ch) => {
              if (err) {
                sock.destroy();
                return;
              }
              sock.pipe(ch).pipe(sock);
              ch.on('error', () => sock.destroy());
              sock.on('error', () => ch.destroy());
            },
          );
        });
        let port = bind.bindPort;
        srv.once('error', () => reject?.());
        srv.listen(bind.bindPort, host, () => {
          port = (srv.address() as net.AddressInfo).port;
          forwards.set(`${bind.bindAddr}:${bind.bindPort === 0 ? port : bind.bindPort}`, srv);
          (accept as ((port?: number) => void) | undefined)?.(port);
        });
      });

      client.on('error', (e) => log('debug', `node: connection from ${remote} failed`, e));
      client.on('close', () => {
        clearTimeout(grace);
        for (const s of forwards.values()) s.close();
        agent.close();
        clients.delete(client);
        serials.delete(client);
      });
    },
  );

  const host = opts.host ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? DEFAULT_NODE_PORT, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as net.AddressInfo).port;
  return {
    nodeName: opts.nodeName,
    labels: { ...(opts.labels ?? {}) },
    host,
    port,
    address: `${net.isIPv6(host) ? `[${host}]` : host}:${port}`,
    hostPublicKey: publicKeyLine(key),
    setHostCert(line: string) {
      if (!hostCertBlob) {
        throw new GatehouseError(
          'GH_ERR_INTERNAL',
          'this node service was started without a host certificate',
        );
      }
      hostCertBlob = hostCertificateBlob(key, line);
    },
    async endRevoked() {
      const revoked = (await opts.revokedSerials?.()) ?? new Set<bigint>();
      let killed = 0;
      for (const [serial, set] of contained) {
        if (!revoked.has(serial)) continue;
        for (const e of set) {
          killed++;
          await e.kill().catch((err: unknown) => log('error', 'node: could not kill a revoked session', err));
        }
      }
      for (const [client, who] of serials) {
        if (!revoked.has(who.serial)) continue;
        serials.delete(client);
        client.end();
        deny(
          who.login,
          who.user,
          who.remote,
          `certificate ${who.serial} was revoked: its sessions were ended`,
        );
      }
      return killed;
    },
    async close() {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const c of clients) c.end();
      });
      // Sessions still running would run unrestricted without the helper: they end with it.
      if (opts.enforcement === undefined) await enforcement?.close();
    },
  };
}
