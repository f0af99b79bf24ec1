// Patroni as a role source (use_patroni): GET /patroni on each member's REST API, and the rule that
// combines its answer with the SQL probe. Patroni alone is not trusted for writes: its /primary and
// role answer "master" up to ~0.36 s before a promoted node accepts writes and keep saying so
// through a PostgreSQL crash (../shared/reference/patroni), so a node is primary only when Patroni
// says so *and* the node itself says it is out of recovery.

import http from 'node:http';
import { ROLE } from '../shared/layout';

export interface PatroniAnswer {
  /** Patroni's role: master (3.0) or primary (later), replica, standby_leader, demoted, ... */
  role: string;
  /** PostgreSQL's state as Patroni sees it: running, starting, stopping, stopped, crashed, ... */
  state: string;
}

/** GET http://host:port/patroni; null when the API cannot be reached, times out or answers nonsense. */
export function fetchPatroni(host: string, port: number, timeoutMs: number): Promise<PatroniAnswer | null> {
  return new Promise((resolve) => {
    let done = false;
    const finish = (v: PatroniAnswer | null) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      resolve(v);
    };
    const req = http.get(
      { host, port, path: '/patroni', agent: false, headers: { accept: 'application/json' } },
      (res) => {
        const parts: Buffer[] = [];
        res.on('data', (b: Buffer) => parts.push(b));
        res.on('end', () => {
          try {
            const j = JSON.parse(Buffer.concat(parts).toString('utf8')) as { role?: unknown; state?: unknown };
            finish(
              typeof j.role === 'string' ? { role: j.role, state: typeof j.state === 'string' ? j.state : '' } : null,
            );
          } catch {
            finish(null);
          }
        });
        res.on('error', () => finish(null));
      },
    );
    req.on('error', () => finish(null));
    const timer = setTimeout(() => {
      req.destroy();
      finish(null);
    }, timeoutMs);
  });
}

export const patroniSaysPrimary = (a: PatroniAnswer): boolean =>
  (a.role === 'master' || a.role === 'primary') && a.state === 'running';

export interface Decision {
  role: number;
  why: string;
}

/**
 * The role a node gets from Patroni's answer and the SQL probe (inRecovery = pg_is_in_recovery(),
 * null = no answer). Primary needs both; a node that accepts writes without Patroni calling it
 * primary (its Patroni dead, or demoted and not yet stopped) is fenced: neither writes nor reads.
 */
export function decideRole(patroni: PatroniAnswer | null, inRecovery: boolean | null, sqlWhy: string): Decision {
  if (inRecovery === null) return { role: ROLE.unknown, why: sqlWhy || 'no answer to pg_is_in_recovery()' };
  if (patroni === null) {
    return inRecovery
      ? { role: ROLE.replica, why: 'Patroni API unreachable; the server is in recovery, so reads only' }
      : { role: ROLE.unknown, why: 'Patroni API unreachable and the server accepts writes: fenced' };
  }
  const said = `${patroni.role}/${patroni.state || '?'}`;
  if (patroniSaysPrimary(patroni)) {
    return inRecovery
      ? { role: ROLE.replica, why: `Patroni says ${said}, but the server is still in recovery` }
      : { role: ROLE.primary, why: `Patroni says ${said}, confirmed by pg_is_in_recovery()` };
  }
  return inRecovery
    ? { role: ROLE.replica, why: `Patroni says ${said}` }
    : { role: ROLE.unknown, why: `Patroni says ${said} but the server accepts writes: fenced` };
}
