// A TCP relay in front of a real PostgreSQL server that can hold back what the server sends and
// deliver it in one write: TCP may coalesce a ReadyForQuery and a later FATAL into one read, and
// this makes that happen on demand instead of by luck — also for the ReadyForQuery that ends a
// login (holdNextLogin).

import net from 'node:net';

export interface Relay {
  port: number;
  /** From now on, server bytes are kept instead of forwarded. */
  hold(): void;
  /** The next connection's login answer (from its first ReadyForQuery on) is kept until release(). */
  holdNextLogin(): void;
  /** Logins held so far. */
  heldLogins(): number;
  /** Server bytes held now. */
  heldBytes(): number;
  /** Writes everything kept in one write (then forwards again, and passes on a server close). */
  release(): void;
  /** How many held connections the server has closed (their close waits for release()). */
  heldCloses(): number;
  close(): Promise<void>;
}

interface Pending {
  to: net.Socket;
  bytes: Buffer[];
  ended: boolean;
  /** Its server sent the ReadyForQuery that ends the login. */
  loggedIn: boolean;
  /** Held on its own (holdNextLogin), whatever `holding` says. */
  held: boolean;
}

const READY_FOR_QUERY = Buffer.from([0x5a, 0, 0, 0, 5]);

export function startRelay(targetPort: number): Promise<Relay> {
  let holding = false;
  let holdLogin = false;
  let heldLogins = 0;
  const waiting = new Set<Pending>();
  const sockets = new Set<net.Socket>();
  const server = net.createServer((down) => {
    const up = net.connect({ host: '127.0.0.1', port: targetPort });
    sockets.add(down).add(up);
    const p: Pending = { to: down, bytes: [], ended: false, loggedIn: false, held: false };
    up.on('data', (b) => {
      if (!p.loggedIn && b.indexOf(READY_FOR_QUERY) >= 0) {
        p.loggedIn = true;
        if (holdLogin) {
          holdLogin = false;
          heldLogins++;
          p.held = true;
        }
      }
      if (!holding && !p.held) return void down.write(b);
      p.bytes.push(b);
      waiting.add(p);
    });
    up.on('end', () => {
      if (!holding && !p.held) return void down.end();
      p.ended = true;
      waiting.add(p);
    });
    down.on('data', (b) => up.write(b));
    down.on('end', () => up.end());
    const gone = () => {
      up.destroy();
      down.destroy();
      sockets.delete(up);
      sockets.delete(down);
    };
    up.on('error', () => undefined);
    down.on('error', gone);
    down.on('close', gone);
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      resolve({
        port: (server.address() as net.AddressInfo).port,
        hold: () => {
          holding = true;
        },
        holdNextLogin: () => {
          holdLogin = true;
        },
        heldLogins: () => heldLogins,
        heldBytes: () => [...waiting].reduce((n, w) => n + w.bytes.reduce((m, b) => m + b.length, 0), 0),
        heldCloses: () => [...waiting].filter((w) => w.ended).length,
        release: () => {
          holding = false;
          for (const w of waiting) {
            w.held = false;
            if (w.bytes.length > 0) w.to.write(Buffer.concat(w.bytes.splice(0)));
            if (w.ended) w.to.end();
          }
          waiting.clear();
        },
        close: () =>
          new Promise<void>((done) => {
            for (const s of sockets) s.destroy();
            server.close(() => done());
          }),
      });
    });
  });
}
