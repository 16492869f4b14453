import fc from 'fast-check';
import { expect } from 'vitest';

/**
 * Seeded property-based fuzzing for the codecs' `*.fuzz.test.ts` suites
 * (vitest project `reliability`).
 *
 * - `GATEHOUSE_FUZZ_SEED=N` replays a run; without it each test file picks a
 *   random seed, so CI explores new inputs every time and a failure says
 *   which seed found it.
 * - `GATEHOUSE_FUZZ_RUNS=N` runs every property N times (deep fuzzing);
 *   without it each property runs its own small default, so the whole fuzz
 *   set stays fast.
 */

function envInt(name: string): number | undefined {
  const v = process.env[name];
  if (v === undefined || v === '') return undefined;
  const n = Number(v);
  if (!Number.isSafeInteger(n)) throw new Error(`${name} must be an integer, got "${v}"`);
  return n;
}

/** The seed every property of this test file runs with. */
export const FUZZ_SEED: number = envInt('GATEHOUSE_FUZZ_SEED') ?? (Math.random() * 0x7fffffff) | 0;

/** Runs per property when GATEHOUSE_FUZZ_RUNS is set (undefined: each property's default). */
export const FUZZ_RUNS: number | undefined = envInt('GATEHOUSE_FUZZ_RUNS');

export interface FuzzOptions {
  /** Runs without GATEHOUSE_FUZZ_RUNS (default 200). */
  runs?: number;
  /** Upper bound on runs even in a deep pass, for properties whose every run is expensive. */
  maxRuns?: number;
}

function params(opts: FuzzOptions): fc.Parameters<unknown> {
  const runs = Math.min(FUZZ_RUNS ?? opts.runs ?? 200, opts.maxRuns ?? Number.POSITIVE_INFINITY);
  return { seed: FUZZ_SEED, numRuns: runs };
}

function failure(details: fc.RunDetails<unknown>): Error {
  const { testPath, currentTestName } = expect.getState();
  const file = testPath ? testPath.replace(`${process.cwd()}/`, '') : '<file>';
  const runs = FUZZ_RUNS === undefined ? '' : ` GATEHOUSE_FUZZ_RUNS=${FUZZ_RUNS}`;
  const name = currentTestName?.split(' > ').pop() ?? '';
  return new Error(
    `${fc.defaultReportMessage(details)}\n\n` +
      `Replay: GATEHOUSE_FUZZ_SEED=${details.seed}${runs} npx vitest run ${file} -t ${JSON.stringify(name)}\n` +
      `(fast-check seed ${details.seed}, path ${JSON.stringify(details.counterexamplePath)})`,
    { cause: details.errorInstance },
  );
}

/**
 * fc.assert with the file's seed and run count; a failure names the seed,
 * the counterexample (shrunk) and the command that replays it.
 */
export function fuzz<Ts>(property: fc.IProperty<Ts>, opts?: FuzzOptions): void;
export function fuzz<Ts>(property: fc.IAsyncProperty<Ts>, opts?: FuzzOptions): Promise<void>;
export function fuzz<Ts>(
  property: fc.IProperty<Ts> | fc.IAsyncProperty<Ts>,
  opts: FuzzOptions = {},
): void | Promise<void> {
  const p = params(opts) as fc.Parameters<Ts>;
  if (property.isAsync()) {
    return fc.check(property as fc.IAsyncProperty<Ts>, p).then((d) => {
      if (d.failed) throw failure(d as fc.RunDetails<unknown>);
    });
  }
  const d = fc.check(property as fc.IProperty<Ts>, p);
  if (d.failed) throw failure(d as fc.RunDetails<unknown>);
}

/** The type of the values an arbitrary generates. */
export type Generated<A> = A extends fc.Arbitrary<infer T> ? T : never;

type ErrorClass = abstract new (...args: never[]) => Error;

/** Error classes that mean a parser read past what it checked, whatever wraps them. */
const CRASHES: ErrorClass[] = [TypeError, RangeError, ReferenceError];

/**
 * Runs `fn` and returns its result, or undefined when it threw one of
 * `allowed`. Anything else (a TypeError, RangeError, ... also as the `cause`
 * of an allowed error) is rethrown, so the property fails on it.
 */
