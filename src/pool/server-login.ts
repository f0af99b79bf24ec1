// Opening a server connection: TCP (or TLS), the startup packet, authentication (cleartext, md5,
// SCRAM-SHA-256) through pg-protocol's parser, ParameterStatus / BackendKeyData, then the
// connection becomes a byte pipe (ServerConn).

import net from 'node:net';
import tls from 'node:tls';
import { serialize } from 'pg-protocol';
import { Parser } from 'pg-protocol/dist/parser';
import type { BackendMessage } from 'pg-protocol/dist/messages';
import { FrameReader } from '../protocol/frame-reader';
import { ScramClient, SCRAM_MECHANISM, isScramVerifier } from '../protocol/scram';
import { md5Response, md5Stored } from '../protocol/md5';
import { SQLSTATE } from '../protocol/sqlstate';
import { setKeepAlive } from '../net/sockopt';
import { onreadOptions } from '../net/read-buffer';
import {
  LOGIN,
  MAX_MESSAGE_LENGTH,
  ServerConn,
  type ServerLogin,
  type SocketWithConn,
  onServerRead,
} from './server-conn';
import { ServerConnError } from './server-link';

/** Connects and logs in; rejects with a ServerConnError naming the server and what failed. */
export async function openServerConn(login: ServerLogin): Promise<ServerConn> {
  let address = login.host;
  if (login.dns) {
    try {
      address = await login.dns.resolve(login.host);
    } catch (e) {
      throw new ServerConnError(`cannot resolve ${login.host}: ${(e as Error).message}`, SQLSTATE.CONNECTION_FAILURE);
    }
  }
  const conn = await connect(login, address);
  conn.address = address;
  return conn;
}

