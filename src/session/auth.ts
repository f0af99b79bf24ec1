// Client authentication as a small state machine over PasswordMessage / SASL messages.

import { authMd5, authSasl, authSaslContinue, authSaslFinal } from '../protocol/backend';
import { decodePassword, decodeSaslInitial } from '../protocol/frontend';
import { md5Stored, md5Verify } from '../protocol/md5';
import {
  SCRAM_MECHANISM,
  type ScramKeys,
  type ScramSecret,
  ScramServer,
  isScramVerifier,
  scramSecret,
} from '../protocol/scram';
import { randomBytesPooled } from '../shared/random';

/** How a client proves who it is (trust: it does not; only an hba rule grants that). */
export type AuthMethod = 'md5' | 'scram-sha-256' | 'trust';

export type AuthStep =
  | { kind: 'send'; data: Buffer }
  | { kind: 'ok'; data?: Buffer }
  | { kind: 'fail'; code: string; message: string };

/** Derived SCRAM secrets per configured password: PBKDF2 once, not per login. */
const secrets = new Map<string, ScramSecret>();
function secretFor(password: string): ScramSecret {
  let s = secrets.get(password);
  if (!s) {
    if (secrets.size > 10000) secrets.clear();
    secrets.set(password, (s = scramSecret(password)));
  }
  return s;
}

export class ClientAuth {
  private salt: Buffer = Buffer.alloc(0);
  private scram: ScramServer | null = null;
  private stage = 0;
  /** After a SCRAM login against a configured verifier: the keys for SCRAM pass-through. */
  passThrough: ScramKeys | null = null;

  constructor(
    private readonly method: AuthMethod,
    private readonly user: string,
    private readonly password: string | undefined,
  ) {}

  private failed(): AuthStep {
    return { kind: 'fail', code: '28P01', message: `password authentication failed for user "${this.user}"` };
  }

  /** The first request to send the client. */
  start(): AuthStep {
    if (this.method === 'trust') return { kind: 'ok' };
    if (this.password === undefined || this.password === '') {
      return {
        kind: 'fail',
        code: '28P01',
        message: `no password is configured for user "${this.user}"; openproxy does not allow passwordless login`,
      };
    }
    if (this.method === 'md5') {
      if (this.password.startsWith('SCRAM-SHA-256$'))
        return {
          kind: 'fail',
          code: '28000',
          message:
            `user "${this.user}" has a SCRAM verifier as password; md5 ` +
            `authentication cannot use it (set auth_type = "scram-sha-256")`,
        };
      this.salt = randomBytesPooled(4);
      return { kind: 'send', data: authMd5(this.salt) };
    }
    if (/^md5[0-9a-f]{32}$/.test(this.password))
      return {
        kind: 'fail',
        code: '28000',
        message:
          `user "${this.user}" has an md5 secret as password; SCRAM ` +
          `authentication cannot use it (set auth_type = "md5", or give a SCRAM verifier)`,
      };
    this.scram = new ScramServer(secretFor(this.password));
    return { kind: 'send', data: authSasl([SCRAM_MECHANISM]) };
  }

  /** A PasswordMessage-family body ('p') from the client. */
  step(body: Buffer): AuthStep {
    if (this.method === 'md5') {
      const answer = decodePassword(body);
      if (answer === null) return { kind: 'fail', code: '08P01', message: 'malformed password message' };
      return md5Verify(md5Stored(this.password!, this.user), this.salt, answer) ? { kind: 'ok' } : this.failed();
    }
    if (this.stage === 0) {
      this.stage = 1;
      const init = decodeSaslInitial(body);
      if (!init) return { kind: 'fail', code: '08P01', message: 'malformed SASLInitialResponse message' };
      if (init.mechanism !== SCRAM_MECHANISM)
        return {
          kind: 'fail',
          code: '28000',
          message: `SASL mechanism ${init.mechanism} is not supported; use ${SCRAM_MECHANISM}`,
        };
      const r = this.scram!.first(init.data);
      if ('error' in r) return { kind: 'fail', code: '08P01', message: r.error };
      return { kind: 'send', data: authSaslContinue(r.reply) };
    }
    const r = this.scram!.final(body.toString('utf8'));
    if ('error' in r) return r.badPassword ? this.failed() : { kind: 'fail', code: '08P01', message: r.error };
    if (isScramVerifier(this.password!)) {
      const { serverKey, salt, iterations } = secretFor(this.password!);
      this.passThrough = { clientKey: r.clientKey, serverKey, salt, iterations };
    }
    return { kind: 'ok', data: authSaslFinal(r.reply) };
  }
}
