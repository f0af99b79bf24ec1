// The tree's shape, checked on every run: the layers and no import cycles (dependency-cruiser with
// the rules in .dependency-cruiser.cjs), lint and formatting (Biome, biome.jsonc), no source file
// over 500 lines, no line over 120 characters, and no test harness in the published package.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';

const ROOT = join(__dirname, '..', '..');
const bin = (name: string) => join(ROOT, 'node_modules', '.bin', name);
const TREES = ['src', 'workers', 'testing', 'test', 'benchmarks'];

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) {
      if (name !== 'fixtures' && name !== 'corpus') out.push(...sources(p));
    } else if (name.endsWith('.ts')) out.push(p);
  }
  return out;
}

const files = TREES.flatMap((t) => sources(join(ROOT, t)));

test('layers and cycles: dependency-cruiser finds no violation', () => {
  const r = spawnSync(bin('depcruise'), ['--config', '.dependency-cruiser.cjs', ...TREES], {
    cwd: ROOT,
    encoding: 'utf8',
    timeout: 120_000,
  });
  assert.equal(r.status, 0, `${r.stdout}${r.stderr}`);
  assert.match(r.stdout, /no dependency violations found \(\d+ modules/);
});

test('lint and formatting: biome ci is clean', () => {
  const r = spawnSync(bin('biome'), ['ci', '--colors=off'], { cwd: ROOT, encoding: 'utf8', timeout: 120_000 });
  assert.equal(r.status, 0, `${r.stdout}${r.stderr}`);
  assert.match(r.stdout + r.stderr, /Checked \d+ files/);
});

test('no source file over 500 lines, no line over 120 characters', () => {
  assert.ok(files.length > 50, `found ${files.length} source files`);
  const problems: string[] = [];
  for (const f of files) {
    const lines = readFileSync(f, 'utf8').split('\n');
    const name = relative(ROOT, f);
    if (lines.length > 500) problems.push(`${name}: ${lines.length} lines`);
    lines.forEach((l, i) => {
      if (l.length > 120) problems.push(`${name}:${i + 1}: ${l.length} characters`);
    });
  }
  assert.deepEqual(problems, []);
});

test('the published package holds the product only: no test harness, tests or benchmarks', () => {
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { files: string[] };
  assert.deepEqual(
    pkg.files.filter((f) => /testing|test|bench/.test(f)),
    [],
  );
  const src = sources(join(ROOT, 'src')).map((f) => relative(ROOT, f));
  assert.deepEqual(
    src.filter((f) => f.includes('testing')),
    [],
  );
});
