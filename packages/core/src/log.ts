import diagnostics_channel from 'node:diagnostics_channel';

export type LogLevel = 'debug' | 'error';
export type LogFn = (level: LogLevel, msg: string, err?: unknown) => void;

/** Gatehouse's diagnostics go here; the CLI subscribes and prints errors. */
export const LOG_CHANNEL = 'gatehouse:log';
const channel = diagnostics_channel.channel(LOG_CHANNEL);

export interface LogRecord {
  level: LogLevel;
  msg: string;
  err?: unknown;
  gateway: string;
}

export function channelLogger(gateway: string): LogFn {
  return (level, msg, err) => {
    if (channel.hasSubscribers) channel.publish({ level, msg, err, gateway } satisfies LogRecord);
  };
}
