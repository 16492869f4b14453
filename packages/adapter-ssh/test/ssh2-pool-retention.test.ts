import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { Client, Server, utils } from '../src/ssh2.js';

/**
 * The ssh2 patch allocates what a connection keeps for its whole life on its
 * own (patches/ssh2+1.17.0.patch, "Memory per idle connection"). A small
 * Buffer.from()/allocUnsafe() is a slice of Node's shared 8 KiB pool, and one
 * such slice kept by an idle connection keeps the whole 8 KiB alive: a heap
 * snapshot of 300 idle sessions through the gateway held 1,266 pool slabs
 * before the patch, 6 after. This checks each of those buffers on a live
 * connection, on both ends, with the cipher a client picks by default and with
 * AES-GCM.
 */

interface Proto {
  _identRaw: Buffer;
  _remoteIdentRaw: Buffer;
  _offer: { lists: Record<string, unknown> & { all: Buffer } };
  _decipher: { _mac?: Buffer; _tag?: Buffer };
}

/** Every Buffer in the KexInit lists (nested objects of `{ array, buffer }`). */
function listBuffers(o: unknown, out: Buffer[] = []): Buffer[] {
  if (Buffer.isBuffer(o)) out.push(o);
  else if (o && typeof o === 'object' && !Array.isArray(o))
    for (const v of Object.values(o)) listBuffers(v, out);
  return out;
}

function kept(p: Proto): Record<string, Buffer> {
  const out: Record<string, Buffer> = {
    identRaw: p._identRaw,
    remoteIdentRaw: p._remoteIdentRaw,
  };
  listBuffers(p._offer.lists).forEach((b, i) => {
    out[`offer[${i}]`] = b;
  });
  const mac = p._decipher._mac ?? p._decipher._tag;
  if (mac) out.decipherMac = mac;
  return out;
}

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

async function connectPair(cipher?: string): Promise<{ server: Proto; client: Proto }> {
  const hostKey = utils.generateKeyPairSync('ed25519').private;
  let serverProto: Proto | undefined;
  const srv = new Server({ hostKeys: [hostKey], ident: 'PoolTest' }, (conn) => {
    conn.on('authentication', (ctx) => ctx.accept());
    conn.on('ready', () => {
      serverProto = (conn as unknown as { _protocol: Proto })._protocol;
    });
    conn.on('error', () => conn.end());
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  cleanups.push(() => srv.close());
  const client = new Client();
  cleanups.push(() => client.end());
  await new Promise<void>((resolve, reject) => {
    client.on('ready', resolve).on('error', reject);
    client.connect({
      host: '127.0.0.1',
      port: (srv.address() as AddressInfo).port,
      username: 'u',
      password: 'p',
      // Without one, a client uses ssh2's module-wide default (one for the process, not per connection).
      ident: 'PoolTestClient',
      ...(cipher ? { algorithms: { cipher: [cipher as never] } } : {}),
    });
  });
  for (let i = 0; i < 100 && !serverProto; i++) await new Promise((r) => setTimeout(r, 10));
  if (!serverProto) throw new Error('the server side never became ready');
  return { server: serverProto, client: (client as unknown as { _protocol: Proto })._protocol };
}

describe('ssh2: what a connection keeps is not a slice of the shared Buffer pool', () => {
  for (const cipher of [undefined, 'aes128-gcm@openssh.com']) {
    it(`with ${cipher ?? "the client's default cipher"}`, async () => {
      const { server, client } = await connectPair(cipher);
      for (const [side, p] of Object.entries({ server, client })) {
        const bufs = kept(p);
        expect(Object.keys(bufs).length, side).toBeGreaterThan(10);
        for (const [name, b] of Object.entries(bufs)) {
          // A pool slice's ArrayBuffer is the whole pool (Buffer.poolSize bytes).
          expect(b.buffer.byteLength, `${side} ${name}`).toBeLessThan(Buffer.poolSize);
        }
      }
    });
  }
});