export function onlyThrows<T>(fn: () => T, ...allowed: ErrorClass[]): T | undefined {
  try {
    return fn();
  } catch (err) {
    assertAllowed(err, allowed);
    return undefined;
  }
}

/**
 * onlyThrows for errors with a stable `code` string (GatehouseError, and the
 * errors of other packages that share the catalogue): only `code` may escape.
 */
export function onlyCode<T>(code: string, fn: () => T): T | undefined {
  try {
    return fn();
  } catch (err) {
    assertAllowed(err, [Error]);
    if ((err as { code?: unknown }).code !== code) throw err;
    return undefined;
  }
}

/** Async form of onlyThrows. */
export async function onlyRejects<T>(fn: () => Promise<T>, ...allowed: ErrorClass[]): Promise<T | undefined> {
  try {
    return await fn();
  } catch (err) {
    assertAllowed(err, allowed);
    return undefined;
  }
}

function assertAllowed(err: unknown, allowed: ErrorClass[]): void {
  if (!allowed.some((c) => err instanceof c)) throw err;
  for (let c: unknown = (err as Error).cause; c instanceof Error; c = c.cause) {
    if (CRASHES.some((k) => c instanceof k)) {
      throw new Error(`${(err as Error).name} wraps a ${c.name}: ${c.message}`, { cause: err });
    }
  }
}

// ---------------------------------------------------------------- byte mutation

/** One edit of a byte string; positions are taken modulo its length. */
export type Mutation =
  | { op: 'set'; at: number; value: number }
  | { op: 'flip'; at: number; bit: number }
  | { op: 'truncate'; at: number }
  | { op: 'extend'; bytes: Uint8Array }
  | { op: 'insert'; at: number; bytes: Uint8Array }
  | { op: 'delete'; at: number; count: number }
  | { op: 'duplicate'; at: number; count: number }
  | { op: 'int'; at: number; size: 1 | 2 | 3 | 4; littleEndian: boolean; value: number };

/** Values a length or count field is most likely to be wrong with. */
const INTERESTING = [0, 1, 2, 3, 4, 5, 7, 8, 0x7f, 0x80, 0xff, 0x100, 0x7fff, 0x8000, 0xffff, 0xffffff];

