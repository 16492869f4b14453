import type { Duplex } from 'node:stream';

/** Why readFrame gave up. */
export class FrameError extends Error {
  override name = 'FrameError';
  constructor(
    message: string,
    readonly kind: 'timeout' | 'closed' | 'malformed' | 'trailing',
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/**
 * One message at the start of a stream, framed by `lengthOf` (undefined
 * until the header says how long; it throws for bytes that are not the
 * message), within `timeoutMs`. Bytes after the message are refused: every
 * caller reads a handshake step after which the peer must wait for an
 * answer. The stream is left paused with no listener of ours, and is
 * resumed on entry (a stream paused by an earlier read would otherwise never
 * deliver the next message: a 'data' listener does not resume it).
 */
export function readFrame(
  s: Duplex,
  lengthOf: (b: Buffer) => number | undefined,
  what: string,
  timeoutMs: number,
): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const done = (err: Error | undefined, b?: Buffer) => {
      clearTimeout(timer);
      s.off('data', onData);
      s.off('end', onClose);
      s.off('close', onClose);
      s.pause();
      if (err) reject(err);
      else resolve(b!);
    };
    const onData = (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      let len: number | undefined;
      try {
        len = lengthOf(buf);
      } catch (err) {
        done(new FrameError(`${what}: ${(err as Error).message}`, 'malformed', { cause: err }));
        return;
      }
      if (len === undefined || buf.length < len) return;
      if (buf.length > len) done(new FrameError(`bytes after the ${what}`, 'trailing'));
      else done(undefined, buf);
    };
    const onClose = () => done(new FrameError(`the connection closed before the ${what}`, 'closed'));
    const timer = setTimeout(
      () => done(new FrameError(`no ${what} within ${timeoutMs} ms`, 'timeout')),
      timeoutMs,
    );
    s.on('data', onData);
    s.on('end', onClose);
    s.on('close', onClose);
    s.resume();
  });
}