function connect(login: ServerLogin, address: string): Promise<ServerConn> {
  return new Promise((resolve, reject) => {
    let settled = false;
    // Plain connections read into the thread's reused buffer (onread); TLS keeps the stream path.
    const raw = login.tls
      ? net.connect({ host: address, port: login.port, noDelay: true })
      : net.connect({
          host: address,
          port: login.port,
          noDelay: true,
          onread: onreadOptions(onServerRead),
        } as net.NetConnectOpts);
    let sock: net.Socket = raw;
    const timer = setTimeout(
      () =>
        done(
          new ServerConnError(
            `timed out connecting to ${login.host}:${login.port} after ${login.connectTimeout} ms`,
            SQLSTATE.CONNECTION_FAILURE,
          ),
        ),
      login.connectTimeout,
    );
    const done = (err: Error | null, conn?: ServerConn) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (err) {
        sock.destroy();
        raw.destroy();
        reject(err);
      } else resolve(conn!);
    };
    raw.once('error', (e) =>
      done(
        new ServerConnError(`cannot connect to ${login.host}:${login.port}: ${e.message}`, SQLSTATE.CONNECTION_FAILURE),
      ),
    );
    raw.once('close', () =>
      done(
        new ServerConnError(
          `server ${login.host}:${login.port} closed the connection during login`,
          SQLSTATE.CONNECTION_FAILURE,
        ),
      ),
    );
    raw.once('connect', () => {
      setKeepAlive(raw, login.keepalive.idle, login.keepalive.interval, login.keepalive.count);
      if (!login.tls) return startLogin(raw);
      raw.write(serialize.requestSsl());
      raw.once('data', (b: Buffer) => {
        if (b.length !== 1 || b[0] !== 0x53)
          return done(
            new ServerConnError(
              `server ${login.host}:${login.port} refused TLS (server_tls = true)`,
              SQLSTATE.CONNECTION_FAILURE,
            ),
          );
        const t = tls.connect({
          socket: raw,
          servername: net.isIP(login.host) ? undefined : login.host,
          rejectUnauthorized: login.verifyCertificate,
        });
        sock = t;
        t.once('error', (e) =>
          done(
            new ServerConnError(`TLS to ${login.host}:${login.port} failed: ${e.message}`, SQLSTATE.CONNECTION_FAILURE),
          ),
        );
        t.once('secureConnect', () => startLogin(t));
      });
    });

    const startLogin = (s: net.Socket) => {
      const conn = new ServerConn(s, login);
      const frames = new FrameReader(MAX_MESSAGE_LENGTH);
      const parser = new Parser();
      let scram: ScramClient | null = null;
      const onMessage = (msg: BackendMessage) => {
        // biome-ignore lint/suspicious/noExplicitAny: pg-protocol's message classes, read by name
        const m = msg as BackendMessage & Record<string, any>;
        switch (m.name) {
          case 'authenticationOk':
            return;
          case 'authenticationCleartextPassword':
            if (login.password === undefined)
              return done(
                new ServerConnError(`server asks a password for ${login.user} and none is configured`, '28P01'),
              );
            // A secret is never sent as if it were the password.
            if (isSecret(login.password)) return done(secretError(login, 'a cleartext password'));
            s.write(serialize.password(login.password));
            return;
          case 'authenticationMD5Password':
            if (login.password === undefined)
              return done(
                new ServerConnError(`server asks a password for ${login.user} and none is configured`, '28P01'),
              );
            if (isScramVerifier(login.password)) return done(secretError(login, 'an md5 password'));
            s.write(serialize.password(md5Response(md5Stored(login.password, login.user), m.salt)));
            return;
          case 'authenticationSASL':
            if (login.password === undefined)
              return done(
                new ServerConnError(`server asks a password for ${login.user} and none is configured`, '28P01'),
              );
            if (!m.mechanisms.includes(SCRAM_MECHANISM))
              return done(
                new ServerConnError(`server offers no supported SASL mechanism (${m.mechanisms.join(', ')})`, '28000'),
              );
            if (MD5_SECRET.test(login.password)) return done(secretError(login, 'SCRAM'));
            if (isScramVerifier(login.password)) {
              const keys = login.passThrough?.get(login.password);
              if (!keys)
                return done(
                  new ServerConnError(
                    `SCRAM pass-through for ${login.user}: no client has logged in with this verifier on this ` +
                      'worker since openproxy started, so its client key is not known yet',
                    SQLSTATE.CONNECTION_FAILURE,
                  ),
                );
              scram = new ScramClient(keys);
            } else scram = new ScramClient(login.password);
            s.write(serialize.sendSASLInitialResponseMessage(SCRAM_MECHANISM, scram.first()));
            return;
          case 'authenticationSASLContinue':
            s.write(serialize.sendSCRAMClientFinalMessage(scram!.final(m.data)));
            return;
          case 'authenticationSASLFinal':
            scram!.verify(m.data);
            return;
          case 'parameterStatus':
            conn.params.set(m.parameterName, m.parameterValue);
            conn.reported.set(m.parameterName.toLowerCase(), m.parameterValue);
            return;
          case 'backendKeyData':
            conn.backendPid = m.processID;
            conn.backendSecret = m.secretKey;
            return;
          case 'error':
            return done(
              new ServerConnError(
                `server ${login.host}:${login.port}: ${m.message}`,
                m.code ?? SQLSTATE.CONNECTION_FAILURE,
                true,
              ),
            );
          case 'readyForQuery': {
            delete (raw as SocketWithConn)[LOGIN];
            s.removeAllListeners('data');
            s.removeAllListeners('error');
            s.removeAllListeners('close');
            raw.removeAllListeners('error');
            raw.removeAllListeners('close');
            conn.attachStream();
            if (frames.pending > 0) conn.onData(Buffer.from(frames.view(frames.off, frames.end)));
            frames.off = frames.end;
            // A FATAL in the same read as the login's end (the server shutting down as the session
            // started): the connection is already closed and must not be handed to anyone.
            if (conn.closed)
              return done(
                new ServerConnError(
                  `server ${login.host}:${login.port} ended the session right after login: ${conn.closeReason}`,
                  conn.doomedCode || SQLSTATE.CONNECTION_FAILURE,
                  true,
                  true,
                ),
              );
            return done(null, conn);
          }
          default:
            return; // NoticeResponse during login: ignore
        }
      };
      const onLoginData = (chunk: Buffer) => {
        frames.push(chunk);
        try {
          while (!settled && frames.next()) parser.parse(frames.view(frames.start, frames.msgEnd), onMessage);
        } catch (e) {
          return done(
            new ServerConnError(
              `login to ${login.host}:${login.port} failed: ${(e as Error).message}`,
              SQLSTATE.CONNECTION_FAILURE,
            ),
          );
        }
        if (frames.error)
          done(
            new ServerConnError(`server ${login.host}:${login.port} sent an invalid message: ${frames.error}`, '08P01'),
          );
        frames.detach();
      };
      if (s === raw && !login.tls) (raw as SocketWithConn)[LOGIN] = onLoginData;
      else s.on('data', onLoginData);
      if (s !== raw) {
        s.once('error', (e) =>
          done(new ServerConnError(`server ${login.host}:${login.port}: ${e.message}`, SQLSTATE.CONNECTION_FAILURE)),
        );
        s.once('close', () =>
          done(
            new ServerConnError(
              `server ${login.host}:${login.port} closed the connection during login`,
              SQLSTATE.CONNECTION_FAILURE,
            ),
          ),
        );
      }
      const startup: Record<string, string> = {
        user: login.user,
        database: login.database,
        application_name: login.applicationName,
      };
      s.write(serialize.startup(startup));
    };
  });
}

const MD5_SECRET = /^md5[0-9a-f]{32}$/;
const isSecret = (p: string) => MD5_SECRET.test(p) || isScramVerifier(p);

function secretError(login: ServerLogin, asked: string): ServerConnError {
  return new ServerConnError(
    `server asks ${login.user} for ${asked}, but the configured password is a ` +
      `${MD5_SECRET.test(login.password!) ? 'md5 secret' : 'SCRAM verifier'}; give the plain password ` +
      'as server_password',
    '28P01',
  );
}
