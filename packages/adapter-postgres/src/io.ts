import type { Duplex } from 'node:stream';

/**
 * Feeds a socket's chunks to `onChunk` until it returns true, then pauses the
 * socket and removes its listeners (later bytes stay queued in the socket).
 * Rejects on error, on close before done, and on abort.
 */
export function readUntil(
  socket: Duplex,
  onChunk: (chunk: Buffer) => boolean,
  opts: { signal?: AbortSignal; what: string },
): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const cleanup = () => {
      socket.off('data', onData);
      socket.off('error', onError);
      socket.off('close', onClose);
      opts.signal?.removeEventListener('abort', onAbort);
    };
    const onData = (chunk: Buffer) => {
      let done: boolean;
      try {
        done = onChunk(chunk);
      } catch (err) {
        cleanup();
        socket.pause();
        reject(err);
        return;
      }
      if (done) {
        cleanup();
        socket.pause();
        resolve();
      }
    };
    const onError = (err: Error) => {
      cleanup();
      reject(err);
    };
    const onClose = () => {
      cleanup();
      reject(new Error(`${opts.what}: the connection closed`));
    };
    const onAbort = () => {
      cleanup();
      socket.pause();
      reject(opts.signal?.reason ?? new Error(`${opts.what}: aborted`));
    };
    if (opts.signal?.aborted) return onAbort();
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    socket.on('data', onData);
    socket.on('error', onError);
    socket.on('close', onClose);
    socket.resume();
  });
}

/** Writes and waits for 'drain' when the socket's buffer is full (backpressure). */
export function writeWithBackpressure(socket: Duplex, data: Buffer): Promise<void> | undefined {
  if (socket.write(data)) return undefined;
  return new Promise<void>((resolve) => {
    const done = () => {
      socket.off('drain', done);
      socket.off('close', done);
      resolve();
    };
    socket.on('drain', done);
    socket.on('close', done);
  });
}
