import { chmod, chown, mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { Duplex } from 'node:stream';
import type { LogFn } from '@gatehouse/core';
import type { UnixUser } from './passwd.js';
import type { ProcessIdentity } from './spawn.js';

/** Opens an auth-agent@openssh.com channel to the client (the patched ssh2 server connection). */
export type OpenAgentChannel = (cb: (err: Error | undefined, channel?: Duplex) => void) => void;

/**
 * `ssh -A` on the node, like sshd: the first accepted auth-agent-req of a
 * connection creates a Unix socket in a private directory owned by the
 * login; every session of the connection from then on gets it as
 * SSH_AUTH_SOCK. Each connection a program makes to it becomes an
 * auth-agent@openssh.com channel to the client, whose agent answers.
 * Removed when the connection closes.
 */
export class AgentSocket {
  readonly #open: OpenAgentChannel;
  readonly #log: LogFn;
  #ready: Promise<string> | undefined;
  #server: net.Server | undefined;
  #dir: string | undefined;
  #closed = false;

  constructor(open: OpenAgentChannel, log: LogFn) {
    this.#open = open;
    this.#log = log;
  }

  /** The socket path once forwarding was accepted on this connection; undefined before. */
  path(): Promise<string> | undefined {
    return this.#ready;
  }

  /** Creates the socket (once per connection) for `user`, served by a process running as `self`. */
  enable(self: ProcessIdentity, user: UnixUser): Promise<string> {
    this.#ready ??= this.#create(self, user);
    return this.#ready;
  }

  async #create(self: ProcessIdentity, user: UnixUser): Promise<string> {
    // mkdtemp: a fresh name, created exclusively, mode 0700; handed to the login below.
    const dir = await mkdtemp(path.join(os.tmpdir(), 'gatehouse-agent-'));
    this.#dir = dir;
    const sock = path.join(dir, 'agent.sock');
    const server = net.createServer((conn) => this.#relay(conn));
    this.#server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(sock, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', (e) => this.#log('debug', 'node: agent socket failed', e));
    await chmod(sock, 0o600);
    // A root service serves other logins: only that login may reach the client's agent.
    if (self.uid === 0 && user.uid !== 0) {
      await chown(sock, user.uid, user.gid);
      await chown(dir, user.uid, user.gid);
    }
    if (this.#closed) {
      this.close();
      throw new Error('the connection closed');
    }
    return sock;
  }

  #relay(conn: net.Socket): void {
    conn.on('error', (e) => this.#log('debug', 'node: agent socket connection failed', e));
    conn.pause();
    this.#open((err, ch) => {
      if (err || !ch) {
        this.#log('debug', 'node: the client refused an agent channel', err);
        conn.destroy();
        return;
      }
      ch.on('error', (e: Error) => this.#log('debug', 'node: agent channel failed', e));
      conn.pipe(ch).pipe(conn);
      conn.resume();
    });
  }

  close(): void {
    this.#closed = true;
    this.#server?.close();
    this.#server = undefined;
    const dir = this.#dir;
    this.#dir = undefined;
    if (dir) {
      rm(dir, { recursive: true, force: true }).catch((e: unknown) =>
        this.#log('debug', `node: could not remove ${dir}`, e),
      );
    }
  }
}
