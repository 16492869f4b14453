import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { readFrame } from './io.js';

const fourBytes = () => 4;

describe('readFrame', () => {
  it('reads a second message from a stream the first read left paused (CredSSP reads three in a row)', async () => {
    const s = new PassThrough();
    s.write(Buffer.from('abcd'));
    expect((await readFrame(s, fourBytes, 'first', 1000)).toString()).toBe('abcd');
    expect(s.isPaused()).toBe(true);
    setImmediate(() => s.write(Buffer.from('efgh')));
    expect((await readFrame(s, fourBytes, 'second', 1000)).toString()).toBe('efgh');
  });

  it('refuses bytes after the message and a stream that ends first', async () => {
    const s = new PassThrough();
    s.write(Buffer.from('abcdef'));
    await expect(readFrame(s, fourBytes, 'message', 1000)).rejects.toMatchObject({ kind: 'trailing' });
    const e = new PassThrough();
    e.end(Buffer.from('ab'));
    await expect(readFrame(e, fourBytes, 'message', 1000)).rejects.toMatchObject({ kind: 'closed' });
  });
});
