// A proxy worker thread: adopts client sockets handed over by fd, runs their sessions, owns its
// server connections, and sweeps timers once per tick (one janitor, not a timer per socket).

import { clientSecureContext } from '../config/client-tls';
import { setKeepAlive } from '../net/sockopt';
import net from 'node:net';
import type { MessagePort } from 'node:worker_threads';
import { Registry } from '../pool/registry';
import { Classifier } from '../routing/classify';
import { ServerConnError } from '../pool/server-link';
import { SharedState } from '../shared/state';
import { ClientSession, onClientRead } from '../session/client';
import { cancelLocal } from '../session/startup';
import { AdminConsole } from '../admin/console';
import { AdminConsoleSession } from '../admin/console-session';
import { onreadOptions } from '../net/read-buffer';
import type { WorkerContext } from '../session/context';
import { SQLSTATE } from '../protocol/sqlstate';
import { log, setThreadLogging } from '../log';
import * as Comlink from 'comlink';
import nodeEndpoint from 'comlink/dist/umd/node-adapter';
import type { FromWorker, MainApi, ToWorker, WorkerApi, WorkerInit } from './messages';
import type { AskMain } from '../admin/requests';
import { collect } from '../admin/collect';
import { applyControl } from '../admin/control';
import { useServerIds } from '../pool/server-conn';
import { SERVER_IDS, STARVING_SIGNAL, STATE_SIGNAL } from '../shared/layout';
import { keysFromWire, keysToWire, passThroughKeys } from '../pool/pass-through';

/** Clients that have not finished logging in after this long are dropped (PgBouncer: client_login_timeout). */
const JANITOR_MS = 250;

