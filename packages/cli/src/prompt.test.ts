import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { MAX_STDIN_SECRET_BYTES, readSecretFromStdin } from './prompt.js';

const from = (...chunks: string[]) => Readable.from(chunks.map((c) => Buffer.from(c)));

describe('readSecretFromStdin', () => {
  it('takes the first line only: "pw\\npw" is "pw" (was "pw\\npw")', async () => {
    expect(await readSecretFromStdin('password', from('pw\npw'))).toBe('pw');
    expect(await readSecretFromStdin('password', from('pw\npw\n'))).toBe('pw');
  });

  it('drops the line end, \\n or \\r\\n, and nothing else', async () => {
    expect(await readSecretFromStdin('password', from('s3cret\n'))).toBe('s3cret');
    expect(await readSecretFromStdin('password', from('s3cret\r\n'))).toBe('s3cret');
    expect(await readSecretFromStdin('password', from(' spaced out \n'))).toBe(' spaced out ');
    // No newline at all (printf '%s'): everything up to the end.
    expect(await readSecretFromStdin('password', from('no newline\r'))).toBe('no newline\r');
  });

  it('finds the line across chunks, multi-byte characters included', async () => {
    const bytes = Buffer.from('pässwörd\nnext');
    const chunks = [bytes.subarray(0, 2), bytes.subarray(2, 9), bytes.subarray(9)];
    expect(await readSecretFromStdin('password', Readable.from(chunks))).toBe('pässwörd');
  });

  it('refuses an empty first line and an endless one', async () => {
    await expect(readSecretFromStdin('password', from('\nsecond line\n'))).rejects.toThrow(
      'no password on the first line of stdin',
    );
    await expect(readSecretFromStdin('password', from(''))).rejects.toThrow('no password');
    const huge = 'x'.repeat(MAX_STDIN_SECRET_BYTES + 1);
    await expect(readSecretFromStdin('password', from(huge, '\n'))).rejects.toThrow('longer than');
  });
});
