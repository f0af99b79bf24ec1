// The admin console (database "openproxy", also "pgbouncer" and "pgcat", as admin_username):
// PgBouncer's commands over the simple query protocol, with real numbers from every worker.

import {
  commandComplete,
  dataRow,
  errorResponse,
  noticeResponse,
  READY_IDLE,
  rowDescription,
} from '../protocol/backend';
import type { WorkerContext } from '../session/context';
import type { AdminRequest, AskMain } from './requests';
import type { WorkerSnapshot } from '../shared/snapshot';
import * as show from './show';
import { entriesAt, setAdminState, showServerStates } from './server-states';
import { BAN, REFUSED_CLIENTS } from '../shared/layout';
import { log } from '../log';

const HELP = [
  'SHOW HELP|CONFIG|DATABASES|POOLS|CLIENTS|SERVERS|USERS|VERSION',
  'SHOW LISTS|MEM|STATS|STATS_TOTALS|STATS_AVERAGES|TOTALS|BANS|SERVER_STATES|VRRP',
  'SET key = arg',
  'RELOAD',
  'PAUSE [<db>[, <user>]]',
  'RESUME [<db>[, <user>]]',
  'DISABLE <db>',
  'ENABLE <db>',
  'RECONNECT [<db>]',
  'KILL [<db>]',
  'KILL_CLIENT <client_id>',
  'WAIT_CLOSE [<db>]',
  'BAN <host>[:<port>] <seconds>',
  'UNBAN <host>[:<port>]',
  'MAINT|DRAIN|READY <host>[:<port>]',
  'SHUTDOWN [WAIT_FOR_CLIENTS]',
];

class CommandError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

const startedAt = Date.now();

export class AdminConsole {
  /** readOnly: a stats_users login, which may only SHOW (PgBouncer's rule). */
  constructor(
    private readonly ctx: WorkerContext,
    private readonly askMain: AskMain,
    private readonly readOnly = false,
  ) {}

  /** The reply to one simple Query, ReadyForQuery included. */
  async run(sql: string): Promise<Buffer> {
    const text = sql.trim().replace(/;\s*$/, '').trim();
    try {
      const out = await this.command(text);
      return Buffer.concat([...out, READY_IDLE]);
    } catch (e) {
      const code = e instanceof CommandError ? e.code : 'XX000';
      return Buffer.concat([errorResponse({ severity: 'ERROR', code, message: (e as Error).message }), READY_IDLE]);
    }
  }

  private async ask(req: AdminRequest): Promise<WorkerSnapshot[]> {
    const r = await this.askMain(req);
    if (!r.ok) throw new CommandError('XX000', r.error);
    return r.snapshots ?? [];
  }

  private table(t: show.Table, tag = 'SHOW'): Buffer[] {
    return [
      rowDescription(t.columns),
      ...t.rows.map((r) => dataRow(r.map((v) => (v === null ? null : String(v))))),
      commandComplete(tag),
    ];
  }

