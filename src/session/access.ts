// Who may log in, decided before any password is asked: client_tls_sslmode (TLS required, a client
// certificate signed by client_tls_ca_file, its CN equal to the user) and then the host-based rules
// ([[general.hba]]), whose first match picks the authentication method or rejects.

import tls from 'node:tls';
import { matchHba } from '../config/hba';
import { SQLSTATE } from '../protocol/sqlstate';
import { log } from '../log';
import type { AuthMethod } from './auth';
import type { Session } from './session';

/** The method to authenticate this login with, or null after refusing it (28000). */
export function admit(s: Session, database: string, user: string): AuthMethod | null {
  const g = s.ctx.registry.general;
  const sock = s.sock instanceof tls.TLSSocket ? s.sock : null;
  const mode = g.client_tls_sslmode;
  const refuse = (message: string, what: string): null => {
    log.warn(`client refused by ${what}`, { client: s.remote, user, database, reason: message });
    s.fatal(SQLSTATE.INVALID_AUTHORIZATION, message, what);
    return null;
  };
  // The Unix-domain socket is local and has no TLS (as in PgBouncer): the modes are for TCP clients.
  if (!s.unix && (mode === 'require' || mode === 'verify-ca' || mode === 'verify-full')) {
    if (!sock) return refuse(`TLS is required (client_tls_sslmode = "${mode}"); connect with sslmode=require`, 'TLS');
    const why = mode === 'require' ? null : certificateProblem(sock);
    if (why !== null) {
      return refuse(
        `a client certificate signed by client_tls_ca_file is required (client_tls_sslmode = "${mode}"): ${why}`,
        'TLS',
      );
    }
    if (mode === 'verify-full') {
      const cn = sock.getPeerCertificate().subject?.CN;
      if (cn !== user) return refuse(`the client certificate's CN "${cn}" is not the user name "${user}"`, 'TLS');
    }
  }
  const rules = s.ctx.registry.config.hba;
  if (rules.length === 0) return g.auth_type;
  const address = s.unix ? '' : (s.sock.remoteAddress ?? '');
  const rule = matchHba(rules, { address, unix: s.unix, tls: sock !== null, database, user });
  if (rule === null || rule.method === 'reject') {
    const from = s.unix ? 'local socket' : `host "${address}"`;
    const message =
      `${rule ? 'rejected by an hba rule' : 'no hba rule matches'}: ${from}, ` +
      `user "${user}", database "${database}", ${sock ? 'TLS' : 'no encryption'}`;
    return refuse(message, 'hba rules');
  }
  return rule.method;
}

/**
 * Why the client's certificate does not verify against client_tls_ca_file, or null when it does.
 * A TLSSocket made outside tls.Server never sets `authorized`, so this asks OpenSSL's verdict for
 * the handshake (the handle's verifyError, what tls.Server itself reads); without it, fail closed.
 */
function certificateProblem(sock: tls.TLSSocket): string | null {
  const peer = sock.getPeerCertificate();
  if (!peer || Object.keys(peer).length === 0) return 'none was sent';
  const handle = (sock as unknown as { _handle?: { verifyError?: () => Error | null } })._handle;
  if (typeof handle?.verifyError !== 'function') return 'it cannot be verified on this Node.js';
  const err = handle.verifyError();
  return err ? err.message : null;
}
