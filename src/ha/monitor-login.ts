// How the HA thread's monitoring connections log in: as the pool's first user (its server
// credentials), to the shard's database, with the pool's TLS and keepalive settings.

import type { Config, PoolConfig, ServerAddress, ShardConfig } from '../config/types';
import type { ServerLogin } from '../pool/server-conn';
import { passThroughKeys } from '../pool/pass-through';
import { type Slots, serverSlotKey } from '../pool/slots';

export function monitorLogin(
  cfg: Config,
  pool: PoolConfig,
  shard: ShardConfig,
  a: ServerAddress,
  applicationName: string,
  connectTimeout: number,
): ServerLogin {
  const user = pool.users[0];
  const g = cfg.general;
  return {
    host: a.host,
    port: a.port,
    user: user.server_username,
    password: user.server_password,
    database: shard.database,
    applicationName,
    connectTimeout,
    tls: g.server_tls,
    verifyCertificate: g.verify_server_certificate,
    keepalive: { idle: g.tcp_keepalives_idle, interval: g.tcp_keepalives_interval, count: g.tcp_keepalives_count },
    passThrough: passThroughKeys,
  };
}

/** The shared slots of one server for every user of the pool (results are written to all of them). */
export function slotsOf(slots: Slots, pool: PoolConfig, shard: ShardConfig, a: ServerAddress): number[] {
  return pool.users
    .map((u) => slots.servers[serverSlotKey(pool.name, u.username, shard.index, a.host, a.port)])
    .filter((x) => x !== undefined);
}