export function runProxyWorker(port: MessagePort, init: WorkerInit): void {
  setThreadLogging(init.logLevel, `worker-${init.index}`);
  const shared = new SharedState(init.sab);
  useServerIds(() => Atomics.add(shared.header, SERVER_IDS, 1) + 1);
  const post = (m: FromWorker) => port.postMessage(m);
  const sessions = new Set<ClientSession>();
  const ctx: WorkerContext = {
    index: init.index,
    shared,
    registry: new Registry(shared, init.index, init.count),
    classifier: new Classifier(),
    tls: null,
    clients: new Map(),
    shutdown: 0,
    forwardCancel: (worker, pid, secret) => post({ kind: 'cancel', worker, pid, secret }),
    addUser: async (pool, user, secret) => {
      const r = await askMain({ op: 'addUser', pool, user, secret });
      if (!r.ok) throw new Error(r.error);
    },
    shareScramKeys: (verifier, keys) => post({ kind: 'scramKeys', verifier, keys: keysToWire(keys) }),
    openConsole: (client, readOnly) => new AdminConsoleSession(client, new AdminConsole(ctx, askMain, readOnly)),
    paused: new Set(),
    pauseWaiters: new Set(),
    disabled: new Set(),
    latency: new Map(),
  };
  // Request / answer with the main thread over comlink, on this thread's port.
  const endpoint = nodeEndpoint(port);
  const main = Comlink.wrap<MainApi>(endpoint);
  /** The admin console asks the main thread (snapshots of every worker, reload, SET, shutdown, controls). */
  const askMain: AskMain = (req) => main.admin(req);
  const api: WorkerApi = { snapshot: () => collect(ctx) };
  Comlink.expose(api, endpoint);
  let configured = false;

  const janitor = setInterval(() => {
    const now = Date.now();
    ctx.registry.sweep(now);
    const demoted = ctx.registry.closeDemoted();
    if (demoted > 0) log.warn('closed connections to a server that is no longer primary', { connections: demoted });
    const idleTx = ctx.registry.general.idle_client_in_transaction_timeout;
    const idleClient = ctx.registry.general.client_idle_timeout;
    const loginTimeout = ctx.registry.general.client_login_timeout;
    const perfNow = performance.now();
    for (const c of sessions) {
      c.checkStatementTimeout(perfNow);
      if (c.state === 'login' && loginTimeout > 0 && now - c.connectedAt > loginTimeout) {
        const message = `client_login_timeout (${loginTimeout} ms) reached before the login completed`;
        c.fatal(SQLSTATE.PROTOCOL_VIOLATION, message, 'client_login_timeout');
      } else if (
        idleClient > 0 &&
        c.state !== 'login' &&
        c.state !== 'waiting' &&
        (!c.server || (!c.server.busy && c.server.txStatus === 0x49)) &&
        now - c.lastActivity > idleClient
      ) {
        const message = `terminating connection due to client_idle_timeout (${idleClient} ms)`;
        c.fatal(SQLSTATE.IDLE_SESSION_TIMEOUT, message, 'client_idle_timeout');
      } else if (
        idleTx > 0 &&
        c.server &&
        !c.server.busy &&
        c.server.txStatus !== 0x49 &&
        now - c.lastActivity > idleTx
      ) {
        c.fatal(
          SQLSTATE.IDLE_IN_TRANSACTION_TIMEOUT,
          `terminating connection due to idle-in-transaction timeout (${idleTx} ms)`,
          'idle_client_in_transaction_timeout',
        );
      }
    }
    if (ctx.shutdown && sessions.size === 0) maybeStopped();
  }, JANITOR_MS);

  // Slots move between workers only to starving waiters; a worker holding idle connections hears of
  // them through the shared starving signal (no timer: an idle worker sleeps).
  let stopChecks = false;
  shared.onSignal(
    STARVING_SIGNAL,
    () => {
      for (const sp of ctx.registry.servers.values()) sp.giveIdleToStarving();
    },
    () => stopChecks,
  );
  // A server's role or state changed (HA thread, admin console): a server etcd names the new leader
  // gets a connection ahead of its promotion; idle connections of DOWN and MAINT servers close, and
  // with on_marked_down = "shutdown-sessions" every connection to a DOWN server.
  shared.onSignal(
    STATE_SIGNAL,
    () => {
      if (!configured) return;
      ctx.registry.warmNamed(Date.now());
      const n = ctx.registry.closeUnusable();
      if (n > 0) log.info('closed connections to servers that are DOWN or in MAINT', { connections: n });
    },
    () => stopChecks,
  );

  let stoppedSent = false;
  const maybeStopped = () => {
    if (stoppedSent || ctx.shutdown !== 2 || sessions.size > 0) return;
    stoppedSent = true;
    for (const sp of ctx.registry.servers.values()) sp.closeIdle('shutdown');
    clearInterval(janitor);
    stopChecks = true;
    setTimeout(() => post({ kind: 'stopped' }), 50);
  };

  port.on('message', (m: ToWorker) => {
    switch (m.kind) {
      case 'config': {
        ctx.registry.update(m.cfg, m.slots);
        const g = m.cfg.general;
        if (g.tls_certificate && g.tls_private_key && !ctx.tls) ctx.tls = clientSecureContext(g);
        if (!configured) {
          configured = true;
          post({ kind: 'ready' });
        }
        return;
      }
      case 'fd': {
        // Plain sockets read into the thread's reused buffer (onread); a socket that may turn into
        // TLS (certificate configured) keeps the stream path the TLS layer needs.
        const sock = ctx.tls
          ? new net.Socket({ fd: m.fd, readable: true, writable: true })
          : new net.Socket({
              fd: m.fd,
              readable: true,
              writable: true,
              onread: onreadOptions(onClientRead),
            } as net.SocketConstructorOpts);
        const g = ctx.registry.general;
        if (!m.unix) setKeepAlive(sock, g.tcp_keepalives_idle, g.tcp_keepalives_interval, g.tcp_keepalives_count);
        const c = new ClientSession(sock, ctx, m.unix);
        if (m.role) c.route.fromPort(m.role);
        sessions.add(c);
        c.onGone = () => {
          sessions.delete(c);
          Atomics.sub(shared.workerClients, init.index, 1);
          maybeStopped();
        };
        return;
      }
      case 'cancel':
        return cancelLocal(ctx, m.pid, m.secret);
      case 'control':
        return applyControl(ctx, sessions, m.control);
      case 'scramKeys':
        passThroughKeys.set(m.verifier, keysFromWire(m.keys));
        return;
      case 'shutdown':
        ctx.shutdown = m.fast ? 2 : Math.max(ctx.shutdown, 1);
        if (m.fast) {
          for (const c of [...sessions])
            c.fatal(
              SQLSTATE.ADMIN_SHUTDOWN,
              'terminating connection due to administrator command (openproxy shutting down)',
              'shutdown',
            );
          for (const sp of ctx.registry.servers.values())
            sp.rejectWaiters(new ServerConnError('openproxy is shutting down', SQLSTATE.ADMIN_SHUTDOWN));
          maybeStopped();
        }
        return;
    }
  });
  log.debug('proxy worker started');
}
