// auth_user + auth_query (PgBouncer's): a client logging in as a user its pool does not list is
// looked up in PostgreSQL through auth_user's server connection. A found user's password or secret
// authenticates the client; the user is then added to the pool in every thread (auth_user's
// settings; its server login uses the same secret: SCRAM pass-through or md5). An unknown user
// goes through the same exchange against a random secret and gets the same 28P01 as a wrong
// password, as PostgreSQL does, so neither the message nor the time tells whether it exists.

import { randomBytes } from 'node:crypto';
import { errorField } from '../protocol/backend';
import { isScramVerifier } from '../protocol/scram';
import { SQLSTATE } from '../protocol/sqlstate';
import type { UserPool } from '../pool/registry';
import { roleOf } from '../pool/registry';
import { log } from '../log';
import { admit } from './access';
import type { AuthMethod } from './auth';
import { Phase, type Session } from './session';

/** Whether logins to `db` as unlisted users are looked up (auth_user set and listed in that pool). */
export function lookupPool(s: Session, db: string): UserPool | null {
  const authUser = s.ctx.registry.general.auth_user;
  return (authUser && s.ctx.registry.find(db, authUser)) || null;
}

/**
 * Looks `user` up with auth_query, then starts authentication (`begin`) against what it found, or
 * against a random secret when nothing was found. The client's bytes wait meanwhile.
 */
export function lookupLogin(
  s: Session,
  via: UserPool,
  db: string,
  user: string,
  begin: (method: AuthMethod, password: string) => void,
): void {
  s.phase = Phase.Waiting;
  const g = s.ctx.registry.general;
  lookup(via, user, g.auth_query, g.healthcheck_timeout + 5000).then(
    (secret) => {
      if (s.phase === Phase.Closed) return;
      const method = admit(s, db, user);
      if (method === null) return;
      // A secret the method cannot use answers like no user at all (the operator's log says why).
      const usable = secret !== null && fits(method, secret);
      if (secret !== null && !usable)
        log.warn('auth_query found a secret the login method cannot use; refusing as for an unknown user', {
          client: s.remote,
          user,
          method,
          secret: isScramVerifier(secret) ? 'SCRAM verifier' : 'md5 secret',
        });
      s.lookedUp = usable ? { pool: db, secret } : null;
      begin(method, usable ? secret : decoy(method));
    },
    (e: Error) => {
      log.warn('auth_query failed', { client: s.remote, user, database: db, error: e.message });
      s.fatal(SQLSTATE.CONNECTION_FAILURE, `could not look up user "${user}": ${e.message}`, 'auth_query failed');
    },
  );
}

/** Whether `method` can check a password against `secret` (a plain password fits both). */
function fits(method: AuthMethod, secret: string): boolean {
  if (method === 'md5') return !isScramVerifier(secret);
  if (method === 'scram-sha-256') return !/^md5[0-9a-f]{32}$/.test(secret);
  return true;
}

/** A secret nobody knows the password of, shaped for `method` (no key derivation: same cost as a real one). */
function decoy(method: AuthMethod): string {
  if (method === 'md5') return `md5${randomBytes(16).toString('hex')}`;
  const b = (n: number) => randomBytes(n).toString('base64');
  return `SCRAM-SHA-256$4096:${b(16)}$${b(32)}:${b(32)}`;
}

/** A string literal PostgreSQL reads the same whatever standard_conforming_strings says. */
export function sqlLiteral(text: string): string {
  return `E'${text.replace(/\\/g, '\\\\').replace(/'/g, "''")}'`;
}

/** auth_query's answer for `user` on auth_user's primary: its password or secret, or null (no such user). */
async function lookup(via: UserPool, user: string, query: string, timeoutMs: number): Promise<string | null> {
  const servers = via.shards[0];
  const e = servers.find((x) => roleOf(x) === 'primary') ?? servers[0];
  const conn = await e.pool.acquire();
  try {
    const r = await conn.run(query.replace('$1', sqlLiteral(user)), timeoutMs);
    if (!r.ok) throw new Error(r.error ? errorField(r.error, 0x4d) : 'no answer from the server');
    const secret = r.rows[0]?.[1];
    return secret ? secret : null;
  } finally {
    e.pool.release(conn);
  }
}
