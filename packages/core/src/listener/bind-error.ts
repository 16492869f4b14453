import { GatehouseError } from '../errors.js';

/** How an operator changes each listener's address, for the error that says it could not be bound. */
const HOW_TO_CHANGE: Record<string, string> = {
  listen: 'the config key listen or `gatehouse start --listen HOST:PORT`',
  mysql_listen:
    'the config key mysql_listen, $GATEHOUSE_MYSQL_LISTEN or `gatehouse start --mysql-listen HOST:PORT` (off turns it off)',
};

/**
 * A listener that could not be opened, as an error that names the setting to
 * change: a second gateway on a machine otherwise fails on a port it never
 * asked for (the embedded quick start's MySQL port) with no way out.
 */
export function bindError(err: unknown, setting: string, host: string, port: number): GatehouseError {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  const where = `${host.includes(':') ? `[${host}]` : host}:${port}`;
  const why =
    code === 'EADDRINUSE'
      ? `${where} is already in use by another process`
      : code === 'EACCES'
        ? `no permission to listen on ${where} (ports below 1024 need root or CAP_NET_BIND_SERVICE)`
        : code === 'EADDRNOTAVAIL'
          ? `${host} is not an address of this machine`
          : code === 'ENOTFOUND' || code === 'EAI_AGAIN'
            ? `${host} does not resolve`
            : `cannot listen on ${where}`;
  const how = HOW_TO_CHANGE[setting] ?? `the config key ${setting}`;
  return new GatehouseError('GH_ERR_LISTEN_FAILED', `${setting}: ${why}`, {
    cause: err,
    hint: `pick another address with ${how}`,
    details: { setting, address: where, ...(code ? { errno: code } : {}) },
  });
}
