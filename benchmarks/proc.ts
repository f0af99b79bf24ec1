// What /proc says about a pooler process during a benchmark run, summed over its threads.

import { readFileSync, readdirSync } from 'node:fs';

/** Voluntary and involuntary context switches of every thread of `pid` so far ([NaN, NaN] if unknown). */
export function contextSwitches(pid: number | undefined): [number, number] {
  if (!pid) return [NaN, NaN];
  let voluntary = 0;
  let involuntary = 0;
  try {
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      const status = readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8');
      voluntary += Number(/^voluntary_ctxt_switches:\s+(\d+)/m.exec(status)?.[1] ?? 0);
      involuntary += Number(/^nonvoluntary_ctxt_switches:\s+(\d+)/m.exec(status)?.[1] ?? 0);
    }
  } catch {
    return [NaN, NaN];
  }
  return [voluntary, involuntary];
}

/** CPU time of a process, all threads, user + system, in µs (from /proc; clock ticks of 10 ms). */
export function cpuMicros(pid: number | undefined): number {
  if (!pid) return NaN;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) * 10_000;
  } catch {
    return NaN;
  }
}

/** Resident set size of a process in MB. */
export function rssMb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Math.round(Number(/VmRSS:\s+(\d+)/.exec(status)![1]) / 1024);
}
