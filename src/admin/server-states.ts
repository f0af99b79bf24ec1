// The console's view and control of server states (HAProxy's): SHOW SERVER_STATES, and
// MAINT / DRAIN / READY host:port, written straight into the shared state table.

import type { Registry, ServerEntry } from '../pool/registry';
import { roleOf } from '../pool/registry';
import { REASON, SERVER_STATE, SERVER_STATE_NAMES, STATE_REASON } from '../shared/layout';
import type { SharedState } from '../shared/state';
import { log } from '../log';
import type { Table } from './show';

const iso = (ms: number) => (ms > 0 ? new Date(ms).toISOString() : '');

/**
 * One row per pool, shard and server: state, since when and why, the active checks' last
 * result, the weight it is given now (slow_start) and the connections clients hold on it.
 */
export function showServerStates(reg: Registry, shared: SharedState): Table {
  const now = Date.now();
  const slowMs = reg.general.slow_start * 1000;
  const rows: Table['rows'] = [];
  const seen = new Set<string>();
  for (const up of reg.userPools()) {
    up.shards.forEach((shard, index) => {
      for (const e of shard) {
        const key = `${up.pool.name}\0${index}\0${e.address.host}:${e.address.port}`;
        if (seen.has(key)) continue;
        seen.add(key);
        const slot = e.pool.slot;
        const streak = Atomics.load(shared.serverCheckStreak, slot);
        const upFor = now - shared.serverUpAt[slot];
        const weight = e.address.weight;
        const effective = slowMs > 0 && upFor < slowMs ? Math.round((weight * upFor * 100) / slowMs) / 100 : weight;
        const active = reg
          .userPools()
          .filter((u) => u.pool.name === up.pool.name)
          .reduce((n, u) => {
            const same = u.shards[index]?.find(
              (x) => x.address.host === e.address.host && x.address.port === e.address.port,
            );
            return n + (same ? Atomics.load(shared.serverActive, same.pool.slot) : 0);
          }, 0);
        rows.push([
          up.pool.name,
          index,
          e.address.host,
          e.address.port,
          roleOf(e),
          SERVER_STATE_NAMES[Atomics.load(shared.serverState, slot)] ?? '?',
          iso(shared.serverStateAt[slot]),
          STATE_REASON[Atomics.load(shared.serverStateReason, slot)] ?? '',
          weight,
          effective,
          streak > 0 ? `${streak} passed` : streak < 0 ? `${-streak} failed` : '',
          iso(shared.serverCheckAt[slot]),
          Math.round(shared.serverCheckMs[slot]),
          active,
        ]);
      }
    });
  }
  const columns = ['database', 'shard', 'host', 'port', 'role', 'state', 'since', 'reason', 'weight'];
  columns.push('effective_weight', 'checks', 'last_check', 'check_ms', 'active');
  return { columns, rows };
}

/** The entries a `host[:port]` argument names (every pool and user); empty: none. */
export function entriesAt(reg: Registry, host: string, port: number | undefined): ServerEntry[] {
  return reg
    .userPools()
    .flatMap((up) => up.shards.flat())
    .filter((e) => e.address.host === host && (port === undefined || e.address.port === port));
}

/**
 * MAINT (no new transactions or logins), DRAIN (the same, then MAINT once no client holds a
 * connection to it) or READY (back to UP; the active checks may find it DOWN again).
 */
export function setAdminState(verb: 'MAINT' | 'DRAIN' | 'READY', entries: ServerEntry[], shared: SharedState): void {
  const to = verb === 'MAINT' ? SERVER_STATE.maint : verb === 'DRAIN' ? SERVER_STATE.drain : SERVER_STATE.up;
  const reason = verb === 'MAINT' ? REASON.maint : verb === 'DRAIN' ? REASON.drain : REASON.ready;
  const now = Date.now();
  for (const e of entries) {
    const slot = e.pool.slot;
    for (;;) {
      const cur = Atomics.load(shared.serverState, slot);
      // READY lifts MAINT and DRAIN only: a server the checks hold DOWN stays DOWN.
      if (cur === to || (verb === 'READY' && cur === SERVER_STATE.down)) break;
      if (verb === 'DRAIN' && cur === SERVER_STATE.maint) break;
      if (shared.setState(slot, cur, to, reason, now)) break;
    }
  }
  const server = `${entries[0].address.host}:${entries[0].address.port}`;
  const primary = entries.some((e) => roleOf(e) === 'primary');
  log.warn(`server state set by admin: ${verb}`, {
    server,
    ...(primary && verb !== 'READY' ? { note: 'the primary: writes wait up to primary_wait_timeout' } : {}),
  });
}
