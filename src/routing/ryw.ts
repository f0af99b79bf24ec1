// read_your_writes for one client, without a round trip per write: after a transaction on the
// primary, the client's reads stay on the primary until the HA thread has sampled the primary's
// position strictly after the commit; from then on, replicas that replayed past that sample may
// take them (the router's minLsn).

import type { SharedState } from '../shared/state';

export class ReadYourWrites {
  /** A replica must have replayed this far to take this client's reads. */
  private minLsn = 0;
  /** When the last primary transaction ended (ms epoch; 0 = settled) and that primary's shared slot. */
  private since = 0;
  private slot = -1;
  /** The held transaction runs on the primary and may write. */
  pending = false;

  /** The transaction that ran on the primary (slot) has committed: hold reads until a later sample. */
  committed(slot: number, now = Date.now()): void {
    this.pending = false;
    this.since = now;
    this.slot = slot;
  }

  /** How far a replica must have replayed for this client's next read (MAX_SAFE_INTEGER = the primary only). */
  floor(shared: SharedState): number {
    if (this.since > 0) {
      // Strictly later: a probe sent in the same millisecond may have run before the commit.
      if (this.slot < 0 || !(shared.serverLsnSince[this.slot] > this.since)) return Number.MAX_SAFE_INTEGER;
      this.minLsn = Math.max(this.minLsn, shared.serverReplayLsn[this.slot]);
      this.since = 0;
    }
    return this.minLsn;
  }
}
