// Command line: the exact options of OpenProxy's CLI, each also read from its environment variable.

import { parseArgs } from 'node:util';
import { LEVELS, type Level, type LogFormat, type LogTarget } from './log';
import { VERSION } from './version';

/** Bumped by hand with each release; printed by --revision. */
export const REVISION = 1;

export interface CliOptions {
  configFile: string;
  logTarget: LogTarget;
  logLevel: Level;
  maxLogfileNum: number;
  logDir: string;
  logFormat: LogFormat;
}

export type CliResult =
  | { kind: 'run'; options: CliOptions }
  | { kind: 'print'; text: string }
  | { kind: 'error'; text: string };

export const HELP = `openproxy: PostgreSQL pooler, query router and virtual-IP failover (OpenProxy / PgCat config)

Usage: openproxy [OPTIONS] [CONFIG_FILE]

Arguments:
  [CONFIG_FILE]  [env: CONFIG_FILE=] [default: openproxy.toml]

Options:
      --log-target <LOG_TARGET>
          [env: LOG_TARGET=] [default: both] [possible values: file, stdout, both]
  -l, --log-level <LOG_LEVEL>
          [env: LOG_LEVEL=] [default: INFO] [possible values: ERROR, WARN, INFO, DEBUG, TRACE]
      --max-logfile-num <MAX_LOGFILE_NUM>
          [env: MAX_LOGFILE_NUM=] [default: 5]
      --log-dir <LOG_DIR>
          [env: LOG_DIR=] [default: logs]
      --revision
          Print revision number
  -F, --log-format <LOG_FORMAT>
          [env: LOG_FORMAT=] [default: text] [possible values: text, structured, debug]
  -h, --help
          Print help
  -V, --version
          Print version

Example config: config/openproxy.toml. Try it without PostgreSQL: npm start (throwaway demo cluster).
`;

function oneOf<T extends string>(name: string, raw: string, allowed: readonly T[], upper = false): T | string {
  const v = (upper ? raw.toUpperCase() : raw.toLowerCase()) as T;
  return allowed.includes(v) ? v : `invalid value '${raw}' for '${name}': expected one of ${allowed.join(', ')}`;
}

const OPTIONS = {
  'log-target': { type: 'string' },
  'log-level': { type: 'string', short: 'l' },
  'max-logfile-num': { type: 'string' },
  'log-dir': { type: 'string' },
  'log-format': { type: 'string', short: 'F' },
  revision: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean', short: 'V' },
} as const;

export function parseCli(argv: string[], env: NodeJS.ProcessEnv): CliResult {
  let parsed: ReturnType<
    typeof parseArgs<{ args: string[]; allowPositionals: true; strict: true; options: typeof OPTIONS }>
  >;
  try {
    parsed = parseArgs({ args: argv, allowPositionals: true, strict: true, options: OPTIONS });
  } catch (e) {
    return { kind: 'error', text: `${(e as Error).message}\n\nFor more information, try '--help'.` };
  }
  const { values: v, positionals } = parsed;
  if (v.help) return { kind: 'print', text: HELP };
  if (v.version) return { kind: 'print', text: `openproxy ${VERSION}\n` };
  if (v.revision) return { kind: 'print', text: `revision number: ${REVISION}\n` };
  if (positionals.length > 1)
    return {
      kind: 'error',
      text:
        `unexpected argument '${positionals[1]}': only one CONFIG_FILE is ` +
        `taken\n\nFor more information, try '--help'.`,
    };

  const pick = (opt: string | undefined, envName: string, dflt: string) => opt ?? (env[envName] || undefined) ?? dflt;
  const target = oneOf('--log-target', pick(v['log-target'], 'LOG_TARGET', 'both'), [
    'file',
    'stdout',
    'both',
  ] as const);
  const level = oneOf('--log-level', pick(v['log-level'], 'LOG_LEVEL', 'INFO'), LEVELS, true);
  const format = oneOf('--log-format', pick(v['log-format'], 'LOG_FORMAT', 'text'), [
    'text',
    'structured',
    'debug',
  ] as const);
  const maxRaw = pick(v['max-logfile-num'], 'MAX_LOGFILE_NUM', '5');
  for (const r of [target, level, format]) if (r.startsWith('invalid')) return { kind: 'error', text: r };
  if (!/^\d+$/.test(maxRaw) || Number(maxRaw) < 1)
    return { kind: 'error', text: `invalid value '${maxRaw}' for '--max-logfile-num': expected an integer >= 1` };
  return {
    kind: 'run',
    options: {
      configFile: positionals[0] ?? (env.CONFIG_FILE || 'openproxy.toml'),
      logTarget: target as LogTarget,
      logLevel: level as Level,
      maxLogfileNum: Number(maxRaw),
      logDir: pick(v['log-dir'], 'LOG_DIR', 'logs'),
      logFormat: format as LogFormat,
    },
  };
}
