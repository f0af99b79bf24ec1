// A PostgreSQL server that misbehaves on request, over real TCP: logs in like PostgreSQL (trust),
// answers ordinary statements plainly, and for a few query texts breaks the protocol in the ways a
// broken server, proxy or network can — bad lengths, unknown types, a FATAL after ReadyForQuery,
// an endless result, a ParameterStatus storm, huge notices and errors, a stall mid-message. A fake
// server is the right tool here: real PostgreSQL cannot be made to do these.

import net from 'node:net';

/** The query texts that misbehave, and what they do. */
export const MISBEHAVIOUR = {
  badLength: 'misbehave bad length', // RowDescription, then a DataRow whose length is 2
  badType: 'misbehave bad type', // RowDescription, then a message of type 'y'
  errorMidRows: 'misbehave error mid rows', // two rows, an ERROR, ReadyForQuery (legal: conn stays good)
  fatalAfterReady: 'misbehave fatal after ready', // a normal answer, then FATAL and close
  endless: 'misbehave endless', // rows until the connection goes away
  paramStorm: 'misbehave param storm', // 100,000 distinct ParameterStatus, then an answer
  hugeNotice: 'misbehave huge notice', // a 64 MB NoticeResponse, then an answer
  hugeError: 'misbehave huge error', // an 8 MB ErrorResponse, then ReadyForQuery
  stallMidMessage: 'misbehave stall mid message', // half a DataRow, then nothing
  stallAtBoundary: 'misbehave stall', // RowDescription, then nothing
} as const;

export interface BadServer {
  port: number;
  /** Connections accepted / ended so far. */
  opened(): number;
  closed(): number;
  /** Every simple-protocol query text received, in order. */
  queries: string[];
  close(): Promise<void>;
}

const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n);
  return b;
};
const msg = (type: string, body: Buffer) => Buffer.concat([Buffer.from(type), u32(body.length + 4), body]);
const cstr = (s: string) => Buffer.from(`${s}\0`);
const param = (k: string, v: string) => msg('S', Buffer.concat([cstr(k), cstr(v)]));
const ready = (status: string) => msg('Z', Buffer.from(status));
const complete = (tag: string) => msg('C', cstr(tag));
const rowDesc = msg('T', Buffer.concat([Buffer.from([0, 1]), cstr('x'), Buffer.alloc(18)]));
const row = (v: string) => msg('D', Buffer.concat([Buffer.from([0, 1]), u32(Buffer.byteLength(v)), Buffer.from(v)]));
const fields = (severity: string, code: string, text: string) =>
  Buffer.concat([cstr(`S${severity}`), cstr(`V${severity}`), cstr(`C${code}`), cstr(`M${text}`), Buffer.from([0])]);

const LOGIN = Buffer.concat([
  msg('R', u32(0)),
  param('server_version', '16.0'),
  param('server_encoding', 'UTF8'),
  param('client_encoding', 'UTF8'),
  param('DateStyle', 'ISO, MDY'),
  param('TimeZone', 'UTC'),
  param('integer_datetimes', 'on'),
  param('standard_conforming_strings', 'on'),
  param('in_hot_standby', 'off'),
  msg('K', Buffer.concat([u32(4242), u32(1)])),
  ready('I'),
]);

export function startBadServer(): Promise<BadServer> {
  let opened = 0;
  let closed = 0;
  const queries: string[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((sock) => {
    opened++;
    sockets.add(sock);
    sock.on('close', () => {
      closed++;
      sockets.delete(sock);
    });
    sock.on('error', () => undefined);
    let buf = Buffer.alloc(0);
    let started = false;
    let tx = 'I';
    sock.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      for (;;) {
        if (!started) {
          if (buf.length < 8) return;
          const len = buf.readInt32BE(0);
          if (buf.length < len) return;
          const code = buf.readInt32BE(4);
          buf = buf.subarray(len);
          if (code === 80877103 || code === 80877104) sock.write('N');
          else {
            started = true;
            sock.write(LOGIN);
          }
          continue;
        }
        if (buf.length < 5) return;
        const len = buf.readInt32BE(1);
        if (buf.length < 1 + len) return;
        const type = String.fromCharCode(buf[0]);
        const body = buf.subarray(5, 1 + len);
        buf = buf.subarray(1 + len);
        if (type === 'X') return void sock.end();
        if (type === 'Q') {
          const sql = body.toString('utf8', 0, body.length - 1);
          queries.push(sql);
          tx = answer(sock, sql, tx);
        } else extended(sock, type, tx);
      }
    });
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () =>
      resolve({
        port: (server.address() as net.AddressInfo).port,
        opened: () => opened,
        closed: () => closed,
        queries,
        close: () =>
          new Promise<void>((done) => {
            for (const s of sockets) s.destroy();
            server.close(() => done());
          }),
      }),
    ),
  );
}

