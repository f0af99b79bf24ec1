// Admin console commands carried out on every proxy worker: PAUSE / RESUME (no server for new
// transactions of a database until RESUME), DISABLE / ENABLE (no new logins), KILL (disconnect a
// database's clients and close its servers), RECONNECT (close its servers when next released),
// KILL_CLIENT.

import type { WorkerContext } from '../session/context';
import type { SessionInfo } from '../session/context';
import { pauseKey } from '../session/pause';
import type { Control } from './requests';
import { SQLSTATE } from '../protocol/sqlstate';
import { log } from '../log';

export function applyControl(ctx: WorkerContext, sessions: Set<SessionInfo>, c: Control): void {
  const mine = (s: SessionInfo) =>
    c.op !== 'kill_client' &&
    s.userPool !== null &&
    (!c.db || s.userPool.pool.name === c.db) &&
    (!c.user || s.userPool.user.username === c.user);
  switch (c.op) {
    case 'pause':
      ctx.paused.add(pauseKey(c.db ?? '', c.user));
      return;
    case 'resume': {
      if (c.db) ctx.paused.delete(pauseKey(c.db, c.user));
      else ctx.paused.clear();
      const waiters = [...ctx.pauseWaiters];
      ctx.pauseWaiters.clear();
      for (const w of waiters) w.resume();
      return;
    }
    case 'disable':
      ctx.disabled.add(c.db ?? '');
      return;
    case 'enable':
      if (c.db) ctx.disabled.delete(c.db);
      else ctx.disabled.clear();
      return;
    case 'kill':
      for (const s of [...sessions])
        if (mine(s))
          s.fatal(
            SQLSTATE.ADMIN_SHUTDOWN,
            `terminating connection: KILL ${c.db ?? ''} by the openproxy admin`.trim(),
            'killed by admin',
          );
      for (const up of ctx.registry.userPools()) {
        if (c.db && up.pool.name !== c.db) continue;
        for (const shard of up.shards)
          for (const e of shard) for (const conn of [...e.pool.all]) conn.close('KILL by admin');
      }
      return;
    case 'reconnect':
      for (const up of ctx.registry.userPools()) {
        if (c.db && up.pool.name !== c.db) continue;
        for (const shard of up.shards) {
          for (const e of shard) {
            for (const conn of e.pool.all) conn.closeNeeded = true;
            e.pool.closeIdle('RECONNECT by admin');
          }
        }
      }
      return;
    case 'kill_client': {
      const s = ctx.clients.get(c.pid);
      if (s) {
        log.info('client killed by admin', { client_id: c.pid });
        s.fatal(
          SQLSTATE.ADMIN_SHUTDOWN,
          'terminating connection: KILL_CLIENT by the openproxy admin',
          'killed by admin',
        );
      }
      return;
    }
  }
}
