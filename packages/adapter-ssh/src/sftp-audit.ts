import { SFTP_FLAGS, type SftpMessage } from './wire/sftp.js';

export type SftpAction = 'read' | 'write' | 'remove' | 'rename' | 'mkdir' | 'rmdir' | 'setstat';

export interface SftpAuditRecord {
  action: SftpAction;
  path: string;
  bytes?: number | undefined;
  target?: string | undefined;
  error?: string | undefined;
}

const WRITE_FLAGS = SFTP_FLAGS.WRITE | SFTP_FLAGS.APPEND | SFTP_FLAGS.CREAT | SFTP_FLAGS.TRUNC;
/** Bound on tracked requests and handles, so a client cannot grow the proxy's memory without limit. */
const MAX_TRACKED = 4096;

interface OpenFile {
  path: string;
  write: boolean;
  bytes: number;
}

function bounded<K, V>(m: Map<K, V>, k: K, v: V): void {
  if (m.size >= MAX_TRACKED) {
    const first = m.keys().next();
    if (!first.done) m.delete(first.value);
  }
  m.set(k, v);
}

/**
 * Turns the SFTP requests and replies of one subsystem channel into one
 * audit record per file transfer (path, direction, bytes) and per metadata
 * change. Pure: the caller feeds decoded messages and emits the records.
 */
export class SftpTracker {
  readonly #opening = new Map<number, { path: string; write: boolean }>();
  readonly #files = new Map<string, OpenFile>();
  readonly #reads = new Map<number, string>();
  readonly #ops = new Map<number, { action: SftpAction; path: string; target?: string }>();

  fromClient(m: SftpMessage): SftpAuditRecord[] {
    switch (m.type) {
      case 'open':
        bounded(this.#opening, m.id, { path: m.path, write: (m.pflags & WRITE_FLAGS) !== 0 });
        return [];
      case 'read':
        if (this.#files.has(m.handle.toString('hex'))) bounded(this.#reads, m.id, m.handle.toString('hex'));
        return [];
      case 'write': {
        const f = this.#files.get(m.handle.toString('hex'));
        if (f) f.bytes += m.length;
        return [];
      }
      case 'close': {
        const key = m.handle.toString('hex');
        const f = this.#files.get(key);
        if (!f) return [];
        this.#files.delete(key);
        return [{ action: f.write ? 'write' : 'read', path: f.path, bytes: f.bytes }];
      }
      case 'remove':
      case 'mkdir':
      case 'rmdir':
      case 'setstat':
        bounded(this.#ops, m.id, { action: m.type, path: m.path });
        return [];
      case 'rename':
        bounded(this.#ops, m.id, { action: 'rename', path: m.path, target: m.target });
        return [];
      default:
        return [];
    }
  }

  fromServer(m: SftpMessage): SftpAuditRecord[] {
    switch (m.type) {
      case 'handle': {
        const o = this.#opening.get(m.id);
        if (o) {
          this.#opening.delete(m.id);
          bounded(this.#files, m.handle.toString('hex'), { path: o.path, write: o.write, bytes: 0 });
        }
        return [];
      }
      case 'data': {
        const key = this.#reads.get(m.id);
        this.#reads.delete(m.id);
        const f = key === undefined ? undefined : this.#files.get(key);
        if (f) f.bytes += m.length;
        return [];
      }
      case 'status': {
        this.#reads.delete(m.id);
        const o = this.#opening.get(m.id);
        if (o) {
          this.#opening.delete(m.id);
          return [
            {
              action: o.write ? 'write' : 'read',
              path: o.path,
              bytes: 0,
              error: m.message || `status ${m.code}`,
            },
          ];
        }
        const op = this.#ops.get(m.id);
        if (!op) return [];
        this.#ops.delete(m.id);
        return [{ ...op, ...(m.code !== 0 ? { error: m.message || `status ${m.code}` } : {}) }];
      }
      default:
        return [];
    }
  }

  /** Files still open when the channel closed (the client vanished mid-transfer). */
  finish(): SftpAuditRecord[] {
    const out = [...this.#files.values()].map(
      (f): SftpAuditRecord => ({
        action: f.write ? 'write' : 'read',
        path: f.path,
        bytes: f.bytes,
        error: 'channel closed before the file was closed',
      }),
    );
    this.#files.clear();
    return out;
  }
}