export const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ op: fc.constant('set' as const), at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ op: fc.constant('flip' as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }),
  fc.record({ op: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({ op: fc.constant('extend' as const), bytes: fc.uint8Array({ minLength: 1, maxLength: 16 }) }),
  fc.record({
    op: fc.constant('insert' as const),
    at: fc.nat(),
    bytes: fc.uint8Array({ minLength: 1, maxLength: 8 }),
  }),
  fc.record({ op: fc.constant('delete' as const), at: fc.nat(), count: fc.integer({ min: 1, max: 8 }) }),
  fc.record({ op: fc.constant('duplicate' as const), at: fc.nat(), count: fc.integer({ min: 1, max: 16 }) }),
  fc.record({
    op: fc.constant('int' as const),
    at: fc.nat(),
    size: fc.constantFrom(1 as const, 2 as const, 3 as const, 4 as const),
    littleEndian: fc.boolean(),
    value: fc.oneof(fc.constantFrom(...INTERESTING, 0xffffffff, 0x7fffffff), fc.nat()),
  }),
);

/** Applies the edits in order (a copy: `input` is left alone). */
export function applyMutations(input: Uint8Array, edits: readonly Mutation[]): Buffer {
  let b = Buffer.from(input);
  for (const m of edits) {
    const n = b.length;
    switch (m.op) {
      case 'set':
        if (n > 0) b[m.at % n] = m.value;
        break;
      case 'flip':
        if (n > 0) b[m.at % n]! ^= 1 << m.bit;
        break;
      case 'truncate':
        b = b.subarray(0, m.at % (n + 1));
        break;
      case 'extend':
        b = Buffer.concat([b, m.bytes]);
        break;
      case 'insert': {
        const at = m.at % (n + 1);
        b = Buffer.concat([b.subarray(0, at), m.bytes, b.subarray(at)]);
        break;
      }
      case 'delete': {
        const at = m.at % (n + 1);
        b = Buffer.concat([b.subarray(0, at), b.subarray(at + m.count)]);
        break;
      }
      case 'duplicate': {
        const at = m.at % (n + 1);
        const part = b.subarray(at, at + m.count);
        b = Buffer.concat([b.subarray(0, at + part.length), part, b.subarray(at + part.length)]);
        break;
      }
      case 'int': {
        if (n < m.size) break;
        const at = m.at % (n - m.size + 1);
        const v = m.value % 2 ** (8 * m.size);
        b = Buffer.from(b);
        if (m.littleEndian) b.writeUIntLE(v, at, m.size);
        else b.writeUIntBE(v, at, m.size);
        break;
      }
      default: {
        const never: never = m;
        throw new Error(`unknown mutation ${JSON.stringify(never)}`);
      }
    }
  }
  return b;
}

/** Valid inputs from `valid`, each with one to four edits (flips, truncations, length fields, ...). */
export function mutated(valid: fc.Arbitrary<Uint8Array>): fc.Arbitrary<Buffer> {
  return fc
    .tuple(valid, fc.array(mutationArb, { minLength: 1, maxLength: 4 }))
    .map(([v, edits]) => applyMutations(v, edits));
}

/**
 * Inputs for a parser of untrusted bytes: mostly valid messages mutated, some
 * valid ones untouched, some random bytes (which rarely get past a first check).
 */
export function hostileBytes(valid: fc.Arbitrary<Uint8Array>): fc.Arbitrary<Buffer> {
  return fc.oneof(
    { weight: 6, arbitrary: mutated(valid) },
    { weight: 2, arbitrary: valid.map((v) => Buffer.from(v)) },
    { weight: 2, arbitrary: fc.uint8Array({ maxLength: 256 }).map((v) => Buffer.from(v)) },
  );
}

// ---------------------------------------------------------------- chunking

/** Cut points for `chunks`: fractions of the input, so they shrink towards "one piece". */
export const cutsArb: fc.Arbitrary<number[]> = fc.array(fc.double({ min: 0, max: 1, noNaN: true }), {
  maxLength: 12,
});

/** Splits `bytes` at the given fractions of its length (empty pieces included: parsers must take them). */
export function chunks(bytes: Uint8Array, cuts: readonly number[]): Buffer[] {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const at = cuts.map((c) => Math.floor(c * b.length)).sort((x, y) => x - y);
  const out: Buffer[] = [];
  let prev = 0;
  for (const a of at) {
    out.push(b.subarray(prev, a));
    prev = a;
  }
  out.push(b.subarray(prev));
  return out;
}

/** One byte at a time. */
export function bytewise(bytes: Uint8Array): Buffer[] {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return Array.from({ length: b.length }, (_, i) => b.subarray(i, i + 1));
}

// ---------------------------------------------------------------- shell words

/**
 * Splits a command line the way a POSIX shell would, for the forms the
 * gateway's quoters write: bare words, '...' and the '\'' idiom. Anything
 * else a shell would expand (", \, $, `) makes it throw, so a property can
 * tell that a quoter left something for the shell to interpret.
 */
export function shellSplit(line: string): string[] {
  const words: string[] = [];
  let cur: string | undefined;
  for (let i = 0; i < line.length; i++) {
    const c = line[i] as string;
    if (c === ' ') {
      if (cur !== undefined) words.push(cur);
      cur = undefined;
    } else if (c === "'") {
      const end = line.indexOf("'", i + 1);
      if (end < 0) throw new Error(`unterminated quote in ${JSON.stringify(line)}`);
      cur = (cur ?? '') + line.slice(i + 1, end);
      i = end;
    } else if (c === '\\' && line[i + 1] === "'") {
      cur = `${cur ?? ''}'`;
      i++;
    } else if (/[\s"\\$`;&|<>()*?[\]{}~#!]/.test(c)) {
      throw new Error(`unquoted ${JSON.stringify(c)} in ${JSON.stringify(line)}`);
    } else {
      cur = (cur ?? '') + c;
    }
  }
  if (cur !== undefined) words.push(cur);
  return words;
}
