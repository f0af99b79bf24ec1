// SCRAM pass-through (PgBouncer's): a pool user configured with only a SCRAM verifier logs in to
// PostgreSQL with the ClientKey a client proved against that verifier. Each thread holds the keys
// it was told; a proxy worker learns them at a client login, and the main thread passes them on to
// every worker and the HA thread (its monitoring logins use the same credentials).

import type { ScramKeys } from '../protocol/scram';

/** This thread's keys, by configured verifier. */
export const passThroughKeys = new Map<string, ScramKeys>();

/** ScramKeys as posted between threads. */
export interface ScramKeysWire {
  clientKey: string;
  serverKey: string;
  salt: string;
  iterations: number;
}

export const keysToWire = (k: ScramKeys): ScramKeysWire => ({
  clientKey: k.clientKey.toString('base64'),
  serverKey: k.serverKey.toString('base64'),
  salt: k.salt.toString('base64'),
  iterations: k.iterations,
});

export const keysFromWire = (w: ScramKeysWire): ScramKeys => ({
  clientKey: Buffer.from(w.clientKey, 'base64'),
  serverKey: Buffer.from(w.serverKey, 'base64'),
  salt: Buffer.from(w.salt, 'base64'),
  iterations: w.iterations,
});

/** Records keys a client of this thread proved; true when they are new (to be shared). */
export function learnKeys(verifier: string, keys: ScramKeys): boolean {
  const old = passThroughKeys.get(verifier);
  if (old?.clientKey.equals(keys.clientKey)) return false;
  passThroughKeys.set(verifier, keys);
  return true;
}
