// Docs move with the code: the example config and the config man page are generated from the
// config table and must match what is committed; the CLI man page names every option.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { renderExampleToml, renderManPage5 } from '../src/config/docs';
import { parseConfig } from '../src/config/load';
import { CONFIG_TABLE } from '../src/config/table';
import { HELP } from '../src/cli';

const root = join(__dirname, '..', '..');
const read = (p: string) => readFileSync(join(root, p), 'utf8');

test('config/openproxy.toml and man/openproxy.toml.5 are up to date with the config table (run npm run docs)', () => {
  assert.equal(read('config/openproxy.toml'), renderExampleToml());
  assert.equal(read('man/openproxy.toml.5'), renderManPage5());
});

test('the example config loads without warnings and shows every key', () => {
  const text = read('config/openproxy.toml');
  const cfg = parseConfig(text, 'config/openproxy.toml');
  assert.deepEqual(cfg.warnings, []);
  for (const d of CONFIG_TABLE) assert.match(text, new RegExp(`^(# )?${d.key} = `, 'm'), d.key);
});

test('man/openproxy.1 documents every option and environment variable of --help', () => {
  const man = read('man/openproxy.1').replace(/\\-/g, '-');
  for (const opt of HELP.match(/--[a-z-]+/g)!) assert.ok(man.includes(opt), opt);
  for (const env of HELP.match(/env: ([A-Z_]+)=/g)!.map((m) => m.slice(5, -1))) assert.ok(man.includes(env), env);
  for (const sig of ['SIGHUP', 'SIGINT', 'SIGTERM']) assert.ok(man.includes(sig), sig);
});

test('both man pages render with man -l', () => {
  for (const page of ['man/openproxy.1', 'man/openproxy.toml.5']) {
    const r = spawnSync('man', ['-l', join(root, page)], {
      encoding: 'utf8',
      env: { ...process.env, MANPAGER: 'cat', MANWIDTH: '80' },
    });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /NAME/);
  }
});

test('the README gives the two commands on its first screen', () => {
  const first = read('README.md').split('\n').slice(0, 30).join('\n');
  assert.match(first, /npm start/);
  assert.match(first, /npm test/);
});
