import { GatehouseError } from '../errors.js';
import type { Item, PutOptions, RangeOptions } from './types.js';

/**
 * Keys are ordered by Unicode code point, which is the same as UTF-8 byte
 * order: what SQLite's BINARY collation, PostgreSQL's "C" collation and etcd
 * use. JavaScript's `<` compares UTF-16 code units, which disagrees for
 * characters above U+FFFF, so the memory backend needs this to match.
 */
export function compareKeys(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    let x = a.charCodeAt(i);
    let y = b.charCodeAt(i);
    if (x === y) continue;
    // Surrogates (D800-DFFF) encode code points above FFFF, so they must sort
    // after E000-FFFF; shift both ranges so plain subtraction gives that.
    if (x >= 0xd800 && y >= 0xd800) {
      x = x >= 0xe000 ? x - 0x800 : x + 0x2000;
      y = y >= 0xe000 ? y - 0x800 : y + 0x2000;
    }
    return x - y;
  }
  return a.length - b.length;
}

/**
 * The smallest string greater than every string starting with `prefix`
 * (undefined for the empty prefix: no upper bound). Used for range scans
 * instead of LIKE, because keys may contain '%' and '_'.
 */
export function prefixUpperBound(prefix: string): string | undefined {
  const cps = Array.from(prefix, (c) => c.codePointAt(0)!);
  while (cps.length > 0) {
    const last = cps.pop()!;
    if (last < 0x10ffff) {
      // Skip the surrogate block: a lone surrogate is not a valid key character.
      cps.push(last === 0xd7ff ? 0xe000 : last + 1);
      return String.fromCodePoint(...cps);
    }
  }
  return undefined;
}

export function checkKey(key: string): void {
  if (typeof key !== 'string' || key.length === 0) {
    throw new GatehouseError('GH_ERR_VALIDATION', 'backend keys must be non-empty strings', {
      hint: 'This is a bug in the caller; report it with the stack trace.',
    });
  }
}

export function checkValue(value: string): void {
  if (typeof value !== 'string') {
    throw new GatehouseError('GH_ERR_VALIDATION', 'backend values must be strings', {
      hint: 'Serialize the value (JSON.stringify) before storing it.',
    });
  }
}

/** Absolute expiry in epoch milliseconds, or null for no TTL. */
export function expiryFrom(nowMs: number, opts: PutOptions | undefined): number | null {
  const ttl = opts?.ttlMs;
  if (ttl === undefined) return null;
  if (!Number.isFinite(ttl) || ttl <= 0) {
    throw new GatehouseError(
      'GH_ERR_VALIDATION',
      `ttlMs must be a positive number of milliseconds, got ${ttl}`,
      {
        hint: 'Omit ttlMs for items that never expire.',
      },
    );
  }
  return nowMs + Math.ceil(ttl);
}

export function checkRange(opts: RangeOptions | undefined): void {
  const limit = opts?.limit;
  if (limit !== undefined && (!Number.isInteger(limit) || limit < 0)) {
    throw new GatehouseError(
      'GH_ERR_VALIDATION',
      `range limit must be a non-negative integer, got ${limit}`,
      {
        hint: 'Omit limit to read the whole range.',
      },
    );
  }
}

export function makeItem(key: string, value: string, revision: number, expires: number | null): Item {
  return expires === null ? { key, value, revision } : { key, value, revision, expires: new Date(expires) };
}

export function conflict(key: string, expected: number | null, actual: number | null): GatehouseError {
  return new GatehouseError('GH_ERR_CONFLICT', `"${key}" was changed by someone else`, {
    hint: 'Read the current value and retry the change.',
    details: { key, expectedRevision: expected, actualRevision: actual },
  });
}

export function alreadyExists(key: string): GatehouseError {
  return new GatehouseError('GH_ERR_ALREADY_EXISTS', `"${key}" already exists`, {
    hint: 'Update the existing item instead, or delete it first.',
    details: { key },
  });
}

export function closedError(kind: string): GatehouseError {
  return new GatehouseError('GH_ERR_BACKEND_UNAVAILABLE', `the ${kind} backend is closed`, {
    hint: 'The gateway is shutting down; retry against a running instance.',
  });
}

/**
 * Parks async loops (watchers) until a local write, a timeout, an abort or
 * close. Every waiter is released by wakeAll(), so a watcher never sleeps
 * through a change made in this process.
 */
export class Waiters {
  #waiting = new Set<() => void>();

  wait(timeoutMs: number | undefined, signal: AbortSignal | undefined): Promise<void> {
    return new Promise((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      const done = () => {
        if (timer !== undefined) clearTimeout(timer);
        signal?.removeEventListener('abort', done);
        this.#waiting.delete(done);
        resolve();
      };
      this.#waiting.add(done);
      if (timeoutMs !== undefined) timer = setTimeout(done, timeoutMs);
      if (signal?.aborted) done();
      else signal?.addEventListener('abort', done, { once: true });
    });
  }

  wakeAll(): void {
    for (const done of [...this.#waiting]) done();
  }
}
