// Client TLS settings as PgBouncer names them (client_tls_sslmode, client_tls_protocols,
// client_tls_ca_file): checked at load so a bad value names its key, and turned into the options
// Node's TLS layer takes.

import { readFileSync } from 'node:fs';
import tls, { type SecureVersion } from 'node:tls';
import { ConfigError } from './error';
import type { GeneralConfig } from './types';

const VERSIONS: SecureVersion[] = ['TLSv1', 'TLSv1.1', 'TLSv1.2', 'TLSv1.3'];
const NAMES: Record<string, SecureVersion[]> = {
  'tlsv1.0': ['TLSv1'],
  'tlsv1.1': ['TLSv1.1'],
  'tlsv1.2': ['TLSv1.2'],
  'tlsv1.3': ['TLSv1.3'],
  all: VERSIONS,
  legacy: VERSIONS,
  secure: ['TLSv1.2', 'TLSv1.3'],
};

/** client_tls_protocols → the lowest and highest version allowed. */
export function tlsVersions(value: string): { minVersion: SecureVersion; maxVersion: SecureVersion } {
  const words = value
    .toLowerCase()
    .split(/[\s,]+/)
    .filter(Boolean);
  const bad = words.find((w) => !(w in NAMES));
  if (words.length === 0 || bad !== undefined)
    throw new ConfigError(
      `general.client_tls_protocols: invalid value ${JSON.stringify(value)}; expected a list of ` +
        'tlsv1.0, tlsv1.1, tlsv1.2, tlsv1.3, all, secure or legacy',
    );
  const idx = words.flatMap((w) => NAMES[w].map((v) => VERSIONS.indexOf(v)));
  return { minVersion: VERSIONS[Math.min(...idx)], maxVersion: VERSIONS[Math.max(...idx)] };
}

/** A TLS mode that needs what is not configured is an error naming both keys. */
export function checkClientTls(g: GeneralConfig): void {
  tlsVersions(g.client_tls_protocols);
  const mode = g.client_tls_sslmode;
  if (mode !== 'disable' && mode !== 'prefer' && mode !== 'allow' && !g.tls_certificate)
    throw new ConfigError(
      `general.client_tls_sslmode: "${mode}" needs general.tls_certificate and general.tls_private_key`,
    );
  if ((mode === 'verify-ca' || mode === 'verify-full') && !g.client_tls_ca_file)
    throw new ConfigError(`general.client_tls_sslmode: "${mode}" needs general.client_tls_ca_file`);
}

/** Whether a mode makes openproxy ask clients for a certificate. */
export const wantsClientCert = (g: GeneralConfig) =>
  g.client_tls_sslmode === 'verify-ca' || g.client_tls_sslmode === 'verify-full';

/** The secure context for client TLS (certificate, key, CA for client certificates, versions), or null. */
export function clientSecureContext(g: GeneralConfig): tls.SecureContext | null {
  if (!g.tls_certificate || !g.tls_private_key) return null;
  return tls.createSecureContext({
    cert: readFileSync(g.tls_certificate),
    key: readFileSync(g.tls_private_key),
    ca: g.client_tls_ca_file ? readFileSync(g.client_tls_ca_file) : undefined,
    ...tlsVersions(g.client_tls_protocols),
  });
}
