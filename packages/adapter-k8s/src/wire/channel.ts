/**
 * The Kubernetes remote-command channel protocol carried in WebSocket
 * messages: one channel byte then data (binary subprotocols), or an ASCII
 * channel digit then base64 (base64 subprotocols). Pure.
 */

export const STDIN = 0;
export const STDOUT = 1;
export const STDERR = 2;
export const ERROR = 3;
export const RESIZE = 4;
/** v5: [255, channel] closes that channel (stdin). */
export const CLOSE = 255;

export const CHANNEL_PROTOCOLS = [
  'v5.channel.k8s.io',
  'v4.channel.k8s.io',
  'v3.channel.k8s.io',
  'v2.channel.k8s.io',
  'channel.k8s.io',
  'v4.base64.channel.k8s.io',
  'base64.channel.k8s.io',
] as const;

export class ChannelProtocolError extends Error {
  override readonly name = 'ChannelProtocolError';
}

export function isChannelProtocol(p: string | undefined): boolean {
  return p !== undefined && (CHANNEL_PROTOCOLS as readonly string[]).includes(p);
}

export function decodeChannelMessage(protocol: string, payload: Buffer): { channel: number; data: Buffer } {
  if (payload.length === 0) throw new ChannelProtocolError('empty channel message');
  if (protocol.includes('base64')) {
    const c = payload[0]! - 0x30;
    if (c < 0 || c > 9) throw new ChannelProtocolError(`bad base64 channel byte ${payload[0]}`);
    return { channel: c, data: Buffer.from(payload.subarray(1).toString('latin1'), 'base64') };
  }
  return { channel: payload[0]!, data: payload.subarray(1) };
}

/** The payload of one channel message (the inverse of decodeChannelMessage). */
export function encodeChannelMessage(protocol: string, channel: number, data: Buffer): Buffer {
  if (protocol.includes('base64')) {
    return Buffer.concat([Buffer.from([0x30 + channel]), Buffer.from(data.toString('base64'), 'latin1')]);
  }
  return Buffer.concat([Buffer.from([channel]), data]);
}

/** WebSocket opcode of a channel message: text for the base64 protocols, binary otherwise. */
export function channelOpcode(protocol: string): 1 | 2 {
  return protocol.includes('base64') ? 1 : 2;
}

/** A resize message: {"Width": cols, "Height": rows}. */
export function parseResize(data: Buffer): { cols: number; rows: number } | undefined {
  try {
    const v = JSON.parse(data.toString('utf8')) as { Width?: unknown; Height?: unknown };
    if (typeof v.Width === 'number' && typeof v.Height === 'number' && v.Width >= 0 && v.Height >= 0) {
      return { cols: Math.min(v.Width, 10_000), rows: Math.min(v.Height, 10_000) };
    }
  } catch {
    // A malformed resize is ignored for recording; the upstream decides what it means.
  }
  return undefined;
}

/** The exit code in the final status message (channel 3): 0 on Success, the ExitCode cause otherwise. */
export function exitCodeOf(data: Buffer): number | undefined {
  let v: unknown;
  try {
    v = JSON.parse(data.toString('utf8'));
  } catch {
    return undefined;
  }
  // Any JSON may arrive here (null, a list, causes that are not a list): none of it is an exit code.
  if (typeof v !== 'object' || v === null) return undefined;
  const status = v as { status?: unknown; details?: { causes?: unknown } | null };
  if (status.status === 'Success') return 0;
  const causes = status.details?.causes;
  if (!Array.isArray(causes)) return undefined;
  const cause = (causes as unknown[]).find(
    (c): c is { message?: unknown } =>
      typeof c === 'object' && c !== null && (c as { reason?: unknown }).reason === 'ExitCode',
  );
  const n = Number(cause?.message);
  return Number.isInteger(n) ? n : undefined;
}
