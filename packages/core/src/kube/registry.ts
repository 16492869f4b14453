import { readFile } from 'node:fs/promises';
import type { AuditEmitter } from '@gatehouse/audit';
import { parse as parseYaml } from 'yaml';
import type { Backend } from '../backend/types.js';
import type { Sealer } from '../crypto/seal.js';
import { GatehouseError, isGatehouseError } from '../errors.js';
import { putStatic } from '../util/static-entries.js';

/**
 * A Kubernetes cluster Gatehouse fronts. The upstream credentials are a
 * kubeconfig (client certs, bearer tokens, exec plugins; the adapter reads it
 * with @kubernetes/client-node) or, when Gatehouse runs in a pod, the pod's
 * service account (`inCluster`).
 */
export interface KubeClusterSpec {
  name: string;
  labels: Record<string, string>;
  /** Kubeconfig YAML text (dynamic clusters keep it sealed in the backend). */
  kubeconfig?: string | undefined;
  /** Context in the kubeconfig; default: its current-context. */
  context?: string | undefined;
  /** Use the pod's service account (KUBERNETES_SERVICE_HOST + the mounted token). */
  inCluster?: boolean | undefined;
  description?: string | undefined;
  source?: 'config' | 'dynamic' | undefined;
}

/** What the backend holds for a dynamic cluster: the kubeconfig only in sealed form. */
interface StoredCluster {
  name: string;
  labels: Record<string, string>;
  context?: string | undefined;
  inCluster?: boolean | undefined;
  description?: string | undefined;
  sealedKubeconfig?: string | undefined;
}

const PREFIX = 'kube_clusters/';
const NAME_RE = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/** Checks names, labels and that the kubeconfig names the context (no network). */
export function validateKubeCluster(spec: KubeClusterSpec): KubeClusterSpec {
  if (!NAME_RE.test(spec.name)) {
    throw new GatehouseError('GH_ERR_VALIDATION', `Kubernetes cluster name "${spec.name}" is invalid`, {
      hint: 'use lowercase letters, digits and dashes (a DNS label: it becomes part of the SNI name)',
    });
  }
  for (const [k, v] of Object.entries(spec.labels ?? {})) {
    if (typeof v !== 'string' || !/^[A-Za-z0-9._/-]{1,63}$/.test(k)) {
      throw new GatehouseError('GH_ERR_VALIDATION', `label "${k}" is invalid`, {
        hint: 'labels are key=value',
      });
    }
  }
  if (spec.inCluster) {
    if (spec.kubeconfig !== undefined) {
      throw new GatehouseError(
        'GH_ERR_VALIDATION',
        `cluster "${spec.name}": in_cluster and a kubeconfig exclude each other`,
        {
          hint: 'give either --kubeconfig FILE or --in-cluster',
        },
      );
    }
  } else {
    if (spec.kubeconfig === undefined) {
      throw new GatehouseError('GH_ERR_VALIDATION', `cluster "${spec.name}" has no upstream credentials`, {
        hint: 'give a kubeconfig (--kubeconfig FILE) or in-cluster mode when Gatehouse runs in a pod',
      });
    }
    checkKubeconfig(spec.name, spec.kubeconfig, spec.context);
  }
  return { ...spec, labels: spec.labels ?? {} };
}

function checkKubeconfig(name: string, text: string, context: string | undefined): void {
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (cause) {
    throw new GatehouseError('GH_ERR_VALIDATION', `the kubeconfig of cluster "${name}" is not YAML`, {
      hint: 'pass a kubeconfig file as written by kubectl config',
      cause,
    });
  }
  const d = (doc ?? {}) as {
    contexts?: { name?: unknown }[];
    'current-context'?: unknown;
    clusters?: unknown[];
  };
  if (!Array.isArray(d.clusters) || !Array.isArray(d.contexts) || d.contexts.length === 0) {
    throw new GatehouseError(
      'GH_ERR_VALIDATION',
      `the kubeconfig of cluster "${name}" has no clusters or contexts`,
      {
        hint: 'pass a kubeconfig file as written by kubectl config',
      },
    );
  }
  const want = context ?? d['current-context'];
  if (typeof want !== 'string' || !d.contexts.some((c) => c?.name === want)) {
    const names = d.contexts.map((c) => String(c?.name)).join(', ');
    throw new GatehouseError(
      'GH_ERR_VALIDATION',
      `the kubeconfig of cluster "${name}" has no context "${String(want)}"`,
      {
        hint: `pick one with --context (contexts: ${names})`,
      },
    );
  }
}

/** Reads a kubeconfig named in config or on the command line. */
export async function readKubeconfigFile(file: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (cause) {
    throw new GatehouseError('GH_ERR_CONFIG_INVALID', `cannot read kubeconfig ${file}`, {
      cause,
      hint: 'check the path',
    });
  }
}

