// The admin console's message loop for one client: simple queries one at a time (each answered
// by AdminConsole, ReadyForQuery included), Terminate ends it, Sync gets a ReadyForQuery, and the
// extended protocol is refused.

import { errorResponse, READY_IDLE } from '../protocol/backend';
import { FE } from '../protocol/messages';
import { SQLSTATE } from '../protocol/sqlstate';
import type { ConsoleClient, ConsoleSession } from '../session/context';
import type { AdminConsole } from './console';

export class AdminConsoleSession implements ConsoleSession {
  /** A command is running: later messages wait in the client's buffer. */
  private busy = false;

  constructor(
    private readonly client: ConsoleClient,
    private readonly console: AdminConsole,
  ) {}

  onMessages(): void {
    const c = this.client;
    const f = c.frames;
    while (!this.busy && !c.closed && f.next()) {
      if (f.type === FE.TERMINATE) return c.disconnect('admin client sent Terminate');
      if (f.type !== FE.QUERY) {
        if (f.type === FE.SYNC) c.write(READY_IDLE);
        else if (f.type === FE.PARSE) {
          const message = 'the admin console speaks the simple query protocol only';
          c.write(errorResponse({ severity: 'ERROR', code: SQLSTATE.FEATURE_NOT_SUPPORTED, message }));
        }
        continue;
      }
      const sql = f.buf.toString('utf8', f.start + 5, f.msgEnd - 1);
      this.busy = true;
      f.detach();
      void this.console.run(sql).then((reply) => {
        this.busy = false;
        if (c.closed) return;
        c.write(reply);
        this.onMessages();
      });
    }
    if (f.error) c.fatal(SQLSTATE.PROTOCOL_VIOLATION, f.error, 'bad message');
  }
}
