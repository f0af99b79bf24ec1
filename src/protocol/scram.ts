// SCRAM-SHA-256 (RFC 5802 / RFC 7677) for both sides: openproxy as the server to its clients,
// and as the client to PostgreSQL. No channel binding (we advertise SCRAM-SHA-256 only).

import { createHash, createHmac, pbkdf2Sync, randomBytes, timingSafeEqual } from 'node:crypto';

export const SCRAM_MECHANISM = 'SCRAM-SHA-256';
const DEFAULT_ITERATIONS = 4096;

const hmac = (key: Buffer, data: string | Buffer) => createHmac('sha256', key).update(data).digest();
const sha256 = (data: Buffer) => createHash('sha256').update(data).digest();
const xor = (a: Buffer, b: Buffer) => {
  const out = Buffer.allocUnsafe(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i] ^ b[i];
  return out;
};

export interface ScramSecret {
  iterations: number;
  salt: Buffer;
  storedKey: Buffer;
  serverKey: Buffer;
}

/**
 * What SCRAM pass-through logs in to PostgreSQL with: the ClientKey a client proved (recovered
 * from its proof against a configured verifier) and the verifier's ServerKey, salt and iterations.
 */
export interface ScramKeys {
  clientKey: Buffer;
  serverKey: Buffer;
  salt: Buffer;
  iterations: number;
}

/** Whether a configured password is a SCRAM-SHA-256 verifier rather than the password itself. */
export const isScramVerifier = (password: string) => password.startsWith('SCRAM-SHA-256$');

export function saltedKeys(
  password: string,
  salt: Buffer,
  iterations: number,
): { clientKey: Buffer; serverKey: Buffer } {
  // SASLprep is the identity for ASCII passwords, which is what PostgreSQL also falls back to.
  const salted = pbkdf2Sync(password.normalize('NFKC'), salt, iterations, 32, 'sha256');
  return { clientKey: hmac(salted, 'Client Key'), serverKey: hmac(salted, 'Server Key') };
}

/** A secret from a plain password (fresh salt), or parsed from a `SCRAM-SHA-256$iter:salt$stored:server` verifier. */
export function scramSecret(password: string): ScramSecret {
  const m = /^SCRAM-SHA-256\$(\d+):([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+):([A-Za-z0-9+/=]+)$/.exec(password);
  if (m) {
    return {
      iterations: Number(m[1]),
      salt: Buffer.from(m[2], 'base64'),
      storedKey: Buffer.from(m[3], 'base64'),
      serverKey: Buffer.from(m[4], 'base64'),
    };
  }
  const salt = randomBytes(16);
  const { clientKey, serverKey } = saltedKeys(password, salt, DEFAULT_ITERATIONS);
  return { iterations: DEFAULT_ITERATIONS, salt, storedKey: sha256(clientKey), serverKey };
}

function attrs(msg: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of msg.split(',')) {
    const eq = part.indexOf('=');
    if (eq === 1) out.set(part[0], part.slice(2));
  }
  return out;
}

/** Server side of one SCRAM exchange. Each step returns the reply or an error string. */
export class ScramServer {
  private clientFirstBare = '';
  private serverFirst = '';
  private nonce = '';
  private gs2 = '';

  constructor(private readonly secret: ScramSecret) {}

  /** client-first-message → server-first-message. */
  first(clientFirst: string): { reply: string } | { error: string } {
    const m = /^([ny]|p=[^,]*),([^,]*),(.*)$/.exec(clientFirst);
    if (!m) return { error: 'malformed SCRAM client-first-message' };
    if (m[1].startsWith('p=')) return { error: 'channel binding is not supported; use SCRAM-SHA-256' };
    this.gs2 = `${m[1]},${m[2]},`;
    this.clientFirstBare = m[3];
    const cnonce = attrs(this.clientFirstBare).get('r');
    if (!cnonce) return { error: 'SCRAM client-first-message without nonce' };
    this.nonce = cnonce + randomBytes(18).toString('base64');
    this.serverFirst = `r=${this.nonce},s=${this.secret.salt.toString('base64')},i=${this.secret.iterations}`;
    return { reply: this.serverFirst };
  }

  /** client-final-message → server-final-message, or an error when the proof is wrong. */
  final(clientFinal: string): { reply: string; clientKey: Buffer } | { error: string; badPassword?: boolean } {
    const idx = clientFinal.lastIndexOf(',p=');
    if (idx < 0) return { error: 'SCRAM client-final-message without proof' };
    const withoutProof = clientFinal.slice(0, idx);
    const a = attrs(withoutProof);
    if (a.get('c') !== Buffer.from(this.gs2).toString('base64'))
      return { error: 'SCRAM channel binding data does not match' };
    if (a.get('r') !== this.nonce) return { error: 'SCRAM nonce does not match' };
    const proof = Buffer.from(clientFinal.slice(idx + 3), 'base64');
    const authMessage = `${this.clientFirstBare},${this.serverFirst},${withoutProof}`;
    const signature = hmac(this.secret.storedKey, authMessage);
    if (proof.length !== signature.length) return { error: 'password authentication failed', badPassword: true };
    const clientKey = xor(proof, signature);
    if (!timingSafeEqual(sha256(clientKey), this.secret.storedKey))
      return { error: 'password authentication failed', badPassword: true };
    return { reply: `v=${hmac(this.secret.serverKey, authMessage).toString('base64')}`, clientKey };
  }
}

/** Client side of one SCRAM exchange with PostgreSQL. */
export class ScramClient {
  private readonly cnonce = randomBytes(18).toString('base64');
  private clientFirstBare = '';
  private serverSignature: Buffer | null = null;

  /** A password, or (SCRAM pass-through) the keys a client proved for the server's own verifier. */
  constructor(private readonly password: string | ScramKeys) {}

  first(): string {
    this.clientFirstBare = `n=*,r=${this.cnonce}`;
    return `n,,${this.clientFirstBare}`;
  }

  /** server-first → client-final (throws on a malformed or hostile server message). */
  final(serverFirst: string): string {
    const a = attrs(serverFirst);
    const nonce = a.get('r');
    const salt = a.get('s');
    const iterations = Number(a.get('i'));
    if (!nonce?.startsWith(this.cnonce) || nonce === this.cnonce) throw new Error('SCRAM: server nonce invalid');
    if (!salt || !Number.isInteger(iterations) || iterations < 1)
      throw new Error('SCRAM: server-first-message malformed');
    const withoutProof = `c=biws,r=${nonce}`;
    const authMessage = `${this.clientFirstBare},${serverFirst},${withoutProof}`;
    const saltBytes = Buffer.from(salt, 'base64');
    const keys = this.password;
    if (typeof keys !== 'string' && (!keys.salt.equals(saltBytes) || keys.iterations !== iterations))
      throw new Error("SCRAM pass-through: the server's salt or iteration count is not the configured verifier's");
    const { clientKey, serverKey } = typeof keys === 'string' ? saltedKeys(keys, saltBytes, iterations) : keys;
    const proof = xor(clientKey, hmac(sha256(clientKey), authMessage));
    this.serverSignature = hmac(serverKey, authMessage);
    return `${withoutProof},p=${proof.toString('base64')}`;
  }

  /** Checks the server's signature: proves the server knew the password too. */
  verify(serverFinal: string): void {
    const v = attrs(serverFinal).get('v');
    const got = v ? Buffer.from(v, 'base64') : Buffer.alloc(0);
    if (
      !this.serverSignature ||
      got.length !== this.serverSignature.length ||
      !timingSafeEqual(got, this.serverSignature)
    ) {
      throw new Error('SCRAM: server signature does not match');
    }
  }
}
