// The contract between a client session and the server connection it holds: what the session may
// ask of the connection (ServerLink), what the connection tells its holder (ServerOwner), and the
// errors acquiring one can end in. The session sees nothing else of a ServerConn.

import { SQLSTATE } from '../protocol/sqlstate';

/** Receives what the server sends while a client holds the connection. */
export interface ServerOwner {
  /** A chunk of server bytes to forward unchanged. */
  onServerData(chunk: Buffer): void;
  /**
   * ReadyForQuery seen, with its transaction status byte (I, T, E). Returns true when this
   * message ends the owner's hold: bytes after it belong to nobody and are not forwarded.
   */
  onReady(status: number): boolean | void;
  onServerError(body: Buffer): void;
  /** The connection broke (not called for close() we asked for). */
  onServerClosed(reason: string): void;
  /** The server socket drained after a write returned false. */
  onServerDrain?(): void;
  /** ParseComplete ('1') or CloseComplete ('3') arrived: true = it answers openproxy's own message, drop it. */
  dropResponse?(type: number): boolean;
  /** An ErrorResponse the owner may replace with its own (same position in the stream), or null. */
  replaceError?(body: Buffer): Buffer | null;
}

/** The answer to one statement openproxy runs itself (reset, SET, GUC read-back, health check). */
export interface RunResult {
  ok: boolean;
  error?: Buffer;
  /** ParameterStatus values that changed while it ran. */
  params: [string, string][];
  rows: string[][];
}

/** Server-side prepared statements on a connection and how its cache fared (SHOW SERVERS). */
export interface ServerStatements {
  /** Names prepared on this connection, least recently used first. */
  readonly prepared: Map<string, true>;
  prepareHits: number;
  prepareMisses: number;
  prepareEvictions: number;
}

/** What a client session may ask of the server connection it holds. */
export interface ServerLink extends ServerStatements {
  /** Process-unique id (SHOW SERVERS, logs). */
  readonly id: number;
  /** ParameterStatus values as the server reported them (sent to the client at login). */
  readonly params: ReadonlyMap<string, string>;
  /** The same by lower-case name. */
  readonly reported: ReadonlyMap<string, string>;
  /** GUCs known to be set on this connection beyond its defaults (name → current_setting). */
  gucs: Map<string, string>;
  /** Last ReadyForQuery status: 0x49 I, 0x54 T, 0x45 E. */
  readonly txStatus: number;
  /** Client bytes were sent since the last ReadyForQuery: the server owes an answer. */
  readonly busy: boolean;
  /** Idle, between statements, owes nothing: safe to reset and reuse. */
  readonly clean: boolean;
  /** Between server messages: an ErrorResponse of openproxy's may be sent to the client now. */
  readonly atMessageBoundary: boolean;
  readonly closed: boolean;
  readonly closeReason: string;
  /** Why the connection may not be reused (an unsolicited FATAL), or null. */
  readonly doomed: string | null;
  /** When it was last released or checked (ms epoch). */
  lastUsed: number;
  /** Running server_check_query (SHOW POOLS sv_tested, SHOW SERVERS state "tested"). */
  testing: boolean;
  /** A "cached plan must not change result type" error was seen: DEALLOCATE ALL before reuse. */
  stalePlans: boolean;
  /**
   * The session holds the connection: server bytes go to `owner`; statement replies are tracked when the cache is on.
   */
  hold(owner: ServerOwner, trackStatements: boolean): void;
  /** The session lets go: nobody receives its bytes until the next hold, and reading resumes. */
  letGo(): void;
  /** Forwards client bytes; false = the socket is congested (pause the client). */
  write(data: Buffer): boolean;
  /** Stop / resume reading from the server (the client is congested). */
  pauseReading(): void;
  resumeReading(): void;
  /** Runs one simple-protocol statement of openproxy's own; the holder gets none of its bytes. */
  run(sql: string, timeoutMs: number): Promise<RunResult>;
  /** Cancels the running statement (a CancelRequest on a new connection). */
  cancel(): Promise<void>;
  close(reason: string): void;
}

export class ServerConnError extends Error {
  /** `endedAtLogin`: the server closed the session as its login completed; nothing was sent on it. */
  constructor(
    message: string,
    readonly sqlstate: string,
    readonly fromServer = false,
    readonly endedAtLogin = false,
  ) {
    super(message);
  }
}

/**
 * A failed acquire that no other server or later try can fix: pool exhaustion, or PostgreSQL's
 * own refusal (auth, unknown database). A server that cannot be reached or is starting / shutting
 * down (57P0x, as during a switchover) is not: it is banned or skipped and another one tried.
 */
export function isFinal(err: ServerConnError): boolean {
  const goingAway = err.sqlstate?.startsWith('57P0');
  return err.sqlstate === SQLSTATE.TOO_MANY_CONNECTIONS || (err.fromServer === true && !goingAway);
}
