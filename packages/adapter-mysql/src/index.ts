import { MysqlAdapter, type MysqlAdapterOptions } from './adapter.js';

export { GREETING_VERSION, MysqlAdapter, type MysqlAdapterOptions } from './adapter.js';
export { denialToWire } from './errors.js';
export * from './wire/codec.js';
export { CLIENT, COM, ER, GATEWAY_CAPABILITIES } from './wire/constants.js';
export { decodeExecuteParams } from './wire/params.js';
export { inspectQuery, splitStatements } from './wire/sql.js';

/** The MySQL/MariaDB adapter: `gw.use(mysql({ databases: [...] }))`. */
export function mysql(opts: MysqlAdapterOptions = {}): MysqlAdapter {
  return new MysqlAdapter(opts);
}
