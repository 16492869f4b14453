import { describe, expect, it } from 'vitest';
import { type PullDecoder, PullParser } from './pull-parser.js';

class Bad extends Error {}

/** name\0, u16 count, count × (u8 len, bytes streamed), text streamed up to \0, u8 trailer. */
function* sample(): PullDecoder<{ name: string; values: string[]; text: string; trailer: number }> {
  const name = (yield { cstring: 8 }).toString();
  const count = (yield { take: 2 }).readUInt16BE(0);
  const values: string[] = [];
  for (let i = 0; i < count; i++) {
    const len = (yield { take: 1 })[0] as number;
    let v = '';
    yield { stream: len, to: (b) => (v += b.toString()) };
    values.push(v);
  }
  let text = '';
  yield { streamCstring: (b) => (text += b.toString()) };
  const trailer = (yield { take: 1 })[0] as number;
  return { name, values, text, trailer };
}

const message = Buffer.concat([
  Buffer.from('stmt\0'),
  Buffer.from([0, 3]),
  Buffer.from([2]),
  Buffer.from('ab'),
  Buffer.from([0]),
  Buffer.from([5]),
  Buffer.from('cdefg'),
  Buffer.from('select 1\0'),
  Buffer.from([7]),
]);
const want = { name: 'stmt', values: ['ab', '', 'cdefg'], text: 'select 1', trailer: 7 };
const parser = () => new PullParser(sample(), (m) => new Bad(m));

describe('PullParser', () => {
  it('decodes a message split at every pair of points exactly as whole', () => {
    for (let a = 0; a <= message.length; a++) {
      for (let b = a; b <= message.length; b++) {
        const p = parser();
        p.push(message.subarray(0, a));
        p.push(message.subarray(a, b));
        p.push(message.subarray(b));
        expect(p.end()).toEqual(want);
      }
    }
  });

  it('decodes a message fed one byte at a time', () => {
    const p = parser();
    for (const byte of message) p.push(Buffer.from([byte]));
    expect(p.done).toBe(true);
    expect(p.end()).toEqual(want);
  });

  it('refuses a message too short, one with bytes left over, and a string over its bound', () => {
    const short = parser();
    short.push(message.subarray(0, message.length - 1));
    expect(() => short.end()).toThrow(/shorter than its contents/);
    const long = parser();
    expect(() => long.push(Buffer.concat([message, Buffer.from('x')]))).toThrow(/1 bytes after its contents/);
    expect(() => parser().push(Buffer.from('a-long-name\0'))).toThrow(/string longer than 8 bytes/);
    expect(() => parser().push(Buffer.from('a-long-name'))).toThrow(Bad);
  });

  it('keeps no view of the chunks it was given', () => {
    const p = parser();
    const chunk = Buffer.from(message);
    p.push(chunk);
    chunk.fill(0);
    expect(p.end()).toEqual(want);
  });

  it('streams the rest of a message whose last field has no length, ending at end()', () => {
    function* rest(): PullDecoder<{ id: number; text: string }> {
      const id = (yield { take: 1 })[0] as number;
      let text = '';
      yield { streamRest: (b) => (text += b.toString()) };
      return { id, text };
    }
    const p = new PullParser(rest(), (m) => new Bad(m));
    p.push(Buffer.from([9, 0x61]));
    p.push(Buffer.from('bc'));
    expect(p.done).toBe(false);
    expect(p.end()).toEqual({ id: 9, text: 'abc' });
    expect(() => new PullParser(rest(), (m) => new Bad(m)).end()).toThrow(/shorter/);
  });
});