  private async command(text: string): Promise<Buffer[]> {
    if (text === '') return [message('I')];
    const words = text.split(/\s+/);
    const verb = words[0].toUpperCase();
    const reg = this.ctx.registry;
    const shared = this.ctx.shared;
    const uptime = Math.floor((Date.now() - startedAt) / 1000);
    const arg = text.slice(words[0].length).trim();
    if (this.readOnly && verb !== 'SHOW')
      throw new CommandError('42501', `permission denied: a stats_users login may only SHOW (not ${verb})`);
    switch (verb) {
      case 'SHOW': {
        const what = (words[1] ?? '').toUpperCase();
        switch (what) {
          case 'HELP':
            return [
              noticeResponse({ severity: 'NOTICE', code: '00000', message: 'Console usage', detail: HELP.join('\n') }),
              commandComplete('SHOW'),
            ];
          case 'CONFIG':
            return this.table(show.showConfig(reg.config));
          case 'DATABASES':
            return this.table(show.showDatabases(reg, shared, this.ctx.paused, this.ctx.disabled));
          case 'POOLS':
            return this.table(show.showPools(await this.ask({ op: 'snapshots' })));
          case 'CLIENTS':
            return this.table(show.showClients(await this.ask({ op: 'snapshots' })));
          case 'SERVERS':
            return this.table(show.showServers(await this.ask({ op: 'snapshots' })));
          case 'USERS':
            return this.table(show.showUsers(reg, shared));
          case 'VERSION':
            return this.table(show.showVersion());
          case 'MEM':
            return this.table(show.showMem(await this.ask({ op: 'snapshots' })));
          case 'LISTS':
            return this.table(
              show.showLists(reg.config, await this.ask({ op: 'snapshots' }), shared.header[REFUSED_CLIENTS]),
            );
          case 'STATS':
            return this.table(show.showStats(await this.ask({ op: 'snapshots' }), uptime));
          case 'STATS_TOTALS':
            return this.table(show.showStatsBy(reg, shared, uptime, false));
          case 'STATS_AVERAGES':
            return this.table(show.showStatsBy(reg, shared, uptime, true));
          case 'TOTALS':
            return this.table(show.showTotals(reg, shared, uptime));
          case 'BANS':
            return this.table(show.showBans(reg, shared));
          case 'SERVER_STATES':
            return this.table(showServerStates(reg, shared));
          case 'VRRP': {
            const r = await this.askMain({ op: 'vrrp' });
            if (!r.ok || !r.vrrp) throw new CommandError('XX000', r.ok ? 'no answer' : r.error);
            const v = r.vrrp;
            return this.table({
              columns: ['state', 'priority', 'local_ip', 'vips', 'since', 'reason'],
              rows: [
                [v.state, v.priority, v.local_ip, v.vips, v.since ? new Date(v.since).toISOString() : '', v.reason],
              ],
            });
          }
          default:
            throw new CommandError('42601', `unknown SHOW item "${words[1] ?? ''}"; SHOW HELP lists the commands`);
        }
      }
      case 'SET': {
        const m = /^set\s+([a-z_][a-z0-9_."]*)\s*(?:=|\s+to\s+)\s*(.+)$/is.exec(text);
        if (!m) throw new CommandError('42601', 'usage: SET key = value');
        // Key names are lower case; a quoted pool name keeps its case.
        const key = m[1].replace(/("[^"]*")|[^"]+/g, (part, quoted) => quoted ?? part.toLowerCase());
        await this.ask({ op: 'set', key, value: m[2].trim().replace(/^'(.*)'$/s, '$1') });
        return [commandComplete('SET')];
      }
      case 'RELOAD':
        this.noArgs(words, 'RELOAD');
        await this.ask({ op: 'reload' });
        return [commandComplete('RELOAD')];
      case 'PAUSE':
      case 'RESUME': {
        const [db, user] = arg ? arg.split(/\s*,\s*|\s+/) : [];
        if (db) this.knownDb(db);
        await this.ask({ op: 'control', control: { op: verb === 'PAUSE' ? 'pause' : 'resume', db, user } });
        // PgBouncer's PAUSE returns once every server connection of the database is released:
        // running transactions finish first (new ones wait).
        if (verb === 'PAUSE') await this.waitIdle(db, user);
        return [commandComplete(verb)];
      }
      case 'DISABLE':
      case 'ENABLE': {
        if (!arg) throw new CommandError('42601', `usage: ${verb} <db>`);
        this.knownDb(arg);
        await this.ask({ op: 'control', control: { op: verb === 'DISABLE' ? 'disable' : 'enable', db: arg } });
        return [commandComplete(verb)];
      }
      case 'RECONNECT':
      case 'KILL': {
        if (arg) this.knownDb(arg);
        await this.ask({
          op: 'control',
          control: { op: verb === 'KILL' ? 'kill' : 'reconnect', db: arg || undefined },
        });
        return [commandComplete(verb)];
      }
      case 'KILL_CLIENT': {
        const id = /^(0x[0-9a-f]+|\d+)$/i.exec(arg);
        if (!id)
          throw new CommandError('42601', 'usage: KILL_CLIENT <client_id> (as SHOW CLIENTS shows it, e.g. 0x400001)');
        const pid = Number(id[1]);
        const snaps = await this.ask({ op: 'snapshots' });
        if (!snaps.some((s) => s.clients.some((c) => c.id === pid)))
          throw new CommandError('42704', `no client with id ${arg}`);
        await this.ask({ op: 'control', control: { op: 'kill_client', pid } });
        return [commandComplete('KILL_CLIENT')];
      }
      case 'WAIT_CLOSE': {
        if (arg) this.knownDb(arg);
        // Wait until no server connection marked by RECONNECT (of this database) is left.
        for (let i = 0; ; i++) {
          const snaps = await this.ask({ op: 'snapshots' });
          const left = snaps
            .flatMap((s) => s.servers)
            .filter((v) => v.close_needed && (!arg || v.database_name === arg));
          if (left.length === 0) break;
          if (i > 600) throw new CommandError('57014', `${left.length} server connections still open after 60 s`);
          await new Promise((r) => setTimeout(r, 100));
        }
        return [commandComplete('WAIT_CLOSE')];
      }
      case 'BAN':
      case 'UNBAN': {
        const m = verb === 'BAN' ? /^(\S+?)(?::(\d+))?\s+(\d+)$/.exec(arg) : /^(\S+?)(?::(\d+))?$/.exec(arg);
        if (!m)
          throw new CommandError(
            '42601',
            verb === 'BAN' ? 'usage: BAN <host>[:<port>] <seconds>' : 'usage: UNBAN <host>[:<port>]',
          );
        const host = m[1];
        const port = m[2] ? Number(m[2]) : undefined;
        const entries = entriesAt(reg, host, port);
        if (entries.length === 0) throw new CommandError('42704', `no configured server ${arg.split(/\s+/)[0]}`);
        if (verb === 'BAN') {
          if (entries.some((e) => e.address.role === 'primary' || e.learned === 'primary'))
            throw new CommandError(
              '55000',
              `${host}${port ? `:${port}` : ''} is a primary; ` +
                'openproxy never bans the primary (writes have nowhere else to go)',
            );
          const until = Date.now() + Number(m[3]) * 1000;
          for (const e of entries) shared.ban(e.pool.slot, until, BAN.admin);
          log.warn('server banned', {
            server: `${host}${port ? `:${port}` : ''}`,
            reason: 'banned by admin',
            ban_time_s: Number(m[3]),
          });
        } else {
          for (const e of entries) shared.unban(e.pool.slot);
          log.info('server unbanned by admin', { server: arg });
        }
        return [commandComplete(verb)];
      }
      case 'MAINT':
      case 'DRAIN':
      case 'READY': {
        const m = /^(\S+?)(?::(\d+))?$/.exec(arg);
        if (!m) throw new CommandError('42601', `usage: ${verb} <host>[:<port>]`);
        const entries = entriesAt(reg, m[1], m[2] ? Number(m[2]) : undefined);
        if (entries.length === 0) throw new CommandError('42704', `no configured server ${arg}`);
        setAdminState(verb, entries, shared);
        return [commandComplete(verb)];
      }
      case 'SHUTDOWN': {
        const wait = /^wait_for_clients$/i.test(arg);
        if (arg && !wait) throw new CommandError('42601', 'usage: SHUTDOWN [WAIT_FOR_CLIENTS]');
        await this.ask({ op: 'shutdown', waitForClients: wait });
        return [commandComplete('SHUTDOWN')];
      }
      default:
        throw new CommandError('42601', `unknown admin command "${words[0]}"; SHOW HELP lists the commands`);
    }
  }

  /** Until no server connection of db (and user) is held by a client; at most 5 minutes. */
  private async waitIdle(db?: string, user?: string): Promise<void> {
    for (let i = 0; ; i++) {
      const snaps = await this.ask({ op: 'snapshots' });
      const busy = snaps
        .flatMap((s) => s.servers)
        .filter((v) => v.state === 'active' && (!db || v.database_name === db) && (!user || v.user === user));
      if (busy.length === 0) return;
      if (i >= 3000)
        throw new CommandError(
          '57014',
          `PAUSE: ${busy.length} server connections still in use after 5 minutes ` +
            `(new transactions stay paused; RESUME to undo)`,
        );
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  private noArgs(words: string[], verb: string): void {
    if (words.length > 1) throw new CommandError('42601', `${verb} takes no arguments`);
  }

  private knownDb(db: string): void {
    if (!this.ctx.registry.hasDatabase(db)) throw new CommandError('3D000', `no such database: ${db}`);
  }
}

/** EmptyQueryResponse. */
function message(type: 'I'): Buffer {
  return Buffer.from([type.charCodeAt(0), 0, 0, 0, 4]);
}
