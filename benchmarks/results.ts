// benchmarks/RESULTS.md is written by several scripts; each owns one "## " section (run.ts owns the
// head before the first section). Replacing a section leaves the others as they were.

import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const RESULTS = join(__dirname, '..', '..', 'benchmarks', 'RESULTS.md');

function split(text: string): { head: string; sections: { title: string; text: string }[] } {
  const parts = text.split(/\n(?=## )/);
  const head = parts[0].startsWith('## ') ? '' : parts.shift()!;
  return { head, sections: parts.map((p) => ({ title: p.split('\n')[0].slice(3).trim(), text: p })) };
}

function join2(head: string, sections: { text: string }[]): string {
  return `${[head.trimEnd(), ...sections.map((s) => s.text.trimEnd())].filter(Boolean).join('\n\n')}\n`;
}

/** Replaces (or appends) the section whose heading is `## title`; `body` excludes the heading. */
export function writeSection(title: string, body: string): void {
  const old = existsSync(RESULTS) ? readFileSync(RESULTS, 'utf8') : '# Benchmark results\n';
  const { head, sections } = split(old);
  const text = `## ${title}\n\n${body.trim()}\n`;
  const i = sections.findIndex((s) => s.title === title);
  if (i >= 0) sections[i] = { title, text };
  else sections.push({ title, text });
  writeFileSync(RESULTS, join2(head, sections));
}

/** Replaces the head (everything before the first section). */
export function writeHead(head: string): void {
  const old = existsSync(RESULTS) ? readFileSync(RESULTS, 'utf8') : '';
  writeFileSync(RESULTS, join2(head, split(old).sections));
}
