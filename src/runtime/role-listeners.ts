// The role ports of [[general.listeners]]: one TCP listener per entry, handing its clients to the
// workers with the port's role. A reload opens the new ones, closes the removed ones (their
// clients stay connected) and changes the role of the rest in place; nothing restarts.

import net from 'node:net';
import type { ListenerConfig, ListenerRole } from '../config/types';
import type { SharedState } from '../shared/state';
import { log } from '../log';
import { handOff, serve } from './listener';
import type { Supervisor } from './supervisor';

interface RolePort {
  server: net.Server;
  role: ListenerRole;
}

export class RoleListeners {
  private readonly ports = new Map<string, RolePort>();

  constructor(
    private readonly shared: SharedState,
    private readonly sup: Supervisor,
    private readonly maxClients: () => number,
  ) {}

  /** Makes the open role ports match `wanted`; the errors of ports that could not be opened. */
  async apply(wanted: readonly ListenerConfig[], defaultHost: string): Promise<string[]> {
    const keep = new Set<string>();
    const errors: string[] = [];
    for (const l of wanted) {
      const host = l.host ?? defaultHost;
      const key = `${host}:${l.port}`;
      keep.add(key);
      const open = this.ports.get(key);
      if (open) {
        if (open.role !== l.role) log.info('role port changed', { listen: key, from: open.role, to: l.role });
        open.role = l.role;
        continue;
      }
      const entry: RolePort = { server: null as unknown as net.Server, role: l.role };
      const handler = handOff(this.shared, this.sup, this.maxClients, false, () => entry.role);
      try {
        entry.server = await serve(net.createServer({ pauseOnConnect: true }, handler), { host, port: l.port });
      } catch (e) {
        const msg = `cannot listen on ${key} (role ${l.role}): ${(e as Error).message}`;
        log.error('cannot open a role port', { listen: key, role: l.role, error: (e as Error).message });
        errors.push(msg);
        continue;
      }
      this.ports.set(key, entry);
      log.info('role port listening', { listen: key, role: l.role });
    }
    for (const [key, p] of this.ports) {
      if (keep.has(key)) continue;
      p.server.close();
      this.ports.delete(key);
      log.info('role port closed: no new clients on it; connected clients stay', { listen: key, role: p.role });
    }
    return errors;
  }

  /** Stops accepting on every role port (shutdown). */
  close(): void {
    for (const p of this.ports.values()) p.server.close();
  }

  /** host:port → role of the open ports. */
  list(): { listen: string; role: ListenerRole }[] {
    return [...this.ports].map(([listen, p]) => ({ listen, role: p.role }));
  }
}
