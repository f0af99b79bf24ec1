// Configured features this build accepts but does not act on yet. Logged as warnings at start and
// on every reload, so nobody believes they are protected by something that is not running.

import type { Config } from './types';

export function pendingFeatureWarnings(cfg: Config): string[] {
  const out: string[] = [];
  for (const pool of cfg.pools) {
    if (pool.query_parser_read_write_splitting && !pool.query_parser_enabled)
      out.push(
        `pools.${pool.name}: query_parser_read_write_splitting needs ` +
          `query_parser_enabled = true; reads go to the primary`,
      );
    for (const s of pool.shards) {
      if (s.use_patroni && !s.servers.some((a) => a.role === 'auto'))
        out.push(
          `pools.${pool.name}.shards.${s.index}: use_patroni = true but no ` +
            `server has role "auto"; Patroni is asked only about auto servers`,
        );
    }
  }
  return out;
}
