#!/usr/bin/env node
// The openproxy process: CLI, config, logging, worker threads, listener, signals, reload.

import { clientSecureContext } from './config/client-tls';
import { statSync } from 'node:fs';
import type net from 'node:net';
import { parseCli, type CliOptions } from './cli';
import { ConfigError } from './config/error';
import { loadConfig, withSetting, withUser } from './config/load';
import { Exporter } from './metrics/exporter';
import { startHttp } from './metrics/http';
import { keysOf } from './config/table';
import type { Config } from './config/types';
import { pendingFeatureWarnings } from './config/pending';
import { LogSink, log, setLogSink } from './log';
import { SlotAllocator } from './pool/slots';
import { SharedState } from './shared/state';
import { Supervisor } from './runtime/supervisor';
import type { VrrpRow } from './admin/requests';
import { listen, listenUnix, liveClients, socketPath } from './runtime/listener';
import { RoleListeners } from './runtime/role-listeners';

/** Exit codes (documented in man/openproxy.1). */
export const EXIT = { OK: 0, CONFIG: 78, USAGE: 64, LISTEN: 69, WORKER_DIED: 70 } as const;

function missingConfigHelp(path: string): string {
  return [
    `openproxy: ${path}`,
    '',
    'Give the path of a configuration file: openproxy /etc/openproxy.toml',
    'A commented example of every key is in config/openproxy.toml of the openproxy package.',
    'To try openproxy on a throwaway local PostgreSQL cluster, run the demo from a checkout: npm start',
    '',
  ].join('\n');
}

function checkTls(cfg: Config): void {
  const g = cfg.general;
  if (!g.tls_certificate || !g.tls_private_key) return;
  try {
    clientSecureContext(g);
  } catch (e) {
    const ca = g.client_tls_ca_file ? ` / general.client_tls_ca_file ${JSON.stringify(g.client_tls_ca_file)}` : '';
    throw new ConfigError(
      `general.tls_certificate / general.tls_private_key: cannot load ` +
        `${JSON.stringify(g.tls_certificate)} / ` +
        `${JSON.stringify(g.tls_private_key)}${ca}: ${(e as Error).message}`,
    );
  }
}

/** Keys whose change needs a restart: reported on reload, old value kept. */
function restartOnlyChanges(a: Config, b: Config): string[] {
  const out: string[] = [];
  for (const d of keysOf('general')) {
    if (d.changeable) continue;
    const k = d.key as keyof Config['general'];
    if (a.general[k] !== b.general[k]) out.push(`general.${d.key}`);
  }
  // The virtual router's identity (interface, router_id, VIPs, version, …); priority, scripts and
  // nopreempt are applied by the HA thread without dropping the VIPs.
  const va = a.virtual_router as Record<string, unknown> | undefined;
  const vb = b.virtual_router as Record<string, unknown> | undefined;
  if (va && vb)
    for (const d of keysOf('virtual_router'))
      if (!d.changeable && JSON.stringify(va[d.key]) !== JSON.stringify(vb[d.key]))
        out.push(`general.virtual_router.${d.key}`);
  return out;
}

