import { describe, expect, it } from 'vitest';
import { WireError } from './reader.js';
import { encodeTargetReply, encodeTargetRequest, TargetReplyParser, TargetRequestParser } from './target.js';

describe('target line (ALPN gatehouse-ssh)', () => {
  it('round-trips names, IPv4 and IPv6 with the SSH bytes that follow', () => {
    for (const host of ['node1', 'node1.acme', '10.0.0.5', '::1']) {
      const p = new TargetRequestParser();
      const bytes = Buffer.concat([encodeTargetRequest({ host, port: 2222 }), Buffer.from('SSH-2.0-x\r\n')]);
      expect(p.push(bytes.subarray(0, 5))).toBeUndefined();
      const got = p.push(bytes.subarray(5));
      expect(got?.request).toEqual({ host, port: 2222 });
      expect(got?.rest.toString()).toBe('SSH-2.0-x\r\n');
    }
  });

  it('refuses malformed lines, bad ports and endless lines', () => {
    expect(() => new TargetRequestParser().push(Buffer.from('HELLO node1:22\n'))).toThrow(WireError);
    expect(() => new TargetRequestParser().push(Buffer.from('GATEHOUSE-SSH/1 node1:0\n'))).toThrow(WireError);
    expect(() => new TargetRequestParser().push(Buffer.from('GATEHOUSE-SSH/1 no de:22\n'))).toThrow(
      WireError,
    );
    expect(() => new TargetRequestParser().push(Buffer.alloc(600, 0x41))).toThrow(/too long/);
    expect(() => encodeTargetRequest({ host: 'a b', port: 22 })).toThrow(WireError);
  });

  it('refuses up front a host the gateway would refuse (was sent, and failed there as a malformed line)', () => {
    // fuzz counterexample "]"; likewise "node:1" (not hex in brackets) and "[abc]".
    for (const host of [']', 'a]b', 'node:1', '[abc]', '[node1', '[]']) {
      expect(() => encodeTargetRequest({ host, port: 22 })).toThrow(/invalid host/);
    }
    for (const host of ['node1', '[::1]', '::ffff:10.0.0.1', 'fe80::1']) {
      const got = new TargetRequestParser().push(encodeTargetRequest({ host, port: 22 }));
      expect(got?.request).toEqual({ host: host.replace(/^\[(.*)\]$/, '$1'), port: 22 });
    }
  });

  it('replies: OK, or ERR with a one-line message', () => {
    const ok = new TargetReplyParser().push(
      Buffer.concat([encodeTargetReply({ ok: true }), Buffer.from('SSH')]),
    );
    expect(ok).toEqual({ reply: { ok: true }, rest: Buffer.from('SSH') });
    const err = new TargetReplyParser().push(encodeTargetReply({ ok: false, error: 'no\nnode "é"' }));
    expect(err?.reply).toEqual({ ok: false, error: 'no node "é"' });
    expect(() => new TargetReplyParser().push(Buffer.from('WHAT\n'))).toThrow(WireError);
  });

  it('cuts a long non-ASCII error to the line limit in bytes (the client refused the reply as too long)', () => {
    // fuzz finding: 504 characters of 2- to 4-byte UTF-8 made a line of up to 2 KiB.
    const error = 'é'.repeat(300) + '🙂'.repeat(200);
    const line = encodeTargetReply({ ok: false, error });
    expect(line.length).toBeLessThanOrEqual(513);
    const got = new TargetReplyParser().push(line)?.reply;
    expect(got?.ok).toBe(false);
    const text = (got as { error: string }).error;
    expect(text.length).toBeGreaterThan(250);
    expect(error.startsWith(text)).toBe(true);
  });
});
