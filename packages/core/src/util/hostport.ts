import { GatehouseError } from '../errors.js';

/** Splits `host:port`, `[v6]:port`; throws GH_ERR_VALIDATION with a hint otherwise. */
export function parseHostPort(addr: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(addr.trim());
  const host = m?.[1] ?? m?.[2];
  const port = Number(m?.[3]);
  if (!host || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new GatehouseError('GH_ERR_VALIDATION', `invalid address "${addr}"`, {
      hint: 'use host:port, e.g. --proxy gatehouse.example.com:3080 or --proxy 127.0.0.1:3080',
    });
  }
  return { host, port };
}
