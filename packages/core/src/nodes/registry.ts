import type { AuditEmitter } from '@gatehouse/audit';
import type { Backend } from '../backend/types.js';
import { GatehouseError, isGatehouseError } from '../errors.js';
import { parseSshPublicKey } from '../pki/sshcert.js';
import { putStatic } from '../util/static-entries.js';

/** An SSH node Gatehouse fronts (an OpenSSH sshd trusting the user CA, or the built-in node service). */
export interface NodeSpec {
  name: string;
  /** host:port of the node's SSH server. */
  addr: string;
  labels: Record<string, string>;
  /**
   * Extra host CA public keys (OpenSSH lines) trusted to sign this node's
   * host certificate. Gatehouse's own host CA is always trusted.
   */
  hostCaKeys?: string[] | undefined;
  description?: string | undefined;
  /** Where it was registered: config/adapter options are read-only. */
  source?: 'config' | 'dynamic' | undefined;
}

const PREFIX = 'nodes/';
const NAME_RE = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/** host and port of a node's `addr`: "host:port", "[v6]:port", or a bare host (port 22). */
export function nodeHostPort(spec: Pick<NodeSpec, 'addr'>): { host: string; port: number } {
  const addr = spec.addr.trim();
  const v6 = /^\[([^\]]+)\](?::(\d+))?$/.exec(addr);
  if (v6) return { host: v6[1]!, port: v6[2] === undefined ? 22 : Number(v6[2]) };
  const parts = addr.split(':');
  if (parts.length === 2)
    return { host: parts[0]!, port: /^\d{1,5}$/.test(parts[1]!) ? Number(parts[1]) : Number.NaN };
  return { host: addr, port: 22 };
}

export function validateNode(spec: NodeSpec): NodeSpec {
  if (!NAME_RE.test(spec.name)) {
    throw new GatehouseError('GH_ERR_VALIDATION', `node name "${spec.name}" is invalid`, {
      hint: 'use lowercase letters, digits and dashes (a DNS label)',
    });
  }
  if (typeof spec.addr !== 'string' || spec.addr === '') {
    throw new GatehouseError('GH_ERR_VALIDATION', `node "${spec.name}" has no address`, {
      hint: 'pass --addr HOST:PORT',
    });
  }
  const { host, port } = nodeHostPort(spec);
  if (!host || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new GatehouseError('GH_ERR_VALIDATION', `node address "${spec.addr}" is invalid`, {
      hint: 'use HOST:PORT, e.g. 10.0.0.5:22',
    });
  }
  for (const [k, v] of Object.entries(spec.labels ?? {})) {
    if (typeof v !== 'string' || !/^[A-Za-z0-9._/-]{1,63}$/.test(k)) {
      throw new GatehouseError('GH_ERR_VALIDATION', `label "${k}" is invalid`, {
        hint: 'labels are key=value',
      });
    }
  }
  for (const line of spec.hostCaKeys ?? []) parseSshPublicKey(line);
  return { ...spec, labels: spec.labels ?? {} };
}

/**
 * Registered SSH nodes: static ones (config file `nodes:`, adapter options)
 * plus dynamic ones in the backend at `nodes/<name>` (`gatehouse nodes add`,
 * the API, a node service joining with a token).
 */
export class NodeRegistry {
  readonly #backend: Backend;
  readonly #audit: AuditEmitter;
  readonly #static = new Map<string, NodeSpec>();

  constructor(deps: { backend: Backend; audit: AuditEmitter }) {
    this.#backend = deps.backend;
    this.#audit = deps.audit;
  }

  /** Config and adapter-option nodes; a name registered twice throws. */
  addStatic(spec: NodeSpec): void {
    this.replaceStatic([], [spec]);
  }

  /**
   * Swaps the configured entries named `previous` for `next` (a SIGHUP
   * reload); nothing changes when one of `next` is invalid or its name is taken.
   */
  replaceStatic(previous: readonly string[], next: readonly NodeSpec[]): void {
    putStatic(this.#static, next, {
      validate: (s) => validateNode({ ...s, source: 'config' }),
      what: 'node',
      hint: 'give each node a unique name',
      remove: previous,
    });
  }

  async get(name: string): Promise<NodeSpec | undefined> {
    const s = this.#static.get(name);
    if (s) return s;
    if (!NAME_RE.test(name)) return undefined;
    const item = await this.#backend.get(PREFIX + name);
    return item ? { ...(JSON.parse(item.value) as NodeSpec), source: 'dynamic' } : undefined;
  }

  async list(): Promise<NodeSpec[]> {
    const dynamic = (await this.#backend.range(PREFIX)).map(
      (i) => ({ ...(JSON.parse(i.value) as NodeSpec), source: 'dynamic' }) as NodeSpec,
    );
    const all = [...this.#static.values(), ...dynamic.filter((d) => !this.#static.has(d.name))];
    return all.sort((a, b) => a.name.localeCompare(b.name));
  }

  /**
   * The node a client names: its registered name, `<name>.<cluster>`, or
   * its address (host:port or host when the port is 22).
   */
  async resolve(host: string, port: number, clusterName: string): Promise<NodeSpec | undefined> {
    const h = host.toLowerCase();
    const suffix = `.${clusterName.toLowerCase()}`;
    const byName =
      (await this.get(h)) ?? (h.endsWith(suffix) ? await this.get(h.slice(0, -suffix.length)) : undefined);
    if (byName) return byName;
    const matches = (await this.list()).filter((n) => {
      const a = nodeHostPort(n);
      return a.host.toLowerCase() === h && a.port === port;
    });
    // Two nodes at one address would make the choice (and so the access check) ambiguous.
    return matches.length === 1 ? matches[0] : undefined;
  }

  /** Adds a dynamic node, or replaces it when `replace` (a node service re-joining). */
  async add(spec: NodeSpec, actor: string, opts: { replace?: boolean } = {}): Promise<NodeSpec> {
    const v = validateNode({ ...spec, source: undefined });
    if (this.#static.has(v.name)) {
      throw new GatehouseError('GH_ERR_ALREADY_EXISTS', `node "${v.name}" is defined in the config`, {
        hint: 'change it in the config file, or pick another name',
      });
    }
    const { source: _source, ...stored } = v;
    try {
      if (opts.replace) await this.#backend.put(PREFIX + v.name, JSON.stringify(stored));
      else await this.#backend.create(PREFIX + v.name, JSON.stringify(stored));
    } catch (err) {
      if (isGatehouseError(err, 'GH_ERR_ALREADY_EXISTS')) {
        throw new GatehouseError('GH_ERR_ALREADY_EXISTS', `node "${v.name}" already exists`, {
          hint: `remove it first with gatehouse nodes rm ${v.name}`,
        });
      }
      throw err;
    }
    await this.#audit.emit({
      type: 'node.create',
      user: actor,
      name: v.name,
      addr: v.addr,
      labels: v.labels,
    });
    return { ...v, source: 'dynamic' };
  }

  async remove(name: string, actor: string): Promise<void> {
    if (this.#static.has(name)) {
      throw new GatehouseError('GH_ERR_VALIDATION', `node "${name}" is defined in the config`, {
        hint: 'remove it from the config file',
      });
    }
    if (!NAME_RE.test(name) || !(await this.#backend.delete(PREFIX + name))) {
      throw new GatehouseError('GH_ERR_NOT_FOUND', `node "${name}" not found`, {
        hint: 'list nodes with gatehouse ls',
      });
    }
    await this.#audit.emit({ type: 'node.delete', user: actor, name });
  }
}
