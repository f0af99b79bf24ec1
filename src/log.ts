// Logging: text / structured (JSON lines) / debug formats, to stdout, a rotated file, or both.
// Worker threads hand their records to the main thread, which alone writes (one file, one order).

import { closeSync, mkdirSync, openSync, readdirSync, renameSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { isMainThread, parentPort, threadId } from 'node:worker_threads';

export const LEVELS = ['ERROR', 'WARN', 'INFO', 'DEBUG', 'TRACE'] as const;
export type Level = (typeof LEVELS)[number];
export type LogFormat = 'text' | 'structured' | 'debug';
export type LogTarget = 'file' | 'stdout' | 'both';

export interface LogRecord {
  time: string;
  level: Level;
  thread: string;
  msg: string;
  fields?: Record<string, unknown>;
}

export interface LogOptions {
  level: Level;
  format: LogFormat;
  target: LogTarget;
  dir: string;
  maxFiles: number;
  /** Rotate the current file when it grows past this many bytes. */
  rotateBytes: number;
}

const SECRET = /pass(word)?|secret|token/i;

/** Field values whose name looks like a secret are never written. */
function redact(fields: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(fields)) out[k] = SECRET.test(k) ? '********' : v;
  return out;
}

function fmtValue(v: unknown): string {
  if (typeof v === 'string') return /[\s="]/.test(v) || v === '' ? JSON.stringify(v) : v;
  if (v instanceof Error) return JSON.stringify(v.message);
  return typeof v === 'object' ? JSON.stringify(v) : String(v);
}

export function formatRecord(r: LogRecord, format: LogFormat): string {
  if (format === 'structured')
    return `${JSON.stringify({ ts: r.time, level: r.level, thread: r.thread, msg: r.msg, ...r.fields })}\n`;
  const kv = r.fields ? Object.entries(r.fields).map(([k, v]) => `${k}=${fmtValue(v)}`) : [];
  if (format === 'debug') {
    const lines = kv.map((x) => `    ${x}\n`).join('');
    return `${r.time} ${r.level.padEnd(5)} [${r.thread} pid=${process.pid}] ${r.msg}\n${lines}`;
  }
  return `${r.time} ${r.level.padEnd(5)} ${r.msg}${kv.length ? ` ${kv.join(' ')}` : ''}\n`;
}

/** Writes records; lives in the main thread only. */
export class LogSink {
  private fd = -1;
  private size = 0;
  private readonly file: string;

  constructor(readonly opts: LogOptions) {
    this.file = join(opts.dir, 'openproxy.log');
    if (opts.target !== 'stdout') {
      mkdirSync(opts.dir, { recursive: true });
      this.open();
      this.prune();
    }
  }

  private open(): void {
    this.fd = openSync(this.file, 'a');
    this.size = statSync(this.file).size;
  }

  /** Keep at most maxFiles files: the current one plus the newest rotated ones. */
  private prune(): void {
    const rotated = readdirSync(this.opts.dir)
      .filter((f) => /^openproxy\.\d{8}T\d{6}\d*(-\d+)?\.log$/.test(f))
      .sort();
    const excess = rotated.length - Math.max(0, this.opts.maxFiles - 1);
    for (let i = 0; i < excess; i++) unlinkSync(join(this.opts.dir, rotated[i]));
  }

  private rotate(): void {
    closeSync(this.fd);
    const stamp = new Date().toISOString().replace(/[-:]/g, '').replace(/\..*/, '');
    let name = `openproxy.${stamp}.log`;
    for (let n = 1; readdirSync(this.opts.dir).includes(name); n++) name = `openproxy.${stamp}-${n}.log`;
    renameSync(this.file, join(this.opts.dir, name));
    this.open();
    this.prune();
  }

  write(r: LogRecord): void {
    const line = formatRecord(r, this.opts.format);
    if (this.opts.target !== 'file') process.stdout.write(line);
    if (this.fd >= 0) {
      const b = Buffer.from(line);
      writeSync(this.fd, b);
      this.size += b.length;
      if (this.size >= this.opts.rotateBytes) this.rotate();
    }
  }

  close(): void {
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = -1;
  }
}

let sink: LogSink | undefined;
let maxLevel = 2; // INFO
const threadName = isMainThread ? 'main' : `thread-${threadId}`;
let name = threadName;

export function setLogSink(s: LogSink): void {
  sink = s;
  maxLevel = LEVELS.indexOf(s.opts.level);
}

/** In a worker: set the level and the name records carry. */
export function setThreadLogging(level: Level, threadLabel: string): void {
  maxLevel = LEVELS.indexOf(level);
  name = threadLabel;
}

export function enabled(level: Level): boolean {
  return LEVELS.indexOf(level) <= maxLevel;
}

function emit(level: Level, msg: string, fields?: Record<string, unknown>): void {
  if (LEVELS.indexOf(level) > maxLevel) return;
  const r: LogRecord = { time: new Date().toISOString(), level, thread: name, msg, fields: fields && redact(fields) };
  if (sink) sink.write(r);
  else if (!isMainThread && parentPort) parentPort.postMessage({ kind: 'log', record: r });
  else process.stderr.write(formatRecord(r, 'text'));
}

export const log = {
  error: (msg: string, f?: Record<string, unknown>) => emit('ERROR', msg, f),
  warn: (msg: string, f?: Record<string, unknown>) => emit('WARN', msg, f),
  info: (msg: string, f?: Record<string, unknown>) => emit('INFO', msg, f),
  debug: (msg: string, f?: Record<string, unknown>) => emit('DEBUG', msg, f),
  trace: (msg: string, f?: Record<string, unknown>) => emit('TRACE', msg, f),
  /** Main thread: write a record that came from a worker. */
  forward: (r: LogRecord) => {
    if (LEVELS.indexOf(r.level) <= maxLevel) sink ? sink.write(r) : process.stderr.write(formatRecord(r, 'text'));
  },
};