/** Extended protocol: every statement is an empty SELECT. */
function extended(sock: net.Socket, type: string, tx: string): void {
  const reply: Record<string, Buffer> = {
    P: msg('1', Buffer.alloc(0)),
    B: msg('2', Buffer.alloc(0)),
    D: msg('n', Buffer.alloc(0)),
    E: complete('SELECT 0'),
    C: msg('3', Buffer.alloc(0)),
    S: ready(tx),
  };
  if (reply[type]) sock.write(reply[type]);
}

let notice: Buffer | null = null;

/** Answers one simple query; returns the transaction status after it. */
function answer(sock: net.Socket, sql: string, tx: string): string {
  const M = MISBEHAVIOUR;
  switch (sql) {
    case M.badLength:
      sock.write(Buffer.concat([rowDesc, Buffer.from('D'), u32(2)]));
      return tx;
    case M.badType:
      sock.write(Buffer.concat([rowDesc, msg('y', Buffer.alloc(0))]));
      return tx;
    case M.errorMidRows:
      sock.write(
        Buffer.concat([rowDesc, row('1'), row('2'), msg('E', fields('ERROR', '22012', 'division by zero')), ready(tx)]),
      );
      return tx;
    case M.fatalAfterReady:
      sock.write(Buffer.concat([rowDesc, row('1'), complete('SELECT 1'), ready('I')]));
      setTimeout(() => sock.end(msg('E', fields('FATAL', '57P01', 'terminating connection'))), 50);
      return 'I';
    case M.endless: {
      sock.write(rowDesc);
      const chunk = Buffer.concat(Array.from({ length: 100 }, () => row('x'.repeat(1000))));
      const pump = () => {
        while (!sock.destroyed && sock.write(chunk));
        if (!sock.destroyed) sock.once('drain', pump);
      };
      pump();
      return tx;
    }
    case M.paramStorm: {
      const storm = Array.from({ length: 100_000 }, (_, i) => param(`storm_${i}`, String(i)));
      sock.write(Buffer.concat([...storm, complete('SET'), ready(tx)]));
      return tx;
    }
    case M.hugeNotice:
      notice ??= msg('N', fields('NOTICE', '00000', 'n'.repeat(64 << 20)));
      sock.write(Buffer.concat([notice, complete('SELECT 0'), ready(tx)]));
      return tx;
    case M.hugeError:
      sock.write(Buffer.concat([msg('E', fields('ERROR', 'XX000', 'e'.repeat(8 << 20))), ready(tx)]));
      return tx;
    case M.stallMidMessage:
      sock.write(Buffer.concat([rowDesc, row('stalled').subarray(0, 9)]));
      return tx;
    case M.stallAtBoundary:
      sock.write(rowDesc);
      return tx;
  }
  if (sql === '' || sql === ';') {
    sock.write(Buffer.concat([msg('I', Buffer.alloc(0)), ready(tx)]));
    return tx;
  }
  if (/^select 1\b/i.test(sql)) {
    sock.write(Buffer.concat([rowDesc, row('1'), complete('SELECT 1'), ready(tx)]));
    return tx;
  }
  const next = /^begin/i.test(sql) ? 'T' : /^(commit|rollback)/i.test(sql) ? 'I' : tx;
  sock.write(Buffer.concat([complete(sql.split(/\s/)[0].toUpperCase() || 'SELECT'), ready(next)]));
  return next;
}
