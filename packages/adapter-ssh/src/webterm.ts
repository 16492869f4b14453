import type { Duplex, Readable } from 'node:stream';
import { PassThrough } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  type ClientTicket,
  type FileRequest,
  GatehouseError,
  type Identity,
  isGatehouseError,
  type NodeSpec,
  type TerminalHandle,
  type TerminalRequest,
  type TerminalService,
  type TerminalViewer,
  toGatehouseError,
} from '@gatehouse/core';
import type { SFTPWrapper } from 'ssh2';
import { userMessage } from './errors.js';
import { auditSshReject, resolveNode } from './front.js';
import { duplexPair } from './pair.js';
import { type ProxyDeps, terminate } from './session.js';
import { Client, type ClientChannel, exitOf, keepExit } from './ssh2.js';
import { certClientConfig } from './upstream.js';

type SshClient = InstanceType<typeof Client>;

/** Who asks, for which node and login (the common part of TerminalRequest and FileRequest). */
interface Target {
  identity: Identity;
  /** Core's word that this identity may log in to the proxy as `login`. */
  ticket: ClientTicket;
  node: string;
  login: string;
  remoteAddr: string;
}

/**
 * Shells and files for the web terminal: an SSH client inside the gateway
 * logs in to the gateway's own proxy over an in-memory connection, with a
 * fresh key certified for the caller's identity. The proxy's code path
 * (session.ts) then does what it does for an OpenSSH client: authorization
 * through core, the node connection, recording, audit (session.start/end,
 * sftp), live session control (kill, lock, expiry) and join. Nothing here
 * decides access.
 */
export class WebTerminals implements TerminalService {
  readonly #d: ProxyDeps;

  constructor(deps: ProxyDeps) {
    this.#d = deps;
  }

  async open(req: TerminalRequest, viewer: TerminalViewer): Promise<TerminalHandle> {
    const { client, sessionId } = await this.#connect(req);
    let ch: ClientChannel;
    try {
      ch = await new Promise<ClientChannel>((resolve, reject) =>
        client.shell(
          { term: 'xterm-256color', cols: req.cols, rows: req.rows, width: 0, height: 0 },
          (err, c) => (err ? reject(err) : resolve(keepExit(c))),
        ),
      );
    } catch (err) {
      client.end();
      throw new GatehouseError(
        'GH_ERR_UPSTREAM_UNAVAILABLE',
        `the shell did not start: ${(err as Error).message}`,
        {
          cause: err,
        },
      );
    }
    return this.#owner(client, ch, sessionId, viewer);
  }

