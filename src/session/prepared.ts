// Protocol-level prepared statements in transaction mode (prepared_statements_cache_size > 0).
// A client's named statement becomes a server-side statement named after a hash of its text and
// parameter types, so any server connection can hold it and clients with the same statement share
// it. Parse, Bind, Describe and Close are rewritten; a statement the connection lacks is prepared
// in-line just before the Bind / Describe that needs it; each connection keeps at most
// cache-size statements, evicting (closing) the least recently used. The answers to openproxy's own
// Parse / Close messages are dropped from the reply stream, tracked in order by a small FIFO.

import { createHash } from 'node:crypto';
import { message } from '../protocol/backend';
import { BE, FE, cstr } from '../protocol/messages';
import type { ServerStatements } from '../pool/server-link';

const P_CLIENT = 1;
const P_OURS = 2;
const C_CLIENT = 3;
const C_OURS = 4;
const SYNC = 5;

interface Statement {
  /** Server-side name: openproxy_<hash of query and parameter types>. */
  server: string;
  /** `server` as a C string, for the messages that name it. */
  serverC: Buffer;
  /** Parse body after the statement name: query, NUL, parameter count and types. */
  rest: Buffer;
}

export class PreparedStatements {
  /** Client statement name → its server statement. */
  private readonly byName = new Map<string, Statement>();
  /** Kinds of the replies the server owes for Parse / Close / Sync, in order (see the constants). */
  private readonly replies: number[] = [];

  constructor(private readonly cacheSize: number) {}

  get size(): number {
    return this.byName.size;
  }

  /** The query text of a client's named statement (for routing), if the client prepared it. */
  textOf(name: string): string | undefined {
    const st = this.byName.get(name);
    if (!st) return undefined;
    const end = st.rest.indexOf(0);
    return st.rest.toString('utf8', 0, end < 0 ? st.rest.length : end);
  }

  /**
   * A client message that names a statement, rewritten for `conn`: returns the bytes to send
   * instead (possibly with openproxy's own Close / Parse in front), or null to send it unchanged.
   */
  rewrite(type: number, msg: Buffer, conn: ServerStatements): Buffer | null {
    switch (type) {
      case FE.PARSE: {
        // name, query, types
        const nameEnd = msg.indexOf(0, 5);
        if (nameEnd === 5) {
          this.replies.push(P_CLIENT);
          // Unnamed: untouched, unless it is a DEALLOCATE of a renamed statement (psycopg 3).
          const textEnd = msg.indexOf(0, 6);
          if (textEnd < 0 || !/^\s*deallocate\s/i.test(msg.toString('utf8', 6, Math.min(textEnd, 20)))) return null;
          const q = this.rewriteQuery(msg.toString('utf8', 6, textEnd), conn);
          if (!q) return null;
          return message('P', Buffer.concat([Buffer.from([0]), q.subarray(5), msg.subarray(textEnd + 1)]));
        }
        const name = msg.toString('utf8', 5, nameEnd);
        const rest = msg.subarray(nameEnd + 1);
        const server = `openproxy_${createHash('sha1').update(rest).digest('hex').slice(0, 24)}`;
        this.byName.set(name, { server, serverC: cstr(server), rest: Buffer.from(rest) });
        this.replies.push(P_CLIENT);
        if (conn.prepared.has(server)) {
          conn.prepareHits++;
          touch(conn, server);
          // The client still needs its ParseComplete: parse it as the unnamed statement (cheap, harmless).
          return message('P', Buffer.concat([Buffer.from([0]), rest]));
        }
        conn.prepareMisses++;
        return Buffer.concat([this.evictFor(conn), this.parseMessage(server, rest, conn)]);
      }
      case FE.BIND: {
        // portal, statement, …
        const portalEnd = msg.indexOf(0, 5);
        const stmtEnd = msg.indexOf(0, portalEnd + 1);
        if (stmtEnd === portalEnd + 1) return null;
        const st = this.byName.get(msg.toString('utf8', portalEnd + 1, stmtEnd));
        if (!st) return null; // the server answers "prepared statement … does not exist"
        const pre = this.ensure(st, conn);
        const bind = renamed(msg, portalEnd + 1, stmtEnd + 1, st.serverC);
        return pre ? Buffer.concat([pre, bind]) : bind;
      }
      case FE.DESCRIBE:
      case FE.CLOSE: {
        const isClose = type === FE.CLOSE;
        if (isClose) this.replies.push(C_CLIENT);
        if (msg[5] !== 0x53) return null; // portal: untouched
        const nameEnd = msg.indexOf(0, 6);
        if (nameEnd === 6) return null;
        const name = msg.toString('utf8', 6, nameEnd);
        const st = this.byName.get(name);
        if (!st) return null;
        if (isClose) {
          // Closing the server copy costs other clients a re-prepare later, but touches nothing else.
          this.byName.delete(name);
          conn.prepared.delete(st.server);
          return message('C', Buffer.concat([Buffer.from([0x53]), cstr(st.server)]));
        }
        const pre = this.ensure(st, conn);
        const d = message('D', Buffer.concat([Buffer.from([0x53]), cstr(st.server)]));
        return pre ? Buffer.concat([pre, d]) : d;
      }
      default:
        return null;
    }
  }

