// CLI: OpenProxy's exact options, each also from its environment variable; option wins.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseCli } from '../src/cli';
import { VERSION } from '../src/version';

test('defaults match the spec', () => {
  const r = parseCli([], {});
  assert.equal(r.kind, 'run');
  if (r.kind !== 'run') return;
  assert.deepEqual(r.options, {
    configFile: 'openproxy.toml',
    logTarget: 'both',
    logLevel: 'INFO',
    maxLogfileNum: 5,
    logDir: 'logs',
    logFormat: 'text',
  });
});

test('environment variables are read; command-line options win', () => {
  const env = {
    CONFIG_FILE: 'env.toml',
    LOG_TARGET: 'file',
    LOG_LEVEL: 'debug',
    MAX_LOGFILE_NUM: '9',
    LOG_DIR: '/tmp/envlogs',
    LOG_FORMAT: 'structured',
  };
  const r = parseCli([], env);
  assert.equal(r.kind, 'run');
  if (r.kind !== 'run') return;
  assert.deepEqual(r.options, {
    configFile: 'env.toml',
    logTarget: 'file',
    logLevel: 'DEBUG',
    maxLogfileNum: 9,
    logDir: '/tmp/envlogs',
    logFormat: 'structured',
  });
  const o = parseCli(
    ['--log-target', 'stdout', '-l', 'WARN', '--max-logfile-num', '2', '--log-dir', 'x', '-F', 'debug', 'cli.toml'],
    env,
  );
  assert.equal(o.kind, 'run');
  if (o.kind !== 'run') return;
  assert.deepEqual(o.options, {
    configFile: 'cli.toml',
    logTarget: 'stdout',
    logLevel: 'WARN',
    maxLogfileNum: 2,
    logDir: 'x',
    logFormat: 'debug',
  });
});

test('--version, -V, --revision, --help print', () => {
  assert.deepEqual(parseCli(['--version'], {}), { kind: 'print', text: `openproxy ${VERSION}\n` });
  assert.deepEqual(parseCli(['-V'], {}), { kind: 'print', text: `openproxy ${VERSION}\n` });
  const rev = parseCli(['--revision'], {});
  assert.ok(rev.kind === 'print' && /^revision number: \d+\n$/.test(rev.text));
  const help = parseCli(['-h'], {});
  assert.ok(
    help.kind === 'print' && help.text.includes('--max-logfile-num') && help.text.includes('[env: LOG_FORMAT=]'),
  );
});

test('bad options are errors that say what was expected', () => {
  const cases: [string[], RegExp][] = [
    [['--log-target', 'syslog'], /'--log-target': expected one of file, stdout, both/],
    [['-l', 'LOUD'], /'--log-level': expected one of ERROR, WARN, INFO, DEBUG, TRACE/],
    [['-F', 'xml'], /'--log-format'/],
    [['--max-logfile-num', '0'], /'--max-logfile-num': expected an integer >= 1/],
    [['--nope'], /Unknown option '--nope'/],
    [['a.toml', 'b.toml'], /unexpected argument 'b.toml'/],
  ];
  for (const [argv, re] of cases) {
    const r = parseCli(argv, {});
    assert.equal(r.kind, 'error', argv.join(' '));
    assert.match((r as { text: string }).text, re);
  }
});