  /** Maps the shell channel onto the owner's viewer and handle. */
  #owner(client: SshClient, ch: ClientChannel, sessionId: string, viewer: TerminalViewer): TerminalHandle {
    let done = false;
    const finish = () => {
      if (done) return false;
      done = true;
      ch.close();
      client.end();
      return true;
    };
    const end = (info: { exitCode?: number; reason?: string }) => {
      if (finish()) this.#toViewer(() => viewer.end(info));
    };
    const output = (d: Buffer) => {
      // A viewer that throws is gone: end the session rather than the gateway.
      if (!done) this.#toViewer(() => viewer.output(d), finish);
    };
    ch.on('data', output);
    ch.stderr.on('data', output);
    // A session the gateway ended (kill, lock, expiry) exits with TERM and says why.
    const exit = (): { exitCode?: number; reason?: string } => {
      const e = exitOf(ch);
      if (!e) return {};
      return 'code' in e ? { exitCode: e.code } : { reason: e.desc || `the shell was killed (${e.signal})` };
    };
    ch.on('close', () => end(exit()));
    client.on('close', () => {
      const e = exit();
      end(e.exitCode !== undefined || e.reason ? e : { reason: 'the session connection closed' });
    });
    return {
      sessionId,
      input: (data) => {
        if (!done) ch.write(data);
      },
      resize: (cols, rows) => {
        if (!done) ch.setWindow(rows, cols, 0, 0);
      },
      detach: () => {
        finish();
      },
    };
  }

  #toViewer(call: () => void, onError?: () => void): void {
    try {
      call();
    } catch (err) {
      this.#d.ctx.log('error', 'ssh: a web terminal viewer failed', err);
      onError?.();
    }
  }

  async readFile(req: FileRequest): Promise<{ size: number; stream: Readable }> {
    const { client } = await this.#connect(req);
    try {
      const sftp = await sftpOf(client);
      const handle = await new Promise<Buffer>((resolve, reject) =>
        sftp.open(req.path, 'r', (err, h) => (err ? reject(err) : resolve(h))),
      );
      const st = await new Promise<{ size: number; isFile(): boolean }>((resolve, reject) =>
        sftp.fstat(handle, (err, s) => (err ? reject(err) : resolve(s))),
      );
      if (!st.isFile()) {
        await new Promise((resolve) => sftp.close(handle, resolve));
        throw new GatehouseError('GH_ERR_BAD_REQUEST', `${req.path} is not a regular file`);
      }
      // The file's handle is closed before the connection, so the audit sees the whole read.
      const rs = sftp.createReadStream(req.path, { handle, autoClose: true });
      const out = new PassThrough();
      rs.on('error', (err: Error) => {
        out.destroy(fileError(err, req.path));
        client.end();
      });
      rs.on('close', () => client.end());
      out.on('close', () => {
        if (!rs.destroyed) rs.destroy();
      });
      rs.pipe(out);
      return { size: st.size, stream: out };
    } catch (err) {
      client.end();
      throw fileError(err, req.path);
    }
  }

  async writeFile(req: FileRequest, body: Readable): Promise<{ bytes: number }> {
    const { client } = await this.#connect(req);
    try {
      const sftp = await sftpOf(client);
      // Opened without a mode: the node then creates the file as scp and sftp
      // do, 0666 less its umask, and an existing file keeps its mode. ssh2's
      // createWriteStream would send 0666 and fchmod the file to it, making
      // every upload (an overwritten authorized_keys too) world-writable.
      const handle = await new Promise<Buffer>((resolve, reject) =>
        sftp.open(req.path, 'w', (err, h) => (err ? reject(err) : resolve(h))),
      );
      const ws = sftp.createWriteStream(req.path, { handle, autoClose: true });
      // ssh2 emits close once the file's handle is closed (after finish).
      const closed = new Promise<void>((resolve) => ws.once('close', () => resolve()));
      await pipeline(body, ws);
      await closed;
      // ssh2 counts the bytes it wrote (its typings leave the field out).
      return { bytes: (ws as typeof ws & { bytesWritten: number }).bytesWritten };
    } catch (err) {
      throw fileError(err, req.path);
    } finally {
      client.end();
    }
  }

  /**
   * Logs in to the gateway's own proxy as `t.identity` over an in-memory
   * connection and resolves with the client once the live session is
   * registered. Rejects with core's refusal (access denied, locked, node
   * unreachable) as the proxy's authentication saw it.
   */
  async #connect(t: Target): Promise<{ client: SshClient; sessionId: string }> {
    const { ctx, keys } = this.#d;
    try {
      // Fail early (locked, deleted, expired) before a certificate is minted; the node decision follows.
      await ctx.authorizer.principal(t.identity);
    } catch (err) {
      await auditSshReject(ctx, {
        reason: 'auth_failed',
        error: userMessage(err),
        remoteAddr: t.remoteAddr,
        user: t.identity.user,
      });
      throw err;
    }
    const node = await this.#node(t);
    const key = await keys.clientKey(t.ticket);
    const [serverEnd, clientEnd] = duplexPair();
    let sessionId: string | undefined;
    let refused: unknown;
    try {
      await terminate(this.#d, serverEnd, node, {
        identity: t.identity,
        remoteAddr: t.remoteAddr,
        requestedName: node.name,
        onSessionRegistered: (id) => {
          sessionId = id;
        },
        onRefused: (err) => {
          refused = err;
        },
      });
    } catch (err) {
      serverEnd.destroy();
      throw err;
    }
    const client = await this.#handshake(clientEnd, node, t.login, key, () => refused);
    if (sessionId === undefined) {
      client.end();
      throw new GatehouseError('GH_ERR_INTERNAL', 'the session was not registered');
    }
    return { client, sessionId };
  }

  #handshake(
    sock: Duplex,
    node: NodeSpec,
    login: string,
    key: Parameters<typeof certClientConfig>[0]['key'],
    refused: () => unknown,
  ): Promise<SshClient> {
    const { ctx } = this.#d;
    const client = new Client();
    let banner = '';
    let hostProblem: string | undefined;
    client.on('banner', (m: string) => {
      banner += m;
    });
    return new Promise((resolve, reject) => {
      let settled = false;
      client.on('error', (err: Error & { level?: string }) => {
        if (settled) {
          ctx.log('debug', 'ssh: web terminal connection error', err);
          return;
        }
        settled = true;
        sock.destroy();
        if (hostProblem) {
          reject(
            new GatehouseError(
              'GH_ERR_INTERNAL',
              `the gateway's own host certificate for node "${node.name}" failed verification: ${hostProblem}`,
            ),
          );
        } else if (err.level === 'client-authentication') {
          reject(toGatehouseError(refused()) ?? refusalFromBanner(banner));
        } else {
          reject(
            new GatehouseError('GH_ERR_INTERNAL', `the session could not start: ${err.message}`, {
              cause: err,
            }),
          );
        }
      });
      client.once('ready', () => {
        settled = true;
        resolve(client);
      });
      client.connect(
        certClientConfig({
          sock,
          login,
          key,
          timeoutMs: this.#d.handshakeTimeoutMs,
          // The host certificate the proxy presents for the node, from this gateway's host CA.
          hostCaKeys: ctx.credentials.hostCaSshKeys(),
          hostNames: [node.name.toLowerCase()],
          clock: ctx.clock,
          onHostProblem: (p) => {
            hostProblem = p;
          },
        }),
      );
    });
  }

  /** The node by name; an unknown one is audited like the proxy does and reported as not found. */
  async #node(t: Target): Promise<NodeSpec> {
    try {
      return await resolveNode(this.#d.ctx, t.identity, t.node, 22, t.remoteAddr);
    } catch (err) {
      if (isGatehouseError(err, 'GH_ERR_ACCESS_DENIED') && err.details?.field === 'unknown_node') {
        throw new GatehouseError('GH_ERR_NOT_FOUND', `node "${t.node}" is not registered`, {
          ...(err.hint ? { hint: err.hint } : {}),
          cause: err,
        });
      }
      throw err;
    }
  }
}

