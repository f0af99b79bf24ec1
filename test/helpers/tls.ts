// Test certificates made with openssl on the fly.

import { execFileSync } from 'node:child_process';
import { join } from 'node:path';

/** A self-signed certificate for CN=localhost in `dir`, as NAME.crt and NAME.key. */
export function selfSigned(dir: string, name: string): { cert: string; key: string } {
  const cert = join(dir, `${name}.crt`);
  const key = join(dir, `${name}.key`);
  const subject = ['-subj', '/CN=localhost', '-keyout', key, '-out', cert];
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', ...subject], {
    stdio: 'ignore',
  });
  return { cert, key };
}
