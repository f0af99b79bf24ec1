// SQLSTATE codes openproxy sends to clients (PostgreSQL Appendix A).

export const SQLSTATE = {
  /** 08P01: malformed message, bad length, unexpected message type. */
  PROTOCOL_VIOLATION: '08P01',
  /** 08006: the server connection broke or could not be opened. */
  CONNECTION_FAILURE: '08006',
  /** 08001: no server connection could be established. */
  CONNECTION_REJECTED: '08001',
  /** 22023: a routing command's value is out of range (SET SHARD TO a shard that does not exist). */
  INVALID_PARAMETER_VALUE: '22023',
  /** 57P03: the database is disabled (DISABLE by the admin). */
  CANNOT_CONNECT_NOW: '57P03',
  /** 28P01: wrong password. */
  INVALID_PASSWORD: '28P01',
  /** 28000: unknown user, or an auth method the client cannot do. */
  INVALID_AUTHORIZATION: '28000',
  /** 3D000: no pool for this database name. */
  INVALID_CATALOG_NAME: '3D000',
  /** 53300: no server connection became free in time; max_client_conn clients are connected. */
  TOO_MANY_CONNECTIONS: '53300',
  /** 57P01: openproxy (or the server) is shutting down. */
  ADMIN_SHUTDOWN: '57P01',
  /** 0A000: a protocol feature openproxy does not support. */
  FEATURE_NOT_SUPPORTED: '0A000',
  /** 54000: message bigger than allowed. */
  PROGRAM_LIMIT_EXCEEDED: '54000',
  /** 57P05: client_idle_timeout (PostgreSQL's idle_session_timeout code). */
  IDLE_SESSION_TIMEOUT: '57P05',
  /** 25P03: idle_client_in_transaction_timeout. */
  IDLE_IN_TRANSACTION_TIMEOUT: '25P03',
  /** 57014: statement cancelled (statement_timeout). */
  QUERY_CANCELED: '57014',
  /** 26000: a prepared statement that cannot be used (named statements with the cache off). */
  INVALID_SQL_STATEMENT_NAME: '26000',
  /** 25006: a write where only reads can run (a routed session whose state keeps it on a replica). */
  READ_ONLY_SQL_TRANSACTION: '25006',
  /** XX000: internal error. */
  INTERNAL_ERROR: 'XX000',
} as const;