function sftpOf(client: SshClient): Promise<SFTPWrapper> {
  return new Promise((resolve, reject) => client.sftp((err, s) => (err ? reject(err) : resolve(s))));
}

/** A refusal known only by its banner text ("Gatehouse: reason" then "Gatehouse: hint"). */
function refusalFromBanner(banner: string): GatehouseError {
  const lines = banner
    .split(/\r?\n/)
    .map((l) => l.replace(/^Gatehouse: /, '').trim())
    .filter(Boolean);
  return new GatehouseError('GH_ERR_ACCESS_DENIED', lines[0] ?? 'access denied', {
    ...(lines.length > 1 ? { hint: lines.slice(1).join(' ') } : {}),
  });
}

/** SFTP status codes (draft-ietf-secsh-filexfer-02). */
const SFTP_NO_SUCH_FILE = 2;
const SFTP_PERMISSION_DENIED = 3;

/** A file operation's failure as a GatehouseError (core's own errors pass through). */
function fileError(err: unknown, path: string): GatehouseError {
  const g = toGatehouseError(err);
  if (g) return g;
  const e = err as Error & { code?: unknown };
  if (e.code === SFTP_NO_SUCH_FILE)
    return new GatehouseError('GH_ERR_NOT_FOUND', `no such file on the node: ${path}`);
  if (e.code === SFTP_PERMISSION_DENIED) {
    return new GatehouseError(
      'GH_ERR_ACCESS_DENIED',
      `the node denied access to ${path} (permission denied)`,
      {
        hint: 'the file permissions on the node decide this for your login',
      },
    );
  }
  return new GatehouseError('GH_ERR_UPSTREAM_UNAVAILABLE', `the file transfer failed: ${e.message}`, {
    cause: err,
  });
}