  /**
   * SQL `DEALLOCATE [PREPARE] name` of a statement openproxy renamed (psycopg 3 evicts its cache
   * this way): the server never had that name. Forget the mapping; deallocate the server copy if
   * this connection has it, else run a no-op that completes the same way. Null: not ours.
   */
  rewriteQuery(sql: string, conn: ServerStatements): Buffer | null {
    if (this.byName.size === 0) return null; // nothing of the client's to deallocate
    const m = /^\s*deallocate\s+(?:prepare\s+)?("(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)\s*;?\s*$/i.exec(sql);
    if (!m) return null;
    const name = m[1].startsWith('"')
      ? m[1].slice(1, -1).replace(/""/g, '"')
      : m[1].toLowerCase() === m[1]
        ? m[1]
        : m[1].toLowerCase();
    const st = this.byName.get(name) ?? this.byName.get(m[1]);
    if (!st) return null;
    this.byName.delete(this.byName.has(name) ? name : m[1]);
    if (conn.prepared.has(st.server)) {
      conn.prepared.delete(st.server);
      return message('Q', cstr(`DEALLOCATE ${st.server}`));
    }
    return message('Q', cstr('DO $openproxy$BEGIN END$openproxy$'));
  }

  /** Query, Sync and FunctionCall each end a stretch of replies with ReadyForQuery. */
  noteSync(): void {
    this.replies.push(SYNC);
  }

  /** A ParseComplete / CloseComplete from the server: true if it answers openproxy's own message. */
  isOurs(type: number): boolean {
    const head = this.replies[0];
    const parse = type === BE.PARSE_COMPLETE;
    if (parse ? head !== P_CLIENT && head !== P_OURS : head !== C_CLIENT && head !== C_OURS) return false;
    this.replies.shift();
    return head === P_OURS || head === C_OURS;
  }

  /** ErrorResponse: the server skips to the next Sync, so no Parse / Close before it will be answered. */
  onError(): void {
    const i = this.replies.indexOf(SYNC);
    this.replies.splice(0, i < 0 ? this.replies.length : i);
  }

  /** ReadyForQuery: everything up to the first Sync is settled. */
  onReady(): void {
    const i = this.replies.indexOf(SYNC);
    this.replies.splice(0, i < 0 ? this.replies.length : i + 1);
  }

  /** The server connection was dropped before answering: nothing it owed will come. */
  resetReplies(): void {
    this.replies.length = 0;
  }

  /** DEALLOCATE ALL / DISCARD ALL by the client. */
  forgetAll(): void {
    this.byName.clear();
  }

  /** Prepares `st` on the connection if it lacks it: the messages to send first (or null). */
  private ensure(st: Statement, conn: ServerStatements): Buffer | null {
    if (conn.prepared.has(st.server)) {
      conn.prepareHits++;
      touch(conn, st.server);
      return null;
    }
    conn.prepareMisses++;
    this.replies.push(P_OURS);
    return Buffer.concat([this.evictFor(conn), this.parseMessage(st.server, st.rest, conn)]);
  }

  private parseMessage(server: string, rest: Buffer, conn: ServerStatements): Buffer {
    conn.prepared.set(server, true);
    return message('P', Buffer.concat([cstr(server), rest]));
  }

  /** Keeps the connection under cacheSize statements: Close the least recently used one. */
  private evictFor(conn: ServerStatements): Buffer {
    if (conn.prepared.size < this.cacheSize) return EMPTY;
    const oldest = conn.prepared.keys().next().value as string;
    conn.prepared.delete(oldest);
    conn.prepareEvictions++;
    // Our Close goes before the Parse whose reply is already queued: keep the reply order.
    this.replies.splice(this.replies.length - 1, 0, C_OURS);
    return message('C', Buffer.concat([Buffer.from([0x53]), cstr(oldest)]));
  }
}

const EMPTY = Buffer.alloc(0);

/** `msg` with bytes [from, to) (a statement name and its NUL) replaced by `name`: one allocation. */
function renamed(msg: Buffer, from: number, to: number, name: Buffer): Buffer {
  const out = Buffer.allocUnsafe(msg.length - (to - from) + name.length);
  msg.copy(out, 0, 0, from);
  name.copy(out, from);
  msg.copy(out, from + name.length, to);
  out.writeInt32BE(out.length - 1, 1);
  return out;
}

function touch(conn: ServerStatements, server: string): void {
  conn.prepared.delete(server);
  conn.prepared.set(server, true);
}
