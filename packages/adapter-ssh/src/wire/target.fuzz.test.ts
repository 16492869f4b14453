import { bytewise, chunks, cutsArb, fuzz, hostileBytes, onlyThrows } from '@gatehouse/core/testing';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { WireError } from './reader.js';
import { encodeTargetReply, encodeTargetRequest, TargetReplyParser, TargetRequestParser } from './target.js';

const port = fc.integer({ min: 1, max: 65535 });
const host = fc.oneof(
  fc.domain(),
  fc.ipV4(),
  fc.ipV6(),
  // Everything encodeTargetRequest's own check lets through.
  fc.stringMatching(/^[A-Za-z0-9._:[\]-]{1,40}$/),
);
/** Whatever the client sends after the line: the start of its SSH stream. */
const after = fc.uint8Array({ maxLength: 40 }).map((b) => Buffer.from(b));

/** Feeds pieces until the parser answers; the rest is what it returned plus every later piece. */
function feed<T extends { rest: Buffer }>(
  p: { push(b: Buffer): T | undefined },
  pieces: Buffer[],
): T | undefined {
  for (let i = 0; i < pieces.length; i++) {
    const r = p.push(pieces[i]!);
    if (r) return { ...r, rest: Buffer.concat([r.rest, ...pieces.slice(i + 1)]) };
  }
  return undefined;
}

describe('gatehouse-ssh target line (fuzz)', () => {
  it('every request encodeTargetRequest writes is read back, with the SSH bytes after it, however it is split', () => {
    fuzz(
      fc.property(host, port, after, cutsArb, fc.boolean(), (h, p, ssh, cuts, oneByOne) => {
        const line = onlyThrows(() => encodeTargetRequest({ host: h, port: p }), WireError);
        if (!line) return; // refused up front: fine, as long as nothing it writes is refused later
        const bytes = Buffer.concat([line, ssh]);
        const r = feed(new TargetRequestParser(), oneByOne ? bytewise(bytes) : chunks(bytes, cuts));
        expect(r?.request).toEqual({ host: h.replace(/^\[(.*)\]$/, '$1'), port: p });
        expect(r?.rest).toEqual(ssh);
      }),
      { runs: 2000 },
    );
  });

  it('every reply encodeTargetReply writes is read back, however it is split', () => {
    fuzz(
      fc.property(
        fc.oneof(
          fc.constant(undefined),
          fc.string({ unit: 'grapheme', maxLength: 40 }),
          fc.string({ unit: 'grapheme', minLength: 400, maxLength: 600 }),
        ),
        after,
        cutsArb,
        (error, ssh, cuts) => {
          const reply = error === undefined ? { ok: true as const } : { ok: false as const, error };
          const bytes = Buffer.concat([encodeTargetReply(reply), ssh]);
          const r = feed(new TargetReplyParser(), chunks(bytes, cuts));
          if (!r) throw new Error('the reply was not read back');
          if (reply.ok) expect(r.reply).toEqual(reply);
          else {
            expect(r.reply.ok).toBe(false);
            const got = (r.reply as { error: string }).error;
            // One line, cut to fit the line limit, otherwise as written.
            expect(reply.error.replace(/[\r\n]+/g, ' ').startsWith(got)).toBe(true);
          }
          expect(r?.rest).toEqual(ssh);
        },
      ),
      { runs: 2000 },
    );
  });

  it('both parsers throw only WireError on damaged lines, and refuse a line over 512 bytes without waiting for more', () => {
    fuzz(
      fc.property(
        hostileBytes(
          fc
            .tuple(host, port)
            .map(
              ([h, p]) =>
                onlyThrows(() => encodeTargetRequest({ host: h, port: p }), WireError) ??
                Buffer.from('GATEHOUSE-SSH/1 x:1\n'),
            ),
        ),
        cutsArb,
        (bytes, cuts) => {
          onlyThrows(() => feed(new TargetRequestParser(), chunks(bytes, cuts)), WireError);
          onlyThrows(() => feed(new TargetReplyParser(), chunks(bytes, cuts)), WireError);
        },
      ),
      { runs: 3000 },
    );
  });

  it('refuses a line with no newline in its first 513 bytes', () => {
    fuzz(
      fc.property(
        fc
          .uint8Array({ minLength: 513, maxLength: 2000 })
          .map((b) => Buffer.from(b.map((x) => (x === 0x0a ? 0x20 : x)))),
        (b) => {
          expect(() => new TargetRequestParser().push(b)).toThrow(WireError);
          expect(() => new TargetReplyParser().push(b)).toThrow(WireError);
        },
      ),
      { runs: 300 },
    );
  });
});
