// The check a pooled server connection passes before reuse (PgBouncer's server_check_query after
// server_check_delay): session logins and transactions both go through it.

import type { ServerLink } from './server-link';

export interface CheckSettings {
  /** healthcheck_delay, ms: a connection idle longer is checked; 0 = never. */
  delay: number;
  /** healthcheck_timeout, ms. */
  timeout: number;
  /** server_check_query; empty = the empty statement. */
  sql: string;
}

/** Whether a connection is due for a check: released before (a fresh one is not) and idle past the delay. */
export function checkDue(conn: ServerLink, delay: number): boolean {
  return delay > 0 && conn.lastUsed !== 0 && Date.now() - conn.lastUsed > delay;
}

/**
 * Runs server_check_query within healthcheck_timeout: 'ok', 'timeout' (no answer: the server is
 * unresponsive) or 'failed'; a connection that does not pass is closed.
 */
export async function healthCheck(conn: ServerLink, c: CheckSettings): Promise<'ok' | 'failed' | 'timeout'> {
  const t0 = Date.now();
  conn.testing = true;
  const r = await conn.run(c.sql || ';', c.timeout);
  conn.testing = false;
  if (r.ok && conn.clean) {
    conn.lastUsed = Date.now();
    return 'ok';
  }
  conn.close('health check failed');
  return Date.now() - t0 >= c.timeout ? 'timeout' : 'failed';
}

export const checkSettings = (g: {
  healthcheck_delay: number;
  healthcheck_timeout: number;
  server_check_query: string;
}) => ({
  delay: g.healthcheck_delay,
  timeout: g.healthcheck_timeout,
  sql: g.server_check_query,
});
