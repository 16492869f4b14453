import { createHash, type Hash } from 'node:crypto';

/**
 * How much of one statement a `db.session.query` record keeps. A statement
 * or value over its limit keeps a prefix, its full length and its SHA-256,
 * so one huge statement costs the audit a bounded amount and can still be
 * matched against a copy of the original.
 */
export interface AuditTextLimits {
  /**
   * Bytes of statement text kept. Also the budget for all bound parameters
   * of one statement together.
   */
  maxQueryBytes: number;
  /** Bytes kept of each bound parameter. */
  maxParameterBytes: number;
}

export const DEFAULT_AUDIT_TEXT_LIMITS: Readonly<AuditTextLimits> = Object.freeze({
  maxQueryBytes: 32 * 1024,
  maxParameterBytes: 4 * 1024,
});

/** A text or value longer than the audit keeps. */
export interface ClippedText {
  /** The first bytes, rendered (at most the limit's worth of bytes). */
  text: string;
  /** Length of the whole, in bytes as the client sent them. */
  length: number;
  /** SHA-256 (hex) of the whole, as the client sent it. */
  sha256: string;
}

/** What the audit records for a statement text or a value: all of it, or a ClippedText. */
export type AuditText = string | ClippedText;

/** Renders bytes for the record; `clipped` says they are a prefix, so a character cut in two is dropped. */
export type RenderBytes = (bytes: Buffer, clipped: boolean) => string;

export const renderUtf8: RenderBytes = (b, clipped) =>
  b.toString('utf8', 0, clipped ? utf8Boundary(b) : b.length);

/** Where a prefix ends once a trailing, incomplete UTF-8 sequence is left out. */
function utf8Boundary(b: Buffer): number {
  let i = b.length;
  let continuation = 0;
  while (continuation < 3 && i > 0 && ((b[i - 1] as number) & 0xc0) === 0x80) {
    i--;
    continuation++;
  }
  if (i === 0) return b.length;
  const lead = b[i - 1] as number;
  const need = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc0 ? 2 : 1;
  // A complete sequence, or bytes that are not UTF-8 anyway: keep them (they render as U+FFFD).
  if (need === 1 || need === continuation + 1) return b.length;
  return i - 1;
}

function sha256(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

/** A value held whole in memory, as the audit keeps it. */
export function clipBytes(raw: Buffer, max: number, render: RenderBytes = renderUtf8): AuditText {
  if (raw.length <= max) return render(raw, false);
  return { text: render(raw.subarray(0, max), true), length: raw.length, sha256: sha256(raw) };
}

/** A text the caller has only as a string: clipped on its UTF-8 bytes. */
export function clipString(s: string, max: number): AuditText {
  // A UTF-16 unit is at most 3 UTF-8 bytes: most texts need no encoding to know they fit.
  if (s.length * 3 <= max) return s;
  const b = Buffer.from(s, 'utf8');
  return b.length <= max ? s : clipBytes(b, max);
}

/**
 * A text or value that arrives in pieces (a streamed message): keeps the
 * first `keep` bytes and hashes the whole, without ever holding more than
 * `keep` bytes. The hash starts only once the text outgrows `keep`.
 */
export class TextDigest {
  readonly #keep: number;
  #parts: Buffer[] = [];
  #kept = 0;
  #length = 0;
  #hash: Hash | undefined;

  constructor(keep: number) {
    this.#keep = Math.max(0, keep);
  }

  /** Bytes seen so far. */
  get length(): number {
    return this.#length;
  }

  /** Bytes kept so far (at most `keep`). */
  get kept(): number {
    return this.#kept;
  }

  update(b: Buffer): void {
    if (b.length === 0) return;
    if (!this.#hash && this.#length + b.length > this.#keep) {
      // Up to here every byte was kept, so the kept parts are the whole so far.
      this.#hash = createHash('sha256');
      for (const p of this.#parts) this.#hash.update(p);
    }
    this.#hash?.update(b);
    this.#length += b.length;
    const room = this.#keep - this.#kept;
    if (room > 0) {
      // A copy: a view would keep the whole socket chunk alive.
      const part = Buffer.from(b.subarray(0, Math.min(room, b.length)));
      this.#parts.push(part);
      this.#kept += part.length;
    }
  }

  result(render: RenderBytes = renderUtf8): AuditText {
    const kept =
      this.#parts.length === 1 ? (this.#parts[0] as Buffer) : Buffer.concat(this.#parts, this.#kept);
    if (!this.#hash) return render(kept, false);
    return { text: render(kept, true), length: this.#length, sha256: this.#hash.digest('hex') };
  }
}

/**
 * The parameters of one statement: each keeps at most `maxParameterBytes`,
 * and all of them together at most `maxQueryBytes`; past that budget a value
 * keeps only its length and hash.
 */
export class ParameterClipper {
  readonly #max: number;
  #left: number;

  constructor(limits: AuditTextLimits) {
    this.#max = limits.maxParameterBytes;
    this.#left = limits.maxQueryBytes;
  }

  /** Bytes the next value may keep. */
  get keep(): number {
    return Math.min(this.#max, this.#left);
  }

  /** A value held whole in memory. */
  clip(raw: Buffer, render: RenderBytes = renderUtf8): AuditText {
    const keep = this.keep;
    this.#left -= Math.min(keep, raw.length);
    return clipBytes(raw, keep, render);
  }

  /** A value that arrives in pieces: feed the digest, then `take` it. */
  digest(): TextDigest {
    return new TextDigest(this.keep);
  }

  take(d: TextDigest, render: RenderBytes = renderUtf8): AuditText {
    this.#left -= d.kept;
    return d.result(render);
  }
}
