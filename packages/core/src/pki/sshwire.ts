/** SSH wire encoding (RFC 4251 section 5) for what Gatehouse writes: certificates and KRLs. */

export function u32(n: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE(n >>> 0);
  return b;
}

export function u64(n: bigint): Buffer {
  if (n < 0n || n > 0xffffffffffffffffn) throw new RangeError(`uint64 out of range: ${n}`);
  const b = Buffer.allocUnsafe(8);
  b.writeBigUInt64BE(n);
  return b;
}

export function sshString(b: Uint8Array | string): Buffer {
  const data = typeof b === 'string' ? Buffer.from(b, 'utf8') : b;
  return Buffer.concat([u32(data.length), data]);
}
