/** Capability flags (MySQL client/server protocol, "Capabilities Flags"). */
export const CLIENT = {
  LONG_PASSWORD: 1 << 0,
  FOUND_ROWS: 1 << 1,
  LONG_FLAG: 1 << 2,
  CONNECT_WITH_DB: 1 << 3,
  NO_SCHEMA: 1 << 4,
  COMPRESS: 1 << 5,
  ODBC: 1 << 6,
  LOCAL_FILES: 1 << 7,
  IGNORE_SPACE: 1 << 8,
  PROTOCOL_41: 1 << 9,
  INTERACTIVE: 1 << 10,
  SSL: 1 << 11,
  IGNORE_SIGPIPE: 1 << 12,
  TRANSACTIONS: 1 << 13,
  RESERVED: 1 << 14,
  SECURE_CONNECTION: 1 << 15,
  MULTI_STATEMENTS: 1 << 16,
  MULTI_RESULTS: 1 << 17,
  PS_MULTI_RESULTS: 1 << 18,
  PLUGIN_AUTH: 1 << 19,
  CONNECT_ATTRS: 1 << 20,
  PLUGIN_AUTH_LENENC_CLIENT_DATA: 1 << 21,
  CAN_HANDLE_EXPIRED_PASSWORDS: 1 << 22,
  SESSION_TRACK: 1 << 23,
  DEPRECATE_EOF: 1 << 24,
  QUERY_ATTRIBUTES: 1 << 27,
} as const;

/**
 * What the gateway offers a client. Only flags whose wire format every
 * supported server (MySQL 5.7+, MariaDB 10.2+) speaks identically: the client
 * negotiates with the gateway but then talks to the upstream through a
 * pass-through relay, so a flag the upstream lacks would change the format
 * under the client's feet. LOCAL_FILES (LOAD DATA LOCAL), COMPRESS (the relay
 * parses commands) and QUERY_ATTRIBUTES (MySQL-only COM_QUERY layout) are off.
 */
export const GATEWAY_CAPABILITIES =
  CLIENT.LONG_PASSWORD |
  CLIENT.FOUND_ROWS |
  CLIENT.LONG_FLAG |
  CLIENT.CONNECT_WITH_DB |
  CLIENT.ODBC |
  CLIENT.IGNORE_SPACE |
  CLIENT.PROTOCOL_41 |
  CLIENT.INTERACTIVE |
  CLIENT.IGNORE_SIGPIPE |
  CLIENT.TRANSACTIONS |
  CLIENT.RESERVED |
  CLIENT.SECURE_CONNECTION |
  CLIENT.MULTI_STATEMENTS |
  CLIENT.MULTI_RESULTS |
  CLIENT.PS_MULTI_RESULTS |
  CLIENT.PLUGIN_AUTH |
  CLIENT.CONNECT_ATTRS |
  CLIENT.PLUGIN_AUTH_LENENC_CLIENT_DATA |
  CLIENT.CAN_HANDLE_EXPIRED_PASSWORDS |
  CLIENT.SESSION_TRACK |
  CLIENT.DEPRECATE_EOF;

/** Flags that change the format of server replies: the upstream must have each one the client chose. */
export const FORMAT_CAPABILITIES =
  CLIENT.PROTOCOL_41 |
  CLIENT.MULTI_RESULTS |
  CLIENT.PS_MULTI_RESULTS |
  CLIENT.SESSION_TRACK |
  CLIENT.DEPRECATE_EOF |
  CLIENT.TRANSACTIONS;

export const COM = {
  SLEEP: 0x00,
  QUIT: 0x01,
  INIT_DB: 0x02,
  QUERY: 0x03,
  FIELD_LIST: 0x04,
  CREATE_DB: 0x05,
  DROP_DB: 0x06,
  REFRESH: 0x07,
  STATISTICS: 0x09,
  PROCESS_INFO: 0x0a,
  PROCESS_KILL: 0x0c,
  DEBUG: 0x0d,
  PING: 0x0e,
  CHANGE_USER: 0x11,
  BINLOG_DUMP: 0x12,
  STMT_PREPARE: 0x16,
  STMT_EXECUTE: 0x17,
  STMT_SEND_LONG_DATA: 0x18,
  STMT_CLOSE: 0x19,
  STMT_RESET: 0x1a,
  SET_OPTION: 0x1b,
  STMT_FETCH: 0x1c,
  RESET_CONNECTION: 0x1f,
  STMT_BULK_EXECUTE: 0xfa,
} as const;

/** Column types used in COM_STMT_EXECUTE parameter blocks. */
export const TYPE = {
  DECIMAL: 0x00,
  TINY: 0x01,
  SHORT: 0x02,
  LONG: 0x03,
  FLOAT: 0x04,
  DOUBLE: 0x05,
  NULL: 0x06,
  TIMESTAMP: 0x07,
  LONGLONG: 0x08,
  INT24: 0x09,
  DATE: 0x0a,
  TIME: 0x0b,
  DATETIME: 0x0c,
  YEAR: 0x0d,
  VARCHAR: 0x0f,
  BIT: 0x10,
  JSON: 0xf5,
  NEWDECIMAL: 0xf6,
  ENUM: 0xf7,
  SET: 0xf8,
  TINY_BLOB: 0xf9,
  MEDIUM_BLOB: 0xfa,
  LONG_BLOB: 0xfb,
  BLOB: 0xfc,
  VAR_STRING: 0xfd,
  STRING: 0xfe,
  GEOMETRY: 0xff,
} as const;

/** Server error numbers and SQLSTATEs the gateway sends itself. */
export const ER = {
  /** Handshake could not be parsed / unexpected packet in the handshake. */
  HANDSHAKE_ERROR: { code: 1043, state: '08S01' },
  DBACCESS_DENIED: { code: 1044, state: '42000' },
  ACCESS_DENIED: { code: 1045, state: '28000' },
  UNKNOWN_COM: { code: 1047, state: '08S01' },
  UNKNOWN_ERROR: { code: 1105, state: 'HY000' },
  /** ER_NO_SUCH_THREAD: a KILL of a connection this server does not run. */
  NO_SUCH_THREAD: { code: 1094, state: 'HY000' },
  NOT_ALLOWED_COMMAND: { code: 1148, state: '42000' },
  NET_PACKET_TOO_LARGE: { code: 1153, state: '08S01' },
  NET_READ_ERROR: { code: 1158, state: '08S01' },
  NET_READ_INTERRUPTED: { code: 1159, state: '08S01' },
  /** MySQL 5.7+'s require_secure_transport refusal. */
  SECURE_TRANSPORT_REQUIRED: { code: 3159, state: 'HY000' },
  /**
   * ER_CONNECT_TO_FOREIGN_DATA_SOURCE: the server-side code for "the data
   * source behind me is unreachable". Client-range numbers (2003) are not
   * an option: libmariadb reports an ERR carrying one as a malformed packet.
   */
  UPSTREAM_UNREACHABLE: { code: 1429, state: 'HY000' },
  /** ER_CONNECTION_KILLED (MariaDB): core ended the session (lock, expiry, deletion, kill). */
  CONNECTION_KILLED: { code: 1927, state: '70100' },
} as const;

export type ErrSpec = { code: number; state: string };

/** The largest payload in one frame; a payload of exactly this size continues in the next frame. */
export const MAX_FRAME_PAYLOAD = 0xffffff;