export async function main(argv: string[]): Promise<void> {
  const cli = parseCli(argv, process.env);
  if (cli.kind === 'print') {
    process.stdout.write(cli.text);
    return;
  }
  if (cli.kind === 'error') {
    process.stderr.write(`openproxy: ${cli.text}\n`);
    process.exit(EXIT.USAGE);
  }
  const opts: CliOptions = cli.options;

  let cfg: Config;
  try {
    cfg = loadConfig(opts.configFile);
    checkTls(cfg);
  } catch (e) {
    const msg = (e as Error).message;
    process.stderr.write(
      msg.includes('not found') ? missingConfigHelp(msg) : `openproxy: invalid configuration: ${msg}\n`,
    );
    process.exit(EXIT.CONFIG);
  }

  let sink: LogSink;
  try {
    sink = new LogSink({
      level: opts.logLevel,
      format: opts.logFormat,
      target: opts.logTarget,
      dir: opts.logDir,
      maxFiles: opts.maxLogfileNum,
      rotateBytes: Number(process.env.OPENPROXY_LOG_ROTATE_BYTES) || 10 * 1024 * 1024,
    });
  } catch (e) {
    process.stderr.write(`openproxy: cannot open log directory ${opts.logDir}: ${(e as Error).message}\n`);
    process.exit(EXIT.CONFIG);
  }
  setLogSink(sink);
  for (const w of [...cfg.warnings, ...pendingFeatureWarnings(cfg)]) log.warn(`config: ${w}`);

  const workers = cfg.general.worker_threads;
  const shared = SharedState.create(workers);
  const slots = new SlotAllocator();
  const sup = new Supervisor(shared, workers, opts.logLevel);
  await sup.start(cfg, slots.assign(cfg));

  let server: net.Server;
  let unixServer: net.Server | null = null;
  const maxClients = () => cfg.general.max_client_conn;
  const rolePorts = new RoleListeners(shared, sup, maxClients);
  try {
    server = await listen(cfg.general.host, cfg.general.port, shared, sup, maxClients);
    if (cfg.general.unix_socket_dir) unixServer = await listenUnix(cfg.general, shared, sup, maxClients);
    const failed = await rolePorts.apply(cfg.listeners, cfg.general.host);
    if (failed.length > 0) throw new Error(failed.join('; '));
  } catch (e) {
    const g = cfg.general;
    log.error('cannot listen', {
      host: g.host,
      port: g.port,
      unix_socket_dir: g.unix_socket_dir,
      error: (e as Error).message,
    });
    await sup.terminate();
    sink.close();
    process.exit(EXIT.LISTEN);
  }
  log.info('openproxy listening', {
    host: cfg.general.host,
    port: cfg.general.port,
    ...(unixServer ? { socket: socketPath(cfg.general.unix_socket_dir, cfg.general.port) } : {}),
    ...(cfg.listeners.length
      ? {
          role_ports: rolePorts
            .list()
            .map((p) => `${p.listen}=${p.role}`)
            .join(','),
        }
      : {}),
    workers,
    pools: cfg.pools.map((p) => p.name).join(','),
    config: cfg.path,
  });

  let currentSlots = slots.assign(cfg);
  const exporter = new Exporter({
    cfg: () => cfg,
    slots: () => currentSlots,
    shared,
    snapshots: () => sup.snapshots(),
    vrrp: () => sup.vrrp,
  });
  const web =
    cfg.general.prometheus_exporter_port > 0
      ? startHttp(cfg.general.prometheus_exporter_port, cfg.general.prometheus_exporter_host || cfg.general.host, {
          exporter,
          cfg: () => cfg,
          listening: () => server.listening && !shuttingDown,
          vrrp: () => {
            const v = vrrpRow();
            return {
              state: v.state,
              detail:
                v.state === 'off'
                  ? v.reason
                  : `on ${v.local_ip || '?'}, priority ${v.priority}` +
                    `${v.since ? `, since ${new Date(v.since).toISOString()}` : ''}: ${v.reason}`,
            };
          },
        })
      : null;

  /** The virtual router as SHOW VRRP and the status page show it. */
  function vrrpRow(): VrrpRow {
    const vr = cfg.virtual_router;
    const v = sup.vrrp;
    if (!vr)
      return {
        state: 'off',
        priority: 0,
        local_ip: '',
        vips: '',
        since: 0,
        reason: 'no [general.virtual_router] section',
      };
    return {
      state: v?.state ?? 'INIT',
      priority: v?.priority ?? vr.priority,
      local_ip: v?.localIp ?? '',
      vips: vr.vip_addresses.join(' '),
      since: v?.since ?? 0,
      reason: v?.reason ?? 'starting',
    };
  }

  let mtime = statSync(cfg.path).mtimeMs;
  /** The role ports of the last reload: RELOAD answers once they are open (or could not be). */
  let portsApplied: Promise<string[]> = Promise.resolve([]);
  const reload = (why: string): string | null => {
    try {
      mtime = statSync(cfg.path).mtimeMs; // the file poller need not read this version again
    } catch {
      /* loadConfig reports the missing file */
    }
    let next: Config;
    try {
      next = loadConfig(cfg.path);
      checkTls(next);
      const restart = restartOnlyChanges(cfg, next);
      if (restart.length)
        log.warn('config: these keys change only on restart; the running values stay', { keys: restart.join(',') });
      currentSlots = slots.assign(next);
      sup.broadcast({ kind: 'config', cfg: next, slots: currentSlots });
    } catch (e) {
      const msg = (e as Error).message;
      log.error('config reload rejected; the running configuration stays', { trigger: why, error: msg });
      return msg;
    }
    for (const w of [...next.warnings, ...pendingFeatureWarnings(next)]) log.warn(`config: ${w}`);
    cfg = next;
    portsApplied = rolePorts.apply(cfg.listeners, cfg.general.host);
    log.info('configuration reloaded', { trigger: why, pools: cfg.pools.map((p) => p.name).join(',') });
    return null;
  };

  const pollFile = () => {
    if (!cfg.general.reload_toml) return;
    try {
      const m = statSync(cfg.path).mtimeMs;
      if (m !== mtime) {
        mtime = m;
        reload('file changed');
      }
    } catch {
      /* file briefly missing while an editor replaces it: try next time */
    }
    if (cfg.general.renew_interval !== pollEvery) {
      pollEvery = cfg.general.renew_interval;
      clearInterval(poll);
      poll = setInterval(pollFile, pollEvery);
    }
  };
  let pollEvery = cfg.general.renew_interval;
  let poll = setInterval(pollFile, pollEvery);

  let shuttingDown = false;
  const finish = async (code: number) => {
    clearInterval(poll);
    web?.close();
    await sup.terminate();
    log.info('openproxy stopped');
    sink.close();
    process.exit(code);
  };
  const shutdown = (fast: boolean) => {
    if (shuttingDown && !fast) return;
    const first = !shuttingDown;
    shuttingDown = true;
    if (first) {
      server.close();
      unixServer?.close();
      rolePorts.close();
      sup.releaseVip();
    }
    sup.onAllStopped = () => void finish(EXIT.OK);
    if (fast) {
      log.info('fast shutdown: disconnecting every client');
      sup.broadcast({ kind: 'shutdown', fast: true });
      setTimeout(() => void finish(EXIT.OK), 3000).unref();
      return;
    }
    const timeout = cfg.general.shutdown_timeout;
    log.info('graceful shutdown: no new clients; waiting for connected clients to leave', {
      shutdown_timeout_ms: timeout,
    });
    sup.broadcast({ kind: 'shutdown', fast: false });
    const deadline = Date.now() + timeout;
    const check = setInterval(() => {
      const live = liveClients(shared, workers);
      if (live === 0 || Date.now() >= deadline) {
        clearInterval(check);
        if (live > 0) log.warn('shutdown_timeout reached; disconnecting remaining clients', { clients: live });
        sup.broadcast({ kind: 'shutdown', fast: true });
        setTimeout(() => void finish(EXIT.OK), 3000).unref();
      }
    }, 100);
  };
  sup.onAdmin = async (req) => {
    switch (req.op) {
      case 'reload': {
        const err = reload('RELOAD (admin console)');
        if (err) return { ok: false, error: err };
        const failed = await portsApplied;
        return failed.length ? { ok: false, error: `configuration reloaded, but ${failed.join('; ')}` } : { ok: true };
      }
      case 'set': {
        const next = withSetting(cfg, req.key, req.value);
        currentSlots = slots.assign(next);
        sup.broadcast({ kind: 'config', cfg: next, slots: currentSlots });
        cfg = next;
        log.info('setting changed by the admin console (until the next reload)', {
          key: req.key,
          value: req.key.includes('password') ? '********' : req.value,
        });
        return { ok: true };
      }
      case 'vrrp':
        return { ok: true, vrrp: vrrpRow() };
      case 'addUser': {
        const next = withUser(cfg, req.pool, req.user, req.secret);
        currentSlots = slots.assign(next);
        sup.broadcast({ kind: 'config', cfg: next, slots: currentSlots });
        cfg = next;
        log.info('user found by auth_query added to its pool (until the next reload)', {
          pool: req.pool,
          user: req.user,
        });
        return { ok: true };
      }
      case 'shutdown':
        log.info('SHUTDOWN from the admin console', { wait_for_clients: req.waitForClients });
        setTimeout(() => shutdown(!req.waitForClients), 50);
        return { ok: true };
      case 'control':
        sup.broadcast({ kind: 'control', control: req.control });
        log.info('admin console command', { ...req.control });
        return { ok: true };
      default:
        return { ok: false, error: 'unknown request' };
    }
  };
  process.on('SIGINT', () => shutdown(false));
  process.on('SIGTERM', () => shutdown(true));
  process.on('SIGHUP', () => {
    try {
      mtime = statSync(cfg.path).mtimeMs;
    } catch {
      /* reload() reports the missing file */
    }
    reload('SIGHUP');
  });
}

if (require.main === module) {
  main(process.argv.slice(2)).catch((e) => {
    process.stderr.write(`openproxy: ${(e as Error).stack ?? e}\n`);
    process.exit(1);
  });
}
