// PAUSE / RESUME as the session sees them: a paused database ("db") or pool user ("db\0user") gets
// no server for a new transaction until RESUME (the admin console sets and clears the keys).

import type { WorkerContext } from './context';

export function pauseKey(db: string, user?: string): string {
  return user ? `${db}\0${user}` : db;
}

export function isPaused(ctx: WorkerContext, db: string, user: string): boolean {
  return ctx.paused.size > 0 && (ctx.paused.has('') || ctx.paused.has(db) || ctx.paused.has(pauseKey(db, user)));
}