/**
 * Registered Kubernetes clusters: static ones (config file, adapter options)
 * plus dynamic ones in the backend (`gatehouse kube add`, the API). The
 * kubeconfig of a dynamic cluster holds upstream secrets, so it is sealed
 * with the gateway's at-rest key, bound to the record's key.
 */
export class KubeClusterRegistry {
  readonly #backend: Backend;
  readonly #audit: AuditEmitter;
  readonly #sealer: Sealer;
  readonly #static = new Map<string, KubeClusterSpec>();

  constructor(deps: { backend: Backend; audit: AuditEmitter; sealer: Sealer }) {
    this.#backend = deps.backend;
    this.#audit = deps.audit;
    this.#sealer = deps.sealer;
  }

  addStatic(spec: KubeClusterSpec): void {
    this.replaceStatic([], [spec]);
  }

  /**
   * Swaps the configured entries named `previous` for `next` (a SIGHUP
   * reload); nothing changes when one of `next` is invalid or its name is taken.
   */
  replaceStatic(previous: readonly string[], next: readonly KubeClusterSpec[]): void {
    putStatic(this.#static, next, {
      validate: (s) => validateKubeCluster({ ...s, source: 'config' }),
      what: 'Kubernetes cluster',
      hint: 'give each cluster a unique name',
      remove: previous,
    });
  }

  /** The cluster with its kubeconfig in the clear (for the adapter only). */
  async get(name: string): Promise<KubeClusterSpec | undefined> {
    const s = this.#static.get(name);
    if (s) return s;
    const item = await this.#backend.get(PREFIX + name);
    return item ? this.#open(JSON.parse(item.value) as StoredCluster) : undefined;
  }

  /** Every cluster WITHOUT credentials (listings never need them). */
  async list(): Promise<KubeClusterSpec[]> {
    const strip = (s: KubeClusterSpec): KubeClusterSpec => {
      const { kubeconfig: _k, ...rest } = s;
      return rest;
    };
    const dynamic = (await this.#backend.range(PREFIX)).map((i) => {
      const { sealedKubeconfig: _s, ...rest } = JSON.parse(i.value) as StoredCluster;
      return { ...rest, source: 'dynamic' } as KubeClusterSpec;
    });
    const all = [
      ...[...this.#static.values()].map(strip),
      ...dynamic.filter((d) => !this.#static.has(d.name)),
    ];
    return all.sort((a, b) => a.name.localeCompare(b.name));
  }

  async add(spec: KubeClusterSpec, actor: string): Promise<KubeClusterSpec> {
    const v = validateKubeCluster({ ...spec, source: undefined });
    if (this.#static.has(v.name)) {
      throw new GatehouseError(
        'GH_ERR_ALREADY_EXISTS',
        `Kubernetes cluster "${v.name}" is defined in the config`,
        {
          hint: 'change it in the config file, or pick another name',
        },
      );
    }
    const key = PREFIX + v.name;
    const stored: StoredCluster = {
      name: v.name,
      labels: v.labels,
      ...(v.context ? { context: v.context } : {}),
      ...(v.inCluster ? { inCluster: true } : {}),
      ...(v.description ? { description: v.description } : {}),
      ...(v.kubeconfig !== undefined ? { sealedKubeconfig: this.#sealer.seal(v.kubeconfig, key) } : {}),
    };
    try {
      await this.#backend.create(key, JSON.stringify(stored));
    } catch (err) {
      if (isGatehouseError(err, 'GH_ERR_ALREADY_EXISTS')) {
        throw new GatehouseError('GH_ERR_ALREADY_EXISTS', `Kubernetes cluster "${v.name}" already exists`, {
          hint: `remove it first with gatehouse kube rm ${v.name}`,
        });
      }
      throw err;
    }
    await this.#audit.emit({ type: 'kube.cluster.create', user: actor, name: v.name });
    const { kubeconfig: _k, ...rest } = v;
    return { ...rest, source: 'dynamic' };
  }

  async remove(name: string, actor: string): Promise<void> {
    if (this.#static.has(name)) {
      throw new GatehouseError('GH_ERR_VALIDATION', `Kubernetes cluster "${name}" is defined in the config`, {
        hint: 'remove it from the config file',
      });
    }
    if (!(await this.#backend.delete(PREFIX + name))) {
      throw new GatehouseError('GH_ERR_NOT_FOUND', `Kubernetes cluster "${name}" not found`, {
        hint: 'list clusters with gatehouse kube ls',
      });
    }
    await this.#audit.emit({ type: 'kube.cluster.delete', user: actor, name });
  }

  #open(s: StoredCluster): KubeClusterSpec {
    return {
      name: s.name,
      labels: s.labels ?? {},
      ...(s.context ? { context: s.context } : {}),
      ...(s.inCluster ? { inCluster: true } : {}),
      ...(s.description ? { description: s.description } : {}),
      ...(s.sealedKubeconfig ? { kubeconfig: this.#sealer.open(s.sealedKubeconfig, PREFIX + s.name) } : {}),
      source: 'dynamic',
    };
  }
}
